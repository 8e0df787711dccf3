"""Learned policy vs. tuned classic policies vs. the perfect-information bound, on held-out demand.

Every policy (the learned one played greedily; the baselines base-stock, (s, S), echelon
base-stock and echelon (s, S), each tuned on tuning seeds) runs
through the same batched twin code path (:func:`hmarl_rllib.sim.simulate.evaluate`) on the same
evaluation seeds, which are disjoint from training seeds and from baseline-tuning seeds. The
perfect-information bound (:mod:`hmarl_rllib.experiments.bound`) is solved on the first
``bound_episodes`` of those traces (a MILP per trace takes seconds), and the gap is measured on
exactly those traces. With ``bound_penalty`` each program also pays the sales penalty (a bound in
the mean only), and the best rule's own penalty on the same traces is subtracted as a control
variate.

Rows that are **references**, not baselines (the baselines are the static classic rules):

- ``s_S_endgame``: the (s, S) that stops ordering a tuned number of days before the episode
  ends, its levels searched with those stop days (:class:`~hmarl_rllib.policies.heuristics.EndgamePolicy`,
  :func:`~hmarl_rllib.policies.tuning.tune_policy`). The scenarios score a
  finite horizon and leftover stock is worth nothing, so part of what a learned policy (which
  observes the share of the episode left) can gain is this end-of-horizon run-down; the row
  shows how much of the learned policy's advantage a one-line rule gets too
  (``ratio_to_endgame``).
- ``s_S_seasonal`` and ``echelon_s_S_seasonal`` (only when the demand model's mean changes over
  the episode): the (s, S) and echelon (s, S) whose levels follow the demand model's season
  (:class:`~hmarl_rllib.policies.heuristics.Forecast`), tuned on tuning seeds: what the demand
  model's forecast alone is worth (``ratio_to_seasonal``: learned / the cheaper of the two,
  named by ``best_seasonal``).
- the rule the learned policy corrects (``corrected_rule``: its training baseline, which its
  correction 0 plays, e.g. ``echelon_s_S_seasonal_endgame``), when no other row is that rule:
  ``ratio_to_corrected_rule`` is what the learned corrections add to it.
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from hmarl_rllib.errors import InputError
from hmarl_rllib.experiments import report
from hmarl_rllib.policies.spec import RuleSpec
from hmarl_rllib.sim import reconciliation, simulate
from hmarl_rllib.sim.demand import scored_dates
from hmarl_rllib.sim.reconciliation import paired_difference

# the baselines: base_stock, s_S, echelon_base_stock, echelon_s_S (rows labelled by the specs' names)
BASELINE_RULES = tuple(RuleSpec(rule=r, positions=p) for p in ("installation", "echelon")
                       for r in ("base_stock", "s_S"))
POLICIES = tuple(r.name for r in BASELINE_RULES)
# reference rows (not baselines): s_S_endgame; s_S_seasonal and echelon_s_S_seasonal
ENDGAME_RULE = RuleSpec(rule="s_S", endgame=True)
SEASONAL_RULES = tuple(RuleSpec(rule="s_S", positions=p, seasonal=True) for p in ("installation", "echelon"))
ENDGAME = ENDGAME_RULE.name
SEASONAL = tuple(r.name for r in SEASONAL_RULES)


def _bound_chunk(args):
    scenario, seeds, time_limit, sales_penalty = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return _solve_bounds(scenario, seeds, time_limit, sales_penalty)


def _solve_bounds(scenario, seeds, time_limit: float, sales_penalty: float, progress=None):
    """(bounds, optimal, plans) of ``seeds``' traces in this process; plans (B, len(PLAN_COSTS))."""
    from hmarl_rllib.experiments.bound import PLAN_COSTS, perfect_information_bound

    plans = []
    bounds, optimal = perfect_information_bound(scenario, seeds, time_limit=time_limit, progress=progress,
                                                with_status=True, sales_penalty=sales_penalty, plans=plans)
    table = np.array([[p[k] for k in PLAN_COSTS] for p in plans], dtype=float).reshape(len(plans), len(PLAN_COSTS))
    return bounds, optimal, table


def has_season(scenario) -> bool:
    """True when the demand model's mean changes over the episode (a seasonal rule differs)."""
    from hmarl_rllib.sim.demand import mean_path

    mp = mean_path(scenario, scenario.warmup_days + scenario.episode_length)
    return bool(np.ptp(mp, axis=0).max() > 1e-9 * max(1.0, float(mp.max())))


