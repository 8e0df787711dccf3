"""Demand models (sample statistics match the configured model) and demand files (round trip
into the twin; bad files refused with one clear line)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmarl_rllib.errors import DemandFileError
from hmarl_rllib.sim import SupplyChainTwin, load_demand_file, mean_path, sample_demand, write_demand_file

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


# ----------------------------------------------------------------- demand files split by date
def _day_file(tmp_path, days=200):
    """A demand file whose demand on day d is d (every store and SKU): a window shows its days."""
    table = np.broadcast_to(np.arange(days, dtype=float)[:, None, None], (days, 2, 2)).copy()
    path = tmp_path / "days.csv"
    write_demand_file(path, table, STORES, SKUS, start="2026-01-01")
    return path, table


@pytest.mark.parametrize("split", [
    {"train_until": "2026-04-30", "validate_until": "2026-06-09"},  # days 0..119 | 120..159 | 160..199
    {"train_fraction": 0.6, "validate_fraction": 0.2},
])
def test_a_split_demand_file_gives_each_seed_range_its_own_part(tmp_path, split):
    from hmarl_rllib.sim.demand import (EVAL_SEED_BASE, TUNE_SEED_BASE, VALIDATION_SEED_BASE, demand_parts,
                                        scored_dates)

    path, table = _day_file(tmp_path)
    sc = _file_scenario(path, days=30, warmup_days=2, demand_split=split)
    assert demand_parts(sc) == [(0, 120), (120, 160), (160, 200)]
    ranges = {"training": (np.arange(400), (0, 120)), "tuning": (TUNE_SEED_BASE + np.arange(400), (0, 120)),
              "validation": (VALIDATION_SEED_BASE + np.arange(400), (120, 160)),
              "held-out": (EVAL_SEED_BASE + np.arange(400), (160, 200))}
    for name, (seeds, (lo, hi)) in ranges.items():
        d = sample_demand(sc, seeds, 32)[..., 0, 0]  # (seeds, days): the day index of each window day
        assert d.min() >= lo and d.max() <= hi - 1, name  # no window crosses a boundary
        np.testing.assert_array_equal(np.diff(d, axis=1), 1.0)  # contiguous windows
        starts = set(d[:, 0].astype(int).tolist())
        assert min(starts) == lo and max(starts) == hi - 32, name  # and they reach both ends of the part
    # only the training part is averaged into the mean the observations and rules use
    np.testing.assert_allclose(sc.mean_demand(), table[:120].mean(axis=0))
    text = scored_dates(sc, EVAL_SEED_BASE + np.arange(10), 32)
    assert "test part 2026-06-10..2026-07-19" in text and "train" not in text


def test_a_split_too_short_for_an_episode_is_refused_with_the_numbers(tmp_path):
    path, _ = _day_file(tmp_path)
    sc = _file_scenario(path, days=50, demand_split={"train_until": "2026-04-30", "validate_until": "2026-06-09"})
    with pytest.raises(DemandFileError) as err:
        SupplyChainTwin(sc)
    msg = str(err.value)
    assert "\n" not in msg
    assert "validate part" in msg and "holds 40 days (2026-05-01..2026-06-09)" in msg and "needs 50" in msg
    assert "200 days (2026-01-01..2026-07-19)" in msg


def test_without_a_split_windows_come_from_the_whole_file_as_before(tmp_path):
    from hmarl_rllib.sim.demand import EVAL_SEED_BASE

    path, _ = _day_file(tmp_path)
    sc = _file_scenario(path, days=30)
    d = sample_demand(sc, EVAL_SEED_BASE + np.arange(400), 30)[..., 0, 0]
    assert d[:, 0].min() < 60 and d[:, 0].max() > 150  # held-out windows over the days training saw


def _m5_fixture(folder, days=120, seed=0):
    """A small file of the M5 competition's shape: sales_train_*.csv (id, item_id, dept_id,
    cat_id, store_id, state_id, d_1..d_N) and calendar.csv (date, wm_yr_wk, weekday, ..., d)."""
    rng = np.random.default_rng(seed)
    items, m5_stores = ["FOODS_1_001", "FOODS_1_002", "HOBBIES_1_001"], ["CA_1", "CA_2", "TX_1"]
    rows = []
    for st in m5_stores:
        for it in items:
            sales = rng.poisson(3 + items.index(it), days)
            rows.append({"id": f"{it}_{st}_validation", "item_id": it, "dept_id": it[:-4], "cat_id": it.split("_")[0],
                         "store_id": st, "state_id": st[:2], **{f"d_{d + 1}": int(v) for d, v in enumerate(sales)}})
    sales = pd.DataFrame(rows)
    sales.to_csv(folder / "sales_train_validation.csv", index=False)
    dates = pd.date_range("2011-01-29", periods=days + 30, freq="D")  # the calendar runs past the sales, as M5's does
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "wm_yr_wk": 11101, "weekday": dates.day_name(),
                  "wday": 1, "month": dates.month, "year": dates.year, "d": [f"d_{i + 1}" for i in range(len(dates))],
                  "event_name_1": None}).to_csv(folder / "calendar.csv", index=False)
    return sales


def test_the_m5_layout_is_read_directly_with_its_calendar(tmp_path):
    """A scenario pointed at files of the M5 competition's shape (stores named by store_id, SKUs
    by item_id) plays their unit sales, dated by calendar.csv, split by date like any file."""
    from hmarl_rllib.sim.demand import demand_file_dates, scenario_demand_table

    sales = _m5_fixture(tmp_path)
    fields = dict(demand_file=str(tmp_path / "sales_train_validation.csv"), episode_length=20,
                  skus=[{"name": "FOODS_1_001"}, {"name": "HOBBIES_1_001"}], stores=[{"name": "CA_1"}, {"name": "TX_1"}])
    sc = scenario(**fields, demand_split={"train_until": "2011-04-08", "validate_until": "2011-05-08"})
    table = scenario_demand_table(sc)  # (days, stores, SKUs) in the scenario's order
    assert table.shape == (120, 2, 2)
    for i, st in enumerate(["CA_1", "TX_1"]):
        for k, it in enumerate(["FOODS_1_001", "HOBBIES_1_001"]):
            row = sales[(sales.store_id == st) & (sales.item_id == it)].iloc[0]
            np.testing.assert_array_equal(table[:, i, k], row[[f"d_{d}" for d in range(1, 121)]].to_numpy(float))
    dates = demand_file_dates(sc)
    assert str(dates[0].date()) == "2011-01-29" and len(dates) == 120
    SupplyChainTwin(sc).reset([0, 1])  # the split fits: 70 | 30 | 20 days
    # without its calendar the layout is refused in one line; so are stores the file does not hold
    (tmp_path / "calendar.csv").unlink()
    with pytest.raises(DemandFileError, match="needs its calendar"):
        scenario_demand_table(scenario(**fields))
    _m5_fixture(tmp_path)
    with pytest.raises(DemandFileError, match="no row has a store_id"):
        scenario_demand_table(scenario(**{**fields, "stores": [{"name": "WI_9"}]}))
