"""Is there anything to learn over the rule? One step of policy improvement, measured.

In ``baseline_correction`` mode every agent's action adds ``values[a] × μ`` to what the tuned
rule (``training.baseline``) orders, and action "correction 0" *is* the rule. A learned policy
can only beat the rule if, in some states the chain visits, some correction does better than
the rule does. This module measures that directly, with no learning:

1. ``states`` demand paths are played with the rule; each day t of each path is a state s_t;
2. from s_t, each single agent's alternative correction is applied on day t only (every other
   agent and every later day: the rule), and the episode is finished on ``futures`` demand
   continuations (the path's demand up to day t, fresh demand from day t on), the same
   continuations for every alternative (common random numbers);
3. the **advantage** of an alternative in s_t is its mean episode cost minus the rule's on the
   same continuations. The best alternative is *chosen* on half of the continuations and its
   advantage *measured* on the other half, so noise cannot make the rule look beatable.

With ``joint`` (``hmarl headroom --joint``) the alternatives also include changes no single
agent's one-day change can make: **two agents' corrections on the same day** (every pair of
agents, every pair of their alternatives) and **one agent's correction held for two days**
(day t and day t + 1; on the last day this is the one-day change).

The sum over days of the mean (measured) advantage of the chosen action estimates, to first
order, what one policy-improvement step over the rule gains per episode (the performance
difference identity evaluated on the rule's own path). If in (nearly) every state the rule's
correction 0 is the best action, the rule is (nearly) a fixed point of policy improvement over
this action menu: a learned policy that picks correction 0 everywhere is then what learning
*should* find, and beating the rule by more needs other actions or observations, not more
training.

Layer: experiments (twin, rules, action codecs; no RL imports).
"""
from __future__ import annotations

import time

import numpy as np

from hmarl_rllib.errors import ConfigError
from hmarl_rllib.sim import reconciliation, simulate

STATE_SEEDS = 5_000_000  # demand paths of the states (disjoint from training, tuning, validation, held-out)
FUTURE_SEEDS = 6_000_000  # demand continuations
MAX_LEDGER_BYTES = 1 << 30  # the ledger of the replicas simulated at once (replicas × days × nodes × SKUs × fields × 8 B)


def check(scenario, futures: int, planner: bool = False) -> None:
    """Refuse, in one line, what :func:`headroom` (``planner``: :func:`rollout`) cannot measure
    (before any rule is tuned)."""
    modes = {k: getattr(scenario.actions, k).mode for k in ("store", "warehouse", "supplier")}
    if any(m != "baseline_correction" for m in modes.values()):
        raise ConfigError(f"headroom: every agent's actions must be baseline_correction (the rule + a correction);"
                          f" {scenario.source_path or scenario.name} has {modes}")
    if planner and futures < 2:
        raise ConfigError(f"--futures must be >= 2 (got {futures}): the planner compares means and their spread")
    if not planner and (futures < 4 or futures % 2):
        raise ConfigError(f"headroom: --futures must be an even number >= 4 (got {futures}): half choose, half measure")


def alternatives(scenario, cods, zero, joint: bool = False) -> list[tuple]:
    """The alternatives to the rule on a day: each a tuple of moves ``(kind, store or None,
    action, day offset)``; ``()`` (first) is the rule. Single agents' corrections on that day,
    and with ``joint`` every pair of two agents' corrections on that day and every single
    correction held for that day and the next."""
    N = len(scenario.store_list)
    singles = []
    for kind in ("store", "warehouse", "supplier"):
        for a in range(len(cods[kind].values)):
            if a != zero[kind]:
                singles.extend([(kind, i, a, 0) for i in range(N)] if kind == "store" else [(kind, None, a, 0)])
    devs = [()] + [(m,) for m in singles]
    if joint:
        devs += [(m1, m2) for j, m1 in enumerate(singles) for m2 in singles[j + 1:] if m1[:2] != m2[:2]]
        devs += [(m, m[:3] + (1,)) for m in singles]
    return devs


