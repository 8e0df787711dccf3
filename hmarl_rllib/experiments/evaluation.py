"""Evaluate a trained checkpoint on the twin, with no Ray cluster, beside the tuned baselines.

:func:`load_trained` restores the RLModules straight from a checkpoint folder
(``<ckpt>/learner_group/learner/rl_module/<module id>``): the learned store module (and, in
phase 2, the learned warehouse module) and the scripted warehouse / supplier modules, which
carry the baseline parameters they ran with in training. The scenario comes from the
checkpoint's own algorithm config (``env_config``), unless ``--config`` names another one with
the same spaces. The env-to-module pipeline of our training config is RLlib's default one
(stateless: no observation filter), so feeding the module the env's observations reproduces
what it saw in training; a checkpoint with a custom pipeline is refused.

:func:`greedy_orders` turns the modules into an ``order_fn(twin)`` for a whole batch of twin
replicas: :class:`~hmarl_rllib.rl.observe.ObservationBuilder` builds every agent's observation,
each module picks its action (argmax of the action logits for learned modules), and
:class:`~hmarl_rllib.rl.actions.ActionCodec` decodes actions into orders exactly as the
env does. :func:`evaluate_trained_policy` runs it through :func:`hmarl_rllib.sim.simulate.evaluate`
on held-out seeds, with the tuned baselines on the same seeds.

Loading a checkpoint unpickles code from it: only load checkpoints you trust.
"""
from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hmarl_rllib.errors import CheckpointError, ConfigError
from hmarl_rllib.experiments import report
from hmarl_rllib.policies.heuristics import ChainPolicy
from hmarl_rllib.rl.actions import codecs, decode_orders
from hmarl_rllib.rl.modules import LEARNED_MODULES, STORE_MODULE, module_for_agent
from hmarl_rllib.rl.observe import ObservationBuilder, agent_ids, obs_sizes
from hmarl_rllib.sim import reconciliation, simulate
from hmarl_rllib.sim.config import Scenario, parse_config
from hmarl_rllib.sim.demand import scored_dates
from hmarl_rllib.sim.network import F

MODULE_DIR = Path("learner_group", "learner", "rl_module")
BASELINES = ("s_S", "base_stock", "echelon_s_S")


@dataclass
class TrainedPolicy:
    """What a checkpoint holds, restored without Ray."""

    checkpoint: Path
    scenario: Scenario
    baseline: ChainPolicy
    modules: dict  # module id -> RLModule
    agent_modules: dict = field(default_factory=dict)  # agent id -> module id
    config_source: str = "checkpoint"


# ------------------------------------------------------------------------------ restore
def _checkpoint_config(ckpt: Path) -> dict:
    """The algorithm config dict saved in the checkpoint (``class_and_ctor_args.pkl``)."""
    f = ckpt / "class_and_ctor_args.pkl"
    if not f.is_file():
        raise CheckpointError(f"--checkpoint {ckpt}: partial checkpoint, {f.name} is missing")
    try:
        with f.open("rb") as fh:
            data = pickle.load(fh)
        return data["ctor_args_and_kwargs"][0][0]
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unreadable checkpoint
        raise CheckpointError(f"--checkpoint {ckpt}: cannot read {f.name} ({type(err).__name__}: {err})") from None


def _check_folder(ckpt: Path) -> None:
    if not ckpt.exists():
        raise CheckpointError(f"--checkpoint {ckpt}: no such folder")
    if not ckpt.is_dir():
        raise CheckpointError(f"--checkpoint {ckpt}: not a checkpoint folder (pass a checkpoint_NNNNNN folder)")
    if not (ckpt / MODULE_DIR).is_dir() and not (ckpt / "algorithm_state.pkl").exists():
        inner = sorted(ckpt.glob("checkpoint_*")) or sorted(ckpt.glob("*/checkpoint_*"))
        hint = f", e.g. {inner[-1]}" if inner else " (written by `hmarl train` under tune_results/<name>/)"
        raise CheckpointError(f"--checkpoint {ckpt}: not a checkpoint folder; pass a checkpoint_NNNNNN folder{hint}")
    if not (ckpt / MODULE_DIR / STORE_MODULE).is_dir():
        raise CheckpointError(f"--checkpoint {ckpt}: partial checkpoint, {MODULE_DIR / STORE_MODULE} is missing")


