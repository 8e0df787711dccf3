"""The exact multi-echelon reference (issue 14, item 3): the Chen–Zheng recursion reproduces the
textbook's worked example, and the twin, run as the Clark–Scarf system (one store, customer and
internal backorders, unlimited production), reproduces the recursion's long-run cost of the
optimal echelon base-stock levels (and of deliberately poor ones) within the simulation's 95%
CI; the project's tuned echelon base-stock lands on the optimum.

Simulated costs are per day over long episodes after a warm-up; the CI is by batch means
(each replica's scored days cut into 20 batches, the batch means treated as independent).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hmarl_rllib.errors import ConfigError
from hmarl_rllib.policies import serial
from hmarl_rllib.policies.tuning import tune_policy
from hmarl_rllib.sim import SupplyChainTwin, simulate
from hmarl_rllib.sim.network import F

from conftest import scenario

COSTS = [F["holding_cost"], F["stockout_cost"], F["ordering_cost"]]
BATCHES = 20


def clark_scarf(episode_length=10_000, warmup_days=500, **over):
    """Supplier (production lead time 1) → warehouse (2 days) → one store (1 day), Poisson 5/day,
    installation holding 1 / 0.6 / 0.3, backorder cost 9 per unit-day, no stockout penalty,
    no fixed order costs, unlimited production, every shortage backordered."""
    cfg = dict(episode_length=episode_length, warmup_days=warmup_days, shortage="backorder",
               internal_shortage="backorder",
               skus=[{"name": "A", "holding_cost": {"store": 1.0, "warehouse": 0.6, "supplier": 0.3},
                      "stockout_penalty": 0.0, "backorder_cost": 9.0,
                      "ordering_cost": {"store": {"fixed": 0}, "warehouse": {"fixed": 0},
                                        "supplier": {"fixed": 0}}}],
               stores=[{"name": "shop", "lead_time": 1, "initial_inventory": 15,
                        "demand": {"model": "poisson", "mean": 5.0}}],
               warehouse={"lead_time": 2, "initial_inventory": 10},
               supplier={"lead_time": 1, "initial_inventory": 5, "production_capacity": 100_000},
               random_lead_times={"enabled": False})
    cfg.update(over)
    return scenario(**cfg)


def echelon_orders(S_store, S_warehouse, S_supplier):
    """Echelon base-stock written out here, apart from the project's rules: each echelon orders
    up to its level on its echelon inventory position (its own position + everything below)."""
    def orders(twin):
        sp = twin.store_position()  # (B, 1, 1)
        e_wh = twin.warehouse_position() + sp[:, 0]
        e_sup = twin.supplier_position() + e_wh
        return np.maximum(S_store - sp, 0), np.maximum(S_warehouse - e_wh, 0), np.maximum(S_supplier - e_sup, 0)
    return orders


def daily_cost(sc, order_fn, seeds):
    twin = simulate.run(sc, order_fn, seeds)
    return simulate.scored_ledger(twin)[..., COSTS].sum(axis=(2, 3, 4))  # (days, replicas)


def batch_means_ci(daily):
    bm = daily.reshape(BATCHES, -1, daily.shape[1]).mean(axis=1).ravel()
    half = stats.t.ppf(0.975, len(bm) - 1) * bm.std(ddof=1) / np.sqrt(len(bm))
    return bm.mean(), half


@pytest.fixture(scope="module")
def sc():
    return clark_scarf()


@pytest.fixture(scope="module")
def optimum(sc):
    return serial.solve_scenario(sc)


# ------------------------------------------------------------------------- the recursion
def test_recursion_reproduces_snyder_shen_example_6_1():
    # Snyder & Shen, Fundamentals of Supply Chain Theory (2nd ed.), Example 6.1: three stages,
    # echelon holding h = (3, 2, 2), lead times L = (1, 1, 2), stockout cost p = 37.12,
    # demand N(5, 1) per period: S* = (6.49, 12.02, 22.71), optimal cost 47.66 per period
    # (stockpyl's discretised solver: 47.67).
    sol = serial.chen_zheng(serial.textbook_problem((3, 2, 2), (1, 1, 2), 37.12, mean=5, std=1, step=0.01))
    np.testing.assert_allclose(sol.levels, [6.49, 12.02, 22.71], atol=0.011)
    assert sol.cost == pytest.approx(47.66, abs=0.01)
    assert sol.optimal
    # any other levels cost more, and evaluating the optimum's own levels gives its cost
    again = serial.chen_zheng(serial.textbook_problem((3, 2, 2), (1, 1, 2), 37.12, 5, 1, step=0.01),
                              levels=sol.levels)
    assert again.cost == pytest.approx(sol.cost, abs=1e-9)
    for dS in ([0.5, 0, 0], [0, -1, 0], [0, 0, 1], [-0.3, 0.3, -0.3]):
        worse = serial.chen_zheng(serial.textbook_problem((3, 2, 2), (1, 1, 2), 37.12, 5, 1, step=0.01),
                                  levels=sol.levels + np.array(dS))
        assert worse.cost > sol.cost + 1e-4


def test_the_scenario_maps_to_the_twin_windows_and_constant(sc, optimum):
    problem = serial.problem_from_scenario(sc)
    assert problem.notes["windows_days"] == (2, 2, 1)  # store: L + 1 days; warehouse; production
    # in-transit stock the twin does not charge: 5/day × (0.6 × (1 + 1) + 0.3 × 2)
    assert problem.notes["pipeline_constant"] == pytest.approx(5 * (0.6 * 2 + 0.3 * 2))
    assert optimum["cost_per_day"] == pytest.approx(optimum["recursion_cost"] - 9.0)
    assert optimum["store_S"] <= optimum["warehouse_S"] <= optimum["supplier_S"]


@pytest.mark.parametrize("change, why", [
    ({"shortage": "lost_sales"}, "lost_sales"),
    ({"internal_shortage": "cancel"}, "cancelled"),
    ({"stores": {"count": 2}}, "2 stores"),
    ({"supplier": {"lead_time": 1, "production_capacity": 8}}, "production_capacity"),
    ({"skus": [{"name": "A", "stockout_penalty": 4.0,
                "ordering_cost": {"store": {"fixed": 0}, "warehouse": {"fixed": 0}}}]}, "stockout_penalty"),
    ({"skus": [{"name": "A", "stockout_penalty": 0.0}]}, "fixed order cost"),
])
def test_a_scenario_that_is_not_clark_scarf_is_refused(change, why):
    with pytest.raises(ConfigError, match=why):
        serial.problem_from_scenario(clark_scarf(**change))


# ------------------------------------------------------------------ the twin reproduces it
def test_twin_reproduces_the_optimal_cost_within_its_ci(sc, optimum):
    levels = (optimum["store_S"], optimum["warehouse_S"], optimum["supplier_S"])
    daily = daily_cost(sc, echelon_orders(*levels), seeds=np.arange(8))
    mean, half = batch_means_ci(daily)
    exact = optimum["cost_per_day"]
    assert abs(mean - exact) <= half, f"twin {mean:.4f} ± {half:.4f} vs recursion {exact:.4f}"
    assert half < 0.02 * exact  # a CI tight enough to mean something
    # the project's echelon_base_stock rule with the same levels plays the same game
    rule = serial.echelon_policy(sc, optimum)
    np.testing.assert_allclose(daily_cost(sc, rule.orders, seeds=np.arange(2)), daily[:, :2])


def test_twin_reproduces_the_cost_of_poor_levels_where_the_backlog_binds(sc):
    # a warehouse echelon level below the store's: the warehouse is short most days, store
    # orders wait in the internal backlog; the recursion still gives the exact cost
    levels = (19.0, 17.0, 29.0)
    exact = serial.solve_scenario(sc, levels=levels)["cost_per_day"]
    twin = simulate.run(sc, echelon_orders(*levels), np.arange(8))
    led = simulate.scored_ledger(twin)
    assert (led[:, :, 1, 0, F["backorders"]] > 0).mean() > 0.5  # the internal backlog really binds
    mean, half = batch_means_ci(led[..., COSTS].sum(axis=(2, 3, 4)))
    assert abs(mean - exact) <= half, f"twin {mean:.4f} ± {half:.4f} vs recursion {exact:.4f}"
    assert exact > 1.3 * serial.solve_scenario(sc)["cost_per_day"]


# --------------------------------------------------------- tuning lands on the optimum
def test_tuned_echelon_base_stock_lands_on_the_optimum(sc, optimum):
    # tuned on moderate episodes (1,500 scored days after 200 warm-up days, 8 tuning seeds),
    # then scored exactly by the recursion and by simulation on long held-out episodes
    short = clark_scarf(episode_length=1_500, warmup_days=200)
    tuned = tune_policy(short, "echelon_base_stock", n_seeds=8, rounds=2)
    levels = (float(tuned.store_S[0, 0]), float(tuned.warehouse_S[0]), float(tuned.supplier_S[0]))
    exact_tuned = serial.solve_scenario(sc, levels=levels)["cost_per_day"]
    best = optimum["cost_per_day"]
    assert best <= exact_tuned <= 1.01 * best, (levels, exact_tuned, best)
    seeds = simulate.eval_seeds(4)
    d_tuned = daily_cost(sc, tuned.orders, seeds)
    d_opt = daily_cost(sc, echelon_orders(optimum["store_S"], optimum["warehouse_S"], optimum["supplier_S"]), seeds)
    mean, half = batch_means_ci(d_tuned - d_opt)  # paired on the same demand
    assert mean - half <= 0.01 * best  # not measurably more than 1% above the optimum
    assert d_tuned.mean() == pytest.approx(exact_tuned, rel=0.03)
