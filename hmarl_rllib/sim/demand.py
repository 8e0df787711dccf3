"""Customer demand at the stores: parametric models and demand files.

Every replica (independent episode) draws its whole demand path at reset from its own seed,
so a seed names one demand trace whatever batch it is simulated in: policies compared on the
same seeds see exactly the same customers.

Models (per store and SKU, see :class:`hmarl_rllib.sim.config.DemandModel`): Poisson, normal
(rounded, floored at 0), negative binomial (variance μ + μ²/r), with multiplicative weekly and
yearly seasonality, a linear trend and promotions / shocks. A demand file (CSV or Parquet with
columns ``date, store, sku, demand``) replaces the models: each replica plays a window of the
file starting at a seed-dependent day.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from hmarl_rllib.errors import ConfigError, DemandFileError

DEMAND_COLUMNS = ("date", "store", "sku", "demand")

# The seed ranges (documented in hmarl_rllib.sim.simulate, which uses them): a demand file split by
# date (``demand_split``) gives each range its own part of the file.
TUNE_SEED_BASE = 1_000_000  # baseline tuning: below VALIDATION_SEED_BASE, like RL training
VALIDATION_SEED_BASE = 1_500_000  # the evaluations that choose the checkpoint
EVAL_SEED_BASE = 2_000_000  # held-out evaluation
PARTS = ("train", "validate", "test")
TAIL_MASS = 1e-9  # demand mass beyond a truncated day distribution (lumped on its largest value)


def seed_parts(seeds) -> np.ndarray:
    """Which part of a split demand file each seed draws from: 0 train (RL training and
    baseline tuning), 1 validate (checkpoint choice), 2 test (held-out evaluation)."""
    seeds = np.asarray(seeds, dtype=np.int64)
    return (seeds >= VALIDATION_SEED_BASE).astype(np.int64) + (seeds >= EVAL_SEED_BASE)


def demand_parts(scenario) -> list[tuple[int, int]] | None:
    """The day ranges [lo, hi) of the train, validate and test parts of a scenario's demand
    file (``demand_split``), or None without a split."""
    sp = scenario.demand_split
    if sp is None or not scenario.demand_file:
        return None
    dates = demand_file_dates(scenario)
    T = len(dates)
    if sp.train_fraction is not None:
        a = int(round(T * sp.train_fraction))
        b = a + int(round(T * sp.validate_fraction))
    else:
        a = int(dates.searchsorted(pd.Timestamp(sp.train_until), side="right"))
        b = int(dates.searchsorted(pd.Timestamp(sp.validate_until), side="right"))
    return [(0, a), (a, b), (b, T)]


def check_demand_split(scenario, days: int) -> None:
    """Refuse, with the numbers, a split whose parts cannot each hold one window of ``days``."""
    parts = demand_parts(scenario)
    if parts is None:
        return
    dates = demand_file_dates(scenario)
    for name, (lo, hi) in zip(PARTS, parts):
        if hi - lo < days:
            span = f"{dates[lo].date()}..{dates[hi - 1].date()}" if hi > lo else "no days"
            raise DemandFileError(
                f"demand_split: the {name} part of {scenario.demand_file} holds {hi - lo} days ({span}) but an"
                f" episode needs {days} (warmup_days + episode_length); the file has {len(dates)} days"
                f" ({dates[0].date()}..{dates[-1].date()}): move the split dates, add days or shorten the episode")


def scored_dates(scenario, seeds, days: int) -> str | None:
    """Which dates of the demand file the windows of ``seeds`` come from, for tables."""
    if not scenario.demand_file:
        return None
    dates = demand_file_dates(scenario)
    parts = demand_parts(scenario)
    which = sorted(set(seed_parts(seeds).tolist())) if parts is not None else []
    if parts is None:
        return (f"demand: windows of {days} days from {Path(scenario.demand_file).name},"
                f" {dates[0].date()}..{dates[-1].date()} (no demand_split: the days training saw too)")
    spans = [f"{PARTS[p]} part {dates[parts[p][0]].date()}..{dates[parts[p][1] - 1].date()}" for p in which]
    return f"demand: windows of {days} days from {Path(scenario.demand_file).name}, {', '.join(spans)}"


def mean_path(scenario, days: int) -> np.ndarray:
    """Deterministic mean demand per day, store and SKU, shape (days, N, K).

    Includes weekly/yearly seasonality, trend and fixed promotion days; random promotions are
    added per replica in :func:`sample_demand`. For a demand file: the file's mean per store/SKU.
    """
    stores, skus = scenario.store_list, scenario.skus
    n, k = len(stores), len(skus)
    if scenario.demand_file:
        table = scenario_demand_table(scenario)
        parts = demand_parts(scenario)
        if parts is not None:  # the training part only: nothing is fitted on held-out days
            table = table[parts[0][0]: parts[0][1]]
        return np.broadcast_to(table.mean(axis=0), (days, n, k)).copy()
    t = np.arange(days)
    dow = (t + scenario.start_weekday) % 7
    out = np.empty((days, n, k))
    for i in range(n):
        for j in range(k):
            m = scenario.store_demand(i, j)
            mu = np.full(days, m.mean, dtype=float)
            if m.weekly is not None:
                mu *= np.asarray(m.weekly)[dow]
            if m.yearly_amplitude:
                mu *= 1.0 + m.yearly_amplitude * np.cos(2 * np.pi * (t - m.yearly_peak_day) / 365.0)
            if m.trend_per_day:
                mu *= np.maximum(0.0, 1.0 + m.trend_per_day * t)
            for d in m.promotions.days:
                mu[d: d + m.promotions.duration_days] *= m.promotions.multiplier
            out[:, i, j] = mu
    return out


def day_pmf(model: str, mean: float, std: float | None = None, dispersion: float | None = None,
            tail_mass: float = TAIL_MASS, d_max: int | None = None) -> np.ndarray:
    """The twin's demand distribution for one day (the models of :class:`DemandSampler`),
    truncated at the smallest d_max whose upper tail is <= ``tail_mass``, the tail lumped on d_max."""
    from scipy import stats  # here, not at import: the twin itself does not need scipy

    if model == "poisson":
        dist = stats.poisson(max(mean, 0.0))
        cdf = dist.cdf
    elif model == "normal":
        sd = float(std or 0.0)
        if sd == 0.0:
            k = int(np.rint(max(mean, 0.0)))
            out = np.zeros((d_max or k) + 1)
            out[min(k, len(out) - 1)] = 1.0
            return out

        def cdf(k):  # max(0, rint(N(mean, sd))) <= k  <=>  N < k + 0.5
            return stats.norm.cdf((np.asarray(k) + 0.5 - mean) / sd)
    elif model == "negative_binomial":
        r = float(dispersion or 1.0)
        m = max(mean, 1e-9)
        dist = stats.nbinom(r, r / (r + m))
        cdf = dist.cdf
    else:
        raise ConfigError(f"demand model {model!r}: known models are poisson, normal and negative_binomial")
    if d_max is None:
        d_max = 0
        while 1.0 - float(cdf(d_max)) > tail_mass:
            d_max = max(d_max * 2, 1) if d_max < 8 else d_max + max(1, d_max // 8)
        lo = 0
        while lo < d_max:  # smallest d with tail <= tail_mass
            mid = (lo + d_max) // 2
            if 1.0 - float(cdf(mid)) <= tail_mass:
                d_max = mid
            else:
                lo = mid + 1
    c = np.asarray(cdf(np.arange(d_max + 1)), dtype=float)
    pmf = np.diff(np.concatenate([[0.0], c]))
    pmf[-1] += 1.0 - c[-1]
    return np.maximum(pmf, 0.0) / np.maximum(pmf, 0.0).sum()


def expected_cost_refusal(scenario) -> str | None:
    """Why the stores' expected daily costs (``reward.expected_costs``) cannot be computed for
    ``scenario``, or None: they need each day's demand distribution, which a demand file and
    random promotions (a hidden state) do not give. The one-line error names the key and the fix."""
    why = distribution_obstacle(scenario)
    return f"reward.expected_costs: {why}; set reward.expected_costs: false" if why else None


def distribution_obstacle(scenario) -> str | None:
    """Why the day's demand distribution is not known given the past (a demand file, random
    promotions), or None: what expected costs and the bound's sales penalty need."""
    if scenario.demand_file:
        return "a demand file has no demand distribution to take the expectation over"
    for i in range(len(scenario.store_list)):
        for j in range(len(scenario.skus)):
            if scenario.store_demand(i, j).promotions.probability > 0:
                return (f"stores[{i}] has random promotions (promotions.probability > 0): the day's demand"
                        " distribution depends on whether one is running")
    return None


