"""Tuning classic policies by simulation, with common random numbers, on tuning seeds only.

Method: cyclic coordinate search (:func:`coordinate_search`, also of :func:`tune_schedule`).
Stores with identical settings share one level. For each coordinate (a base-stock level S, or an
(s, S) pair searched on a 2-D grid of s and Q = S − s: :func:`grid_search`), every candidate is
simulated on the same tuning seeds in **one batched twin run** (candidates × seeds replicas), the
best mean chain cost wins, and the grid shrinks around it until it reaches single units. Rounds
repeat until no coordinate moves. Evaluation seeds are never used.

At scale (more than :data:`LEGACY_STORE_AGENTS` store agents, stores × SKUs: :func:`scaled_search`)
the search is the same with these changes, so that 300 stores or 100 stores × 10 SKUs tune in under
a minute: identical SKUs share one level too (:func:`_sku_groups`); the chain cost averages over
the store agents, so each candidate plays fewer tuning seeds (:func:`search_seeds`); a grid's
widths start at the scale of the coordinate's order-up-to level (and narrower in later rounds), a
best on an edge twice in a row doubles that width (a walk to a far optimum takes a few grids, not
one grid width at a time), a tie keeps the best so far (no walk across a flat stretch), and the
grid stops shrinking at a resolution relative to the level (:data:`SCALED`). Scenarios up to 3 store agents keep the search their cached baselines were tuned
with; the settings of the scaled search are part of the fingerprint of the scenarios it applies to.

Cache: :func:`tuned_policy` keeps each tuned rule in ``<config dir>/baselines/<scenario>_<policy>.yaml``
(quick tunings on other than :data:`DEFAULT_TUNE_SEEDS` seeds in ``…_<policy>.tune<N>.yaml``) with a
:func:`scenario_fingerprint` of what the result depends on: the scenario (a demand file by the hash
of its bytes, not its path), the tuning settings (:func:`tuning_settings`) and
:data:`TUNING_VERSION`. **Bump TUNING_VERSION** whenever a change to this search (or to the twin's
costs) can change tuned parameters: every cached file is then retuned on first use. (A version,
not a hash of this file's source, so that comments and refactors do not force minutes of retuning.)
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import yaml

from hmarl_rllib.errors import ConfigError
from hmarl_rllib.policies.heuristics import (ECHELONS, POLICIES, WITH_REORDER_POINT, ChainPolicy, EndgamePolicy,
                                             Forecast, initial_guess, to_echelon)
from hmarl_rllib.policies.spec import DEFAULT_PERIODS, RuleSpec, as_spec
from hmarl_rllib.sim import simulate

SCHEDULE_PERIODS = DEFAULT_PERIODS  # a schedule cuts the episode into (about) this many periods (the default)
SCHEDULE_STEPS = (0.1, 0.05, 0.025)  # the schedule search's step sizes
SCHEDULE_ROUNDS = 2  # sweeps per step size
ROUNDS = 3  # coordinate-search rounds of a static rule (a seasonal one: at most SEASONAL_ROUNDS)
SEASONAL_ROUNDS = 2
ENDGAME_COARSE_SEEDS, ENDGAME_KEEP = 32, 20  # the stop-day grid: first pass, finalists
ENDGAME_TURNS = 1  # an endgame rule: turns of (levels searched with the stop days, stop days searched again)
DEFAULT_TUNE_SEEDS = 256  # tuning seeds per candidate of the cached baselines train and benchmark read
TUNING_VERSION = 1  # bump when the search (or the twin's costs) changes tuned parameters: caches retune
LEGACY_STORE_AGENTS = 3  # up to this many store agents (stores x SKUs): the search the shipped baselines had
# the scaled search (above LEGACY_STORE_AGENTS store agents; part of those scenarios' fingerprints):
# seed_floor: fewest tuning seeds per candidate; width: first grid's widths, a fraction of each
# dimension's start and half of it of the coordinate's S (later_width in later rounds);
# grow_after: consecutive edge moves after which a dimension's width doubles; resolution: the
# finest grid spacing, a fraction of the coordinate's S (at least one unit); keep_ties: the best so
# far wins a tie (no walks across a flat stretch); sku_groups: identical SKUs share one level
SCALED = dict(seed_floor=4, width=0.6, later_width=0.1, grow_after=2, resolution=0.002, keep_ties=True,
              sku_groups=True)


def store_agents(scenario) -> int:
    return len(scenario.store_list) * len(scenario.skus)


def scaled_search(scenario) -> bool:
    """Whether the scaled search (:data:`SCALED`) tunes this scenario: more than
    :data:`LEGACY_STORE_AGENTS` store agents."""
    return store_agents(scenario) > LEGACY_STORE_AGENTS


def search_seeds(scenario, n_seeds: int) -> int:
    """Tuning seeds per candidate when ``n_seeds`` are asked for. Up to
    :data:`LEGACY_STORE_AGENTS` store agents: ``n_seeds``. Above, the chain cost is a sum over the
    store agents, whose noise averages out, so the seeds shrink in proportion and keep ``n_seeds`` ×
    3 store-agent episodes per candidate: ⌈3 ``n_seeds`` / store agents⌉, at least
    ``SCALED["seed_floor"]`` (the warehouse and the supplier are one node each however many
    stores) and at most ``n_seeds``. 256 asked: 22 at 12 stores × 3 SKUs, 4 at 300 stores."""
    if not scaled_search(scenario):
        return int(n_seeds)
    shared = -(-LEGACY_STORE_AGENTS * int(n_seeds) // store_agents(scenario))  # ⌈3 n / agents⌉
    return int(min(n_seeds, max(SCALED["seed_floor"], shared)))


def _store_groups(scenario) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, st in enumerate(scenario.store_list):
        key = json.dumps(st.model_dump(exclude={"name"}), sort_keys=True, default=str)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _sku_groups(scenario) -> list[list[int]]:
    """SKUs that share one level: each alone, or (the scaled search) the SKUs whose costs,
    demand at every store and initial stocks are the same (not with a demand file)."""
    K = len(scenario.skus)
    if not (scaled_search(scenario) and SCALED["sku_groups"]) or scenario.demand_file:
        return [[k] for k in range(K)]
    groups: dict[str, list[int]] = {}
    for k, sku in enumerate(scenario.skus):
        key = json.dumps([sku.model_dump(exclude={"name"}),
                          [scenario.store_demand(i, k).model_dump() for i in range(len(scenario.store_list))],
                          [scenario.per_sku(st.initial_inventory, k) for st in scenario.store_list],
                          scenario.per_sku(scenario.warehouse.initial_inventory, k),
                          scenario.per_sku(scenario.supplier.initial_inventory, k)], sort_keys=True, default=str)
        groups.setdefault(key, []).append(k)
    return list(groups.values())


def _coordinates(policy: ChainPolicy, scenario):
    """(agent, index) pairs, per group of SKUs: ("store", (stores, skus)) for each group of
    identical stores, ("warehouse", (skus,)), ("supplier", (skus,)); index arrays."""
    coords = []
    for ks in _sku_groups(scenario):
        ks = np.array(ks)
        for g in _store_groups(scenario):
            coords.append(("store", (np.array(g), ks)))
        coords.append(("warehouse", (ks,)))
        coords.append(("supplier", (ks,)))
    return coords


def _at(agent, idx):
    """The index of ``agent``'s level array that a coordinate (:func:`_coordinates`) moves."""
    return np.ix_(*idx) if agent == "store" else idx[0]