def bound_costs(scenario, seeds, workers: int = 2, time_limit: float = 20.0, progress=None,
                sales_penalty: float = 0.0):
    """Perfect-information bound per seed (with ``sales_penalty``: the penalized programs', a
    bound in the mean only), solved in ``workers`` processes: (bounds, optimal, plans), plans
    (B, len(PLAN_COSTS)) the programs' plans' own costs by part (:func:`bound.trace_bound`)."""
    seeds = np.asarray(seeds)
    if workers <= 1 or len(seeds) < 4:
        return _solve_bounds(scenario, seeds, time_limit, sales_penalty, progress)
    chunks = [c for c in np.array_split(seeds, max(workers * 4, 1)) if len(c)]
    out = []
    import multiprocessing  # spawn: forking a process that has loaded torch (threads, locks) can hang

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for part in pool.map(_bound_chunk, [(scenario, c, time_limit, sales_penalty) for c in chunks]):
            out.append(part)
            if progress:
                progress(f"bound: {sum(len(p[0]) for p in out)}/{len(seeds)} traces")
    return tuple(np.concatenate([p[i] for p in out]) for i in range(3))


def run_benchmark(scenario, checkpoint=None, episodes: int = 1000, seed: int | None = None,
                  bound_episodes: int = 50, workers: int = 2, bound_time_limit: float = 20.0,
                  progress=None, out=None, bound_penalty: float = 0.0) -> dict:
    """Evaluate everything on the same held-out seeds; see the module docstring. ``out``: a
    folder for ``report.html`` (:mod:`hmarl_rllib.experiments.html_report`), its path under ``"report"``.
    The bound's worst case (its traces over the workers, each up to ``bound_time_limit``) is
    known before anything runs: over :data:`MAX_BOUND_MINUTES` it is refused in one line.
    ``bound_penalty``: the sales penalty of :mod:`hmarl_rllib.experiments.bound` (a fraction of the
    stockout penalty; 0: the plain perfect-information bound), refused in one line where it
    does not apply."""
    if bound_episodes and bound_penalty:
        from hmarl_rllib.experiments.bound import sales_penalty_refusal

        why = sales_penalty_refusal(scenario, bound_penalty)
        if why:
            raise InputError(why)
    check_bound_budget(bound_episodes and min(bound_episodes, episodes), workers, bound_time_limit)
    started = time.perf_counter()
    seeds = simulate.eval_seeds(episodes, seed)
    from hmarl_rllib.policies.optimum import exact_optimum
    from hmarl_rllib.policies.tuning import tuned_policy

    costs, summaries, twins, rule_of = {}, {}, {}, {}

    def run(name, order_fn, warmup_fn=None):  # one policy on the seeds: its summary and per-trace costs
        summaries[name], twin = simulate.evaluate(scenario, order_fn, seeds, warmup_fn=warmup_fn)
        costs[name] = reconciliation.chain_kpis(simulate.scored_ledger(twin), twin.n_stores)["cost"]
        if out is not None:
            twins[name] = twin

    if checkpoint is not None:
        from hmarl_rllib.experiments.evaluation import greedy_orders, load_trained

        trained = load_trained(checkpoint, scenario)
        scenario = trained.scenario
        if progress:
            progress(f"learned policy: {episodes} episodes")
        run("learned", greedy_orders(trained), warmup_fn=trained.baseline.orders)
    tuned = {}
    for kind, spec in zip(POLICIES, BASELINE_RULES):
        tuned[kind] = tuned_policy(scenario, spec, progress=progress)
        if progress:
            progress(f"{kind}: {episodes} episodes")
        run(kind, tuned[kind].orders)
        rule_of[kind] = tuned[kind]
    best = min(POLICIES, key=lambda k: summaries[k]["cost_mean"])
    if progress:
        progress(f"{ENDGAME} (reference): the tuned levels and stop days (cached, or tuned now)")
    endgame = tuned_policy(scenario, ENDGAME_RULE, progress=progress)  # the tuned (s, S) + tuned stop days
    run(ENDGAME, endgame.orders)
    rule_of[ENDGAME] = endgame
    seasonal = {}
    if has_season(scenario):
        for name, spec in zip(SEASONAL, SEASONAL_RULES):
            seasonal[name] = tuned_policy(scenario, spec, progress=progress)
            if progress:
                progress(f"{name} (reference): {episodes} episodes")
            run(name, seasonal[name].orders)
            rule_of[name] = seasonal[name]
    best_seasonal = min(seasonal, key=lambda k: summaries[k]["cost_mean"]) if seasonal else None
    corrected = None  # the rule the learned policy corrects (its correction 0), when no row shows it yet
    if checkpoint is not None:
        corrected = trained.baseline.name
        if corrected not in summaries:
            if progress:
                progress(f"{corrected} (reference: the rule the learned policy corrects): {episodes} episodes")
            run(corrected, trained.baseline.orders)
        rule_of.setdefault(corrected, trained.baseline)
    rules = [k for k in summaries if k != "learned"]  # baselines and references alike, the corrected rule too
    best_rule = min(rules, key=lambda k: summaries[k]["cost_mean"])
    if progress:
        progress("exact optimum (dynamic programming), when the scenario is a one-store problem")
    opt = exact_optimum(scenario)
    result = {
        "scenario": scenario.name,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "episodes": int(episodes),
        "seeds": [int(seeds[0]), int(seeds[-1])],
        "demand_dates": scored_dates(scenario, seeds, scenario.warmup_days + scenario.episode_length),
        "policies": {name: {**report.json_policy(s), "holding_cost_mean": s["holding_cost_mean"],
                            "stockout_cost_mean": s["stockout_cost_mean"],
                            "ordering_cost_mean": s["ordering_cost_mean"]} for name, s in summaries.items()},
        "best_baseline": best,
        "best_rule": best_rule,
        "optimum": opt,
        "gap_to_optimum": None,
        "gap_to_optimum_by_policy": ({n: summaries[n]["cost_mean"] / opt["cost"] - 1.0 for n in summaries}
                                     if opt.get("cost") else None),
        "paired": {},
        "best_seasonal": best_seasonal,
        "corrected_rule": corrected,
        "reference": {ENDGAME: {"stop_days": dict(zip(("store", "warehouse", "supplier"), endgame.stop_days))}},
        "ratio_to_best_baseline": None,
        "ratio_to_endgame": None,
        "ratio_to_seasonal": None,
        "ratio_to_corrected_rule": None,
        "gap_to_bound": None,
        "ratio_to_best_rule": None,
        "ci_overlap": None,
    }
    if opt.get("cost") and "learned" in summaries:
        result["gap_to_optimum"] = summaries["learned"]["cost_mean"] / opt["cost"] - 1.0
    # paired differences on the same seeds: the learned policy (or, without one, the best rule)
    # against the best baseline, the best rule of any kind and the rule it corrects
    ref = "learned" if "learned" in costs else best_rule
    for other in dict.fromkeys([best, best_rule, corrected]):
        if other is not None and other != ref:
            result["paired"][f"{ref} - {other}"] = paired_difference(costs[ref], costs[other])
    if "learned" in summaries:
        lo, hi = summaries["learned"]["cost_ci95"]
        blo, bhi = summaries[best]["cost_ci95"]
        result["ratio_to_best_baseline"] = summaries["learned"]["cost_mean"] / summaries[best]["cost_mean"]
        result["ci_overlap"] = bool(hi >= blo and bhi >= lo)
        result["ratio_to_endgame"] = summaries["learned"]["cost_mean"] / summaries[ENDGAME]["cost_mean"]
        result["ratio_to_best_rule"] = summaries["learned"]["cost_mean"] / summaries[best_rule]["cost_mean"]
        result["ratio_to_corrected_rule"] = summaries["learned"]["cost_mean"] / summaries[corrected]["cost_mean"]
        if best_seasonal is not None:
            result["ratio_to_seasonal"] = summaries["learned"]["cost_mean"] / summaries[best_seasonal]["cost_mean"]
    for name, pol in seasonal.items():
        result["reference"][name] = {"forecast_windows": {e: list(w) for e, w in pol.forecast.windows.items()}}
    if bound_episodes > 0:
        n = min(bound_episodes, episodes)
        if progress:
            worst = bound_worst_case_s(n, workers, bound_time_limit)
            progress(f"{_bound_label(bound_penalty)} on {n} traces ({workers} processes, at most"
                     f" {f'{worst:.0f} s' if worst < 120 else f'{worst / 60:.0f} minutes'})")
        t_bound = time.perf_counter()
        bound, optimal, plans = bound_costs(scenario, seeds[:n], workers=workers, time_limit=bound_time_limit,
                                            progress=progress, sales_penalty=bound_penalty)
        control = {}
        if bound_penalty:  # the control variate: the same penalty on the best rule's trajectories
            from hmarl_rllib.experiments.bound import sales_penalty_of

            raw_mean, raw_ci = reconciliation.mean_ci95(bound)
            bound = bound - sales_penalty_of(simulate.run(scenario, rule_of[best_rule].orders, seeds[:n]),
                                             bound_penalty)
            control = {"control_policy": best_rule, "uncorrected_mean": raw_mean, "uncorrected_ci95": raw_ci}
        t_bound = time.perf_counter() - t_bound
        gaps = {name: float(c[:n].mean() / bound.mean() - 1.0) for name, c in costs.items()}
        mean, ci = reconciliation.mean_ci95(bound)
        result["bound"] = {"episodes": int(n), "cost_mean": float(bound.mean()), "ci95": ci,
                           "kind": _bound_label(bound_penalty), "sales_penalty": float(bound_penalty),
                           "solved_to_optimality": int(optimal.sum()), "time_limit_s": bound_time_limit,
                           "seconds": t_bound,
                           "gap_by_policy": gaps,
                           # per trace only without the penalty: a penalized program bounds the mean alone
                           "violations": None if bound_penalty else
                           int(sum((c[:n] < bound - 1e-6).sum() for c in costs.values())), **control,
                           **_plan_parts(scenario, plans, rule_of[best_rule], seeds[:n], best_rule)}
        if "learned" in gaps:
            result["gap_to_bound"] = gaps["learned"]
    if out is not None:
        if progress:
            progress(f"writing {Path(out) / 'report.html'}")
        result["report"] = str(_report(Path(out), result, summaries, costs, twins,
                                       trained if checkpoint is not None else None, rule_of))
    result["seconds"] = time.perf_counter() - started
    return result