def _label(cods, dev) -> str:
    if not dev:
        return "rule"
    moves = [f"{k}{'' if i is None else f' {i + 1}'} correction {cods[k].values[a]:g}" for k, i, a, off in dev if off == 0]
    two_days = any(off == 1 for *_, off in dev)
    return " + ".join(moves) + (" (two days)" if two_days else "")

def _set(acts, kind: str, i, value, rows=slice(None)) -> None:
    """Write an action ``value`` into one agent's slot of a day's action arrays, for ``rows``."""
    a_store, a_wh, a_sup = acts
    if kind == "store":
        a_store[rows, i, :] = value
    elif kind == "warehouse":
        a_wh[rows] = value
    else:
        a_sup[rows] = value


def headroom(scenario, baseline, states: int = 100, futures: int = 32, progress=None, joint: bool = False) -> dict:
    """One policy-improvement step over ``baseline`` (a tuned :class:`ChainPolicy`) with the
    scenario's correction actions (see the module doc; ``joint``: pairs of agents and two-day
    changes too). Returns a dict with per-day and total first-order gains (negative = cheaper
    than the rule), the share of states where an alternative was chosen, and which alternatives
    were."""
    from hmarl_rllib.rl.actions import codecs, decode_orders
    from hmarl_rllib.rl.modules import warm_start_action
    from hmarl_rllib.sim.network import FIELDS, SupplyChainTwin

    check(scenario, futures)
    cods = codecs(scenario, baseline)
    zero = {k: warm_start_action(cods[k]) for k in ("store", "warehouse", "supplier")}
    if any(z is None for z in zero.values()):
        raise ConfigError("headroom: every agent's correction values must include 0 (the rule itself)")
    N, K = len(scenario.store_list), len(scenario.skus)
    devs = alternatives(scenario, cods, zero, joint)
    D, W, T = len(devs), scenario.warmup_days, scenario.episode_length
    per_state = D * futures
    replica_bytes = (W + T) * (N + 2) * K * len(FIELDS) * 8
    chunk = MAX_LEDGER_BYTES // (per_state * replica_bytes)
    if chunk < 1:
        raise ConfigError(f"headroom: one state's {per_state:,} replicas ({D} actions x {futures} continuations) need"
                          f" {per_state * replica_bytes / 2**30:.1f} GiB of ledger (limit 1 GiB): pass fewer --futures")
    chunk = int(chunk)
    t0 = time.perf_counter()

    def draws(seeds):
        tw = SupplyChainTwin(scenario, record=False)
        tw.reset(seeds)
        return tw.demand.copy(), tw.extra_store.copy(), tw.extra_wh.copy()

    state_seeds = np.arange(STATE_SEEDS, STATE_SEEDS + states)
    future_seeds = np.arange(FUTURE_SEEDS, FUTURE_SEEDS + futures)
    path, cont = draws(state_seeds), draws(future_seeds)
    adv = np.zeros((T, states, D, futures))  # episode cost of the alternative − the rule's
    for t in range(T):
        day = W + t
        for s0 in range(0, states, chunk):
            S = min(chunk, states - s0)
            si = s0 + np.repeat(np.arange(S), per_state)
            di = np.tile(np.repeat(np.arange(D), futures), S)
            ki = np.tile(np.arange(futures), S * D)
            acts = [(np.full((len(si), N, K), zero["store"]), np.full((len(si), K), zero["warehouse"]),
                     np.full((len(si), K), zero["supplier"])) for _ in range(2)]  # day t, day t + 1
            for d, dv in enumerate(devs[1:], start=1):
                m = di == d
                for kind, i, a, off in dv:
                    _set(acts[off], kind, i, a, m)
            last = day + (1 if joint else 0)
            tw = SupplyChainTwin(scenario, record=True)
            tw.reset(future_seeds[ki])
            for arr, (p, c) in zip((tw.demand, tw.extra_store, tw.extra_wh), zip(path, cont)):
                arr[:, :day] = p[si, :day]
                arr[:, day:] = c[ki, day:]
            while not tw.done:
                if day <= tw.day <= last:
                    tw.step(*decode_orders(cods, tw, *acts[tw.day - day]))
                else:
                    tw.step(*baseline.orders(tw))
            cost = reconciliation.chain_kpis(simulate.scored_ledger(tw), N)["cost"].reshape(S, D, futures)
            adv[t, s0:s0 + S] = cost - cost[:, :1, :]
        if progress:
            progress(f"day {t + 1}/{T}: {time.perf_counter() - t0:.0f}s")
    half = futures // 2
    chosen = adv[..., :half].mean(-1).argmin(-1)  # (T, states); 0 = the rule
    measured = np.take_along_axis(adv[..., half:].mean(-1), chosen[..., None], -1)[..., 0]
    per_day = measured.mean(axis=1)
    # the same with one alternative per day for every state (a day-by-day schedule of corrections):
    # pooled over states, so less selection noise; chosen and measured on different halves too
    pooled = np.concatenate([np.zeros((T, 1)), adv[:, :, 1:, :half].mean(axis=(1, 3))], axis=1).argmin(axis=1)
    day_level = np.array([adv[t, :, pooled[t], half:].mean() for t in range(T)])
    rule = simulate.chain_cost(scenario, baseline.orders, state_seeds)
    label = [_label(cods, dv) for dv in devs]
    always = adv.mean(axis=(1, 3))  # (T, D): the alternative applied in every state of day t
    return {
        "scenario": scenario.name, "rule": baseline.name, "states_per_day": states, "futures": futures, "joint": joint,
        "days": T, "alternatives": label[1:],
        "rule_cost_mean": float(rule.mean()),
        "first_order_gain_per_episode": float(per_day.sum()),
        "first_order_gain_share": float(per_day.sum() / rule.mean()),
        "gain_per_day": [float(x) for x in per_day],
        "share_states_rule_chosen": float((chosen == 0).mean()),
        "chosen_share": {label[d]: float((chosen == d).mean()) for d in range(D) if (chosen == d).any()},
        "best_single_day": {"day": int(np.argmin(per_day)), "gain": float(per_day.min())},
        "day_schedule_gain_per_episode": float(day_level.sum()),
        "day_schedule": {int(t): {"alternative": label[pooled[t]], "gain": float(day_level[t])}
                         for t in range(T) if pooled[t] != 0},
        "always_gain_per_episode": {label[d]: float(always[:, d].sum()) for d in range(1, D)},
        "seconds": time.perf_counter() - t0,
    }


