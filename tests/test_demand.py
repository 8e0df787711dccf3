"""Demand models (sample statistics match the configured model) and demand files (round trip
into the twin; bad files refused with one clear line)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmarl_rllib.errors import DemandFileError
from hmarl_rllib.twin import SupplyChainTwin, load_demand_file, mean_path, sample_demand, write_demand_file

from conftest import scenario

DAYS = 700


def _draw(demand, seeds=range(4), days=DAYS, **fields):
    sc = scenario(stores={"count": 1, "demand": demand}, **fields)
    return sc, sample_demand(sc, list(seeds), days)[:, :, 0, 0]  # (B, days)


def _se(x):
    return x.std() / np.sqrt(x.size)


def test_poisson_mean_and_variance():
    _, d = _draw({"model": "poisson", "mean": 20})
    assert abs(d.mean() - 20) < 5 * _se(d)
    assert 0.85 < d.var() / 20 < 1.15
    assert (d == np.rint(d)).all() and (d >= 0).all()


def test_normal_mean_std_rounded_and_floored():
    _, d = _draw({"model": "normal", "mean": 50, "std": 8})
    assert abs(d.mean() - 50) < 5 * _se(d)
    assert 7.3 < d.std() < 8.7
    assert (d == np.rint(d)).all()
    _, low = _draw({"model": "normal", "mean": 1, "std": 5})
    assert low.min() == 0 and (low >= 0).all() and (low == 0).mean() > 0.3


def test_negative_binomial_variance():
    mu, r = 30.0, 3.0
    _, d = _draw({"model": "negative_binomial", "mean": mu, "dispersion": r}, seeds=range(8))
    assert abs(d.mean() - mu) < 5 * _se(d)
    expected_var = mu + mu**2 / r  # 330: far above Poisson's 30
    assert 0.85 < d.var() / expected_var < 1.15


def test_weekly_seasonality_ratio():
    weekly = [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 0.5]
    sc, d = _draw({"mean": 40, "weekly": weekly}, days=7 * 100, start_weekday=0)
    by_dow = d.reshape(d.shape[0], -1, 7).mean(axis=(0, 1))
    np.testing.assert_allclose(by_dow / by_dow[:5].mean(), weekly, rtol=0.08)
    # start_weekday shifts the calendar: day 0 is a Saturday
    sc2 = scenario(stores={"count": 1, "demand": {"mean": 40, "weekly": weekly}}, start_weekday=5)
    assert mean_path(sc2, 3)[:, 0, 0].tolist() == [80.0, 20.0, 40.0]


def test_trend_and_yearly_season_in_the_mean_path():
    sc = scenario(stores={"count": 1, "demand": {"mean": 10, "trend_per_day": 0.01}})
    path = mean_path(sc, 101)[:, 0, 0]
    assert path[0] == pytest.approx(10) and path[100] == pytest.approx(20)
    _, d = _draw({"mean": 10, "trend_per_day": 0.01}, days=400, seeds=range(8))
    early, late = d[:, :50].mean(), d[:, -50:].mean()
    assert late / early == pytest.approx((1 + 0.01 * 375) / (1 + 0.01 * 24.5), rel=0.1)
    sc = scenario(stores={"count": 1, "demand": {"mean": 10, "yearly_amplitude": 0.5, "yearly_peak_day": 100}})
    path = mean_path(sc, 365)[:, 0, 0]
    assert path.argmax() == 100 and path.max() == pytest.approx(15) and path.min() == pytest.approx(5, rel=1e-3)


def test_fixed_and_random_promotions():
    sc = scenario(stores={"count": 1, "demand": {"mean": 10, "promotions": {"days": [3], "duration_days": 2,
                                                                             "multiplier": 3}}})
    assert mean_path(sc, 7)[:, 0, 0].tolist() == [10, 10, 10, 30, 30, 10, 10]
    p, dur, mult = 0.05, 3, 4.0
    _, d = _draw({"mean": 20, "promotions": {"probability": p, "duration_days": dur, "multiplier": mult}},
                 seeds=range(8))
    share_active = 1 - (1 - p) ** dur  # a day is in a promotion if one started in the last `dur` days
    expected = 20 * (1 + (mult - 1) * share_active)
    assert d.mean() == pytest.approx(expected, rel=0.05)
    _, plain = _draw({"mean": 20})
    assert d.mean() > plain.mean() * 1.3


def test_per_store_and_per_sku_models():
    sc = scenario(skus=[{"name": "A"}, {"name": "B"}],
                  stores=[{"name": "x", "demand": {"A": {"mean": 5}, "B": {"model": "normal", "mean": 50, "std": 1}}},
                          {"name": "y", "demand": {"model": "negative_binomial", "mean": 100, "dispersion": 2}}])
    d = sample_demand(sc, [1, 2], 300)
    means = d.mean(axis=(0, 1))
    np.testing.assert_allclose(means, [[5, 50], [100, 100]], rtol=0.1)
    np.testing.assert_allclose(sc.mean_demand(), [[5, 50], [100, 100]])


def test_seed_fixes_the_demand_path():
    sc = scenario(stores={"count": 3})
    a, b = sample_demand(sc, [7, 8], 30), sample_demand(sc, [8, 7, 7], 30)
    np.testing.assert_array_equal(a[0], b[1])
    np.testing.assert_array_equal(a[0], b[2])
    np.testing.assert_array_equal(a[1], b[0])
    assert not np.array_equal(a[0], a[1])


# ------------------------------------------------------------------------- demand files
STORES, SKUS = ["s1", "s2"], ["A", "B"]


def _file_scenario(path, days=10, **extra):
    return scenario(demand_file=str(path), episode_length=days, skus=[{"name": k} for k in SKUS],
                    stores=[{"name": s} for s in STORES], **extra)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_demand_file_round_trip_into_the_twin(tmp_path, suffix):
    table = np.random.default_rng(0).integers(0, 100, (40, 2, 2)).astype(float)
    path = tmp_path / f"demand{suffix}"
    write_demand_file(path, table, STORES, SKUS)
    np.testing.assert_array_equal(load_demand_file(str(path), tuple(STORES), tuple(SKUS)), table)
    sc = _file_scenario(path, days=10, warmup_days=2)
    twin = SupplyChainTwin(sc)
    twin.reset([1, 2, 3])
    for r in range(3):  # each replica plays a contiguous 12-day window of the file
        window = twin.demand[r]
        starts = [s for s in range(40 - 12 + 1) if np.array_equal(table[s:s + 12], window)]
        assert starts, "replica demand is not a window of the file"
    while not twin.done:
        twin.step(50, 100, 100)
    np.testing.assert_array_equal(twin.ledger[:, :, :2, :, 3], np.moveaxis(twin.demand, 1, 0))
    np.testing.assert_allclose(sc.mean_demand(), table.mean(axis=0))


def test_rewritten_demand_file_is_reread(tmp_path):
    path = tmp_path / "d.csv"
    write_demand_file(path, np.full((20, 2, 2), 5.0), STORES, SKUS)
    assert load_demand_file(str(path), tuple(STORES), tuple(SKUS)).max() == 5
    write_demand_file(path, np.full((21, 2, 2), 9.0), STORES, SKUS)
    assert load_demand_file(str(path), tuple(STORES), tuple(SKUS)).max() == 9


def _good_frame():
    dates = pd.date_range("2026-01-01", periods=5).strftime("%Y-%m-%d")
    rows = [(d, s, k, 10.0) for d in dates for s in STORES for k in SKUS]
    return pd.DataFrame(rows, columns=["date", "store", "sku", "demand"])


def _break(kind):
    df = _good_frame()
    if kind == "missing column":
        return df.drop(columns="sku"), "missing column"
    if kind == "negative":
        df.loc[3, "demand"] = -1
        return df, "row 3: demand = -1"
    if kind == "NaN":
        df.loc[4, "demand"] = np.nan
        return df, "row 4: demand"
    if kind == "not a number":
        df["demand"] = df["demand"].astype(object)
        df.loc[2, "demand"] = "lots"
        return df, "row 2: demand = 'lots'"
    if kind == "unknown store":
        df.loc[0, "store"] = "s9"
        return df, "unknown store(s) ['s9']"
    if kind == "unknown sku":
        df.loc[0, "sku"] = "Q"
        return df, "unknown SKU(s) ['Q']"
    if kind == "duplicate row":
        return pd.concat([df, df.iloc[[5]]], ignore_index=True), "duplicate"
    if kind == "gap":
        day = df["date"].unique()[2]
        return df[df["date"] != day], "no row for date 2026-01-03"
    if kind == "missing store rows":
        return df[df["store"] != "s2"], "'s2'"
    if kind == "bad date":
        df.loc[1, "date"] = "someday"
        return df, "row 1: date = 'someday'"
    raise AssertionError(kind)


BAD_FILES = ["missing column", "negative", "NaN", "not a number", "unknown store", "unknown sku", "duplicate row",
             "gap", "missing store rows", "bad date"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_demand_file_is_refused_with_one_line(tmp_path, kind, suffix):
    df, expect = _break(kind)
    path = tmp_path / f"bad{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        if kind == "not a number":
            df["demand"] = df["demand"].astype(str)
        df.to_parquet(path, index=False)
    with pytest.raises(DemandFileError) as info:
        load_demand_file(str(path), tuple(STORES), tuple(SKUS))
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    assert expect in msg, msg


def test_too_short_or_missing_file_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    write_demand_file(path, np.ones((5, 2, 2)), STORES, SKUS)
    with pytest.raises(DemandFileError, match="holds 5 days but an episode needs 6"):
        SupplyChainTwin(_file_scenario(path, days=6)).reset([0])
    with pytest.raises(DemandFileError, match="no such file"):
        load_demand_file(str(tmp_path / "none.csv"), tuple(STORES), tuple(SKUS))
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DemandFileError, match="unknown extension"):
        load_demand_file(str(tmp_path / "d.xlsx"), tuple(STORES), tuple(SKUS))
