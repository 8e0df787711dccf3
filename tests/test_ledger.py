"""Ledgers: the DataFrame view and its Parquet file round-trip through pandas and pyarrow, and
the reconciliation KPIs and rewards agree with the ledger rows they are computed from."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hmarl_rllib import reconciliation, simulate
from hmarl_rllib.policies.heuristics import rule_based_policy
from hmarl_rllib.twin import FIELDS, SupplyChainTwin, write_ledger
from hmarl_rllib.twin.network import F

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


def test_summary_has_the_promised_fields(twin):
    s = reconciliation.summarize(simulate.scored_ledger(twin), twin.node_names(), twin.n_stores)
    assert s["episodes"] == 3
    lo, hi = s["cost_ci95"]
    assert lo <= s["cost_mean"] <= hi
    assert 0 <= s["fill_rate_mean"] <= 1 and 0 <= s["service_level_mean"] <= 1
    assert set(s["per_agent"]) == {"north", "south", "warehouse", "supplier"}
    assert set(s["per_agent"]["north"]) == set(reconciliation.KPI_COLUMNS)


@pytest.mark.parametrize("team_weight", [0.0, 0.3, 1.0])
def test_rewards_mix_own_and_chain_cost(twin, team_weight):
    row = twin.ledger[5]  # (B, M, K, F)
    r = reconciliation.rewards(row, cost_scale=0.01, team_weight=team_weight)
    own = row[..., F["holding_cost"]] + row[..., F["stockout_cost"]] + row[..., F["ordering_cost"]]
    chain = own.sum(axis=(1, 2), keepdims=True)
    n = own.shape[1] * own.shape[2]
    np.testing.assert_allclose(r, -0.01 * ((1 - team_weight) * own + team_weight * chain / n))
    # summed over agents the reward is always minus the scaled chain cost
    np.testing.assert_allclose(r.sum(axis=(1, 2)), -0.01 * chain[:, 0, 0])