class ShortfallTables:
    """Each store's expected shortfall E[(D − z)+] for whole z >= 0 under the day's demand
    distribution (:func:`day_pmf` at the scenario's mean path), and the distribution's mean:
    what :func:`hmarl_rllib.sim.reconciliation.expected_store_costs` needs. Tables are cached by
    the day's means, so a flat or weekly mean path builds one or seven."""

    def __init__(self, scenario, days: int):
        why = expected_cost_refusal(scenario)
        if why:
            raise ConfigError(why)
        self.path = mean_path(scenario, days)  # (T, N, K)
        self.kind, self.std, self.disp = _model_arrays(scenario)[:3]
        self._cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """``(G, mu)``: G of shape (N, K, Z) with G[n, k, z] = E[(D − z)+], Z >= 2 and at least
        the last entry 0 (no demand beyond the truncation); mu of shape (N, K) the mean of the
        (truncated) distribution."""
        means = self.path[day]
        key = means.tobytes()
        if key not in self._cache:
            N, K = means.shape
            pmfs = [[day_pmf(self.kind[n, k], float(means[n, k]), self.std[n, k], self.disp[n, k])
                     for k in range(K)] for n in range(N)]
            Z = max(len(p) for row in pmfs for p in row) + 1  # one zero past every table
            G, mu = np.zeros((N, K, Z)), np.zeros((N, K))
            for n in range(N):
                for k in range(K):
                    pmf = pmfs[n][k]
                    d = np.arange(len(pmf))
                    mu[n, k] = float(pmf @ d)
                    # E[(D - z)+] = sum_{d > z} P(D >= d) over d = z+1..: a reversed cumulative sum of the tail
                    tail = 1.0 - np.cumsum(pmf)  # P(D > z), z = 0..len-1
                    G[n, k, : len(pmf)] = np.cumsum(tail[::-1])[::-1]
            self._cache[key] = (G, mu)
        return self._cache[key]