def _restore_module(ckpt: Path, module_id: str):
    from ray.rllib.core.rl_module.rl_module import RLModule

    path = ckpt / MODULE_DIR / module_id
    if not path.is_dir():
        raise CheckpointError(f"--checkpoint {ckpt}: partial checkpoint, {MODULE_DIR / module_id} is missing")
    quiet = logging.getLogger("ray")  # RLlib warns (deprecation) about its own constructor style
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        module = RLModule.from_checkpoint(str(path))
    except Exception as err:  # noqa: BLE001
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"--checkpoint {ckpt}: cannot restore module {module_id} ({msg})") from None
    finally:
        quiet.setLevel(level)
    if hasattr(module, "eval"):  # torch modules: inference mode (no dropout etc.)
        module.eval()
    return module


def agent_module_map(scenario, has_module) -> dict:
    """Agent id -> module id, the upstream types learning where ``has_module(module id)``."""
    store_ids, wh_ids, sup_ids = agent_ids(scenario)
    learn = tuple(t for t, m in LEARNED_MODULES.items() if has_module(m))
    return {a: module_for_agent(a, learn=learn) for a in store_ids + wh_ids + sup_ids}


def load_trained(checkpoint, config: Scenario | None = None) -> TrainedPolicy:
    """Restore a checkpoint's modules and scenario (no Ray). ``config`` replaces the trained
    scenario (e.g. to test on other demand); its spaces must match the checkpoint's."""
    from hmarl_rllib.policies.tuning import policy_from_dict

    ckpt = Path(checkpoint).expanduser().resolve()
    _check_folder(ckpt)
    algo_config = _checkpoint_config(ckpt)
    if algo_config.get("_env_to_module_connector") is not None:
        raise CheckpointError(f"--checkpoint {ckpt}: trained with a custom env-to-module connector;"
                              " hmarl evaluate replays the default pipeline only")
    env_cfg = dict(algo_config.get("env_config") or {})
    try:
        trained_scenario = parse_config(env_cfg.get("scenario"), f"{ckpt} (env_config.scenario)")
        baseline = policy_from_dict(env_cfg.get("baseline"), trained_scenario, f"{ckpt} (env_config.baseline)")
    except ConfigError as err:
        raise CheckpointError(f"--checkpoint {ckpt}: not written by `hmarl train` ({err})") from None
    if env_cfg.get("config_path"):  # so tuned baselines are found where training found them
        trained_scenario = trained_scenario.model_copy(update={"source_path": env_cfg["config_path"]})
    scenario, source = trained_scenario, "checkpoint"
    if config is not None:
        scenario, source = config, config.source_path or "--config"
        if len(config.skus) != len(trained_scenario.skus) or len(config.store_list) != len(trained_scenario.store_list):
            raise CheckpointError(
                f"--checkpoint {ckpt}: trained on {len(trained_scenario.store_list)} stores x"
                f" {len(trained_scenario.skus)} SKUs, --config {source} has {len(config.store_list)} x"
                f" {len(config.skus)}; the agents differ")
        try:
            baseline = policy_from_dict(env_cfg.get("baseline"), config, "checkpoint baseline")
        except ConfigError as err:
            raise CheckpointError(f"--checkpoint {ckpt}: {err}") from None
    agent_modules = agent_module_map(scenario, lambda m: (ckpt / MODULE_DIR / m).is_dir())
    modules = {m: _restore_module(ckpt, m) for m in sorted(set(agent_modules.values()))}
    _check_spaces(ckpt, scenario, baseline, modules, agent_modules, source)
    return TrainedPolicy(ckpt, scenario, baseline, modules, agent_modules, source)


def _check_spaces(ckpt, scenario, baseline, modules, agent_modules, source) -> None:
    from hmarl_rllib.rl.observe import agent_type

    sizes = obs_sizes(scenario)
    n_act = {t: c.n for t, c in codecs(scenario, baseline).items()}
    for agent, mid in agent_modules.items():
        t = agent_type(agent)
        m = modules[mid]
        got_obs, got_act = tuple(m.observation_space.shape), int(m.action_space.n)
        if got_obs != (sizes[t],) or got_act != n_act[t]:
            raise CheckpointError(
                f"--checkpoint {ckpt}: module {mid} observes {got_obs[0]} floats with {got_act} actions,"
                f" the scenario from {source} gives {t} agents {sizes[t]} floats and {n_act[t]} actions"
                " (observations/actions differ: pass the config it was trained with)")


