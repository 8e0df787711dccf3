"""PPO from scratch on Zipkin's lost-sales grid, refereed by the exact optimum.

Each cell is a one-store scenario built from ``configs/one_store.yaml`` (Poisson 5/day, h = 1,
an upstream that never runs short and costs nothing, 60-day episodes from 10 units on hand) with
its own lead time L and penalty p. For each cell:

1. the **exact optimum** of the finite-horizon episode (:mod:`hmarl_rllib.policies.optimum`,
   the expected cost from the initial state) and the **best base-stock level**, the static
   order-up-to level with the lowest exact expected episode cost (a stronger comparator than a
   level tuned by simulation: no tuning noise);
2. a store policy **trained from scratch** with PPO (``training:`` of the config, no warm start,
   no rule to correct: the base config's action mode over a range sized from the demand,
   :func:`cell_scenario`) for a wall-time budget; the solver is only the referee: nothing it
   computes reaches training;
3. the learned policy (its best checkpoint by its own validation evaluations) and the best
   base-stock on the same held-out seeds: mean costs, their ratio to the optimum, and the
   paired difference learned − base-stock with its 95% CI;
4. where the learned policy loses (:func:`gap_by_day`): its gap split by day with the
   optimum's Q-values, after training.

Two criteria (``--criterion``):

- ``finite`` (the default): episodes are the base config's 60 days from 10 units on hand, and the
  learned and base-stock costs per episode are compared with the finite-horizon optimum (from
  that start, with its transient: nothing ordered arrives before day L).
- ``average``: Zipkin's criterion, the long-run average cost per day. Training episodes are
  ``horizon: infinite`` (60 days cut by a time limit, the last value bootstrapped, no time-to-go
  in the observation) after :data:`TRAIN_WARMUP` days of the tuned base-stock; each policy is
  then scored per day over :data:`EVAL_DAYS` days after :data:`EVAL_WARMUP` days of its own play,
  against the exact average-cost optimum (Zipkin's figures, reproduced by ``hmarl optimum
  --zipkin``) and the best base-stock level by its exact average cost.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the repository (configs/ beside the package)
GRID = [(L, p) for p in (4.0, 9.0, 19.0) for L in (1, 2, 3, 4)]
CRITERIA = ("finite", "average")
TRAIN_WARMUP = 20  # average criterion: days of the tuned base-stock before each training episode
EVAL_WARMUP = 100  # average criterion: days each policy plays, unscored, before it is scored
EVAL_DAYS = 1000  # average criterion: scored days per held-out replica


def cell_scenario(base, lead_time: int, penalty: float, criterion: str = "finite"):
    """``base`` (a one-store scenario) with lead time L and penalty p. The store's actions keep
    the base's mode, over a range sized from the demand alone (never from the solver):
    ``order_up_to`` levels 0..⌈(L+1)μ + 5√((L+1)μ) + μ⌉ in whole units, or ``quantities``
    0..⌈3μ + 5⌉. ``criterion="average"``: ``horizon: infinite`` and :data:`TRAIN_WARMUP`
    warm-up days (name suffix ``_avg``)."""
    from hmarl_rllib.sim.config import parse_config

    data = base.model_dump(mode="json", by_alias=True, exclude_none=False)
    data["name"] = f"{base.name}_L{lead_time}_p{penalty:g}" + ("_avg" if criterion == "average" else "")
    if criterion == "average":
        data["horizon"], data["warmup_days"] = "infinite", TRAIN_WARMUP
    data["skus"][0]["stockout_penalty"] = float(penalty)
    data["stores"]["lead_time"] = int(lead_time)
    mu = float(base.mean_demand()[0, 0])
    mode = base.actions.store.mode
    if mode == "order_up_to":
        lt = (lead_time + 1) * mu
        top = int(np.ceil(lt + 5 * np.sqrt(lt) + mu))
        values = [k / mu for k in range(top + 1)]  # levels x μ = whole units 0..top
    else:
        mode, values = "quantities", list(range(int(np.ceil(3 * mu + 5)) + 1))
    data["actions"]["store"] = {"mode": mode, "values": values}
    data.pop("source_path", None)
    return parse_config(data, data["name"])


def best_base_stock(problem) -> tuple[int, float]:
    """The order-up-to level with the lowest exact expected episode cost, and that cost."""
    from hmarl_rllib.policies.optimum import default_cap, evaluate_base_stock

    top = default_cap(problem) + 5
    costs = {S: evaluate_base_stock(problem, S) for S in range(0, top + 1)}
    S = min(costs, key=costs.get)
    return S, costs[S]


def best_average_base_stock(problem, start: int) -> tuple[int, float]:
    """The order-up-to level with the lowest exact average cost per day, and that cost: a
    descent from ``start`` (the episode's best level) by unit steps, as the average cost of
    base-stock levels is unimodal on these problems; each neighbour is checked."""
    from hmarl_rllib.policies.optimum import average_base_stock_cost

    costs = {}

    def cost(S):
        if S not in costs:
            costs[S] = average_base_stock_cost(problem, S) if S >= 0 else np.inf
        return costs[S]

    S = start
    while True:
        step = min((S - 1, S + 1), key=cost)
        if cost(step) >= cost(S):
            return S, costs[S]
        S = step


def base_stock_orders(S: int):
    def orders(twin):
        zero = np.zeros((twin.batch, twin.n_skus))
        return np.maximum(S - twin.store_position(), 0.0), zero, zero
    return orders


def gap_by_day(scenario, referee, order_fn, seeds) -> dict:
    """Play ``order_fn`` on the one-store ``scenario`` and split its gap to the optimum by day
    (:class:`~hmarl_rllib.policies.optimum.Referee`): per day the mean of Q*(s, q) − V*(s)
    over replicas, their sum (the expected gap, estimated on the policy's own path), the days
    that make it up (the first L + 1 days, when nothing ordered has arrived yet; the middle;
    the last 10) and the share of days on which the policy ordered what the optimum orders."""
    from hmarl_rllib.sim.network import SupplyChainTwin

    L = int(scenario.store_list[0].lead_time)
    twin = SupplyChainTwin(scenario, record=False)
    twin.reset(seeds)
    losses, same = [], []
    while not twin.done:
        so, wo, pr = order_fn(twin)
        loss, best = referee.loss(twin.day, twin.on_hand[:, 0, 0], twin.store_pipeline()[:, 0, 0, :], so[:, 0, 0])
        losses.append(loss)
        same.append((np.rint(so[:, 0, 0]) == best).mean())
        twin.step(so, wo, pr)
    per_replica = np.sum(losses, axis=0)
    per_day = np.mean(losses, axis=1)
    half = 1.96 * per_replica.std(ddof=1) / np.sqrt(len(per_replica)) if len(per_replica) > 1 else float("nan")
    head, tail = min(L + 1, len(per_day)), min(10, max(len(per_day) - L - 1, 0))
    return {"gap": float(per_day.sum()), "gap_ci95": [float(per_replica.mean() - half), float(per_replica.mean() + half)],
            "first_days": float(per_day[:head].sum()),
            "middle": float(per_day[head:len(per_day) - tail].sum()), "last_10_days": float(per_day[len(per_day) - tail:].sum()),
            "share_optimal_orders": float(np.mean(same)), "per_day": [float(x) for x in per_day]}


def average_gap(scenario, referee, order_fn, seeds, menu_top: int | None = None) -> dict:
    """Play ``order_fn`` on the one-store ``scenario`` (its warm-up days too) and average the
    :class:`~hmarl_rllib.policies.optimum.AverageReferee`'s losses over the scored days: the
    policy's average cost per day minus the optimum's, estimated with the noise of the visited
    states only; and the share of scored days on which it ordered what the optimum orders.
    ``menu_top`` (the largest order quantity the policy can choose): also the share of scored
    days on which it ordered that top, and on which the optimum would order more (the menu
    binds: no policy on that menu can play the optimum there)."""
    from hmarl_rllib.sim.network import SupplyChainTwin

    twin = SupplyChainTwin(scenario, record=False)
    twin.reset(seeds)
    total, days, same, at_top, above_top = np.zeros(len(seeds)), 0, 0.0, 0.0, 0.0
    while not twin.done:
        so, wo, pr = order_fn(twin)
        if twin.day >= scenario.warmup_days:
            loss, best = referee.loss(twin.day, twin.on_hand[:, 0, 0], twin.store_pipeline()[:, 0, 0, :], so[:, 0, 0])
            q = np.rint(so[:, 0, 0])
            total, days, same = total + loss, days + 1, same + float((q == best).mean())
            if menu_top is not None:
                at_top += float((q >= menu_top).mean())
                above_top += float((best > menu_top).mean())
        twin.step(so, wo, pr)
    per_replica = total / days
    out = {"gap_per_day": float(per_replica.mean()), "gap_ci95": _mean_ci(per_replica),
           "share_optimal_orders": same / days}
    if menu_top is not None:
        out.update(menu_top=int(menu_top), share_orders_at_menu_top=at_top / days,
                   share_optimum_above_menu_top=above_top / days)
    return out


def quantity_menu_top(scenario) -> int | None:
    """The largest order quantity of the store's action menu when its actions are quantities
    (None for other modes: an order-up-to level has no fixed largest order)."""
    store = scenario.actions.store
    return int(max(store.values)) if store.mode == "quantities" else None


def _mean_ci(x: np.ndarray) -> list[float]:
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    return [float(x.mean() - half), float(x.mean() + half)]


def _train_cell(sc, minutes, storage, progress, iteration_stream):
    """Train PPO from scratch on the cell ``sc`` for ``minutes`` of wall time: (result, env steps
    sampled, minutes taken)."""
    import pandas as pd

    from hmarl_rllib.experiments.training import train

    t0 = time.time()
    res = train(sc, name=sc.name, storage=storage, time_budget_s=minutes * 60.0, progress=progress,
                iteration_stream=iteration_stream)
    train_min = (time.time() - t0) / 60.0
    df = pd.read_csv(Path(res.trial_dir) / "progress.csv")
    return res, int(df["env_runners/num_env_steps_sampled_lifetime"].iloc[-1]), train_min


def run_cell(base, lead_time: int, penalty: float, minutes: float, episodes: int = 1000,
             storage: str | None = None, progress=None, iteration_stream=None, criterion: str = "finite") -> dict:
    if criterion == "average":
        return run_average_cell(base, lead_time, penalty, minutes, episodes, storage, progress, iteration_stream)

    from hmarl_rllib.experiments.evaluation import greedy_orders, load_trained
    from hmarl_rllib.policies.optimum import Referee, problem_from_scenario, solve
    from hmarl_rllib.sim import simulate
    from hmarl_rllib.sim.reconciliation import paired_difference

    sc = cell_scenario(base, lead_time, penalty)
    problem = problem_from_scenario(sc)
    opt = solve(problem, average=False)
    S, bs_exact = best_base_stock(problem)
    if progress:
        progress(f"{sc.name}: optimum {opt.cost:.2f}, best base-stock S = {S} at {bs_exact:.2f};"
                 f" training PPO from scratch for {minutes:g} min")
    res, env_steps, train_min = _train_cell(sc, minutes, storage, progress, iteration_stream)
    trained = load_trained(res.best_checkpoint, sc)
    seeds = simulate.eval_seeds(episodes)
    learned = simulate.chain_cost(sc, greedy_orders(trained), seeds)
    bs = simulate.chain_cost(sc, base_stock_orders(S), seeds)
    d = paired_difference(learned, bs)
    split = gap_by_day(sc, Referee(problem), greedy_orders(trained), seeds)
    return {"cell": sc.name, "lead_time": lead_time, "penalty": penalty, "optimum": opt.cost,
            "best_base_stock_level": S, "best_base_stock_exact": bs_exact,
            "base_stock": float(bs.mean()), "learned": float(learned.mean()),
            "learned_ci95": [float(learned.mean() - 1.96 * learned.std(ddof=1) / np.sqrt(len(learned))),
                             float(learned.mean() + 1.96 * learned.std(ddof=1) / np.sqrt(len(learned)))],
            "learned_over_optimum": float(learned.mean()) / opt.cost,
            "base_stock_over_optimum": bs_exact / opt.cost,
            "paired_learned_minus_base_stock": d, "gap_by_day": split,
            # the same ratio in expectation: 1 + the referee's gap / the optimum (its states are
            # sampled, its losses are expectations: far less noise than the held-out mean)
            "learned_over_optimum_referee": 1.0 + split["gap"] / opt.cost, "env_steps": env_steps, "minutes": train_min,
            "iterations": res.iterations, "checkpoint": str(res.best_checkpoint), "episodes": episodes}


def _average_reference(sc):
    """The cell's exact references: its problem, the average-cost optimum g*, and the best
    base-stock level by exact average cost with that cost."""
    from hmarl_rllib.policies.optimum import problem_from_scenario, solve

    problem = problem_from_scenario(sc.model_copy(update={"warmup_days": 0}))  # the average forgets the start
    g = float(solve(problem, average=True).average_cost)
    S, bs_exact = best_average_base_stock(problem, best_base_stock(problem)[0])
    return problem, g, S, bs_exact


def score_average(sc, checkpoint, replicas: int, reference=None) -> dict:
    """Score a checkpoint of an average-criterion cell ``sc`` on ``replicas`` held-out replicas:
    per day over :data:`EVAL_DAYS` days after :data:`EVAL_WARMUP` days of each policy's own play,
    beside the best base-stock (paired), and its gap per day by the average-cost referee."""
    from hmarl_rllib.experiments.evaluation import greedy_orders, load_trained
    from hmarl_rllib.policies.optimum import AverageReferee
    from hmarl_rllib.sim import simulate
    from hmarl_rllib.sim.reconciliation import paired_difference

    problem, g, S, bs_exact = reference or _average_reference(sc)
    long = sc.model_copy(update={"episode_length": EVAL_DAYS, "warmup_days": EVAL_WARMUP})
    trained = load_trained(checkpoint, long)
    seeds = simulate.eval_seeds(replicas)
    # each policy warms itself up (warmup_fn = its own orders), then every day is scored
    learned = simulate.chain_cost(long, greedy_orders(trained), seeds) / EVAL_DAYS
    bs = simulate.chain_cost(long, base_stock_orders(S), seeds) / EVAL_DAYS
    gap = average_gap(long, AverageReferee(problem), greedy_orders(trained), seeds, quantity_menu_top(sc))
    return {"cell": sc.name, "criterion": "average", "optimum": g, "best_base_stock_level": S,
            "best_base_stock_exact": bs_exact, "base_stock": float(bs.mean()), "base_stock_ci95": _mean_ci(bs),
            "learned": float(learned.mean()), "learned_ci95": _mean_ci(learned),
            "learned_over_optimum": float(learned.mean()) / g, "base_stock_over_optimum": bs_exact / g,
            "paired_learned_minus_base_stock": paired_difference(learned, bs), "gap": gap,
            "learned_over_optimum_referee": 1.0 + gap["gap_per_day"] / g, "checkpoint": str(checkpoint),
            "episodes": replicas, "eval_days": EVAL_DAYS, "eval_warmup_days": EVAL_WARMUP}


def run_average_cell(base, lead_time: int, penalty: float, minutes: float, replicas: int = 200,
                     storage: str | None = None, progress=None, iteration_stream=None) -> dict:
    """One cell under the average-cost criterion (module docstring): costs are per day."""
    sc = cell_scenario(base, lead_time, penalty, "average")
    reference = _average_reference(sc)
    if progress:
        progress(f"{sc.name}: average-cost optimum {reference[1]:.4f}/day, best base-stock S = {reference[2]} at"
                 f" {reference[3]:.4f}/day; training PPO from scratch for {minutes:g} min")
    res, env_steps, train_min = _train_cell(sc, minutes, storage, progress, iteration_stream)
    return {"lead_time": lead_time, "penalty": penalty, **score_average(sc, res.best_checkpoint, replicas, reference),
            "env_steps": env_steps, "minutes": train_min, "iterations": res.iterations}


def rescore_grid(result: dict, config: str | Path | None = None, episodes: int | None = None,
                 progress=None) -> dict:
    """Score again the checkpoints of an earlier ``learn-grid --criterion average --json`` result
    (e.g. on more held-out replicas, or with a referee that run did not have): no training;
    env steps and minutes are the earlier run's."""
    from hmarl_rllib.errors import InputError
    from hmarl_rllib.sim.config import load_config

    if not isinstance(result, dict) or result.get("criterion") != "average" or not result.get("rows"):
        raise InputError("--rescore: give the --json output of `hmarl learn-grid --criterion average`"
                         " (the finite criterion's cells are scored by their own run)")
    base = load_config(config or ROOT / "configs" / "one_store.yaml")
    rows = []
    for r in result["rows"]:
        sc = cell_scenario(base, int(r["lead_time"]), float(r["penalty"]), "average")
        if sc.name != r["cell"]:
            raise InputError(f"--rescore: cell {r['cell']} was trained from another base config than"
                             f" {config or 'configs/one_store.yaml'} (it builds {sc.name}); pass that --config")
        if not Path(r["checkpoint"]).is_dir():
            raise InputError(f"--rescore: the checkpoint of {r['cell']} is gone ({r['checkpoint']})")
        if progress:
            progress(f"{sc.name}: scoring {r['checkpoint']}")
        rows.append({**r, **score_average(sc, r["checkpoint"], episodes or int(r["episodes"]))})
    ratios = [r["learned_over_optimum"] for r in rows]
    return {**result, "rows": rows, "max_learned_over_optimum": max(ratios),
            "median_learned_over_optimum": float(np.median(ratios))}


def run_grid(config: str | Path | None = None, cells=None, minutes: float = 15.0, episodes: int | None = None,
             storage: str | None = None, progress=None, iteration_stream=None, criterion: str = "finite") -> dict:
    """Every cell of ``cells`` (default :data:`GRID`). ``episodes``: held-out episodes per cell
    (default 1,000), or under the average criterion held-out replicas of :data:`EVAL_DAYS` days
    (default 200)."""
    from hmarl_rllib.sim.config import load_config

    if criterion not in CRITERIA:
        raise ValueError(f"criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
    base = load_config(config or ROOT / "configs" / "one_store.yaml")
    n = episodes or (200 if criterion == "average" else 1000)
    rows = [run_cell(base, L, p, minutes, n, storage, progress, iteration_stream, criterion) for L, p in (cells or GRID)]
    ratios = [r["learned_over_optimum"] for r in rows]
    return {"criterion": criterion, "rows": rows, "max_learned_over_optimum": max(ratios),
            "median_learned_over_optimum": float(np.median(ratios)), "minutes_per_cell": minutes}


def format_grid(result: dict) -> str:
    head = (f"{'L':>2} {'p':>4} {'optimum':>9} {'base-stock':>11} {'learned':>9} {'learned/opt':>12}"
            f" {'bs/opt':>8} {'learned-bs [95% CI]':>26} {'env steps':>11} {'min':>5}")
    average = result.get("criterion") == "average"
    lines = [f"average cost per day over {EVAL_DAYS:,} days after {EVAL_WARMUP} warm-up days of the policy's own"
             " play; optimum: the exact average-cost optimum (Zipkin's); base-stock: the level with the lowest"
             " exact average cost" if average else
             "cost per episode; optimum: the exact finite-horizon optimum from the episode's start; base-stock:"
             " the level with the lowest exact episode cost", head, "-" * len(head)]
    k = 4 if average else 2  # decimals: costs per day or per episode
    for r in result["rows"]:
        d = r["paired_learned_minus_base_stock"]
        lines.append(f"{r['lead_time']:>2} {r['penalty']:>4g} {r['optimum']:>9.{k}f} {r['base_stock']:>11.{k}f}"
                     f" {r['learned']:>9.{k}f} {r['learned_over_optimum']:>12.4f} {r['base_stock_over_optimum']:>8.4f}"
                     f" {d['mean']:>+8.{k}f} [{d['ci95'][0]:+.{k}f}, {d['ci95'][1]:+.{k}f}]"
                     f" {r['env_steps']:>11,} {r['minutes']:>5.1f}")
    lines.append(f"learned / optimum: max {result['max_learned_over_optimum']:.4f},"
                 f" median {result['median_learned_over_optimum']:.4f} (target: max <= 1.01, median <= 1.005)")
    refereed = [r for r in result["rows"] if "gap" in r]
    if refereed:
        lines += ["", "the learned policy's gap per day by the average-cost referee (mean of Q(s, q) - min Q(s, .)"
                  " over its own scored days):",
                  f"{'L':>2} {'p':>4} {'gap/day':>8} {'[95% CI]':>18} {'1+gap/opt':>10} {'optimal orders':>15}"
                  + (f" {'menu top':>9} {'ordered top':>12} {'optimum > top':>14}"
                     if any("menu_top" in r["gap"] for r in refereed) else "")]
        for r in refereed:
            g = r["gap"]
            top = (f" {g['menu_top']:>9} {g['share_orders_at_menu_top']:>12.2%} {g['share_optimum_above_menu_top']:>14.2%}"
                   if "menu_top" in g else "")
            lines.append(f"{r['lead_time']:>2} {r['penalty']:>4g} {g['gap_per_day']:>8.4f}"
                         f" [{g['gap_ci95'][0]:.4f}, {g['gap_ci95'][1]:.4f}] {r['learned_over_optimum_referee']:>10.4f}"
                         f" {g['share_optimal_orders']:>14.1%}{top}")
        ref = [r["learned_over_optimum_referee"] for r in refereed]
        lines.append(f"1 + gap/opt: max {max(ref):.4f}, median {float(np.median(ref)):.4f}")
    split = [r for r in result["rows"] if "gap_by_day" in r]
    if split:
        lines += ["", "where the learned policy loses against the optimum (sum over days of Q* - V* on its own path):",
                  f"{'L':>2} {'p':>4} {'gap':>7} {'1+gap/opt':>10} {'days 0..L':>10} {'middle':>8} {'last 10':>8}"
                  f" {'optimal orders':>15}"]
        for r in split:
            g = r["gap_by_day"]
            lines.append(f"{r['lead_time']:>2} {r['penalty']:>4g} {g['gap']:>7.2f} {1.0 + g['gap'] / r['optimum']:>10.4f}"
                         f" {g['first_days']:>10.2f} {g['middle']:>8.2f} {g['last_10_days']:>8.2f}"
                         f" {g['share_optimal_orders']:>14.1%}")
        ref = [1.0 + r["gap_by_day"]["gap"] / r["optimum"] for r in split]
        lines.append(f"1 + gap/opt: max {max(ref):.4f}, median {float(np.median(ref)):.4f}")
    return "\n".join(lines)