def _plan_parts(scenario, plans: np.ndarray, rule, seeds, rule_name: str) -> dict:
    """Where the bound's plans differ from the best rule: the mean of each part of the plans'
    own costs (:data:`bound.PLAN_COSTS`, over the traces that have a plan) beside the rule's on
    the same traces. (With a sales penalty the plans are the penalized programs'.)"""
    from hmarl_rllib.experiments.bound import PLAN_COSTS

    has = ~np.isnan(plans).any(axis=1)
    k = reconciliation.node_kpis(simulate.scored_ledger(simulate.run(scenario, rule.orders, seeds)))
    N = len(scenario.store_list)
    parts = {"store_holding": k["holding_cost"][:, :N].sum(1), "store_shortage": k["stockout_cost"][:, :N].sum(1),
             "store_ordering": k["ordering_cost"][:, :N].sum(1), "warehouse_holding": k["holding_cost"][:, N],
             "warehouse_ordering": k["ordering_cost"][:, N], "supplier_holding": k["holding_cost"][:, N + 1],
             "supplier_production": k["ordering_cost"][:, N + 1]}
    if not has.any():
        return {"plan_costs": None, "rule_costs": None}
    return {"plan_traces": int(has.sum()),
            "plan_costs": {p: float(plans[has, i].mean()) for i, p in enumerate(PLAN_COSTS)},
            "rule_costs": {"policy": rule_name, **{p: float(parts[p][has].mean()) for p in PLAN_COSTS}}}