# --------------------------------------------------------------------------- acting
ACT_CHUNK = 4096  # rows per pass of the plain-MLP path: its activations stay in the CPU's cache


def _plain_actor(module):
    """The module's actor (encoder, then policy head) as ``[(W^T, b, activation)]`` when it is a
    plain MLP of Linear and Tanh / ReLU layers, as every learned module of ours is; else None
    (scripted modules, recurrent or other encoders: RLlib's own forward)."""
    import torch

    actor = getattr(getattr(module, "encoder", None), "actor_encoder", None)
    pi = getattr(module, "pi", None)
    if actor is None or pi is None or (hasattr(module, "is_stateful") and module.is_stateful()):
        return None
    layers = []
    for seq in (getattr(getattr(actor, "net", None), "mlp", None), getattr(getattr(pi, "net", None), "mlp", None)):
        if not isinstance(seq, torch.nn.Sequential):
            return None
        for layer in seq:
            if isinstance(layer, torch.nn.Linear):
                bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
                layers.append([layer.weight.detach().T.contiguous(), bias.detach().clone(), None])
            elif isinstance(layer, (torch.nn.Tanh, torch.nn.ReLU)) and layers and layers[-1][2] is None:
                layers[-1][2] = "tanh" if isinstance(layer, torch.nn.Tanh) else "relu"
            else:
                return None
    return layers or None


def _rllib_inference(module, obs) -> dict:
    """RLlib's ``forward_inference`` of ``module`` on a (B, n_obs) array, without gradients."""
    import torch
    from ray.rllib.core.columns import Columns

    with torch.no_grad():
        return module.forward_inference({Columns.OBS: torch.from_numpy(np.ascontiguousarray(obs, np.float32))})


def _mlp_logits(layers):
    """``obs -> logits`` of a plain MLP given as :func:`_plain_actor`'s layers (see :func:`logits_fn`)."""
    import torch

    bufs: dict = {}  # layer -> its (ACT_CHUNK, width) output buffer, reused call after call

    def logits(obs):
        obs = np.asarray(obs)
        lead = obs.shape[:-1]
        x_all = torch.from_numpy(np.ascontiguousarray(obs.reshape(-1, obs.shape[-1]), np.float32))
        out = np.empty((len(x_all), layers[-1][0].shape[1]), np.float32)
        with torch.no_grad():
            for i in range(0, len(x_all), ACT_CHUNK):
                x = x_all[i:i + ACT_CHUNK]
                n = len(x)
                for j, (w, b, act) in enumerate(layers):
                    if j not in bufs:
                        bufs[j] = torch.empty(ACT_CHUNK, w.shape[1])
                    y = bufs[j][:n]
                    torch.addmm(b, x, w, out=y)
                    if act == "tanh":
                        torch.sigmoid(y.mul_(2), out=y).mul_(2).sub_(1)
                    elif act == "relu":
                        y.clamp_(min=0)
                    x = y
                out[i:i + n] = x.numpy()
        return out.reshape(*lead, out.shape[-1])

    return logits


def logits_fn(module):
    """``obs (B, n_obs) float32 -> action logits (B, n_actions)`` of a learned module. A plain
    MLP actor's weights are copied now (later training does not change the function); other
    modules are read when it is called.

    A plain MLP actor runs as matrix products ``ACT_CHUNK`` rows at a time into reused buffers,
    with tanh computed as 2·sigmoid(2x) − 1 (within 2e-7 of torch's tanh, whose CPU kernel is
    about 4× slower here): the planner over a fitted policy calls it on 65,536 replicas every
    simulated day, where RLlib's forward took 250 ms for the 3 stores' 196,608 rows and this
    path 90 ms (2026-12-08). Other modules run RLlib's ``forward_inference``. A test checks the
    logits against RLlib's on a trained checkpoint."""
    from ray.rllib.core.columns import Columns

    layers = _plain_actor(module)
    if layers is None:
        return lambda obs: _rllib_inference(module, obs)[Columns.ACTION_DIST_INPUTS].numpy()
    return _mlp_logits(layers)


