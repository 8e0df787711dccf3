"""Ledgers: the DataFrame view and its Parquet file round-trip through pandas and pyarrow, and
the reconciliation KPIs and rewards agree with the ledger rows they are computed from."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hmarl_rllib.policies.heuristics import rule_based_policy
from hmarl_rllib.sim import FIELDS, SupplyChainTwin, reconciliation, simulate, write_ledger
from hmarl_rllib.sim.network import F

from conftest import scenario


@pytest.fixture(scope="module")
def twin():
    sc = scenario(episode_length=12, warmup_days=3, shortage="backorder", skus=[{"name": "A"}, {"name": "B"}],
                  stores=[{"name": "north", "lead_time": 1}, {"name": "south", "lead_time": 0}])
    tw = simulate.run(sc, rule_based_policy(sc, "s_S").orders, [4, 5, 6])
    return tw


def test_ledger_frame_matches_the_array(twin):
    frame = twin.ledger_frame()
    T, B, M, K = 12, 3, 4, 2
    assert len(frame) == T * B * M * K
    assert frame["day"].min() == 3 and frame["day"].max() == 14  # warm-up days left out
    assert len(twin.ledger_frame(include_warmup=True)) == 15 * B * M * K
    row = frame[(frame.day == 7) & (frame.replica == 2) & (frame.node == "south") & (frame.sku == "B")]
    assert len(row) == 1 and row["seed"].item() == 6
    np.testing.assert_array_equal(row[list(FIELDS)].to_numpy()[0], twin.ledger[7, 2, 1, 1])


def test_parquet_round_trip_through_pandas_and_pyarrow(twin, tmp_path):
    frame = twin.ledger_frame()
    path = tmp_path / "ledger.parquet"
    write_ledger(frame, path)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, frame)
    table = pq.read_table(path)
    assert table.num_rows == len(frame)
    assert set(table.column_names) == set(frame.columns)
    for name in FIELDS:
        np.testing.assert_array_equal(table.column(name).to_numpy(), frame[name].to_numpy())
    assert table.column("node").to_pylist()[:4] == ["north", "north", "south", "south"]


def test_kpis_agree_with_the_ledger(twin):
    led = simulate.scored_ledger(twin)  # (T, B, M, K, F)
    nodes = reconciliation.node_kpis(led)
    chain = reconciliation.chain_kpis(led, twin.n_stores)
    frame = twin.ledger_frame()
    for r in range(3):
        for m, name in enumerate(twin.node_names()):
            sub = frame[(frame.replica == r) & (frame.node == name)]
            cost = sub[["holding_cost", "stockout_cost", "ordering_cost"]].to_numpy().sum()
            assert nodes["cost"][r, m] == pytest.approx(cost)
            fill = 1 - sub["unmet"].sum() / sub["demand"].sum() if sub["demand"].sum() else 1.0
            assert nodes["fill_rate"][r, m] == pytest.approx(fill)
            assert nodes["service_level"][r, m] == pytest.approx((sub["unmet"] <= 0).mean())
            daily = sub.groupby("day", observed=True)[["order_placed", "demand"]].sum()
            if daily["demand"].var(ddof=0) > 0:
                assert nodes["bullwhip"][r, m] == pytest.approx(daily["order_placed"].var(ddof=0)
                                                                / daily["demand"].var(ddof=0))
        rep = frame[frame.replica == r]
        assert chain["cost"][r] == pytest.approx(rep[["holding_cost", "stockout_cost", "ordering_cost"]].to_numpy().sum())
        stores = rep[rep.node.isin(["north", "south"])]
        assert chain["fill_rate"][r] == pytest.approx(1 - stores["unmet"].sum() / stores["demand"].sum())
    np.testing.assert_allclose(chain["store_cost"] + chain["warehouse_cost"] + chain["supplier_cost"], chain["cost"])


def _hand_ledger():
    """Two days, three episodes, stores north and south, a warehouse and a supplier, one SKU,
    with costs and demand set by hand: episode costs 10, 20 and 30 (all of it north's holding,
    except episode 2's 30: 24 holding + 6 ordering at the warehouse); north's demand 10 a day of
    which 2 unmet on day 0 of episode 0, south's demand 5 a day all served."""
    led = np.zeros((2, 3, 4, 1, len(FIELDS)))
    for b, c in enumerate((10.0, 20.0, 24.0)):
        led[:, b, 0, 0, F["holding_cost"]] = c / 2
    led[0, 2, 2, 0, F["ordering_cost"]] = 6.0
    led[:, :, 0, 0, F["demand"]], led[:, :, 1, 0, F["demand"]] = 10.0, 5.0
    led[0, 0, 0, 0, F["unmet"]] = 2.0
    return led


def test_the_summary_of_a_hand_made_ledger():
    s = reconciliation.summarize(_hand_ledger(), ["north", "south", "warehouse", "supplier"], 2)
    assert s["episodes"] == 3
    assert s["cost_mean"] == pytest.approx(20.0)
    half = 1.96 * 10.0 / np.sqrt(3)  # the three episode costs 10, 20, 30 have sample std 10
    assert s["cost_ci95"] == pytest.approx([20.0 - half, 20.0 + half])
    assert s["holding_cost_mean"] == pytest.approx(18.0) and s["ordering_cost_mean"] == pytest.approx(2.0)
    assert s["warehouse_cost_mean"] == pytest.approx(2.0) and s["store_cost_mean"] == pytest.approx(18.0)
    # episode 0: 28 of 30 store demand served (2 unmet of north's 20, south's 10 all served)
    assert s["fill_rate_mean"] == pytest.approx((28 / 30 + 1 + 1) / 3)
    # cycle service level: store-days with nothing unmet, 3 of 4 in episode 0
    assert s["service_level_mean"] == pytest.approx((0.75 + 1 + 1) / 3)
    assert s["per_agent"]["north"]["fill_rate"] == pytest.approx((18 / 20 + 1 + 1) / 3)
    assert set(s["per_agent"]["north"]) == set(reconciliation.KPI_COLUMNS)


@pytest.mark.parametrize("team_weight, expected", [
    (0.0, [-0.08, 0.0, -0.02, 0.0]),  # own cost only
    (1.0, [-0.025, -0.025, -0.025, -0.025]),  # the chain's cost 10 shared equally by 4 agents
    (0.5, [-0.0525, -0.0125, -0.0225, -0.0125]),  # half of each
])
def test_rewards_of_hand_made_costs(team_weight, expected):
    """One day: north's cost 8 (holding), the warehouse's 2 (ordering), cost_scale 0.01."""
    row = np.zeros((1, 4, 1, len(FIELDS)))
    row[0, 0, 0, F["holding_cost"]], row[0, 2, 0, F["ordering_cost"]] = 8.0, 2.0
    r = reconciliation.rewards(row, cost_scale=0.01, team_weight=team_weight)
    np.testing.assert_allclose(r[0, :, 0], expected)
    assert r.sum() == pytest.approx(-0.1)  # whatever the split, the agents share minus the scaled chain cost


def test_with_team_weight_0_another_agents_cost_does_not_move_my_reward(twin):
    row = twin.ledger[5].copy()
    before = reconciliation.rewards(row, cost_scale=0.01, team_weight=0.0)
    row[:, 2, :, F["stockout_cost"]] += 100.0  # the warehouse does worse
    after = reconciliation.rewards(row, cost_scale=0.01, team_weight=0.0)
    np.testing.assert_array_equal(after[:, [0, 1, 3]], before[:, [0, 1, 3]])
    np.testing.assert_allclose(after[:, 2] - before[:, 2], -1.0)