def _bound_label(sales_penalty: float) -> str:
    return ("perfect-information bound" if not sales_penalty else
            f"penalized perfect-information bound (sales penalty {sales_penalty:g} x p)")


MAX_BOUND_MINUTES = 60  # the longest the bound may take at worst; more is refused before anything runs


def bound_worst_case_s(traces: int, workers: int, time_limit: float) -> float:
    """Seconds the bound takes at most: each worker solves its share of the traces one after the
    other, each program stopped by ``time_limit``."""
    return math.ceil(traces / max(workers, 1)) * time_limit


def check_bound_budget(traces: int, workers: int, time_limit: float) -> None:
    worst = bound_worst_case_s(traces, workers, time_limit) if traces else 0.0
    if worst > 60 * MAX_BOUND_MINUTES:
        fit = int(60 * MAX_BOUND_MINUTES // time_limit) * max(workers, 1)
        raise InputError(f"--bound-episodes {traces} x --bound-time-limit {time_limit:g}s over {workers} worker(s):"
                         f" up to {worst / 60:,.0f} minutes, over the {MAX_BOUND_MINUTES}-minute limit; pass"
                         f" --bound-episodes {fit} or fewer, a lower --bound-time-limit, more --workers, or"
                         " --bound-episodes 0 to skip the bound")


def _report(out, result, summaries, costs, twins, trained, rule_of):
    """``out/report.html`` of a benchmark: the learned policy (if any) and every rule row."""
    from hmarl_rllib.experiments.evaluation import training_curve
    from hmarl_rllib.experiments.html_report import ReportData, write_report

    best_rule = result["best_rule"]
    facts = [f"scenario {result['scenario']}: {result['episodes']} held-out episodes,"
             f" seeds {result['seeds'][0]}..{result['seeds'][1]}",
             f"best baseline: {result['best_baseline']}; best rule of any kind: {best_rule}"
             + (f"; the rule the policy corrects: {result['corrected_rule']}" if result.get("corrected_rule") else "")]
    if result.get("checkpoint"):
        facts.insert(0, f"checkpoint {result['checkpoint']}")
    if result.get("demand_dates"):
        facts.append(result["demand_dates"])
    opt = result.get("optimum") or {}
    optimum = opt.get("cost")
    if optimum is None and opt.get("why"):
        facts.append(f"no exact optimum: {opt['why']}")
    if result.get("bound"):
        facts.append(f"perfect-information bound (a bound, not a policy) on the first {result['bound']['episodes']}"
                     f" traces: {result['bound']['cost_mean']:,.1f}")
    curve = None
    if trained is not None:
        refs = {best_rule: rule_of[best_rule], result["corrected_rule"]: rule_of[result["corrected_rule"]]}
        curve = training_curve(trained, refs, optimum)
    data = ReportData(title=f"hmarl benchmark: {result['scenario']}", facts=facts, summaries=summaries,
                      costs=costs, paths=twins, best_rule=best_rule, optimum=optimum, curve=curve)
    return write_report(out, data)


def format_benchmark(result: dict) -> str:
    pol = result["policies"]
    gaps = (result.get("bound") or {}).get("gap_by_policy", {})
    opt_gaps = result.get("gap_to_optimum_by_policy") or {}
    best = pol[result["best_baseline"]]["cost_mean"]
    w = max([20] + [len(n) + 9 for n in pol])  # room for the longest name + " (ref.)"
    head = f"{'policy':<{w}}{'chain cost':>12}{'95% CI':>24}{'fill rate':>11}{'service':>10}" \
           f"{'holding':>10}{'stockout':>10}{'ordering':>10}{'vs best':>9}{'vs bound':>10}" \
           + (f"{'vs optimum':>12}" if opt_gaps else "")
    lines = [f"scenario {result['scenario']}: {result['episodes']} held-out episodes,"
             f" seeds {result['seeds'][0]}..{result['seeds'][1]}"]
    if result.get("demand_dates"):
        lines.append(result["demand_dates"])
    lines += [head, "-" * len(head)]
    for name, s in pol.items():
        lo, hi = s["cost_ci95"]
        gap = f"{100 * gaps[name]:+.1f}%" if name in gaps else "-"
        label = name + (" (ref.)" if name in (ENDGAME, *SEASONAL, result.get("corrected_rule")) else "")
        lines.append(f"{label:<{w}}{s['cost_mean']:>12,.1f}{f'[{lo:,.1f}, {hi:,.1f}]':>24}"
                     f"{100 * s['fill_rate_mean']:>10.2f}%{100 * s['service_level_mean']:>9.2f}%"
                     f"{s['holding_cost_mean']:>10,.1f}{s['stockout_cost_mean']:>10,.1f}{s['ordering_cost_mean']:>10,.1f}"
                     f"{s['cost_mean'] / best:>9.3f}{gap:>10}"
                     + (f"{100 * opt_gaps[name]:>+11.2f}%" if name in opt_gaps else ""))
    opt = result.get("optimum") or {}
    if opt.get("cost"):
        lines.append(f"{'exact optimum':<{w}}{opt['cost']:>12,.1f}   (dynamic programming, expected cost per episode"
                     f" from the initial state; {opt['seconds']:.1f}s"
                     + ("" if opt.get("average_cost") is None else f"; long-run {opt['average_cost']:.4f}/day") + ")")
    if result.get("bound"):
        b = result["bound"]
        if b.get("sales_penalty"):
            lo, hi = b["ci95"]
            lines.append(f"{'penalized bound':<{w}}{b['cost_mean']:>12,.1f}   [{lo:,.1f}, {hi:,.1f}] (on the first"
                         f" {b['episodes']} traces; perfect information with a sales penalty of"
                         f" {b['sales_penalty']:g} x p: a bound on the mean only, not trace by trace;"
                         f" {b['control_policy']}'s penalty on the same traces subtracted as a control variate,"
                         f" without it {b['uncorrected_mean']:,.1f} [{b['uncorrected_ci95'][0]:,.1f},"
                         f" {b['uncorrected_ci95'][1]:,.1f}])")
        else:
            lines.append(f"{'perfect-info bound':<{w}}{b['cost_mean']:>12,.1f}   (on the first {b['episodes']} traces;"
                         f" 'vs bound' compares each policy on those traces)")
        if b.get("plan_costs"):
            plan, rule = b["plan_costs"], b["rule_costs"]
            lines.append(f"  where the bound's plans differ from {rule['policy']} (mean per episode on the"
                         f" {b['plan_traces']} traces with a plan; plan / rule / rule - plan):")
            for part, v in plan.items():
                lines.append(f"    {part.replace('_', ' '):<22}{v:>11,.1f}{rule[part]:>11,.1f}{rule[part] - v:>+11,.1f}")
        if b["solved_to_optimality"] < b["episodes"]:
            lines.append(f"  only {b['solved_to_optimality']}/{b['episodes']} programs solved to optimality within"
                         f" {b['time_limit_s']:g}s; the others give HiGHS's dual bound (valid, looser):"
                         " raise --bound-time-limit for a tighter bound")
    lines.append(f"best baseline: {result['best_baseline']}; best rule of any kind: {result.get('best_rule')}")
    ref = (result.get("reference") or {}).get(ENDGAME)
    if ref:
        lines.append(f"{ENDGAME} (reference, not a baseline): the (s, S) tuned to stop ordering"
                     f" {ref['stop_days']['store']}/{ref['stop_days']['warehouse']}/{ref['stop_days']['supplier']}"
                     " days before the end (store/warehouse/supplier): what knowing the horizon alone is worth")
    if result.get("best_seasonal"):
        lines.append(f"{' and '.join(SEASONAL)} (references, not baselines): the tuned (s, S) and echelon"
                     " (s, S) with levels that follow the demand model's season: what the model's forecast"
                     " alone is worth")
    if result["ratio_to_best_baseline"] is not None:
        lines.append(f"learned / best baseline: {result['ratio_to_best_baseline']:.4f}"
                     f" (95% CIs {'overlap' if result['ci_overlap'] else 'do not overlap'});"
                     f" learned / {ENDGAME}: {result['ratio_to_endgame']:.4f}"
                     + ("" if result.get("ratio_to_seasonal") is None else
                        f"; learned / {result['best_seasonal']}: {result['ratio_to_seasonal']:.4f}")
                     + f"; learned / {result['corrected_rule']} (the rule it corrects):"
                       f" {result['ratio_to_corrected_rule']:.4f}")
    if result["gap_to_bound"] is not None:
        lines.append(f"learned gap to bound: {100 * result['gap_to_bound']:+.1f}%")
    if result.get("seconds") is not None:
        bound = result.get("bound") or {}
        lines.append(f"took {result['seconds']:,.0f} s" + (f" (the bound {bound['seconds']:,.0f} s of it)"
                                                           if bound.get("seconds") is not None else ""))
    if result.get("gap_to_optimum") is not None:
        lines.append(f"learned gap to the exact optimum: {100 * result['gap_to_optimum']:+.2f}%")
    for pair, d in (result.get("paired") or {}).items():
        lo, hi = d["ci95"]
        lines.append(f"paired difference {pair} on the same seeds: {d['mean']:+,.2f} per episode"
                     f" [{lo:+,.2f}, {hi:+,.2f}] ({100 * d['relative']:+.2f}%;"
                     f" {'significant' if d['significant'] else 'not significant'} at 95%)")
    return "\n".join(lines)
