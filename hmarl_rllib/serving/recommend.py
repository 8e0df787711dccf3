"""``hmarl recommend``: tomorrow's orders from today's stock, with an exported policy.

The state file (:mod:`hmarl_rllib.sim.state` documents its columns) is rebuilt into the twin's
state on that day, observed exactly as in training (:class:`~hmarl_rllib.rl.observe.ObservationBuilder`),
acted on by the export's modules (:mod:`hmarl_rllib.serving.deploy`: ONNX for learned ones, the numpy
rule for scripted ones), decoded into units as the env decodes actions, and cut to the room
under each node's capacity as the twin places orders. Beside each order: the tuned rule's own
order for the same state (the export's ``rules.yaml``).

numpy, pandas and onnxruntime only: no Ray, no torch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hmarl_rllib.errors import InputError
from hmarl_rllib.rl.observe import ObservationBuilder, agent_ids
from hmarl_rllib.serving.deploy import RULES_FILE, SCENARIO_FILE, ExportError, ExportedPolicy
from hmarl_rllib.sim import SupplyChainTwin
from hmarl_rllib.sim.state import ParsedState, parse_state, read_state, twin_from_states

ORDER_COLUMNS = ["node", "sku", "agent", "module", "learned", "position", "order", "rule_order"]


class Recommender:
    """An export folder, ready to turn state tables into orders."""

    def __init__(self, folder):
        from hmarl_rllib.policies.tuning import policy_from_dict
        from hmarl_rllib.rl.actions import codecs
        from hmarl_rllib.sim.config import parse_config

        self.policy = ExportedPolicy(folder)
        folder = self.policy.folder
        for name in (SCENARIO_FILE, RULES_FILE):
            if not (folder / name).is_file():
                raise ExportError(f"--policy {folder}: {name} is missing (partial export); export again")
        try:
            sc_data = yaml.safe_load((folder / SCENARIO_FILE).read_text())
            rules_data = yaml.safe_load((folder / RULES_FILE).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ExportError(f"--policy {folder}: cannot read {SCENARIO_FILE} / {RULES_FILE} ({err}); export again") from None
        self.scenario = sc = parse_config(sc_data, str(folder / SCENARIO_FILE))
        self.rules = policy_from_dict(rules_data, sc, str(folder / RULES_FILE))
        self.codecs = codecs(sc, self.rules)
        self.observe = ObservationBuilder(sc)
        self.store_ids, self.wh_ids, self.sup_ids = agent_ids(sc)
        missing = [a for a in (*self.store_ids, *self.wh_ids, *self.sup_ids) if a not in self.policy.agents]
        if missing:
            raise ExportError(f"--policy {folder}: agent {missing[0]!r} of {SCENARIO_FILE} is not in {folder / 'manifest.json'};"
                              " export again")
        self._layout = SupplyChainTwin(sc, record=False)  # read by parse_state
        N, K = len(sc.store_list), len(sc.skus)
        self._flat = [("store", (n, k), self.store_ids[n * K + k]) for n in range(N) for k in range(K)]
        self._flat += [("warehouse", (k,), a) for k, a in enumerate(self.wh_ids)]
        self._flat += [("supplier", (k,), a) for k, a in enumerate(self.sup_ids)]
        self._by_module: dict[str, list] = {}
        for kind, idx, aid in self._flat:
            self._by_module.setdefault(self.policy.agents[aid]["module"], []).append((kind, idx))
        nodes = self._layout.node_names()
        self._static = []
        for kind, idx, aid in self._flat:
            mid = self.policy.agents[aid]["module"]
            self._static.append({"node": nodes[idx[0]] if kind == "store" else kind, "sku": sc.sku_names[idx[-1]],
                                 "agent": aid, "module": mid, "learned": bool(self.policy.modules[mid].get("learned"))})

    def orders(self, state, source: str = "--state") -> pd.DataFrame:
        """One row per node and SKU: the export's order (``order``, units) and the tuned rule's
        (``rule_order``) for the state, with the inventory position each reviews."""
        return pd.DataFrame(self.records([self.prepare(state, source)])[0], columns=ORDER_COLUMNS)

    def prepare(self, state, source: str = "--state") -> ParsedState:
        """A validated state (a DataFrame or ``{column: values}``); a malformed one raises
        :class:`~hmarl_rllib.sim.state.StateFileError`."""
        return parse_state(self.scenario, state, source, self._layout)

    def records(self, states: list[ParsedState]) -> list[list[dict]]:
        """Per state, its orders as rows ``{column: value}`` (:data:`ORDER_COLUMNS`). States of
        one day share a twin: one observation pass, one forward pass per module, one decoding."""
        out: list = [None] * len(states)
        by_day: dict[int, list[int]] = {}
        for i, p in enumerate(states):
            by_day.setdefault(p.day, []).append(i)
        for rows in by_day.values():
            for i, rec in zip(rows, self._day_records([states[i] for i in rows])):
                out[i] = rec
        return out

    def _day_records(self, states: list[ParsedState]) -> list[list[dict]]:
        from hmarl_rllib.rl.actions import decode_orders

        sc, pol = self.scenario, self.policy
        tw, last_store, last_wh = twin_from_states(sc, states)
        obs = self.observe(tw, last_store, last_wh)
        B, N, K = tw.batch, tw.n_stores, tw.n_skus
        acts = {"store": np.zeros((B, N, K), np.int64), "warehouse": np.zeros((B, K), np.int64),
                "supplier": np.zeros((B, K), np.int64)}
        for mid, members in self._by_module.items():  # one forward pass per module, every state at once
            o = np.stack([obs[kind][(slice(None), *idx)] for kind, idx in members], axis=1)  # (B, agents, n_obs)
            a = pol.actions(mid, o.reshape(B * len(members), -1)).reshape(B, len(members))
            for j, (kind, idx) in enumerate(members):
                acts[kind][(slice(None), *idx)] = a[:, j]
        placed = tw.placed_orders(*decode_orders(self.codecs, tw, acts["store"], acts["warehouse"], acts["supplier"]))
        rule = tw.placed_orders(*self.rules.orders(tw))
        position = (tw.store_position(), tw.warehouse_position(), tw.supplier_position())
        kinds = {"store": 0, "warehouse": 1, "supplier": 2}
        flat = [(self._static[n], kinds[kind], idx) for n, (kind, idx, _) in enumerate(self._flat)]
        return [[{**static, "position": float(position[i][(b, *idx)]), "order": float(placed[i][(b, *idx)]),
                  "rule_order": float(rule[i][(b, *idx)])} for static, i, idx in flat] for b in range(B)]


def check_out(out) -> Path:
    """An orders file path that can be written: ``.csv`` or ``.parquet`` in an existing folder."""
    out = Path(out).expanduser()
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise InputError(f"--out {out}: unknown file type {out.suffix!r}; give .csv or .parquet")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist; create it or give another path")
    return out


def write_orders(frame: pd.DataFrame, out) -> Path:
    """Write the orders table as ``.csv`` or ``.parquet`` (by the suffix)."""
    out = check_out(out)
    if out.suffix.lower() == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    return out


def format_orders(frame: pd.DataFrame, day: int) -> str:
    """The orders as a text table, in units."""
    f = frame.copy()
    f["decided_by"] = np.where(f["learned"], f["module"] + " (learned)", f["module"] + " (rule)")
    cols = ["node", "sku", "position", "order", "rule_order", "decided_by"]
    if f["sku"].nunique() == 1:
        cols.remove("sku")
    body = f[cols].to_string(index=False, float_format=lambda x: f"{x:g}")
    return f"orders placed on day {day} (units; rule_order: the tuned rule in rules.yaml on the same state)\n{body}"


def recommend(policy, state_path, out=None) -> tuple[pd.DataFrame, int]:
    """Read a state file, return ``(orders, day)``; writes ``out`` when given."""
    if out is not None:
        check_out(out)  # before any work
    rec = policy if isinstance(policy, Recommender) else Recommender(policy)
    state = read_state(state_path)
    orders = rec.orders(state, f"--state {state_path}")
    if out is not None:
        write_orders(orders, out)
    return orders, int(pd.to_numeric(state["day"]).iloc[0])