def _get(policy, agent, idx, which):
    return float(getattr(policy, f"{agent}_{which}")[_at(agent, idx)].flat[0])


def _batched(policy: ChainPolicy, agent, idx, S_vals, s_vals):
    """A policy whose arrays carry a leading batch axis, one replica per entry of ``S_vals``
    (and ``s_vals``): ``agent``'s level at ``idx`` set to that replica's value."""
    R = len(S_vals)
    out = {}
    for name in ("store_S", "warehouse_S", "supplier_S", "store_s", "warehouse_s", "supplier_s"):
        arr = getattr(policy, name)
        if arr is None:
            out[name] = None
            continue
        b = np.repeat(arr[None], R, axis=0)
        if name.startswith(agent):
            vals = S_vals if name.endswith("_S") else s_vals
            if vals is not None:
                if agent == "store":
                    stores, ks = idx
                    b[:, stores[:, None], ks[None, :]] = np.asarray(vals)[:, None, None]
                else:
                    b[:, idx[0]] = np.asarray(vals)[:, None]
        out[name] = b
    return replace(policy, **out)


def _level_costs(scenario, policy, agent, idx, S_vals, s_vals, seeds):
    """Mean chain cost on ``seeds`` of ``policy`` with ``agent``'s levels at ``idx`` set to each
    candidate (S_vals[c], s_vals[c]), in memory-bounded batches (:func:`simulate.candidate_costs`)."""
    S_vals = np.asarray(S_vals)
    s_vals = None if s_vals is None else np.asarray(s_vals)
    return simulate.candidate_costs(
        scenario, lambda c: _batched(policy, agent, idx, S_vals[c], None if s_vals is None else s_vals[c]).orders,
        len(S_vals), seeds)


def coordinate_search(x, cost: float, coordinates, line_search, rounds: int, rel_tol: float, swept=None):
    """The cyclic coordinate search every tuning here runs: up to ``rounds`` sweeps over
    ``coordinates`` in order, each coordinate moved by ``line_search(x, cost, coordinate, at)``
    (returns the new ``(x, cost)``; ``at`` reads "round r/R, coordinate i/C", for progress lines);
    stops after a sweep that lowers ``cost`` by less than ``rel_tol`` of it. ``swept(r, cost)``
    (if given) is called after each sweep ``r`` (from 0). Returns ``(x, cost)``."""
    for r in range(rounds):
        before = cost
        for i, coordinate in enumerate(coordinates):
            x, cost = line_search(x, cost, coordinate, f"round {r + 1}/{rounds}, coordinate {i + 1}/{len(coordinates)}")
        if swept:
            swept(r, cost)
        if before - cost < rel_tol * abs(before):
            break
    return x, cost


