"""Learning from the rollout planner: one step of approximate policy iteration, as Deep Controlled
Learning learns (Temizöz et al., ANCHORS.md), on the chain.

The rollout planner over the rule (:func:`hmarl_rllib.experiments.headroom.rollout_actions`,
agents one after the other) is the policy-improvement step: it simulates the model's demand at
every decision, which is too slow to deploy as it is (seconds per episode) and never generalises.
Here it only **labels**:

1. the planner plays ``episodes`` RL-training demand paths (seeds from 0, never held-out ones),
   its simulations split over ``workers`` processes; every agent's observation on every day is
   kept with the action the planner took there;
2. each learned module of a checkpoint (the stores' shared module, the warehouse's and the
   supplier's when they learn) is fitted to those actions by cross-entropy: its actor, encoder
   and logits; the critic is not touched;
3. the fitted modules are written into a copy of the checkpoint, which ``hmarl evaluate``,
   ``hmarl benchmark`` and ``hmarl export`` read like any other; its greedy policy is then played
   on held-out episodes, paired with the rule.

With ``rounds`` R > 1 this is repeated: round r's planner rolls out round r - 1's fitted policy
instead of the rule (:func:`hmarl_rllib.experiments.headroom.rollout_actions`'s ``base``: the
reference each day is the fitted policy's own action, every action of the menu an alternative, the
fitted policy playing each simulated future) on new training episodes, and the modules are fitted
again from where they are to its actions: approximate policy iteration, a round at a time.

The fitted network acts in milliseconds, from its observation only. Whatever it gains over the
rule is learned from simulated experience, not read from a solver: no exact optimum or bound is
seen.

Layer: experiments (twin, rules, RL adapter).
"""
from __future__ import annotations

import multiprocessing
import shutil
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from hmarl_rllib.errors import InputError

LABEL_SEED_BASE = 0  # the planner's episodes: RL training seeds (below simulate.TUNE_SEED_BASE)
MINIBATCH = 512
LR = 1e-3


_BASES: dict = {}  # a process's base policy, by its key: loaded once per process and round


def _base_policy(spec):
    """``greedy_actions`` of the checkpoint ``spec = (checkpoint, config, key, {module: state})``
    with its learned modules set to the given weights (``key``: unique to these weights)."""
    from hmarl_rllib.experiments.evaluation import greedy_actions, load_trained

    checkpoint, config, key, states = spec
    if key not in _BASES:
        import torch

        torch.set_num_threads(1)
        _BASES.clear()
        trained = load_trained(checkpoint, config)
        for mid, state in states.items():
            trained.modules[mid].load_state_dict(state)
            trained.modules[mid].eval()
        _BASES[key] = greedy_actions(trained)
    return _BASES[key]


def _label_chunk(args):
    from hmarl_rllib.experiments.headroom import rollout_actions

    scenario, baseline, seeds, futures, margin, base = args
    base = None if base is None else _base_policy(base)
    acts, departs, *_ = rollout_actions(scenario, baseline, seeds, futures, sequential=True, margin=margin,
                                        base=base)
    return acts, departs


def planner_labels(scenario, baseline, episodes: int, futures: int, margin: float = 0.0, workers: int = 2,
                   progress=None, base=None, first_seed: int = LABEL_SEED_BASE) -> dict:
    """The planner's actions on ``episodes`` training paths (seeds from ``first_seed``), with
    every agent's observation: ``{"obs": {type: (rows, n_obs)}, "act": {type: (rows,)}, "departs":
    share of days}``, rows ordered day by day, then replica, then store / SKU (as the env lays
    them out). ``base``: roll out a fitted policy instead of the rule, ``(checkpoint, config,
    key, {module id: torch state dict})`` (see :func:`_base_policy`)."""
    from hmarl_rllib.rl.env import ChainDynamics

    seeds = first_seed + np.arange(episodes)
    chunks = [c for c in np.array_split(seeds, max(1, min(episodes, workers * 4))) if len(c)]
    jobs = [(scenario, baseline, c, futures, margin, base) for c in chunks]
    parts, t0 = [], time.perf_counter()
    if workers <= 1:
        for job in jobs:
            parts.append(_label_chunk(job))
            if progress:
                progress(f"labels: {sum(len(p[1]) for p in parts)}/{episodes} episodes, {time.perf_counter() - t0:.0f}s")
    else:  # spawn: forking a process that has loaded torch (threads, locks) can hang
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for part in pool.map(_label_chunk, jobs):
                parts.append(part)
                if progress:
                    progress(f"labels: {sum(len(p[1]) for p in parts)}/{episodes} episodes,"
                             f" {time.perf_counter() - t0:.0f}s")
    acts = tuple(np.concatenate([p[0][i] for p in parts]) for i in range(3))
    departs = np.concatenate([p[1] for p in parts])
    dyn = ChainDynamics(scenario, baseline)
    obs = dyn.reset(seeds)
    kinds = ("store", "warehouse", "supplier")
    O, A = {k: [] for k in kinds}, {k: [] for k in kinds}
    for t in range(scenario.episode_length):
        for i, k in enumerate(kinds):
            O[k].append(obs[k].reshape(-1, obs[k].shape[-1]))
            A[k].append(acts[i][:, t].reshape(-1))
        obs, _ = dyn.step(*(a[:, t] for a in acts))
    return {"obs": {k: np.concatenate(O[k]).astype(np.float32) for k in kinds},
            "act": {k: np.concatenate(A[k]) for k in kinds}, "departs": float(departs.mean())}


