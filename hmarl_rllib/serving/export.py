"""``hmarl export``: a checkpoint's learned modules as ONNX, for inference without Ray or torch.

Writes into ``out``: ``<module>.onnx`` per learned module (input ``obs`` (n, n_obs) float32,
output ``logits`` (n, n_actions); the greedy action is their argmax), ``rules.yaml`` (the
tuned rule's parameters, as ``hmarl baseline`` writes them: the scripted agents' rule, and the
rule ``hmarl recommend`` shows beside the policy), ``scenario.yaml`` (the scenario trained on)
and ``manifest.json`` (format version, scenario name and fingerprint, the checkpoint, every
agent's module and type, per agent type the observation layout with each field's name and
scale, per module its observation size, the meaning of each action and, for a scripted module,
its rule's parameters). :mod:`hmarl_rllib.serving.deploy` runs it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from ray.rllib.core.columns import Columns

from hmarl_rllib.errors import output_folder
from hmarl_rllib.experiments.evaluation import load_trained
from hmarl_rllib.rl.observe import HISTORY, agent_type, obs_sizes, observation_units
from hmarl_rllib.serving.deploy import EXPORT_VERSION, MANIFEST, RULES_FILE, SCENARIO_FILE, ExportError

CALENDAR = ["weekday_sin", "weekday_cos", "yearday_sin", "yearday_cos"]


def observation_layout(scenario) -> dict[str, list[dict]]:
    """Per agent type, its observation fields in order: ``{"name", "scale"}``, where scale says
    what the raw quantity is divided by before the squash into [-10, 10] (``HMARLEnv``'s docstring):
    ``stock`` = stock_days x mu, ``demand`` = mu (the agent's own; mu_w, the stores' sum, for the
    warehouse and supplier), ``forecast`` = mu x (L + 1), ``none`` = unscaled."""
    from hmarl_rllib.sim.network import SupplyChainTwin

    tw = SupplyChainTwin(scenario, record=False)
    ps, pw, pp = tw.P_s - 1, tw.P_w - 1, tw.P_p - 1
    days = lambda prefix, n: [f"{prefix}_{i}d" for i in range(1, n + 1)]  # noqa: E731
    hist = [f"demand_{HISTORY - j}d_ago" for j in range(HISTORY)]  # oldest first
    store = [("on_hand", "stock"), ("in_transit", "stock"), ("backorders", "stock"), ("demand_yesterday", "demand"),
             ("demand_mean_7d", "demand"), ("warehouse_on_hand", "stock"), ("time_to_go", "none")]
    wh = [("on_hand", "stock"), ("in_transit", "stock"), ("store_orders_yesterday", "demand"),
          ("store_positions_sum", "stock"), ("supplier_on_hand", "stock"), ("time_to_go", "none")]
    sup = [("finished_stock", "stock"), ("in_production", "stock"), ("warehouse_order_yesterday", "demand")]
    if scenario.observations.mode == "rich":
        store += [("position", "stock"), ("warehouse_position", "stock"), ("forecast_lead_time", "forecast")]
        store += [(n, "stock") for n in days("arriving_in", ps)] + [(n, "demand") for n in hist]
        store += [(n, "none") for n in CALENDAR]
        wh += [("position", "stock")] + [(n, "stock") for n in days("arriving_in", pw)]
        wh += [(n, "demand") for n in hist] + [(n, "none") for n in CALENDAR]
        sup += [("position", "stock"), ("warehouse_position", "stock"), ("time_to_go", "none")]
        sup += [(n, "stock") for n in days("completing_in", pp)] + [(n, "none") for n in CALENDAR]
    out = {"store": store, "warehouse": wh, "supplier": sup}
    sizes = obs_sizes(scenario)
    for t, fields in out.items():
        if len(fields) != sizes[t]:  # the env's layout changed without this list
            raise AssertionError(f"{t} observation: {len(fields)} names for {sizes[t]} fields")
    return {t: [{"name": n, "scale": s} for n, s in fields] for t, fields in out.items()}


class _Logits(torch.nn.Module):
    """A learned RLModule's inference path, obs -> action logits, as a torch module to trace."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, obs):
        return self.module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]


def export_policy(checkpoint, out, config=None) -> dict:
    """Export ``checkpoint`` into the folder ``out`` (created; existing export files replaced).
    Returns the manifest."""
    from hmarl_rllib.policies.tuning import policy_to_dict, scenario_fingerprint
    from hmarl_rllib.rl.actions import codecs

    trained = load_trained(checkpoint, config)
    sc = trained.scenario
    out = output_folder(Path(out).expanduser())
    sizes = obs_sizes(sc)
    cods = codecs(sc, trained.baseline)
    mu_s, mu_w = observation_units(sc)
    types = {}
    for aid, mid in trained.agent_modules.items():
        types.setdefault(mid, agent_type(aid))
    modules = {}
    for mid, module in sorted(trained.modules.items()):
        t = types.get(mid)
        if t is None:
            continue
        learned = isinstance(module, torch.nn.Module)
        spec = {"type": t, "learned": learned, "n_obs": sizes[t],
                "actions": {"mode": cods[t].mode, "values": [float(v) for v in cods[t].values],
                            "meaning": _action_meaning(cods[t].mode)}}
        if not learned:  # a scripted rule: its parameters, played by hmarl_rllib.rl.scripted
            spec["rule"] = json.loads(json.dumps(module.model_config))
        if learned:
            spec["file"] = f"{mid}.onnx"
            with torch.no_grad():
                torch.onnx.export(_Logits(module), (torch.zeros(1, sizes[t]),), str(out / spec["file"]),
                                  input_names=["obs"], output_names=["logits"],
                                  dynamic_axes={"obs": {0: "n"}, "logits": {0: "n"}}, dynamo=False,
                                  opset_version=17)
        modules[mid] = spec
    (out / SCENARIO_FILE).write_text(yaml.safe_dump(sc.model_dump(mode="json"), sort_keys=False))
    (out / RULES_FILE).write_text(yaml.safe_dump(policy_to_dict(trained.baseline, sc), sort_keys=False))
    manifest = {
        "version": EXPORT_VERSION, "scenario": sc.name, "fingerprint": scenario_fingerprint(sc),
        "checkpoint": str(trained.checkpoint), "observation_mode": sc.observations.mode,
        "stock_days": sc.observations.stock_days,
        "agents": {aid: {"module": mid, "type": agent_type(aid)} for aid, mid in trained.agent_modules.items()},
        "modules": modules, "observations": observation_layout(sc),
        "demand_units": {"stores": np.asarray(mu_s).tolist(), "warehouse": np.asarray(mu_w).tolist()},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _action_meaning(mode: str) -> str:
    return {"quantities": "order values[a] units",
            "order_up_to": "order up to values[a] x mu on the inventory position",
            "base_stock_correction": "order up to the base-stock level + values[a] x mu",
            "baseline_correction": "the baseline rule's order (rules.yaml) + values[a] x mu"}.get(mode, mode)