def grid_search(start, lows, costs_of, points: int, shrink: float, steps: int, keep_start: bool = False,
                tick=None, width=None, min_width=None, grow_after: int | None = None, keep_ties: bool = False):
    """Line search of one coordinate of ``len(start)`` whole-number dimensions on a shrinking
    grid: per dimension, ``points`` values within ± a width (first ``width``, default
    max(0.6 × start, 20)) of the best so far, rounded, at least ``lows``; their product (first
    dimension outermost) is evaluated by ``costs_of(candidates (C, D))`` and the first of equal
    costs wins (``keep_ties``: the best so far wins a tie, so a flat stretch does not move the
    grid). A best on an edge of the grid (not at its low) moves the grid (``grow_after``: a
    dimension whose best was on an edge that many grids in a row doubles its width, so a walk to a
    far optimum speeds up); else the widths shrink ``shrink``-fold down to ``min_width`` (default:
    single units; never finer); at most ``steps`` grids. ``keep_start``: the best so far is a
    candidate even off the grid (a start that is not whole). ``tick(best, cost)`` after each grid.
    Returns ``(best (D,), its cost)``."""
    best = np.asarray(start, dtype=float)
    width = np.maximum(0.6 * best, 20.0) if width is None else np.asarray(width, dtype=float)
    finest = points / 2 - 0.5  # single units
    floor = np.full(len(best), finest) if min_width is None else np.maximum(finest, min_width)
    streak = np.zeros(len(best), dtype=int)  # grids in a row with the best on this dimension's edge
    for _ in range(steps):
        axes = [np.unique(np.maximum(lo, np.rint(b + np.linspace(-w, w, points))))
                for b, w, lo in zip(best, width, lows)]
        if keep_start:
            axes = [np.union1d(a, [b]) for a, b in zip(axes, best)]
        cands = np.stack([a.reshape(-1) for a in np.meshgrid(*axes, indexing="ij")], axis=-1)
        costs = costs_of(cands)
        j = int(costs.argmin())
        if keep_ties:
            here = np.flatnonzero((cands == best).all(axis=1))
            if len(here) and costs[here[0]] <= costs[j]:
                j = int(here[0])
        best, cost = cands[j], float(costs[j])
        if tick:
            tick(best, cost)
        edge = np.array([b in (a[0], a[-1]) and b > lo and len(a) > 1 for a, b, lo in zip(axes, best, lows)])
        if edge.any():  # at an edge: move, keep the widths (a walk: double them)
            if grow_after:
                streak = np.where(edge, streak + 1, 0)
                width = np.where(streak >= grow_after, 2 * width, width)
            continue
        streak[:] = 0
        if (width <= floor + 0.5).all():
            break
        width = np.maximum(width / shrink, floor)
    return best, cost


# the grid of one coordinate's levels: base-stock S on 11 points, shrinking 4-fold, its start kept;
# (s, S) as s and Q = S - s on 7 x 7 points, shrinking 3-fold
_LEVEL_GRIDS = {False: dict(points=11, shrink=4, steps=60, keep_start=True),
                True: dict(points=7, shrink=3, steps=40)}


def _search_levels(scenario, policy, agent, idx, seeds, tick=None, first: bool = True):
    """``policy`` with ``agent``'s levels at ``idx`` moved to the best of a :func:`grid_search`
    (S; the (s, S) kinds: s and Q = S − s on one 2-D grid), and its mean chain cost. The scaled
    search (:func:`scaled_search`): widths at the scale of S (``first``: this coordinate's first
    search; later ones start narrower), walks that speed up, a resolution relative to S."""
    with_s = policy.kind in WITH_REORDER_POINT
    S = _get(policy, agent, idx, "S")
    if with_s:
        s = _get(policy, agent, idx, "s")
        start, lows = (s, max(S - s, 1.0)), (0.0, 1.0)
    else:
        start, lows = (S,), (0.0,)

    def levels(x):  # candidates (C, D) -> their S and s (None: base-stock)
        return (x[:, 0] + x[:, 1], x[:, 0]) if with_s else (x[:, 0], None)

    def show(x, cost):
        S_, s_ = levels(x[None])
        tick((f"s = {s_[0]:g}, " if with_s else "") + f"S = {S_[0]:g}: chain cost {cost:,.1f}")

    grid = dict(_LEVEL_GRIDS[with_s])
    if scaled_search(scenario):
        level, frac = sum(start), SCALED["width" if first else "later_width"]
        grid.update(width=np.maximum.reduce([frac * np.asarray(start), np.full(len(start), frac / 2 * level),
                                             np.full(len(start), 20.0)]),
                    min_width=max(1.0, SCALED["resolution"] * level) * (grid["points"] - 1) / 2,
                    grow_after=SCALED["grow_after"], keep_ties=SCALED["keep_ties"])
    best, cost = grid_search(start, lows, lambda x: _level_costs(scenario, policy, agent, idx, *levels(x), seeds),
                             tick=show if tick else None, **grid)
    new = {}
    for which, v in zip("Ss", levels(best[None])):
        if v is not None:
            new[f"{agent}_{which}"] = arr = getattr(policy, f"{agent}_{which}").copy()
            arr[_at(agent, idx)] = v[0]
    return replace(policy, **new), cost