def _model_arrays(scenario):
    """Per (store, SKU) model parameters as arrays of shape (N, K)."""
    stores, skus = scenario.store_list, scenario.skus
    shape = (len(stores), len(skus))
    kind = np.empty(shape, dtype=object)
    std = np.zeros(shape)
    disp = np.ones(shape)
    p_promo = np.zeros(shape)
    mult = np.ones(shape)
    dur = np.ones(shape, dtype=int)
    for i in range(shape[0]):
        for j in range(shape[1]):
            m = scenario.store_demand(i, j)
            kind[i, j] = m.model
            std[i, j] = m.std or 0.0
            disp[i, j] = m.dispersion or 1.0
            p_promo[i, j] = m.promotions.probability
            mult[i, j] = m.promotions.multiplier
            dur[i, j] = m.promotions.duration_days
    return kind, std, disp, p_promo, mult, dur


def sample_demand(scenario, seeds, days: int) -> np.ndarray:
    """Demand for each replica (one seed each), shape (B, days, N, K), integer-valued floats."""
    return DemandSampler(scenario, days).sample(seeds)


class DemandSampler:
    """Draws demand paths of ``days`` days; the per-scenario set-up is done once."""

    def __init__(self, scenario, days: int):
        self.scenario, self.days = scenario, days
        self.n, self.k = len(scenario.store_list), len(scenario.skus)
        self.table = None
        if scenario.demand_file:
            self.table = scenario_demand_table(scenario)
            if len(self.table) < days:
                raise DemandFileError(
                    f"demand_file {scenario.demand_file}: holds {len(self.table)} days but an episode"
                    f" needs {days} (episode_length + warmup_days); add days or shorten the episode")
            check_demand_split(scenario, days)
            self.parts = demand_parts(scenario)
            return
        self.base = mean_path(scenario, days)
        self.kind, self.std, self.disp, self.p_promo, self.mult, self.dur = _model_arrays(scenario)
        self.pois = self.kind == "poisson"
        self.norm = self.kind == "normal"
        self.nbin = self.kind == "negative_binomial"
        self.any_promo = bool((self.p_promo > 0).any())

    def sample(self, seeds) -> np.ndarray:
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        uniq, inverse = np.unique(seeds, return_inverse=True)
        days, n, k = self.days, self.n, self.k
        out = np.empty((len(uniq), days, n, k))
        if self.table is not None:
            # a window lies inside one part of a split file (the seed's, see seed_parts)
            ranges = self.parts or [(0, len(self.table))] * 3
            for r, (seed, part) in enumerate(zip(uniq, seed_parts(uniq))):
                lo, hi = ranges[part]
                start = lo + np.random.default_rng([int(seed), 7]).integers(0, hi - lo - days + 1)
                out[r] = self.table[start: start + days]
            return out[inverse]
        pois, norm, nbin = self.pois, self.norm, self.nbin
        for r, seed in enumerate(uniq):
            rng = np.random.default_rng([int(seed), 1])
            mu = self.base
            if self.any_promo:
                start = rng.random((days, n, k)) < self.p_promo
                active = np.zeros((days, n, k), dtype=bool)
                for d in range(int(self.dur.max())):
                    shifted = np.zeros_like(start)
                    shifted[d:] = start[: days - d]
                    active |= shifted & (d < self.dur)
                mu = self.base * np.where(active, self.mult, 1.0)
            if pois.all():
                out[r] = rng.poisson(mu)
                continue
            draw = np.empty((days, n, k))
            if pois.any():
                draw[:, pois] = rng.poisson(mu[:, pois])
            if norm.any():
                draw[:, norm] = np.maximum(0.0, np.rint(rng.normal(mu[:, norm], self.std[norm])))
            if nbin.any():
                m = np.maximum(mu[:, nbin], 1e-9)
                r_ = self.disp[nbin]
                draw[:, nbin] = rng.negative_binomial(r_, r_ / (r_ + m))
            out[r] = draw
        return out[inverse]