def format_headroom(r: dict) -> str:
    menu = (f"{len(r['alternatives'])} alternatives: single agents, pairs of agents, two-day changes"
            if r.get("joint") else f"{len(r['alternatives'])} alternatives: single agents on one day")
    lines = [f"{r['scenario']}: one step of policy improvement over {r['rule']} "
             f"({r['states_per_day']} states per day x {r['days']} days, {r['futures']} continuations each, {menu},"
             f" {r['seconds']:.0f}s)",
             f"  rule's cost per episode {r['rule_cost_mean']:,.1f}; the rule's own action is the best in"
             f" {r['share_states_rule_chosen']:.1%} of states",
             f"  first-order gain of the improved policy: {r['first_order_gain_per_episode']:+,.1f} per episode"
             f" ({r['first_order_gain_share']:+.2%}; negative = cheaper than the rule)",
             f"  best day: day {r['best_single_day']['day']} ({r['best_single_day']['gain']:+,.1f})",
             f"  one alternative per day for all states (a day schedule): {r['day_schedule_gain_per_episode']:+,.1f}"
             f" per episode ({r['day_schedule_gain_per_episode'] / r['rule_cost_mean']:+.2%})",
             "  chosen instead of the rule (share of states): " +
             ", ".join(f"{k} {v:.1%}" for k, v in r["chosen_share"].items() if k != "rule")]
    return "\n".join(lines)


ROLLOUT_REPLICAS = 1 << 16  # replicas simulated at once (no ledger: the twin's state and demand only)