def tune_policy(scenario, rule: RuleSpec | str, n_seeds: int = DEFAULT_TUNE_SEEDS, rounds: int = ROUNDS,
                progress=None) -> ChainPolicy:
    """Search the parameters of ``rule`` (a :class:`RuleSpec`, or its name) on tuning seeds.
    By the spec's fields: a ``schedule``: the rule without it, tuned (cached), + a schedule of
    its levels (:func:`tune_schedule`), which has many more parameters and is searched on twice
    ``n_seeds`` tuning seeds (with an endgame, a second search starts from the levels tuned
    without an end + their stop days, and the lower tuning cost wins); else ``endgame``: the rule
    without it, tuned (cached), + stop days (:func:`tune_endgame`), then, :data:`ENDGAME_TURNS`
    times, the levels searched again with those stop days and the stop days again; else
    ``seasonal``: the levels follow the season (:class:`Forecast`) and the search starts from
    the tuned static rule's; else from the textbook
    :func:`initial_guess` (``s_S`` on echelon positions: from the tuned (s, S) moved onto echelon
    positions, :func:`to_echelon`). Above :data:`LEGACY_STORE_AGENTS` store agents every search
    plays :func:`search_seeds` of the ``n_seeds`` (a schedule twice those), and one simulated
    replica must fit the memory budget of a batch (:data:`simulate.BATCH_BYTES`): else one
    :class:`ConfigError` line before anything runs."""
    spec = as_spec(rule, "--policy")
    name = spec.name
    _check_fits(scenario, name)
    eff = search_seeds(scenario, n_seeds)
    coarse = ENDGAME_COARSE_SEEDS if eff == n_seeds else min(ENDGAME_COARSE_SEEDS, eff)
    if spec.schedule is not None:  # the rule without it, tuned (cached), then its schedule searched
        starts = [tuned_policy(scenario, spec.with_(schedule=None), n_seeds, progress)]
        if spec.endgame:
            # also from the levels tuned without an end, with stop days only: the two searches end
            # in different optima (seasonal.yaml: 17,124 from the first, 16,880 from this one, on
            # the same tuning seeds); the one with the lower tuning cost is kept
            static = tuned_policy(scenario, spec.with_(schedule=None, endgame=False), n_seeds, progress)
            starts.append(static.with_(stop_days=tune_endgame(scenario, static, n_seeds=eff,
                                                              coarse_seeds=coarse).stop_days))
        tuned = []
        for i, base in enumerate(starts):
            if progress:
                progress(f"{name}: searching the schedule of the levels (start {i + 1}/{len(starts)})")
            tuned.append(tune_schedule(scenario, base, n_seeds=2 * eff, periods=spec.schedule.periods,
                                       progress=progress))
        return min(tuned, key=lambda p: p.meta["tuning_cost_mean"])  # a tie: the first
    if spec.endgame:  # the rule without it, tuned (cached), then the stop days searched
        base = tuned_policy(scenario, spec.with_(endgame=False), n_seeds, progress)
        if progress:
            progress(f"{name}: searching the stop days")
        eg = tune_endgame(scenario, base, n_seeds=eff, coarse_seeds=coarse)
        policy, seeds = base.with_(stop_days=eg.stop_days, meta=dict(eg.meta)), simulate.tune_seeds(eff)
        # The base's levels were tuned for an episode without an end: with the stop days the
        # best levels can lie far away (default.yaml: the supplier's reorder point 600 -> ~1,300,
        # 5,391 -> 4,833 on held-out seeds), so the levels and the stop days are searched in turn.
        for turn in range(ENDGAME_TURNS):
            if progress:
                progress(f"{name}: searching the levels with stop days {eg.stop_days} ({turn + 1}/{ENDGAME_TURNS})")
            rounds_ = min(rounds, SEASONAL_ROUNDS) if spec.seasonal else rounds
            policy, cost = _search_levels_all(scenario, policy, seeds, rounds_, name, n_seeds, eff, progress)
            eg = tune_endgame(scenario, policy.with_(stop_days=None), n_seeds=eff, coarse_seeds=coarse)
            policy = policy.with_(stop_days=eg.stop_days, meta=dict(eg.meta))
        return policy
    seeds = simulate.tune_seeds(eff)
    if spec.seasonal:
        static = tuned_policy(scenario, spec.with_(seasonal=False), n_seeds, progress)
        policy = static.with_(forecast=Forecast.build(scenario), meta={})
        rounds = min(rounds, SEASONAL_ROUNDS)
    elif spec.kind == "echelon_s_S":
        policy = to_echelon(tuned_policy(scenario, RuleSpec(rule="s_S"), n_seeds, progress))
    else:
        policy = initial_guess(scenario, spec.kind)
    policy, cost = _search_levels_all(scenario, policy, seeds, rounds, name, n_seeds, eff, progress)
    policy.meta = {"tuned_on": f"seeds {seeds[0]}..{seeds[-1]} ({eff} episodes)",
                   "tuning_cost_mean": round(cost, 3)}
    return policy