def actions_fn(module):
    """``obs (B, n_obs) -> greedy actions (B,)`` of one module: scripted modules return their
    rule's actions, learned ones the argmax of their logits (:func:`logits_fn`: a plain MLP's
    weights as they are now)."""
    from ray.rllib.core.columns import Columns

    layers = _plain_actor(module)
    if layers is not None:
        logits = _mlp_logits(layers)
        return lambda obs: logits(obs).argmax(axis=-1).astype(np.int64)

    def rllib_actions(obs):
        out = _rllib_inference(module, obs)
        if Columns.ACTIONS in out:
            return np.asarray(out[Columns.ACTIONS]).astype(np.int64)
        return out[Columns.ACTION_DIST_INPUTS].argmax(dim=-1).numpy().astype(np.int64)

    return rllib_actions


def module_actions(module, obs: np.ndarray) -> np.ndarray:
    """Greedy actions of one module for a (B, n_obs) float32 array (:func:`actions_fn`)."""
    return actions_fn(module)(obs)


def greedy_actions(trained: TrainedPolicy):
    """``actions(twin)``: the trained modules' greedy action indices on a batch of replicas,
    ``(store (B, N, K), warehouse (B, K), supplier (B, K))``, with the modules' weights as they
    are when it is built (:func:`actions_fn`): build it again after training them."""
    sc = trained.scenario
    builder = ObservationBuilder(sc)
    store_ids, wh_ids, sup_ids = agent_ids(sc)
    N, K = len(sc.store_list), len(sc.skus)
    # each module's greedy actions, its weights as they are now
    act = {mid: actions_fn(m) for mid, m in trained.modules.items()}

    def per_sku(kind_obs, ids):  # (B, K, n) -> (B, K) actions, module by module
        acts = np.empty(kind_obs.shape[:2], np.int64)
        for k, aid in enumerate(ids):
            acts[:, k] = act[trained.agent_modules[aid]](kind_obs[:, k])
        return acts

    def actions(twin):
        B = twin.batch
        obs = builder(twin, twin.last_placed[:, :N], twin.last_placed[:, N])
        so = obs["store"]
        a_store = act[STORE_MODULE](so.reshape(-1, so.shape[-1])).reshape(B, N, K)
        return a_store, per_sku(obs["warehouse"], wh_ids), per_sku(obs["supplier"], sup_ids)

    return actions


def greedy_orders(trained: TrainedPolicy):
    """``order_fn(twin)`` playing the trained modules greedily on a batch of replicas."""
    cods = codecs(trained.scenario, trained.baseline)
    actions = greedy_actions(trained)

    def orders(twin):
        return decode_orders(cods, twin, *actions(twin))

    return orders


# ------------------------------------------------------------------------- evaluation
def evaluate_trained_policy(checkpoint, episodes: int = 100, seed: int | None = None, out=None,
                            config: Scenario | None = None, baselines=BASELINES, progress=None,
                            seeds=None) -> dict:
    """Run the trained policy greedily on ``episodes`` held-out seeds beside the tuned
    baselines on the same seeds. Returns ``{"checkpoint", "scenario", "episodes", "seeds",
    "policies": {name: summary}}`` (summaries as :func:`hmarl_rllib.sim.reconciliation.summarize`).
    ``seed``: the first held-out seed (``--seed``; a start among the training, tuning or
    validation seeds is refused, :func:`hmarl_rllib.sim.simulate.eval_seeds`). ``seeds``: explicit
    demand seeds instead, unchecked (e.g. ``simulate.validation_seeds(n)`` to replay the
    training's own evaluation). ``out``: a folder for ledgers (Parquet), KPIs (CSV) and plots (PNG)."""
    seeds = simulate.eval_seeds(episodes, seed) if seeds is None else np.asarray(seeds, dtype=np.int64)
    episodes = len(seeds)
    trained = load_trained(checkpoint, config)
    sc = trained.scenario
    warm = trained.baseline.orders
    runs = {"learned": simulate.evaluate(sc, greedy_orders(trained), seeds, warmup_fn=warm)}
    rules = {}
    for kind in baselines:
        # the baseline the warehouse and supplier ran with in training; the others tuned (cached)
        same = kind == trained.baseline.name and trained.config_source == "checkpoint"
        rules[kind] = trained.baseline if same else _tuned(sc, kind, progress)
        runs[kind] = simulate.evaluate(sc, rules[kind].orders, seeds)
    if trained.baseline.name not in runs:  # a seasonal rule the training corrected: shown beside them
        rules[trained.baseline.name] = trained.baseline
        runs[trained.baseline.name] = simulate.evaluate(sc, trained.baseline.orders, seeds)
    result = {"checkpoint": str(trained.checkpoint), "scenario": sc.name, "config": trained.config_source,
              "episodes": int(episodes), "seeds": [int(seeds[0]), int(seeds[-1])],
              "demand_dates": scored_dates(sc, seeds, sc.warmup_days + sc.episode_length),
              "policies": {name: summary for name, (summary, _) in runs.items()}}
    if out is not None:
        result["written"] = write_outputs(Path(out), trained, runs, seeds)
        result["written"].append(str(_report(Path(out), result, trained, runs, rules, progress)))
    return result


