"""State files (issue 17, item 2): a twin day written as a table and rebuilt from it.

A state rebuilt from its table is observed exactly as the twin day it was written from, every
rule orders the same on it, and the twin places the same orders for the same requests, on
scenarios that exercise every part of the state (several SKUs, backorders, internal backorders,
random lead times, capacities, warm-up, seasonal demand), through CSV and Parquet. A malformed
state file is refused with one line naming the column and the row, exit 2.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hmarl_rllib.policies.heuristics import rule_based_policy
from hmarl_rllib.rl.observe import ObservationBuilder
from hmarl_rllib.sim import SupplyChainTwin
from hmarl_rllib.sim.config import load_config
from hmarl_rllib.sim.network import F
from hmarl_rllib.sim.state import StateFileError, read_state, state_frame, twin_from_state

from conftest import DEFAULT_YAML, ROOT, scenario

SCENARIOS = {
    "default": lambda: load_config(DEFAULT_YAML),
    "seasonal": lambda: load_config(ROOT / "configs" / "seasonal.yaml"),
    "two_skus_internal_backorders": lambda: scenario(
        episode_length=30, warmup_days=3, shortage="backorder", internal_shortage="backorder",
        random_lead_times={"enabled": True, "probability": 0.4}, skus=[{"name": "A"}, {"name": "B"}],
        observations={"mode": "rich"},
        stores={"count": 2, "lead_time": 2, "capacity": 400, "demand": {"A": {"mean": 60}, "B": {"mean": 20}}},
        warehouse={"capacity": 3000, "lead_time": 3}, supplier={"production_capacity": 150, "lead_time": 2}),
}


def _last_orders(tw):
    N, K = tw.n_stores, tw.n_skus
    if tw.day == 0:
        return np.zeros((tw.batch, N, K)), np.zeros((tw.batch, K))
    row = tw.ledger[tw.day - 1]
    return row[:, :N, :, F["order_placed"]], row[:, N, :, F["order_placed"]]


def _one(x, b):
    return np.asarray(x)[b: b + 1]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_rebuilt_state_is_observed_and_ordered_on_as_the_twin_day(name, tmp_path):
    sc = SCENARIOS[name]()
    rule = rule_based_policy(sc, "s_S")
    build = ObservationBuilder(sc)
    tw = SupplyChainTwin(sc)
    B = 4
    tw.reset(np.arange(B) + 7)
    rng = np.random.default_rng(0)
    checked = nonzero = 0
    while not tw.done:
        so, wo, pr = rule.orders(tw)
        # perturbed rule orders: states away from the rule's own path too
        so = so * rng.uniform(0.5, 1.5, so.shape) + rng.integers(0, 30, so.shape)
        wo, pr = wo * rng.uniform(0.5, 1.5, wo.shape), pr * rng.uniform(0.5, 1.5, pr.shape)
        if tw.day % 5 == 2:
            obs = build(tw, *_last_orders(tw))
            ref_orders = rule.orders(tw)
            requests = (so, wo, pr)
            placed = tw.placed_orders(*requests)
            for b in range(B):
                frame = state_frame(tw, b)
                if checked % 3 == 0:  # through a file, both formats
                    path = tmp_path / f"s{checked}.{'csv' if checked % 2 else 'parquet'}"
                    frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_parquet(path, index=False)
                    frame = read_state(path)
                rt, last_s, last_w = twin_from_state(sc, frame)
                assert rt.day == tw.day
                got = build(rt, last_s, last_w)
                for kind in obs:
                    np.testing.assert_array_equal(got[kind], obs[kind][b: b + 1], err_msg=f"{kind} day {tw.day}")
                for mine, theirs in zip(rule.orders(rt), ref_orders):
                    np.testing.assert_array_equal(mine, _one(theirs, b))
                for mine, theirs in zip(rt.placed_orders(*(_one(r, b) for r in requests)), placed):
                    np.testing.assert_array_equal(mine, _one(theirs, b))
                np.testing.assert_array_equal(rt.store_position(), _one(tw.store_position(), b))
                np.testing.assert_array_equal(rt.warehouse_position(), _one(tw.warehouse_position(), b))
                np.testing.assert_array_equal(rt.supplier_position(), _one(tw.supplier_position(), b))
                nonzero += int(frame[[c for c in frame.columns if c.startswith("arriving_in")]].to_numpy().sum() > 0)
                checked += 1
        tw.step(so, wo, pr)
    assert checked >= 20 and nonzero >= checked // 2  # states with stock in transit, not empty ones


def test_a_rebuilt_state_simulates_the_next_day_as_the_twin_does():
    sc = SCENARIOS["two_skus_internal_backorders"]()
    rule = rule_based_policy(sc, "s_S")
    tw = SupplyChainTwin(sc)
    tw.reset([3])
    for _ in range(11):
        tw.step(*rule.orders(tw))
    rt, _, _ = twin_from_state(sc, state_frame(tw))
    rt.demand[:, tw.day] = tw.demand[:, tw.day]
    rt.extra_store[:], rt.extra_wh[:] = tw.extra_store, tw.extra_wh
    orders = rule.orders(tw)
    np.testing.assert_array_equal(rt.step(*orders), tw.step(*orders))


def _good_frame(sc=None):
    sc = sc or load_config(DEFAULT_YAML)
    tw = SupplyChainTwin(sc)
    tw.reset([5])
    rule = rule_based_policy(sc, "s_S")
    for _ in range(9):
        tw.step(*rule.orders(tw))
    return sc, state_frame(tw)


def _break(frame, case):
    f = frame.copy()
    if case == "missing_column":
        return f.drop(columns=["arriving_in_2d"]), "column 'arriving_in_2d' is missing"
    if case == "negative_stock":
        f.loc[1, "on_hand"] = -3
        return f, "on_hand: row 2 (store_2, A) is -3"
    if case == "unknown_store":
        f.loc[2, "node"] = "store_9"
        return f, "node: row 3 names 'store_9'"
    if case == "wrong_sku":
        f.loc[0, "sku"] = "B"
        return f, "sku: row 1 names 'B'"
    if case == "duplicate":
        f.loc[2, "node"] = "store_2"
        return f, "rows 2 and 3 are both (store_2, A)"
    if case == "missing_row":
        return f.drop(index=4), "no row for (supplier, A)"
    if case == "not_a_number":
        f["demand_3d_ago"] = f["demand_3d_ago"].astype(object)
        f.loc[0, "demand_3d_ago"] = "lots"
        return f, "demand_3d_ago: row 1 (store_1, A) is 'lots', not a number"
    if case == "two_days":
        f.loc[3, "day"] = 10
        return f, "day: row 4 (warehouse, A) is 10"
    if case == "past_horizon":
        f["day"] = 500
        return f, "day: 500 is past"
    if case == "beyond_lead_time":
        f.loc[0, "arriving_in_7d"] = 5
        return f, "arriving_in_7d: row 1 (store_1, A) is 5, but nothing reaches store_1 more than"
    if case == "upstream_demand":
        f.loc[3, "demand_1d_ago"] = 4
        return f, "demand_1d_ago: row 4 (warehouse, A) is 4"
    if case == "unknown_column":
        f["colour"] = 1
        return f, "unknown column 'colour'"
    raise AssertionError(case)


CASES = ["missing_column", "negative_stock", "unknown_store", "wrong_sku", "duplicate", "missing_row",
         "not_a_number", "two_days", "past_horizon", "beyond_lead_time", "upstream_demand", "unknown_column"]


@pytest.mark.parametrize("case", CASES)
def test_a_malformed_state_is_refused_naming_the_column_and_row(case):
    sc, good = _good_frame()
    twin_from_state(sc, good)  # the unbroken frame is accepted
    bad, message = _break(good, case)
    with pytest.raises(StateFileError) as err:
        twin_from_state(sc, bad, "--state s.csv")
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith("--state s.csv: ")


def test_backorders_in_a_lost_sales_state_and_owed_units_without_internal_backorders_are_refused():
    sc, good = _good_frame()
    assert sc.shortage == "lost_sales" and sc.internal_shortage == "cancel"
    for col, msg in (("backorders", "loses unmet demand"), ("owed", "cancels unfilled internal orders")):
        bad = good.copy()
        bad.loc[0, col] = 2
        with pytest.raises(StateFileError, match=msg):
            twin_from_state(sc, bad)
    # both columns may be left out where they can only be 0
    twin_from_state(sc, good.drop(columns=["backorders", "owed"]))


def test_a_bad_state_file_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    """Before any policy is loaded, a state file that does not exist or cannot be parsed."""
    (tmp_path / "s.txt").write_text("x")
    (tmp_path / "broken.parquet").write_text("not parquet")
    for state in ("nope.csv", "s.txt", "broken.parquet"):
        path = tmp_path / state
        with pytest.raises(StateFileError) as err:
            read_state(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
    proc = subprocess.run([sys.executable, "-m", "hmarl_rllib", "recommend", "--policy", str(tmp_path),
                           "--state", str(tmp_path / "s.csv")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "--policy" in proc.stderr, proc.stderr