def _search_levels_all(scenario, policy: ChainPolicy, seeds, rounds: int, name: str, n_seeds: int, eff: int,
                       progress=None) -> tuple[ChainPolicy, float]:
    """Cyclic coordinate search of every level of ``policy`` (:func:`_coordinates`), its other
    fields (forecast, stop days, schedule) kept, on ``seeds``; returns the policy and its cost."""
    cost = float(simulate.chain_cost(scenario, policy.orders, seeds).mean())
    coords = _coordinates(policy, scenario)
    if progress:
        per_sku = "per group of identical SKUs" if scaled_search(scenario) and len(scenario.skus) > 1 else "per SKU"
        scaled = (f" ({n_seeds} asked, scaled to the {store_agents(scenario):,} store agents)" if eff != n_seeds
                  else "")
        progress(f"tuning {name}: {len(coords)} coordinates ({per_sku}: each group of identical stores, the"
                 f" warehouse, the supplier), up to {rounds} rounds, {eff} tuning seeds per candidate{scaled},"
                 f" {simulate.replica_bytes(scenario) / 1024:,.0f} KiB per simulated replica")
    sku_names = scenario.sku_names
    searched = set()  # coordinates searched once already (the scaled search starts their later grids narrower)

    def line_search(policy, cost, coordinate, at):
        agent, idx = coordinate
        ks = idx[-1]
        where = (f"{len(idx[0])} store(s) like {scenario.store_names[idx[0][0]]}" if agent == "store" else agent) \
            + ("" if len(sku_names) == 1 else f", SKU {sku_names[ks[0]]}" if len(ks) == 1
               else f", {len(ks)} SKUs like {sku_names[ks[0]]}")
        tick = (lambda msg: progress(f"{at} ({where}): {msg}")) if progress else None
        policy, cost = _search_levels(scenario, policy, agent, idx, seeds, tick=tick, first=where not in searched)
        searched.add(where)
        if progress:
            progress(f"{at} ({where}) done: chain cost {cost:,.1f}")
        return policy, cost

    return coordinate_search(policy, cost, coords, line_search, rounds, rel_tol=1e-3)


def _check_fits(scenario, name: str) -> None:
    """One :class:`ConfigError` line, before any simulation, when one simulated replica of the
    scenario alone exceeds the memory budget of a tuning batch (:data:`simulate.BATCH_BYTES`)."""
    need, budget = simulate.replica_bytes(scenario), simulate.BATCH_BYTES
    if need > budget:
        raise ConfigError(
            f"tuning {name}: one simulated episode of scenario {scenario.name!r} ({len(scenario.store_list):,}"
            f" stores x {len(scenario.skus):,} SKUs x {scenario.warmup_days + scenario.episode_length} days) needs"
            f" about {need / 2**20:,.1f} MiB, more than the {budget / 2**20:,.1f} MiB a tuning batch may hold;"
            " tune fewer stores or SKUs (a group of them stands for the rest), or use the config's rule_based"
            " levels (--rule-based)")


# ------------------------------------------------------------------------- YAML round trip
def policy_to_dict(policy: ChainPolicy, scenario) -> dict:
    def arr(a):
        return None if a is None else np.round(np.asarray(a), 3).tolist()

    out = {
        "policy": policy.kind,
        "scenario": scenario.name,
        "stores": scenario.store_names,
        "skus": scenario.sku_names,
        "store": {"order_up_to": arr(policy.store_S)},
        "warehouse": {"order_up_to": arr(policy.warehouse_S)},
        "supplier": {"order_up_to": arr(policy.supplier_S)},
    }
    if policy.kind in WITH_REORDER_POINT:
        out["store"]["reorder_point"] = arr(policy.store_s)
        out["warehouse"]["reorder_point"] = arr(policy.warehouse_s)
        out["supplier"]["reorder_point"] = arr(policy.supplier_s)
    if policy.forecast is not None:  # levels are multiplied by the forecast of these windows
        out["forecast_windows"] = {e: list(w) for e, w in policy.forecast.windows.items()}
    if policy.stop_days is not None:  # no orders this close to the end
        out["stop_days"] = dict(zip(("store", "warehouse", "supplier"), (int(d) for d in policy.stop_days)))
    if policy.schedule is not None:  # per period: [factor of s, factor of S - s] (base-stock: of S, unused)
        out["schedule"] = {"period_days": int(policy.period_days),
                           # the spec's periods: written only when not the default (older files stay as they were)
                           **({} if policy.schedule_periods == DEFAULT_PERIODS
                              else {"periods": int(policy.schedule_periods)}),
                           **{e: np.round(policy.schedule[:, i, :], 4).tolist() for i, e in enumerate(ECHELONS)}}
    out.update({k: v for k, v in policy.meta.items()})
    return out


def save_policy(policy: ChainPolicy, scenario, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(policy_to_dict(policy, scenario), sort_keys=False, default_flow_style=None))


