"""The exact one-store optimum (hmarl_rllib.policies.optimum): the same model as the twin, and
Zipkin's (2008) published optimal average costs."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import ROOT, scenario
from hmarl_rllib.errors import ConfigError
from hmarl_rllib.experiments.learn_grid import base_stock_orders
from hmarl_rllib.policies.optimum import (evaluate_base_stock, problem_from_scenario, solve,
                                          zipkin_problem)
from hmarl_rllib.sim import simulate

FREE_UPSTREAM = {"holding_cost": {"store": 1.0, "warehouse": 0.0, "supplier": 0.0},
                 "ordering_cost": {"store": {"fixed": 0.0}, "warehouse": {"fixed": 0.0}, "supplier": {}}}


def one_store(shortage="lost_sales", lead_time=2, mean=5.0, p=4.0, b=0.0, K=0.0, c=0.0, days=40,
              init=10, model="poisson", std=None, capacity=None, weekly=None):
    sku = {"name": "A", "stockout_penalty": p, "backorder_cost": b,
           "holding_cost": FREE_UPSTREAM["holding_cost"],
           "ordering_cost": {"store": {"fixed": K, "per_unit": c}, "warehouse": {"fixed": 0.0},
                             "supplier": {"fixed": 0.0}}}
    demand = {"model": model, "mean": mean, **({"std": std} if std else {}), **({"weekly": weekly} if weekly else {})}
    return scenario(name="one_store", episode_length=days, shortage=shortage, skus=[sku],
                    stores={"count": 1, "demand": demand, "initial_inventory": init, "lead_time": lead_time,
                            **({"capacity": capacity} if capacity else {})},
                    warehouse={"initial_inventory": 10_000_000, "lead_time": 1},
                    supplier={"initial_inventory": 0, "production_capacity": 1})




@pytest.mark.parametrize("kw, S", [
    (dict(shortage="lost_sales", lead_time=2), 17),
    (dict(shortage="lost_sales", lead_time=0, p=9.0, init=0), 8),
    (dict(shortage="lost_sales", lead_time=3, K=10.0, c=0.5, capacity=30, init=25), 24),
    (dict(shortage="backorder", lead_time=1, p=2.0, b=1.0, init=0), 14),
    (dict(shortage="backorder", lead_time=3, p=1.0, b=3.0, K=5.0, model="normal", std=3.0), 26),
    (dict(shortage="lost_sales", lead_time=1, weekly=[0.5, 1, 1, 1, 1, 1.5, 2.0]), 15),
])
def test_solver_evaluates_a_base_stock_policy_at_the_twins_simulated_cost(kw, S):
    sc = one_store(**kw)
    exact = evaluate_base_stock(problem_from_scenario(sc), S)
    costs = simulate.chain_cost(sc, base_stock_orders(S), simulate.eval_seeds(4000))
    half = 1.96 * costs.std(ddof=1) / np.sqrt(len(costs))
    assert abs(costs.mean() - exact) <= half, (exact, costs.mean(), half)


@pytest.mark.parametrize("kw", [dict(shortage="lost_sales", lead_time=2, init=0),
                                dict(shortage="backorder", lead_time=2, b=1.0, K=20.0, init=0)])
def test_the_optimum_is_at_most_the_cost_of_the_best_base_stock_level(kw):
    prob = problem_from_scenario(one_store(**kw))
    opt = solve(prob).cost
    best = min(evaluate_base_stock(prob, S) for S in range(8, 26))
    assert opt <= best + 1e-9
    assert opt > 0.5 * best  # a real cost, not a degenerate zero


# Zipkin (2008), Table: Poisson(5), h = 1; optimal long-run average cost per period.
ZIPKIN = {(1, 4): 4.04, (2, 4): 4.40, (3, 4): 4.60, (4, 4): 4.73,
          (1, 9): 5.44, (2, 9): 6.09, (3, 9): 6.53, (4, 9): 6.84}


@pytest.mark.parametrize("L, p", sorted(ZIPKIN))
def test_zipkins_optimal_average_costs_are_reproduced_to_two_decimals(L, p):
    sol = solve(zipkin_problem(L, p), average=True)
    assert round(sol.average_cost, 2) == pytest.approx(ZIPKIN[L, p], abs=1e-9), sol.average_cost


def test_backorder_average_cost_with_no_fixed_cost_is_the_newsvendor_base_stock_cost():
    """With backorders and K = 0 a base-stock policy is optimal (Arrow, Harris & Marschak): the
    average cost equals the best level's stationary cost, computed here from the lead-time demand
    distribution directly, not by the solver's recursion."""
    from scipy import stats

    sc = one_store(shortage="backorder", lead_time=2, p=0.0, b=4.0)
    sol = solve(problem_from_scenario(sc), average=True)
    lt = stats.poisson(5.0 * 3)  # demand over L + 1 days
    k = np.arange(0, 80)
    pmf = lt.pmf(k)
    cost = [float((pmf * (1.0 * np.maximum(S - k, 0) + 4.0 * np.maximum(k - S, 0))).sum()) for S in range(40)]
    assert sol.average_cost == pytest.approx(min(cost), abs=1e-6)


