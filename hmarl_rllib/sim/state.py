"""One day of the chain as a table: what a planner knows when tomorrow's orders are due.

A *state file* (CSV or Parquet) has one row per node and SKU: every store, ``warehouse`` and
``supplier``. It describes the twin just before it simulates day ``day`` (the day the orders are
for), so the policy sees exactly what it saw in training on that day. Columns:

``node``
    a store name of the scenario, ``warehouse`` or ``supplier``.
``sku``
    the SKU name (may be left out when the scenario has one SKU).
``day``
    the day of the scenario's horizon the orders are for, 0-based (warm-up days included); the
    same on every row. The share of time to go, the seasonal demand forecast and the calendar
    features are read from it. ``0 <= day < warmup_days + episode_length``.
``on_hand``
    units on the shelf (the supplier: finished stock).
``backorders``
    customers' demand still owed (stores; 0 with ``shortage: lost_sales`` and upstream).
``owed``
    units the node's upstream still owes it from earlier orders (``internal_shortage:
    backorder`` only; may be left out otherwise, and must then be 0).
``ordered_yesterday``
    units the node ordered the day before (stores and warehouse: the warehouse and supplier
    observe their customers' last orders; 0 on day 0).
``arriving_in_1d`` … ``arriving_in_Dd``
    units in transit to the node by days until arrival; "in 1 day" arrives on ``day``. For the
    supplier: production completing in d days. D is the longest pipeline of the scenario (lead
    time + the most extra days of random lead times); a slot beyond a node's own lead time is 0.
``demand_1d_ago`` … ``demand_7d_ago``
    the store's customer demand on each of the last 7 days (before day 0: 0). Empty on the
    warehouse and supplier rows.

All quantities are units, finite and >= 0. :func:`state_frame` writes a twin day in this
layout, :func:`read_state` reads a file, :func:`twin_from_state` rebuilds the twin (and the
orders of the day before) from it; bad files raise :class:`StateFileError`, one line naming the
column and row.

numpy and pandas only: no RL imports.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from hmarl_rllib.errors import InputError
from hmarl_rllib.sim.network import SupplyChainTwin

HISTORY_DAYS = 7  # the demand history a state carries (the observations' HISTORY)
UPSTREAM = ("warehouse", "supplier")


class StateFileError(InputError):
    """A state file is missing columns, rows or holds values the twin cannot have."""


def pipeline_days(scenario) -> int:
    """D: the number of ``arriving_in_<d>d`` columns of a state file for this scenario."""
    rl = scenario.random_lead_times
    extra = rl.max_extra_days if rl.enabled else 0
    return max(max(s.lead_time for s in scenario.store_list) + extra, scenario.warehouse.lead_time + extra,
               scenario.supplier.lead_time)


def state_columns(scenario) -> list[str]:
    return (["node", "sku", "day", "on_hand", "backorders", "owed", "ordered_yesterday"]
            + [f"arriving_in_{d}d" for d in range(1, pipeline_days(scenario) + 1)]
            + [f"demand_{h}d_ago" for h in range(1, HISTORY_DAYS + 1)])


def _node_lead_days(tw: SupplyChainTwin) -> list[int]:
    """Per node (stores, warehouse, supplier): how many days ahead its pipeline can hold units."""
    return [int(L) + tw.extra_max for L in tw.lt_store] + [tw.lt_wh + tw.extra_max, tw.lt_prod]


def state_frame(tw: SupplyChainTwin, replica: int = 0) -> pd.DataFrame:
    """Replica ``replica`` of a twin (with or without a ledger), before it simulates ``tw.day``,
    in the state-file layout."""
    sc, b, t = tw.scenario, replica, tw.day
    N, K = tw.n_stores, tw.n_skus
    D = pipeline_days(sc)
    pipes = [tw.store_pipeline()[b], tw.warehouse_pipeline()[b], tw.production_pipeline()[b]]
    hist = tw.demand_history(HISTORY_DAYS)[b]  # (H, N, K), oldest first
    last = tw.last_placed[b]
    rows = []
    for m, node in enumerate(tw.node_names()):
        for k, sku in enumerate(sc.sku_names):
            if m < N:
                on_hand, back, owed, pipe = tw.on_hand[b, m, k], tw.backorders[b, m, k], tw.store_owed[b, m, k], pipes[0][m, k]
                demand = hist[::-1, m, k]
            elif m == N:
                on_hand, back, owed, pipe = tw.wh_on_hand[b, k], 0.0, tw.wh_owed[b, k], pipes[1][k]
                demand = np.full(HISTORY_DAYS, np.nan)
            else:
                on_hand, back, owed, pipe = tw.sup_on_hand[b, k], 0.0, 0.0, pipes[2][k]
                demand = np.full(HISTORY_DAYS, np.nan)
            arriving = np.zeros(D)
            arriving[: len(pipe)] = pipe[:D]
            rows.append([node, sku, t, on_hand, back, owed, last[m, k] if m <= N else 0.0, *arriving, *demand])
    frame = pd.DataFrame(rows, columns=state_columns(sc))
    frame["day"] = frame["day"].astype(np.int64)
    return frame


def read_state(path) -> pd.DataFrame:
    """A state file (``.csv`` or ``.parquet``) as a DataFrame; unreadable files raise one line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise StateFileError(f"--state {path}: no such file; give a CSV or Parquet state file (docs/deploy.md)")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
    except Exception as err:  # noqa: BLE001 - any reader failure is the file's fault
        raise StateFileError(f"--state {path}: cannot be read ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    raise StateFileError(f"--state {path}: unknown file type {path.suffix!r}; give .csv or .parquet")


def twin_from_state(scenario, frame, source: str = "state"):
    """A one-replica twin in the state ``frame`` describes, with the orders of the day before:
    ``(twin, last_store_orders (1, N, K), last_warehouse_order (1, K))``. Every problem is a
    :class:`StateFileError` naming the column and the row (numbered from 1, as in the file)."""
    return twin_from_states(scenario, [parse_state(scenario, frame, source)])


class ParsedState(NamedTuple):
    """A validated state: its day and every numeric column per node and SKU, (N + 2, K, C) in
    the twin's node order (stores, warehouse, supplier) and :func:`state_columns`' order from
    ``day`` on."""

    day: int
    grid: np.ndarray


def parse_state(scenario, frame, source: str = "state", twin: SupplyChainTwin | None = None) -> ParsedState:
    """Validate a state table (a DataFrame, or ``{column: values}`` as from JSON rows); any
    problem is one :class:`StateFileError` line naming the column and the row. ``twin``: a twin
    of the scenario to read its layout from (one is made otherwise)."""
    sc = scenario
    tw = twin if twin is not None else SupplyChainTwin(sc, record=False)
    N, K = tw.n_stores, tw.n_skus
    nodes, skus = tw.node_names(), list(sc.sku_names)
    cols = state_columns(sc)
    if isinstance(frame, pd.DataFrame):
        f = {c: frame[c].to_numpy() for c in frame.columns}
    else:  # {column: sequence}, e.g. from JSON records
        f = {c: np.asarray(v, dtype=object) for c, v in frame.items()}
    n_rows = len(next(iter(f.values()))) if f else 0
    if "sku" not in f and K == 1:
        f["sku"] = np.full(n_rows, skus[0], dtype=object)
    optional = {"owed"} if not tw.internal_backorder else set()
    if tw.lost_sales:
        optional.add("backorders")
    for c in cols:
        if c not in f:
            if c in optional:
                f[c] = np.zeros(n_rows)
                continue
            raise StateFileError(f"{source}: column {c!r} is missing (columns: {', '.join(cols)}; docs/deploy.md)")
    extra = [c for c in f if c not in cols]
    if extra:
        raise StateFileError(f"{source}: unknown column {extra[0]!r} (the columns are {', '.join(cols)})")
    if n_rows == 0:
        raise StateFileError(f"{source}: no rows; give one row per node and SKU ({', '.join(nodes)})")
    node_col, sku_col = [str(x) for x in f["node"]], [str(x) for x in f["sku"]]

    def where(i) -> str:
        return f"row {i + 1} ({node_col[i]}, {sku_col[i]})"

    index: dict[tuple[int, int], int] = {}
    node_pos, sku_pos = {n: m for m, n in enumerate(nodes)}, {k: i for i, k in enumerate(skus)}
    for i, (node, sku) in enumerate(zip(node_col, sku_col)):
        if node not in node_pos:
            raise StateFileError(f"{source}: node: row {i + 1} names {node!r}, not a node of scenario {sc.name!r}"
                                 f" ({', '.join(nodes)})")
        if sku not in sku_pos:
            raise StateFileError(f"{source}: sku: row {i + 1} names {sku!r}, not a SKU of scenario {sc.name!r}"
                                 f" ({', '.join(skus)})")
        key = (node_pos[node], sku_pos[sku])
        if key in index:
            raise StateFileError(f"{source}: rows {index[key] + 1} and {i + 1} are both ({node}, {sku}); give one row each")
        index[key] = i
    missing = [(nodes[m], skus[k]) for m in range(N + 2) for k in range(K) if (m, k) not in index]
    if missing:
        raise StateFileError(f"{source}: no row for ({missing[0][0]}, {missing[0][1]})"
                             f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}; give one row per node and SKU")
    upstream_rows = np.array([n in UPSTREAM for n in node_col])
    values = {}
    hist_cols = {f"demand_{h}d_ago" for h in range(1, HISTORY_DAYS + 1)}
    for c in cols[2:]:
        raw = f[c]
        try:
            v = np.array(raw, dtype=float)
        except (TypeError, ValueError):
            v = np.array(pd.to_numeric(pd.Series(raw), errors="coerce"), dtype=float)
        v = v.copy()
        bad = np.isnan(v)
        if bad.any():
            blank = np.array([x is None or (isinstance(x, float) and np.isnan(x)) for x in raw])
            if c in hist_cols:  # customer demand is the stores': blank upstream is fine
                v[bad & upstream_rows & blank] = 0.0
                bad = np.isnan(v)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise StateFileError(f"{source}: {c}: {where(i)} is {raw[i]!r}, not a number")
        wrong = ~np.isfinite(v) | (v < 0)
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise StateFileError(f"{source}: {c}: {where(i)} is {v[i]:g}; quantities are finite and >= 0")
        values[c] = v
    day = values["day"]
    if (day != day[0]).any() or day[0] != int(day[0]):
        i = int(np.flatnonzero(day != day[0])[0]) if (day != day[0]).any() else 0
        raise StateFileError(f"{source}: day: {where(i)} is {day[i]:g}; one whole day on every row")
    t = int(day[0])
    if t >= tw.days_total:
        raise StateFileError(f"{source}: day: {t} is past the horizon of scenario {sc.name!r} (days 0..{tw.days_total - 1}:"
                             " warmup_days + episode_length); give a day within it")
    leads = _node_lead_days(tw)
    for (m, k), i in index.items():
        upstream = m >= N
        if upstream and values["backorders"][i] != 0:
            raise StateFileError(f"{source}: backorders: {where(i)} is {values['backorders'][i]:g}; only stores"
                                 " hold customers' backorders (give 0)")
        if tw.lost_sales and values["backorders"][i] != 0:
            raise StateFileError(f"{source}: backorders: {where(i)} is {values['backorders'][i]:g}, but scenario"
                                 f" {sc.name!r} loses unmet demand (shortage: lost_sales); give 0")
        if values["owed"][i] != 0 and (not tw.internal_backorder or m == N + 1):
            why = "the supplier owes nobody" if m == N + 1 else (
                f"scenario {sc.name!r} cancels unfilled internal orders (internal_shortage: cancel)")
            raise StateFileError(f"{source}: owed: {where(i)} is {values['owed'][i]:g}, but {why}; give 0")
        if m == N + 1 and values["ordered_yesterday"][i] != 0:
            raise StateFileError(f"{source}: ordered_yesterday: {where(i)} is {values['ordered_yesterday'][i]:g};"
                                 " the supplier orders from nobody (give 0)")
        for d in range(leads[m] + 1, pipeline_days(sc) + 1):
            if values[f"arriving_in_{d}d"][i] != 0:
                raise StateFileError(f"{source}: arriving_in_{d}d: {where(i)} is {values[f'arriving_in_{d}d'][i]:g},"
                                     f" but nothing reaches {nodes[m]} more than {leads[m]} day(s) ahead; give 0")
        for h in range(1, HISTORY_DAYS + 1):
            c = f"demand_{h}d_ago"
            if upstream and values[c][i] != 0:
                raise StateFileError(f"{source}: {c}: {where(i)} is {values[c][i]:g}; customer demand is the stores'"
                                     " (leave it empty)")
            if h > t and values[c][i] != 0:
                raise StateFileError(f"{source}: {c}: {where(i)} is {values[c][i]:g}, but day {t} - {h} is before the"
                                     " horizon's day 0, where the policy was trained to see 0; give 0")
    grid = np.empty((N + 2, K, len(cols) - 2))
    for (m, k), i in index.items():
        grid[m, k] = [values[c][i] for c in cols[2:]]
    return ParsedState(t, grid)


def twin_from_states(scenario, states: list[ParsedState]):
    """One twin replica per parsed state (all on the same day), with the orders of the day
    before: ``(twin, last_store_orders (B, N, K), last_warehouse_order (B, K))``."""
    sc = scenario
    days = {p.day for p in states}
    if len(days) != 1:
        raise ValueError(f"states of one twin share a day, got days {sorted(days)}")
    t = days.pop()
    tw = SupplyChainTwin(sc, record=False)
    N = tw.n_stores
    B = len(states)
    col = {c: j for j, c in enumerate(state_columns(sc)[2:])}
    g = np.stack([p.grid for p in states])  # (B, N + 2, K, C)
    D = pipeline_days(sc)
    arriving = g[..., [col[f"arriving_in_{d}d"] for d in range(1, D + 1)]]  # (B, N + 2, K, D)
    tw.reset(np.zeros(B, dtype=np.int64))
    tw.day = t
    tw.demand[:] = 0.0  # the future is not part of a state; only the history is read
    tw.on_hand[:], tw.backorders[:] = g[:, :N, :, col["on_hand"]], g[:, :N, :, col["backorders"]]
    tw.store_owed[:], tw.wh_owed[:] = g[:, :N, :, col["owed"]], g[:, N, :, col["owed"]]
    tw.wh_on_hand[:], tw.sup_on_hand[:] = g[:, N, :, col["on_hand"]], g[:, N + 1, :, col["on_hand"]]
    for pipe, arr, total in ((tw.store_pipe, arriving[:, :N], "in_transit"), (tw.wh_pipe, arriving[:, N], "wh_in_transit"),
                             (tw.prod_pipe, arriving[:, N + 1], "sup_in_production")):
        P = pipe.shape[-1]
        pipe[:] = 0.0
        for d in range(1, min(D, P - 1) + 1):  # "in d days" on day t is slot (t + d - 1) % P
            pipe[..., (t + d - 1) % P] = arr[..., d - 1]
        setattr(tw, total, arr.sum(axis=-1))
    for h in range(1, min(HISTORY_DAYS, t) + 1):
        tw.demand[:, t - h] = g[:, :N, :, col[f"demand_{h}d_ago"]]
    tw.last_placed[:] = g[..., col["ordered_yesterday"]]
    return tw, tw.last_placed[:, :N].copy(), tw.last_placed[:, N].copy()