def load_policy(path, scenario) -> ChainPolicy:
    """Read a parameters YAML written by ``hmarl baseline --tune``; check it fits the scenario."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--params {path}: no such file (write one with `hmarl baseline --tune`)")
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"--params {path}: not valid YAML ({err})") from None
    return policy_from_dict(d, scenario, str(path))


def policy_from_dict(d, scenario, path: str = "params") -> ChainPolicy:
    """A :class:`ChainPolicy` from the dict written by :func:`policy_to_dict` (validated)."""
    if not isinstance(d, dict) or d.get("policy") not in POLICIES:
        raise ConfigError(f"--params {path}: field 'policy' must be one of {', '.join(POLICIES)}")
    N, K = len(scenario.store_list), len(scenario.skus)
    try:
        def get(agent, key, shape):
            v = np.asarray(d[agent][key], dtype=float)
            if v.shape != shape:
                raise ConfigError(f"--params {path}: {agent}.{key} has shape {list(v.shape)}, the scenario"
                                  f" needs {list(shape)} ({N} stores, {K} SKUs); re-run `hmarl baseline --tune`")
            if (v < 0).any():
                raise ConfigError(f"--params {path}: {agent}.{key} has a negative level; levels must be >= 0")
            return v

        kw = dict(store_S=get("store", "order_up_to", (N, K)),
                  warehouse_S=get("warehouse", "order_up_to", (K,)),
                  supplier_S=get("supplier", "order_up_to", (K,)))
        if d["policy"] in WITH_REORDER_POINT:
            kw.update(store_s=get("store", "reorder_point", (N, K)),
                      warehouse_s=get("warehouse", "reorder_point", (K,)),
                      supplier_s=get("supplier", "reorder_point", (K,)))
    except (KeyError, TypeError) as err:
        raise ConfigError(f"--params {path}: missing field {err}; re-run `hmarl baseline --tune`") from None
    except ValueError:
        raise ConfigError(f"--params {path}: the levels must be numbers; re-run `hmarl baseline --tune`") from None
    meta = {"source": str(path), **{k: d[k] for k in ("fingerprint", "tuned_on", "tuning_cost_mean") if k in d}}
    forecast = None
    if d.get("forecast_windows") is not None:
        w = d["forecast_windows"]
        ok = isinstance(w, dict) and set(w) == {"store", "warehouse", "supplier"} and all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v) and v[0] >= 0 and v[1] >= 1
            for v in w.values())
        if not ok:
            raise ConfigError(f"--params {path}: forecast_windows must map store, warehouse and supplier to"
                              " [offset >= 0, length >= 1] (whole days); re-run `hmarl baseline --tune`")
        forecast = Forecast.build(scenario, w)
    stop = None
    if d.get("stop_days") is not None:
        st = d["stop_days"]
        if not (isinstance(st, dict) and set(st) == {"store", "warehouse", "supplier"}
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in st.values())):
            raise ConfigError(f"--params {path}: stop_days must map store, warehouse and supplier to whole"
                              " days >= 0; re-run `hmarl baseline --tune`")
        stop = (st["store"], st["warehouse"], st["supplier"])
    schedule, period_days, periods = None, 1, DEFAULT_PERIODS
    if d.get("schedule") is not None:
        schedule, period_days, periods = _schedule_from_dict(d["schedule"], path)
    return ChainPolicy(kind=d["policy"], meta=meta, forecast=forecast, stop_days=stop, schedule=schedule,
                       period_days=period_days, schedule_periods=periods, **kw)


def _schedule_from_dict(sc, path):
    bad = ConfigError(f"--params {path}: schedule must hold period_days (whole days >= 1), optionally periods"
                      " (whole number >= 1) and, for store, warehouse and supplier, the same number of [factor of s,"
                      " factor of S - s] pairs (numbers >= 0); re-run `hmarl baseline --tune`")
    if not (isinstance(sc, dict) and set(sc) - {"periods"} == {"period_days", *ECHELONS}):
        raise bad
    pd_, periods = sc["period_days"], sc.get("periods", DEFAULT_PERIODS)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (pd_, periods)):
        raise bad
    try:
        arr = np.stack([np.asarray(sc[e], dtype=float) for e in ECHELONS], axis=1)  # (P, 3, 2)
    except (TypeError, ValueError):
        raise bad from None
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[2] != 2 or not np.isfinite(arr).all() or (arr < 0).any():
        raise bad
    return arr, pd_, periods


# ----------------------------------------------------------------------- tuned baselines
def tuning_settings(n_seeds: int = DEFAULT_TUNE_SEEDS, scenario=None, rule: RuleSpec | str | None = None) -> dict:
    """What :func:`tuned_policy` tunes with, besides the scenario: part of the fingerprint. A
    ``scenario`` the scaled search tunes (:func:`scaled_search`) adds its settings (:data:`SCALED`,
    the seeds it plays: :func:`search_seeds`); the others' settings are as before it existed. A
    ``rule`` with an endgame adds :data:`ENDGAME_TURNS` (its levels are searched again with the
    stop days; rules without one keep the fingerprints of their cached files)."""
    turns = {"endgame_turns": ENDGAME_TURNS} if rule is not None and as_spec(rule, "--policy").endgame else {}
    scaled = {}
    if scenario is not None and scaled_search(scenario):
        scaled = {"scaled": {**SCALED, "legacy_store_agents": LEGACY_STORE_AGENTS,
                             "seeds": search_seeds(scenario, n_seeds)}}
    return {**scaled, **turns, "version": TUNING_VERSION, "n_seeds": int(n_seeds), "first_seed": int(simulate.TUNE_SEED_BASE),
            "rounds": ROUNDS, "seasonal_rounds": SEASONAL_ROUNDS,
            "endgame": {"coarse_seeds": ENDGAME_COARSE_SEEDS, "keep": ENDGAME_KEEP},
            "schedule": {"n_seeds": 2 * int(n_seeds), "periods": SCHEDULE_PERIODS, "steps": list(SCHEDULE_STEPS),
                         "rounds": SCHEDULE_ROUNDS}}


def scenario_fingerprint(scenario, n_seeds: int = DEFAULT_TUNE_SEEDS, rule: RuleSpec | str | None = None) -> str:
    """Hash of everything that changes a tuned policy: the scenario's fields that change a
    policy's cost (not its name, seed, agent design or training), a demand file by the SHA-256
    of its bytes (a file rewritten in place retunes; the same file elsewhere does not), and
    :func:`tuning_settings` (``n_seeds`` tuning seeds, :data:`TUNING_VERSION`; ``rule``: the
    rule the file holds, whose search can add settings)."""
    d = scenario.model_dump(exclude={"name", "seed", "horizon", "reward", "actions", "observations", "training",
                                     "baseline_params", "rule_based", "source_path"})
    for key in ("demand_split", "demand_calendar"):  # newer fields: left out when unset, so that
        if d.get(key) is None:                         # the fingerprints of older baselines still hold
            d.pop(key, None)
    for key in ("demand_file", "demand_calendar"):
        path = getattr(scenario, key)
        if not path:
            continue
        try:
            d[key] = "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as err:
            raise ConfigError(f"{key} {path}: cannot be read ({err.strerror or type(err).__name__})") from None
    d["tuning"] = tuning_settings(n_seeds, scenario, rule)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def params_path(scenario, rule: RuleSpec | str, n_seeds: int = DEFAULT_TUNE_SEEDS) -> Path:
    """Where ``hmarl baseline --tune`` writes (and other commands read) tuned parameters:
    ``<config dir>/baselines/<scenario name>_<rule's name>.yaml`` (:attr:`RuleSpec.name`); a quick
    tuning on other than :data:`DEFAULT_TUNE_SEEDS` seeds: ``…_<name>.tune<n_seeds>.yaml`` (never
    read by train or benchmark, which tune on the default)."""
    base = Path(scenario.source_path).parent if scenario.source_path else Path("configs")
    tag = "" if n_seeds == DEFAULT_TUNE_SEEDS else f".tune{n_seeds}"
    return base / "baselines" / f"{scenario.name}_{as_spec(rule, '--policy').name}{tag}.yaml"


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def read_cached(path, scenario, rule: RuleSpec | str,
                n_seeds: int = DEFAULT_TUNE_SEEDS) -> tuple[ChainPolicy | None, str]:
    """The policy cached at ``path`` when it was tuned as ``rule`` for this scenario with these
    settings, else (None, why not): "missing", "stale" (another fingerprint or policy) or
    "corrupt: <reason>" (unreadable, not YAML, or not a valid parameters file)."""
    p = Path(path)
    if not p.is_file():
        return None, "missing"
    try:
        d = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError) as err:
        return None, f"corrupt: cannot be read ({getattr(err, 'strerror', None) or type(err).__name__})"
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        return None, f"corrupt: not valid YAML{f' (line {mark.line + 1})' if mark else ''}"
    try:
        policy = policy_from_dict(d, scenario, str(p))
    except ConfigError as err:
        return None, f"corrupt: {str(err).removeprefix(f'--params {p}: ')}"
    if d.get("fingerprint") != scenario_fingerprint(scenario, n_seeds, rule) or policy.spec != as_spec(rule, "--policy"):
        return None, "stale"
    return policy, "ok"


def tuned_policy(scenario, rule: RuleSpec | str, n_seeds: int = DEFAULT_TUNE_SEEDS, progress=None) -> ChainPolicy:
    """The tuned parameters of ``rule`` (a :class:`RuleSpec`, or its name) for this scenario:
    read from :func:`params_path` when they were tuned for this very scenario with these settings
    (same :func:`scenario_fingerprint`), else tuned now (:func:`tune_policy`) and saved there. A
    corrupt file is reported on stderr and tuned over; a file that cannot be written is reported
    on stderr (the tuned policy is still returned)."""
    spec = as_spec(rule, "--policy")
    kind = spec.name
    path = params_path(scenario, spec, n_seeds)
    cached, why = read_cached(path, scenario, spec, n_seeds)
    if cached is not None:
        return cached
    if why.startswith("corrupt"):
        _warn(f"tuned parameters {path}: {why.removeprefix('corrupt: ')}; tuning {kind} again")
    if progress:
        note = " (the file there was tuned for another scenario or settings)" if why == "stale" else ""
        eff = search_seeds(scenario, n_seeds)
        seeds = f"{n_seeds} tuning seeds" if eff == n_seeds else \
            f"{eff} of {n_seeds} tuning seeds (scaled to the {store_agents(scenario):,} store agents)"
        progress(f"tuning {kind} for scenario {scenario.name!r} on {seeds} (saved to {path}){note}")
    policy = tune_policy(scenario, spec, n_seeds=n_seeds, progress=progress)
    policy.meta["fingerprint"] = scenario_fingerprint(scenario, n_seeds, spec)
    try:
        save_policy(policy, scenario, path)
    except OSError as err:
        _warn(f"tuned parameters not saved: cannot write {path} ({err.strerror or type(err).__name__});"
              f" {kind} will be tuned again next time")
    return policy


# ------------------------------------------------------------------ end-of-horizon reference
def tune_endgame(scenario, base: ChainPolicy, n_seeds: int = DEFAULT_TUNE_SEEDS,
                 coarse_seeds: int = ENDGAME_COARSE_SEEDS, keep: int = ENDGAME_KEEP) -> EndgamePolicy:
    """:class:`EndgamePolicy` on top of the tuned ``base``: the days before the end at which
    each echelon stops ordering. The three interact strongly (a supplier that stops early
    starves the warehouse unless the stores and the warehouse also run down), so this is a
    grid search: every combination up to the lead time to the shelf + 8 days (store, warehouse,
    supplier; capped at the episode length) on ``coarse_seeds`` tuning seeds, then the best
    ``keep`` on ``n_seeds``, all batched in the twin; of equal costs (stop days past the last
    order the rule would place cost nothing) the first in grid order wins, so the result does not
    depend on numpy's sort. Seconds to a minute."""
    T = scenario.episode_length
    ls = min(s.lead_time for s in scenario.store_list)
    lw, lp = scenario.warehouse.lead_time, scenario.supplier.lead_time
    axes = [np.arange(min(T, d + 8) + 1) for d in (ls, ls + lw, ls + lw + lp)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)

    def costs(cands, seeds):
        return simulate.candidate_costs(
            scenario, lambda c: EndgamePolicy(base, tuple(cands[c, j] for j in range(3))).orders, len(cands), seeds)

    coarse = costs(grid, simulate.tune_seeds(coarse_seeds))
    finalists = grid[np.argsort(coarse, kind="stable")[:keep]]  # ties: the first in grid order, on any numpy
    seeds = simulate.tune_seeds(n_seeds)
    fine = costs(np.vstack([finalists, np.zeros((1, 3), int)]), seeds)
    best = int(np.argmin(fine))
    stop = tuple(int(x) for x in np.vstack([finalists, np.zeros((1, 3), int)])[best])
    return EndgamePolicy(base, stop, meta={"tuned_on": f"seeds {seeds[0]}..{seeds[-1]} ({n_seeds} episodes)",
                                           "tuning_cost_mean": round(float(fine[best]), 3)})