def load_demand_file(path: str, stores: tuple[str, ...], skus: tuple[str, ...], calendar: str | None = None) -> np.ndarray:
    """Read and validate a demand file; return demand per day, store and SKU, shape (T, N, K).

    Raises :class:`DemandFileError` (one line) on a missing file or column, negative / NaN /
    non-numeric demand, unknown stores or SKUs, duplicate rows, gaps in the daily dates, or a
    store/SKU with no rows. Parsed tables are cached per file version (modification time and
    size), so a rewritten file is read again. The returned array is read-only.
    """
    return _load(path, stores, skus, calendar)[0]


def demand_file_dates(scenario) -> pd.DatetimeIndex:
    """The days of a scenario's demand file, one per row of :func:`load_demand_file`'s table."""
    table, first = _load(scenario.demand_file, tuple(scenario.store_names), tuple(scenario.sku_names),
                         scenario.demand_calendar)
    return pd.date_range(first, periods=len(table), freq="D")


def scenario_demand_table(scenario) -> np.ndarray:
    return load_demand_file(scenario.demand_file, tuple(scenario.store_names), tuple(scenario.sku_names),
                            scenario.demand_calendar)


def _load(path, stores, skus, calendar=None):
    p = Path(path)
    if not p.is_file():
        raise DemandFileError(f"demand_file {path}: no such file (give a CSV or Parquet path)")
    st = p.stat()
    cal = calendar or (str(p.parent / "calendar.csv") if (p.parent / "calendar.csv").is_file() else None)
    cal_version = None
    if cal is not None and Path(cal).is_file():
        cs = Path(cal).stat()
        cal_version = (cs.st_mtime_ns, cs.st_size)
    return _load_demand_table(str(path), st.st_mtime_ns, st.st_size, tuple(stores), tuple(skus), cal, cal_version)