def fit_module(module, obs: np.ndarray, act: np.ndarray, epochs: int, seed: int = 0, progress=None,
               name: str = "") -> dict:
    """Fit a learned module's action logits to ``act`` by cross-entropy (Adam, minibatches of
    :data:`MINIBATCH`); returns the final loss and the share of rows whose greedy action is the label."""
    import torch
    from ray.rllib.core.columns import Columns

    torch.manual_seed(seed)
    x, y = torch.from_numpy(obs), torch.from_numpy(act.astype(np.int64))
    opt = torch.optim.Adam(module.parameters(), lr=LR)
    module.train()
    n, loss_sum = len(x), 0.0
    for ep in range(epochs):
        perm, loss_sum = torch.randperm(n), 0.0
        for i in range(0, n, MINIBATCH):
            idx = perm[i:i + MINIBATCH]
            logits = module.forward_train({Columns.OBS: x[idx]})[Columns.ACTION_DIST_INPUTS]
            loss = torch.nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
        if progress and (ep + 1) % max(1, epochs // 5) == 0:
            progress(f"fit {name}: epoch {ep + 1}/{epochs}, loss {loss_sum / n:.4f}")
    module.eval()
    with torch.no_grad():
        pred = module.forward_inference({Columns.OBS: x})[Columns.ACTION_DIST_INPUTS].argmax(-1)
    return {"rows": n, "loss": loss_sum / n, "agreement": float((pred == y).float().mean())}


def imitate(checkpoint, out, config=None, episodes: int = 400, futures: int = 32, margin: float = 0.0,
            epochs: int = 200, eval_episodes: int = 100, workers: int = 2, progress=None, rounds: int = 1) -> dict:
    """Label with the planner, fit the checkpoint's learned modules (``rounds`` times, each round's
    planner over the previous round's fit), write them into ``out`` (a copy of the checkpoint) and
    play the result on held-out episodes; see the module doc."""
    from hmarl_rllib.experiments.evaluation import MODULE_DIR, greedy_orders, load_trained
    from hmarl_rllib.experiments.headroom import check
    from hmarl_rllib.sim import simulate
    from hmarl_rllib.sim.reconciliation import paired_difference

    out = Path(out).expanduser().resolve()  # absolute: RLlib reads a relative path as a URI
    if out.exists():
        raise InputError(f"--out {out}: already exists; pass a new folder (nothing is overwritten)")
    t0 = time.perf_counter()
    trained = load_trained(checkpoint, config)
    sc = trained.scenario
    check(sc, futures, planner=True)
    learned = {mid: m for mid, m in trained.modules.items() if hasattr(m, "parameters") and list(m.parameters())}
    if not learned:
        raise InputError(f"--checkpoint {trained.checkpoint}: no learned module to fit")
    if LABEL_SEED_BASE + rounds * episodes > simulate.TUNE_SEED_BASE:
        raise InputError(f"--rounds {rounds} x --episodes {episodes}: more training episodes than the"
                         f" {simulate.TUNE_SEED_BASE:,} RL-training seeds; use fewer")
    from hmarl_rllib.rl.observe import agent_type

    seeds = simulate.eval_seeds(eval_episodes)
    warm = trained.baseline.orders
    rule = simulate.chain_cost(sc, warm, seeds)
    before = simulate.chain_cost(sc, greedy_orders(trained), seeds, warmup_fn=warm)
    per_round, after = [], before
    for rnd in range(rounds):
        base = None if rnd == 0 else (trained.checkpoint, config, f"{uuid.uuid4().hex}-{rnd}",
                                      {mid: m.state_dict() for mid, m in learned.items()})
        if progress:
            progress(f"round {rnd + 1}/{rounds}: the planner over {'the rule' if base is None else 'the fitted policy'}")
        labels = planner_labels(sc, trained.baseline, episodes, futures, margin, workers, progress, base=base,
                                first_seed=LABEL_SEED_BASE + rnd * episodes)
        fits = {}
        for mid, module in learned.items():
            kinds = {agent_type(a) for a, m in trained.agent_modules.items() if m == mid}
            (kind,) = kinds
            fits[mid] = fit_module(module, labels["obs"][kind], labels["act"][kind], epochs, progress=progress,
                                   name=mid)
        after = simulate.chain_cost(sc, greedy_orders(trained), seeds, warmup_fn=warm)
        per_round.append({"round": rnd + 1, "over": "rule" if base is None else "fitted policy",
                          "first_seed": LABEL_SEED_BASE + rnd * episodes, "planner_departs_share": labels["departs"],
                          "fits": fits, "imitated_cost_mean": float(after.mean()),
                          "paired_imitated_minus_rule": paired_difference(after, rule)})
        if progress:
            q = per_round[-1]["paired_imitated_minus_rule"]
            progress(f"round {rnd + 1}/{rounds}: held-out {after.mean():,.1f}, paired - rule {q['mean']:+,.1f}"
                     f" [{q['ci95'][0]:+,.1f}, {q['ci95'][1]:+,.1f}]")
    part = out.with_name(out.name + ".partial")  # complete or absent: renamed once written
    shutil.rmtree(part, ignore_errors=True)
    try:
        shutil.copytree(trained.checkpoint, part)
        for mid, module in learned.items():
            shutil.rmtree(part / MODULE_DIR / mid)
            module.save_to_path(str(part / MODULE_DIR / mid))
        part.rename(out)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    return {
        "checkpoint": str(trained.checkpoint), "out": str(out), "scenario": sc.name, "rule": trained.baseline.name,
        "episodes": episodes, "futures": futures, "margin": margin, "epochs": epochs, "rounds": per_round,
        "planner_departs_share": labels["departs"], "fits": fits,
        "eval_episodes": eval_episodes, "first_seed": int(seeds[0]),
        "rule_cost_mean": float(rule.mean()), "checkpoint_cost_mean": float(before.mean()),
        "imitated_cost_mean": float(after.mean()),
        "paired_imitated_minus_rule": paired_difference(after, rule),
        "paired_imitated_minus_checkpoint": paired_difference(after, before),
        "seconds": time.perf_counter() - t0,
    }


def format_imitate(r: dict) -> str:
    d, c = r["paired_imitated_minus_rule"], r["paired_imitated_minus_checkpoint"]
    lines = [f"{r['scenario']}: modules fitted to the rollout planner over {r['rule']} ({r['episodes']} training"
             f" episodes a round, {r['futures']} continuations per choice; {r['epochs']} epochs; {r['seconds']:.0f}s)"]
    for p in r["rounds"]:
        fits = ", ".join(f"{m} {f['agreement']:.1%} of {f['rows']:,} rows" for m, f in p["fits"].items())
        q = p["paired_imitated_minus_rule"]
        lines.append(f"  round {p['round']}: the planner over the {p['over']} departs from it on"
                     f" {p['planner_departs_share']:.1%} of days; greedy action = the planner's: {fits};"
                     f" held-out {p['imitated_cost_mean']:,.1f}, paired - rule {q['mean']:+,.1f}"
                     f" [{q['ci95'][0]:+,.1f}, {q['ci95'][1]:+,.1f}]")
    return "\n".join(lines + [
        f"  on {r['eval_episodes']} held-out episodes (seeds from {r['first_seed']}): rule {r['rule_cost_mean']:,.1f},"
        f" checkpoint {r['checkpoint_cost_mean']:,.1f}, imitated {r['imitated_cost_mean']:,.1f}",
        f"  paired imitated - rule {d['mean']:+,.1f} [{d['ci95'][0]:+,.1f}, {d['ci95'][1]:+,.1f}] ({d['relative']:+.2%});"
        f" imitated - checkpoint {c['mean']:+,.1f} [{c['ci95'][0]:+,.1f}, {c['ci95'][1]:+,.1f}]",
        f"  written to {r['out']} (score it with hmarl benchmark --checkpoint {r['out']})"])