# ------------------------------------------------------------------------ level schedules
def tune_schedule(scenario, base: ChainPolicy, n_seeds: int = 2 * DEFAULT_TUNE_SEEDS,
                  periods: int = SCHEDULE_PERIODS, steps=SCHEDULE_STEPS, rounds: int = SCHEDULE_ROUNDS,
                  progress=None) -> ChainPolicy:
    """``base`` with a tuned schedule of its levels: the days are cut into periods of
    ⌈episode length / ``periods``⌉ days and, per period and echelon, the factors of the reorder
    point s and of the order quantity S − s (base-stock kinds: of S) are searched from 1 by
    cyclic coordinate search: each factor tries ±1 and ±2 steps (every candidate on the same
    ``n_seeds`` tuning seeds, in one batched twin run), ``rounds`` sweeps per step size, the
    steps shrinking. About a minute (30-day episodes) to a few minutes (90 days); cached."""
    days_total = scenario.warmup_days + scenario.episode_length
    period = -(-scenario.episode_length // periods)
    P = -(-days_total // period)
    seeds = simulate.tune_seeds(n_seeds)
    sch = np.ones((P, len(ECHELONS), 2))
    cols = (0, 1) if base.kind in WITH_REORDER_POINT else (0,)

    def costs(cands):  # cands (C, P, 3, 2)
        return simulate.candidate_costs(
            scenario, lambda c: base.with_(schedule=cands[c], period_days=period).orders, len(cands), seeds)

    def move(step, sch, cost, c, at):  # the factor c's current cost is `cost` (same seeds): only the moves are run
        vals = np.maximum(0.0, sch[c] + step * np.array([-2, -1, 1, 2]))
        cands = np.repeat(sch[None], len(vals), axis=0)
        cands[(slice(None), *c)] = vals
        moved = costs(cands)
        k = int(np.argmin(moved))
        return (cands[k], float(moved[k])) if moved[k] < cost else (sch, cost)

    factors = [(p, e, j) for p in range(P) for e in range(len(ECHELONS)) for j in cols]
    cost = float(costs(sch[None])[0])
    for step in steps:
        swept = (lambda r, c, step=step: progress(f"schedule step {step}, sweep {r + 1}/{rounds}: chain cost {c:,.1f}")
                 ) if progress else None
        sch, cost = coordinate_search(sch, cost, factors, partial(move, step), rounds, rel_tol=1e-4, swept=swept)
    return base.with_(schedule=sch, period_days=period, schedule_periods=periods,
                      meta={"tuned_on": f"seeds {seeds[0]}..{seeds[-1]} ({n_seeds} episodes)",
                            "tuning_cost_mean": round(cost, 3)})