def _agents(N: int) -> list[tuple]:
    """The agents in the order a sequential rollout decides them: the stores, the warehouse, the supplier."""
    return [("store", i) for i in range(N)] + [("warehouse", None), ("supplier", None)]



def rollout_actions(scenario, baseline, seeds, futures: int, sequential: bool = False, margin: float = 0.0,
                    progress=None, base=None):
    """The rollout policy's actions on the demand ``seeds`` (see :func:`rollout`): action indices
    ``(store (E, T, N, K), warehouse (E, T, K), supplier (E, T, K))``, whether each day departs
    from the base policy (E, T), departures by label, the codecs and the single alternatives' labels.

    ``base``: the policy rolled out, ``actions(twin) -> (store (B, N, K), warehouse (B, K),
    supplier (B, K))`` action indices (e.g. :func:`hmarl_rllib.experiments.evaluation.greedy_actions`
    of a fitted checkpoint: a second round of policy iteration); by default the rule (every
    correction 0). The warm-up days are the rule's either way. With a base, each day's reference
    is the base's own action in the state reached, and every action of the menu is an alternative."""
    from hmarl_rllib.rl.actions import codecs, decode_orders
    from hmarl_rllib.rl.modules import warm_start_action
    from hmarl_rllib.sim.network import F, SupplyChainTwin

    check(scenario, futures, planner=True)
    cods = codecs(scenario, baseline)
    zero = {k: warm_start_action(cods[k]) for k in ("store", "warehouse", "supplier")}
    if any(z is None for z in zero.values()):
        raise ConfigError("headroom: every agent's correction values must include 0 (the rule itself)")
    N, K = len(scenario.store_list), len(scenario.skus)
    W, T = scenario.warmup_days, scenario.episode_length
    singles = alternatives(scenario, cods, zero)
    if base is not None:  # every menu action against the base's own (None: keep it), agent by agent or all at once
        every = [(kind, i, a, 0) for kind, i in _agents(N) for a in range(len(cods[kind].values))]
        rounds = ([[None] + [m for m in every if m[:2] == ag] for ag in _agents(N)] if sequential
                  else [[None] + every])
    elif sequential:  # one round per agent: its own alternatives, the rule's action first
        rounds = [[(kind, i, zero[kind], 0)] + [m for (m,) in singles[1:] if m[:2] == (kind, i)]
                  for kind, i in _agents(N)]
    else:  # one round: the rule, or one agent's correction
        rounds = [[None] + [m for (m,) in singles[1:]]]
    cost_fields = [F["holding_cost"], F["stockout_cost"], F["ordering_cost"]]
    seeds = np.asarray(seeds)
    episodes = len(seeds)
    future_seeds = np.arange(FUTURE_SEEDS, FUTURE_SEEDS + futures)
    t0 = time.perf_counter()

    def draws(s):
        tw = SupplyChainTwin(scenario, record=False)
        tw.reset(s)
        return tw.demand.copy(), tw.extra_store.copy(), tw.extra_wh.copy()

    cont = draws(future_seeds)
    # the policy's actions, day by day (action indices; the rule's own action until chosen otherwise)
    acts = (np.full((episodes, T, N, K), zero["store"]), np.full((episodes, T, K), zero["warehouse"]),
            np.full((episodes, T, K), zero["supplier"]))
    departs = np.zeros((episodes, T), dtype=bool)
    taken: dict[str, int] = {}
    # the held-out paths played by the rollout policy, one day at a time: each day's simulated
    # futures branch from the states reached (SupplyChainTwin.take), the days before never replayed
    reached = SupplyChainTwin(scenario, record=False)
    reached.reset(seeds)
    for t in range(T):
        day = W + t
        while reached.day < day:  # the days before are decided: play them once
            u = reached.day
            reached.step(*(baseline.orders(reached) if u < W
                           else decode_orders(cods, reached, *(a[:, u - W] for a in acts))))
        if base is not None:  # the base's actions in the state the rollout policy has reached
            for a, b in zip(acts, base(reached)):
                a[:, t] = b
        for moves in rounds:
            D = len(moves)
            per_ep = D * futures
            chunk = max(1, ROLLOUT_REPLICAS // per_ep)
            for e0 in range(0, episodes, chunk):
                S = min(chunk, episodes - e0)
                ei = e0 + np.repeat(np.arange(S), per_ep)
                di = np.tile(np.repeat(np.arange(D), futures), S)
                ki = np.tile(np.arange(futures), S * D)
                today = tuple(a[ei, t].copy() for a in acts)
                for d, m in enumerate(moves):
                    if m is not None:
                        _set(today, m[0], m[1], m[2], di == d)
                tw = reached.take(ei)  # the episodes' replicas in the states reached
                for arr, c in zip((tw.demand, tw.extra_store, tw.extra_wh), cont):
                    arr[:, day:] = c[ki, day:]  # a model continuation from today on, never the path's own
                cost = np.zeros(len(ei))
                while not tw.done:
                    u = tw.day
                    if u == day:
                        orders = decode_orders(cods, tw, *today)
                    elif base is None:
                        orders = baseline.orders(tw)
                    else:
                        orders = decode_orders(cods, tw, *base(tw))
                    row = tw.step(*orders)
                    cost += row[..., cost_fields].sum(axis=(1, 2, 3))
                diff = cost.reshape(S, D, futures)
                diff = diff - diff[:, :1]  # paired with the rule's (the base's) own action on the same continuations
                mean = diff.mean(-1)
                upper = mean + margin * diff.std(-1, ddof=1) / np.sqrt(futures)
                best = np.where(upper < 0, mean, np.inf).argmin(-1)  # only what beats the rule's action clearly
                best[~(upper < 0).any(-1)] = 0
                for d in np.unique(best):
                    m, rows = moves[d], e0 + np.flatnonzero(best == d)
                    if m is None or (base is None and m[2] == zero[m[0]]):
                        continue
                    departs[rows, t] = True
                    label = _label(cods, (m,))
                    taken[label] = taken.get(label, 0) + len(rows)
                    _set(tuple(a[:, t] for a in acts), m[0], m[1], m[2], rows)  # views of day t: written through
        if progress:
            progress(f"rollout: day {t + 1}/{T}, {time.perf_counter() - t0:.0f}s")
    labels = [_label(cods, (m,)) for (m,) in singles[1:]]
    return acts, departs, taken, cods, labels


def rollout(scenario, baseline, episodes: int = 100, futures: int = 16, seed: int | None = None,
            sequential: bool = False, margin: float = 0.0, progress=None, base=None, base_name: str = "") -> dict:
    """A **rollout policy** over ``baseline``, played on held-out episodes: a planner, not learning.

    Each day, in the state the policy itself has reached, alternative corrections are simulated
    on the same ``futures`` demand continuations (drawn by the model from that day on: the
    episode's own future is never seen), the rest of each simulated episode played by the rule,
    and the action with the lowest mean cost is taken:

    - by default the alternatives are :func:`headroom`'s single agents (one agent's correction,
      every other agent the rule) and the rule itself: at most one agent departs from the rule a day;
    - with ``sequential`` (multiagent rollout, Bertsekas 2020) the agents decide one after the
      other (stores, warehouse, supplier), each choosing its best correction given the choices
      already made that day and the rule for the agents after it: any number of agents can
      depart from the rule on the same day, for the same number of simulations.

    With ``margin`` z > 0 an alternative is taken only when its mean cost beats the rule's own
    action's by more than z standard errors of their paired difference (on the same
    continuations): fewer departures chosen on noise.

    The policy is non-anticipative, so its cost on the held-out episodes (the seeds of ``hmarl
    benchmark``, so paired with its rows) is a real policy's cost: **the optimum is at most
    that**. With exact expectations it could not do worse than the rule (policy improvement);
    with ``futures`` samples it could, and the paired difference on the held-out episodes says
    which happened.

    ``base`` (named ``base_name``): roll out that policy instead of the rule (see
    :func:`rollout_actions`); the result then also pairs the planner with it.
    """
    from hmarl_rllib.rl.actions import decode_orders
    from hmarl_rllib.sim.network import F, SupplyChainTwin
    from hmarl_rllib.sim.reconciliation import paired_difference

    check(scenario, futures, planner=True)
    seeds = simulate.eval_seeds(episodes, seed)
    t0 = time.perf_counter()
    acts, departs, taken, cods, labels = rollout_actions(scenario, baseline, seeds, futures, sequential, margin,
                                                        progress, base)
    W = scenario.warmup_days
    cost_fields = [F["holding_cost"], F["stockout_cost"], F["ordering_cost"]]
    tw = SupplyChainTwin(scenario, record=False)
    tw.reset(seeds)
    played = np.zeros(episodes)
    while not tw.done:
        u = tw.day
        row = tw.step(*(baseline.orders(tw) if u < W else decode_orders(cods, tw, *(a[:, u - W] for a in acts))))
        if u >= W:
            played += row[..., cost_fields].sum(axis=(1, 2, 3))
    rule = simulate.chain_cost(scenario, baseline.orders, seeds)
    extra = {}
    if base is not None:
        base_cost = simulate.chain_cost(scenario, lambda tw: decode_orders(cods, tw, *base(tw)), seeds,
                                        warmup_fn=baseline.orders)
        extra = {"base": base_name or "base policy", "base_cost_mean": float(base_cost.mean()),
                 "paired_rollout_minus_base": paired_difference(played, base_cost),
                 "paired_base_minus_rule": paired_difference(base_cost, rule)}
    return {
        "scenario": scenario.name, "rule": baseline.name, "episodes": episodes, "futures": futures,
        "sequential": sequential, "margin": margin, "first_seed": int(seeds[0]),
        "alternatives": labels,
        "rule_cost_mean": float(rule.mean()), "rollout_cost_mean": float(played.mean()),
        "paired_rollout_minus_rule": paired_difference(played, rule),
        "share_days_rule_taken": float(1.0 - departs.mean()),
        "departures_per_episode": {k: v / episodes for k, v in sorted(taken.items(), key=lambda kv: -kv[1])},
        "seconds": time.perf_counter() - t0, **extra,
    }


def format_rollout(r: dict) -> str:
    d = r["paired_rollout_minus_rule"]
    mode = "agents one after the other" if r["sequential"] else "one agent a day at most"
    if r.get("margin"):
        mode += f", departing only {r['margin']:g} standard errors below the {'base' if r.get('base') else 'rule'}'s action"
    over = f"{r['base']} (warm-up days and the menu's correction 0: {r['rule']})" if r.get("base") else r["rule"]
    lines = [f"{r['scenario']}: a rollout planner over {over} on {r['episodes']} held-out episodes"
             f" (seeds from {r['first_seed']}; {r['futures']} simulated continuations per choice, {mode},"
             f" {r['seconds']:.0f}s)",
             f"  rule {r['rule_cost_mean']:,.1f}, rollout {r['rollout_cost_mean']:,.1f} per episode: paired rollout - rule"
             f" {d['mean']:+,.1f} [{d['ci95'][0]:+,.1f}, {d['ci95'][1]:+,.1f}] ({d['relative']:+.2%})",
             *([f"  {r['base']} {r['base_cost_mean']:,.1f}: paired rollout - {r['base']}"
                f" {r['paired_rollout_minus_base']['mean']:+,.1f} [{r['paired_rollout_minus_base']['ci95'][0]:+,.1f},"
                f" {r['paired_rollout_minus_base']['ci95'][1]:+,.1f}]"] if r.get("base") else []),
             f"  the {'base policy' if r.get('base') else 'rule'}'s own actions on {r['share_days_rule_taken']:.1%} of days; departures per episode: " +
             ", ".join(f"{k} {v:.2f}" for k, v in list(r["departures_per_episode"].items())[:8]),
             "  a planner, not learning: it simulates the model's demand at every decision. Its cost is a real"
             " policy's, so the optimum is at most that"]
    return "\n".join(lines)