M5_KEYS = ("item_id", "store_id")  # the M5 competition's sales files: one row per item and store


def _m5_long(df: pd.DataFrame, path: str, calendar: str | None, stores, skus) -> pd.DataFrame:
    """The M5 layout (``item_id``, ``store_id``, ..., ``d_1`` .. ``d_N`` daily unit sales, with
    its ``calendar.csv`` mapping ``d`` to ``date``) as the long layout, for the scenario's stores
    (``store_id``) and SKUs (``item_id``); other rows are left out."""
    missing = [c for c in M5_KEYS if c not in df.columns]
    if missing:
        raise DemandFileError(f"demand_file {path}: M5 layout (d_1.. columns) without column(s) {missing}")
    day_cols = [c for c in df.columns if str(c).startswith("d_")]
    if not day_cols:
        raise DemandFileError(f"demand_file {path}: M5 layout ({', '.join(M5_KEYS)}) without d_1 .. d_N columns")
    if calendar is None or not Path(calendar).is_file():
        raise DemandFileError(f"demand_file {path}: the M5 layout needs its calendar (columns d, date): set"
                              f" demand_calendar or put calendar.csv beside the file"
                              + (f" ({calendar} does not exist)" if calendar else ""))
    try:
        cal = pd.read_csv(calendar, usecols=["d", "date"])
    except Exception as err:  # noqa: BLE001 - a reader failure is the file's fault
        raise DemandFileError(f"demand_calendar {calendar}: cannot be read or lacks columns d, date"
                              f" ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    to_date = dict(zip(cal["d"].astype(str), cal["date"]))
    unknown = [c for c in day_cols if c not in to_date]
    if unknown:
        raise DemandFileError(f"demand_file {path}: column {unknown[0]!r} is not a day of {calendar}")
    keep = df["store_id"].astype(str).isin(stores) & df["item_id"].astype(str).isin(skus)
    rows = df.loc[keep, [*M5_KEYS, *day_cols]]
    if rows.empty:
        raise DemandFileError(f"demand_file {path}: no row has a store_id of the scenario ({list(stores)[:5]}) and an"
                              f" item_id among its SKUs ({list(skus)[:5]}); name stores and SKUs as the file does")
    long = rows.melt(id_vars=list(M5_KEYS), var_name="d", value_name="demand")
    return pd.DataFrame({"date": long["d"].map(to_date), "store": long["store_id"], "sku": long["item_id"],
                         "demand": long["demand"]})


@lru_cache(maxsize=8)
def _load_demand_table(path: str, mtime_ns: int, size: int, stores: tuple[str, ...],
                       skus: tuple[str, ...], calendar: str | None = None,
                       calendar_version: tuple | None = None) -> tuple[np.ndarray, pd.Timestamp]:
    p = Path(path)
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        elif p.suffix.lower() == ".csv":
            df = pd.read_csv(p)
        else:
            raise DemandFileError(f"demand_file {path}: unknown extension {p.suffix!r} (use .csv or .parquet)")
    except DemandFileError:
        raise
    except Exception as err:  # parser errors from pandas / pyarrow
        raise DemandFileError(f"demand_file {path}: cannot be read ({type(err).__name__}: {err})") from None
    if M5_KEYS[0] in df.columns or any(str(c).startswith("d_") for c in df.columns[:50]):
        df = _m5_long(df, path, calendar, stores, skus)
    missing = [c for c in DEMAND_COLUMNS if c not in df.columns]
    if missing:
        raise DemandFileError(f"demand_file {path}: missing column(s) {missing}; needs {list(DEMAND_COLUMNS)}")
    demand = pd.to_numeric(df["demand"], errors="coerce")
    if demand.isna().any():
        row = int(np.flatnonzero(demand.isna().to_numpy())[0])
        raise DemandFileError(f"demand_file {path}: row {row}: demand = {df['demand'].iloc[row]!r}:"
                              " must be a number >= 0 (no NaN or blanks)")
    if (demand < 0).any():
        row = int(np.flatnonzero((demand < 0).to_numpy())[0])
        raise DemandFileError(f"demand_file {path}: row {row}: demand = {demand.iloc[row]}: must be >= 0")
    store = df["store"].astype(str)
    sku = df["sku"].astype(str)
    unknown = sorted(set(store) - set(stores))
    if unknown:
        raise DemandFileError(f"demand_file {path}: unknown store(s) {unknown[:5]}; the scenario's stores are {list(stores)[:10]}")
    unknown = sorted(set(sku) - set(skus))
    if unknown:
        raise DemandFileError(f"demand_file {path}: unknown SKU(s) {unknown[:5]}; the scenario's SKUs are {list(skus)}")
    dates = pd.to_datetime(df["date"], errors="coerce")
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise DemandFileError(f"demand_file {path}: row {row}: date = {df['date'].iloc[row]!r}: must be a date (YYYY-MM-DD)")
    frame = pd.DataFrame({"date": dates.dt.normalize(), "store": store, "sku": sku, "demand": demand})
    if frame.duplicated(["date", "store", "sku"]).any():
        row = int(np.flatnonzero(frame.duplicated(["date", "store", "sku"]).to_numpy())[0])
        raise DemandFileError(f"demand_file {path}: row {row}: duplicate (date, store, sku); keep one row per day, store and SKU")
    days = pd.date_range(frame["date"].min(), frame["date"].max(), freq="D")
    table = np.full((len(days), len(stores), len(skus)), np.nan)
    d_idx = days.get_indexer(frame["date"])
    s_idx = pd.Index(stores).get_indexer(frame["store"])
    k_idx = pd.Index(skus).get_indexer(frame["sku"])
    table[d_idx, s_idx, k_idx] = frame["demand"].to_numpy(dtype=float)
    if np.isnan(table).any():
        d, s, k = (int(x[0]) for x in np.nonzero(np.isnan(table)))
        raise DemandFileError(f"demand_file {path}: no row for date {days[d].date()}, store {stores[s]!r},"
                              f" sku {skus[k]!r}; every day needs a row per store and SKU")
    table.flags.writeable = False  # shared by every caller through the cache
    return table, days[0]


def write_demand_file(path: str | Path, demand: np.ndarray, stores, skus, start="2026-01-01") -> None:
    """Write a (T, N, K) demand array as a long table ``date, store, sku, demand``."""
    t, n, k = demand.shape
    dates = pd.date_range(start, periods=t, freq="D")
    df = pd.DataFrame({
        "date": np.repeat(dates.strftime("%Y-%m-%d"), n * k),
        "store": np.tile(np.repeat(np.asarray(stores), k), t),
        "sku": np.tile(np.asarray(skus), t * n),
        "demand": demand.reshape(-1),
    })
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