@pytest.mark.parametrize("fields, words", [
    (dict(stores={"count": 3}), "3 stores"),
    (dict(random_lead_times={"enabled": True}), "random_lead_times"),
    (dict(warmup_days=5), "warmup_days"),
])
def test_scenarios_it_cannot_solve_are_refused_with_one_line(fields, words):
    sc = one_store()
    bad = sc.model_copy(update={k: type(getattr(sc, k)).model_validate(v) if hasattr(getattr(sc, k), "model_validate")
                                else v for k, v in fields.items()})
    with pytest.raises(ConfigError) as err:
        problem_from_scenario(bad)
    msg = str(err.value)
    assert words in msg and "\n" not in msg


def test_a_costly_or_short_upstream_is_refused():
    from conftest import DEFAULT_YAML
    from hmarl_rllib.sim.config import load_config

    with pytest.raises(ConfigError, match="stores"):
        problem_from_scenario(load_config(DEFAULT_YAML))
    sc = one_store()
    short = sc.model_copy(update={"warehouse": sc.warehouse.model_copy(update={"initial_inventory": 100})})
    with pytest.raises(ConfigError, match="initial_inventory"):
        problem_from_scenario(short)


def test_hmarl_optimum_prints_the_optimum_and_refuses_an_unsolvable_scenario():
    import json
    import subprocess

    from conftest import DEFAULT_YAML, HMARL, ROOT

    out = subprocess.run([str(HMARL), "optimum", "--config", str(ROOT / "configs" / "one_store.yaml"), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert round(res["average_cost"], 2) == 4.40  # the scenario is Zipkin's L = 2, p = 4 cell
    assert 0 < res["cost"] < 60 * 10
    bad = subprocess.run([str(HMARL), "optimum", "--config", str(DEFAULT_YAML)], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "3 stores" in bad.stderr


def test_paired_differences_separate_policies_whose_marginal_cis_overlap():
    """On the same seeds, base-stock 16 vs 17 on the one-store problem: the two 95% CIs overlap,
    the paired difference (common random numbers) is significant, with the exact costs' sign."""
    from hmarl_rllib.sim.reconciliation import paired_difference

    sc = one_store(days=60)
    seeds = simulate.eval_seeds(400)
    a = simulate.chain_cost(sc, base_stock_orders(16), seeds)
    b = simulate.chain_cost(sc, base_stock_orders(17), seeds)
    half = lambda x: 1.96 * x.std(ddof=1) / np.sqrt(len(x))  # noqa: E731
    assert abs(a.mean() - b.mean()) < half(a) + half(b)  # the marginal CIs overlap
    d = paired_difference(a, b)
    assert d["significant"] and d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    prob = problem_from_scenario(sc)
    exact = evaluate_base_stock(prob, 16) - evaluate_base_stock(prob, 17)
    assert np.sign(d["mean"]) == np.sign(exact) and d["ci95"][0] <= exact <= d["ci95"][1]


@pytest.mark.parametrize("kw", [dict(lead_time=2), dict(lead_time=1, p=9.0, init=0), dict(lead_time=0, init=3)])
def test_the_referees_orders_played_in_the_twin_cost_the_optimum(kw):
    """The referee reads the twin's state as the solver's: its optimal orders, played in the
    twin, cost the optimum (within the simulation's 95% CI), and lose nothing on any day."""
    from hmarl_rllib.experiments.learn_grid import gap_by_day
    from hmarl_rllib.policies.optimum import Referee

    sc = one_store(days=30, **kw)
    ref = Referee(problem_from_scenario(sc))
    assert ref.cost == pytest.approx(solve(problem_from_scenario(sc)).cost, rel=1e-12)

    def optimal(twin):
        zero = np.zeros((twin.batch, 1))
        q = ref.optimal_order(twin.day, twin.on_hand[:, 0, 0], twin.store_pipeline()[:, 0, 0, :])
        return q[:, None, None].astype(float), zero, zero

    seeds = simulate.eval_seeds(4000)
    costs = simulate.chain_cost(sc, optimal, seeds)
    half = 1.96 * costs.std(ddof=1) / np.sqrt(len(costs))
    assert abs(costs.mean() - ref.cost) <= half, (ref.cost, costs.mean(), half)
    split = gap_by_day(sc, ref, optimal, seeds[:200])
    assert split["gap"] == pytest.approx(0.0, abs=1e-9) and split["share_optimal_orders"] == 1.0


def test_the_day_by_day_gap_of_a_base_stock_policy_adds_up_to_its_exact_gap():
    """Performance difference: the referee's losses along a base-stock policy's path add up to
    that policy's exact expected cost minus the optimum (within their 95% CI)."""
    from hmarl_rllib.experiments.learn_grid import gap_by_day
    from hmarl_rllib.policies.optimum import Referee

    sc = one_store(lead_time=2, days=30)
    prob = problem_from_scenario(sc)
    ref = Referee(prob)
    exact_gap = evaluate_base_stock(prob, 17) - ref.cost
    split = gap_by_day(sc, ref, base_stock_orders(17), simulate.eval_seeds(3000))
    lo, hi = split["gap_ci95"]
    assert exact_gap > 1.0 and lo <= exact_gap <= hi, (exact_gap, split["gap_ci95"])
    assert split["first_days"] + split["middle"] + split["last_10_days"] == pytest.approx(split["gap"])
    assert 0.0 < split["share_optimal_orders"] < 1.0


@pytest.mark.parametrize("L, p, S", [(1, 9.0, 14), (2, 4.0, 16)])
def test_the_exact_average_cost_of_a_base_stock_level_is_the_twins_long_run_cost(L, p, S):
    """The average criterion of `hmarl learn-grid`: exact average cost per day of base-stock S
    against the twin's cost per day over 1,000 days after 100 warm-up days of the same rule."""
    from hmarl_rllib.policies.optimum import average_base_stock_cost

    sc = one_store(lead_time=L, p=p, days=1000, init=0)
    exact = average_base_stock_cost(problem_from_scenario(sc), S)
    long = sc.model_copy(update={"warmup_days": 100})
    per_day = simulate.chain_cost(long, base_stock_orders(S), simulate.eval_seeds(300)) / 1000
    half = 1.96 * per_day.std(ddof=1) / np.sqrt(len(per_day))
    assert abs(per_day.mean() - exact) <= half, (exact, per_day.mean(), half)
    assert half < 0.01 * exact  # a sharp check, not a wide CI
    # and no base-stock level beats the optimum: Zipkin's figure is below it
    assert solve(zipkin_problem(L, p), average=True).average_cost < exact


def test_the_best_average_base_stock_level_is_the_best_of_all_levels():
    from hmarl_rllib.experiments.learn_grid import best_average_base_stock
    from hmarl_rllib.policies.optimum import average_base_stock_cost

    prob = zipkin_problem(2, 9.0)
    costs = {S: average_base_stock_cost(prob, S) for S in range(5, 30)}
    for start in (8, 17, 26):
        S, c = best_average_base_stock(prob, start)
        assert S == min(costs, key=costs.get) and c == pytest.approx(min(costs.values()), abs=1e-12)


def test_an_average_criterion_cell_is_zipkins_problem_played_without_an_end():
    from hmarl_rllib.experiments.learn_grid import TRAIN_WARMUP, cell_scenario, format_grid
    from hmarl_rllib.sim.config import load_config

    base = load_config(ROOT / "configs" / "one_store_long_run.yaml")
    finite, endless = cell_scenario(base, 3, 9.0), cell_scenario(base, 3, 9.0, "average")
    assert (finite.horizon, finite.warmup_days) == ("finite", base.warmup_days)
    assert (endless.horizon, endless.warmup_days) == ("infinite", TRAIN_WARMUP) and endless.name.endswith("_avg")
    g = solve(problem_from_scenario(endless.model_copy(update={"warmup_days": 0})), average=True).average_cost
    assert round(g, 2) == ZIPKIN[3, 9]
    row = {"lead_time": 3, "penalty": 9.0, "optimum": g, "base_stock": 6.9, "learned": 6.6, "learned_over_optimum": 6.6 / g,
           "base_stock_over_optimum": 6.9 / g, "paired_learned_minus_base_stock": {"mean": -0.3, "ci95": [-0.31, -0.29]},
           "env_steps": 10, "minutes": 1.0, "learned_over_optimum_referee": 1 + 0.05 / g,
           "gap": {"gap_per_day": 0.05, "gap_ci95": [0.049, 0.051], "share_optimal_orders": 0.8}}
    text = format_grid({"criterion": "average", "rows": [row], "max_learned_over_optimum": 6.6 / g,
                        "median_learned_over_optimum": 6.6 / g})
    assert "average cost per day" in text and f"{g:.4f}" in text  # per-day costs to 4 decimals
    assert "average-cost referee" in text and f"{1 + 0.05 / g:.4f}" in text and "80.0%" in text
    assert "menu top" not in text
    row["gap"].update(menu_top=20, share_orders_at_menu_top=0.0123, share_optimum_above_menu_top=0.0045)
    text = format_grid({"criterion": "average", "rows": [row], "max_learned_over_optimum": 6.6 / g,
                        "median_learned_over_optimum": 6.6 / g})
    assert "optimum > top" in text and "1.23%" in text and "0.45%" in text


def test_the_average_referee_charges_a_base_stock_level_its_exact_excess_average_cost():
    """Played by base-stock S, the mean of the average referee's losses over the scored days
    (learn_grid.average_gap) is the rule's exact average cost minus the optimal one, and the
    referee's own orders lose nothing."""
    from hmarl_rllib.experiments.learn_grid import average_gap
    from hmarl_rllib.policies.optimum import AverageReferee, average_base_stock_cost

    sc = one_store(lead_time=2, p=9.0, days=400, init=0).model_copy(update={"warmup_days": 50})
    prob = problem_from_scenario(one_store(lead_time=2, p=9.0, days=400, init=0))
    ref = AverageReferee(prob)
    assert ref.cost == pytest.approx(ZIPKIN[2, 9], abs=0.005)
    S = 17
    exact = average_base_stock_cost(prob, S) - ref.cost
    seeds = simulate.eval_seeds(200)
    gap = average_gap(sc, ref, base_stock_orders(S), seeds)
    half = (gap["gap_ci95"][1] - gap["gap_ci95"][0]) / 2
    assert exact > 0.02 and abs(gap["gap_per_day"] - exact) <= max(half, 1e-3), (exact, gap)
    assert half < 0.02 * exact

    def optimal(twin):
        q = ref.optimal_order(twin.day, twin.on_hand[:, 0, 0], twin.store_pipeline()[:, 0, 0, :])
        zero = np.zeros((twin.batch, 1))
        return q.astype(float)[:, None, None], zero, zero

    best = average_gap(sc, ref, optimal, seeds)
    assert abs(best["gap_per_day"]) < 1e-9 and best["share_optimal_orders"] == 1.0
    assert "menu_top" not in best  # no menu given: nothing said about one


def test_the_average_referee_says_how_often_a_quantity_menu_binds():
    """With a menu top the optimum sometimes exceeds, average_gap reports it: the optimum played
    on the twin orders its top on the days the optimum would order more, and a menu far above
    every optimal order never binds."""
    from hmarl_rllib.experiments.learn_grid import average_gap, cell_scenario, quantity_menu_top
    from hmarl_rllib.policies.optimum import AverageReferee
    from hmarl_rllib.sim.config import load_config

    sc = one_store(lead_time=2, p=9.0, days=300, init=0).model_copy(update={"warmup_days": 50})
    ref = AverageReferee(problem_from_scenario(one_store(lead_time=2, p=9.0, days=300, init=0)))
    seeds = simulate.eval_seeds(50)

    def capped(top):
        def orders(twin):
            q = ref.optimal_order(twin.day, twin.on_hand[:, 0, 0], twin.store_pipeline()[:, 0, 0, :])
            zero = np.zeros((twin.batch, 1))
            return np.minimum(q, top).astype(float)[:, None, None], zero, zero
        return orders

    loose = average_gap(sc, ref, capped(100), seeds, menu_top=100)
    assert loose["share_optimum_above_menu_top"] == 0.0 and loose["share_orders_at_menu_top"] == 0.0
    tight = average_gap(sc, ref, capped(5), seeds, menu_top=5)
    assert 0.0 < tight["share_optimum_above_menu_top"] <= tight["share_orders_at_menu_top"] < 1.0
    assert tight["gap_per_day"] > 0.0  # a binding menu costs something
    base = load_config(ROOT / "configs" / "one_store_long_run.yaml")
    assert quantity_menu_top(cell_scenario(base, 2, 9.0, "average")) == 20  # ⌈3μ + 5⌉ for μ = 5
    assert quantity_menu_top(cell_scenario(base.model_copy(update={"actions": base.actions.model_copy(
        update={"store": base.actions.store.model_copy(update={"mode": "order_up_to"})})}), 2, 9.0)) is None


@pytest.mark.parametrize("content, words", [
    ("not json", "cannot read it as JSON"),
    ('{"criterion": "finite", "rows": [{"cell": "x"}]}', "--criterion average"),
    ('{"criterion": "average", "rows": [{"cell": "one_store_L4_p4_avg", "lead_time": 4, "penalty": 4,'
     ' "checkpoint": "/nonexistent/checkpoint_000001", "episodes": 10}]}', "checkpoint of one_store_L4_p4_avg is gone"),
])
def test_rescoring_refuses_what_it_cannot_score_in_one_line(tmp_path, content, words):
    import subprocess

    from conftest import HMARL

    f = tmp_path / "grid.json"
    f.write_text(content)
    proc = subprocess.run([str(HMARL), "learn-grid", "--rescore", str(f)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and words in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