def _report(out: Path, result: dict, trained: TrainedPolicy, runs: dict, rules: dict, progress=None) -> Path:
    """``out/report.html`` (:mod:`hmarl_rllib.experiments.html_report`) of an evaluation."""
    from hmarl_rllib.experiments.html_report import ReportData, write_report
    from hmarl_rllib.policies.optimum import exact_optimum

    best_rule = min((n for n in runs if n != "learned"), key=lambda n: runs[n][0]["cost_mean"])
    facts = [f"checkpoint {result['checkpoint']}",
             f"scenario {result['scenario']} (from {result['config']}): {result['episodes']} held-out episodes,"
             f" seeds {result['seeds'][0]}..{result['seeds'][1]}",
             f"best rule on these seeds: {best_rule}; the rule the policy corrects: {trained.baseline.name}"]
    if result.get("demand_dates"):
        facts.append(result["demand_dates"])
    optimum = exact_optimum(trained.scenario, progress)["cost"]
    data = ReportData(
        title=f"hmarl evaluate: {result['scenario']}", facts=facts,
        summaries={n: s for n, (s, _) in runs.items()},
        costs={n: reconciliation.chain_kpis(simulate.scored_ledger(t), t.n_stores)["cost"] for n, (_, t) in runs.items()},
        paths={n: t for n, (_, t) in runs.items()}, best_rule=best_rule, optimum=optimum,
        curve=training_curve(trained, {best_rule: rules[best_rule], trained.baseline.name: trained.baseline}, optimum))
    return write_report(out, data)


def training_curve(trained: TrainedPolicy, rules: dict, optimum: float | None = None):
    """The training curve of the run the checkpoint belongs to (``progress.csv`` in its trial
    folder) with reference costs: each rule in ``rules`` (name -> ChainPolicy) played on the
    validation seeds that training's greedy evaluations use, and the exact optimum. None when
    the checkpoint has no run folder beside it."""
    from hmarl_rllib.experiments.html_report import Curve
    from hmarl_rllib.experiments.plots import load_progress

    path = trained.checkpoint.parent / "progress.csv"
    if not path.is_file():
        return None
    n = int(_checkpoint_config(trained.checkpoint).get("evaluation_duration") or 30)
    seeds = simulate.validation_seeds(n)
    refs = {f"{name} (validation seeds)": simulate.evaluate(trained.scenario, rule.orders, seeds)[0]["cost_mean"]
            for name, rule in rules.items()}
    if optimum is not None:
        refs["exact optimum"] = optimum
    return Curve(load_progress(path), refs)


def _tuned(scenario, kind, progress):
    """Tuned parameters cached beside the scenario's YAML, or tuned in memory when the YAML is gone."""
    from hmarl_rllib.policies.tuning import tune_policy, tuned_policy

    if scenario.source_path and Path(scenario.source_path).is_file():
        return tuned_policy(scenario, kind, progress=progress)
    return tune_policy(scenario, kind, progress=progress)


def json_summary(result: dict) -> dict:
    """The ``--json`` object: checkpoint, episodes, policies: name -> the four promised fields."""
    return {"checkpoint": result["checkpoint"], "episodes": result["episodes"],
            "policies": {n: report.json_policy(s) for n, s in result["policies"].items()}}


def format_tables(result: dict) -> str:
    lines = [f"checkpoint {result['checkpoint']}",
             f"scenario {result['scenario']} (from {result['config']}): {result['episodes']} held-out episodes,"
             f" seeds {result['seeds'][0]}..{result['seeds'][1]}"]
    if result.get("demand_dates"):
        lines.append(result["demand_dates"])
    lines.append("")
    for name, summary in result["policies"].items():
        lines += [report.agent_table(summary, title=f"{name}:"), ""]
    lines.append(report.chain_table(result["policies"]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- outputs
def write_outputs(out: Path, trained: TrainedPolicy, runs: dict, seeds) -> list[str]:
    """Ledgers (Parquet), KPIs per episode and agent plus the summary (CSV), plots (PNG)."""
    import pandas as pd

    from hmarl_rllib.sim import write_ledger

    out.mkdir(parents=True, exist_ok=True)
    written = []
    kpis, rows = [], []
    for name, (summary, twin) in runs.items():
        path = out / f"ledger_{name}.parquet"
        write_ledger(twin.ledger_frame(), path)
        written.append(path)
        frame = reconciliation.kpi_frame(simulate.scored_ledger(twin), twin.node_names(), seeds)
        frame.insert(0, "policy", name)
        kpis.append(frame)
        row = {"policy": name, **{k: v for k, v in summary.items() if k not in ("per_agent", "cost_ci95")}}
        row["cost_ci95_low"], row["cost_ci95_high"] = summary["cost_ci95"]
        rows.append(row)
    pd.concat(kpis).to_csv(out / "kpi_episodes.csv", index=False)
    pd.DataFrame(rows).to_csv(out / "kpi_summary.csv", index=False)
    written += [out / "kpi_episodes.csv", out / "kpi_summary.csv"]
    written += _plots(out, trained, runs)
    return [str(p) for p in written]


def _plots(out: Path, trained: TrainedPolicy, runs: dict) -> list[Path]:
    """Matplotlib's object API (no pyplot): the caller's backend is left alone."""
    from matplotlib.figure import Figure

    paths = []
    # inventory and orders over time, per agent (episode 0, SKU 0), one figure per policy
    for name, (_, twin) in runs.items():
        led = simulate.scored_ledger(twin)[:, 0, :, 0]  # (T, M, F)
        nodes = twin.node_names()
        days = np.arange(led.shape[0]) + twin.scenario.warmup_days
        fig = Figure(figsize=(9, 2.1 * len(nodes)))
        axes = fig.subplots(len(nodes), 1, sharex=True)
        for m, ax in enumerate(np.atleast_1d(axes)):
            ax.plot(days, led[:, m, F["on_hand"]], label="on hand")
            ax.plot(days, led[:, m, F["in_transit"]], label="in transit / in production", alpha=0.7)
            ax.bar(days, led[:, m, F["order_placed"]], color="tab:green", alpha=0.4, label="order placed")
            ax.set_ylabel(nodes[m])
        np.atleast_1d(axes)[0].legend(loc="upper right", fontsize=7, ncols=3)
        np.atleast_1d(axes)[-1].set_xlabel("day")
        fig.suptitle(f"{name}: inventory and orders (episode seed {twin.seeds[0]}, SKU {twin.scenario.sku_names[0]})")
        fig.tight_layout()
        p = out / f"inventory_{name}.png"
        fig.savefig(p, dpi=90)
        paths.append(p)
    # cost breakdown per policy
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    names = list(runs)
    bottom = np.zeros(len(names))
    for part in ("holding_cost_mean", "stockout_cost_mean", "ordering_cost_mean"):
        vals = np.array([runs[n][0][part] for n in names])
        ax.bar(names, vals, bottom=bottom, label=part.replace("_mean", "").replace("_", " "))
        bottom += vals
    ax.set_ylabel("mean chain cost per episode")
    ax.legend()
    fig.tight_layout()
    p = out / "cost_breakdown.png"
    fig.savefig(p, dpi=90)
    paths.append(p)
    # training curves, when the run's progress.csv sits beside the checkpoint (its trial folder)
    if (trained.checkpoint.parent / "progress.csv").is_file():
        from hmarl_rllib.experiments.plots import plot_run

        paths += plot_run(trained.checkpoint.parent, out)
    return paths


def to_json(result: dict) -> str:
    return json.dumps(json_summary(result))
