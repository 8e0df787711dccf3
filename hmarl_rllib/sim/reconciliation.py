"""Reconciliation: per-agent KPIs and rewards computed from the twin's ledgers.

KPIs per agent (node) and episode, from ledger rows of shape (T, B, M, K, F):

- ``fill_rate``: units served the day they were asked for / units asked for (for the warehouse
  and the supplier this is the fulfilment rate to their downstream node);
- ``service_level``: cycle service level, the share of days with no unmet demand (averaged over
  SKUs);
- ``holding_cost``, ``stockout_cost`` (stockout penalty + backorder cost), ``ordering_cost``,
  ``cost`` (their sum);
- ``bullwhip``: variance of the orders the node places / variance of the demand it sees.

Chain KPIs: ``cost`` = all nodes' costs; ``fill_rate`` and ``service_level`` at the stores
(customer-facing).

Rewards: ``reward_i = −cost_scale × [(1 − team_weight)·cost_i + team_weight·chain_cost / n]``
per day, where ``n`` is the number of agents; costs vary with every order, so the reward does.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hmarl_rllib.sim.network import F

KPI_COLUMNS = ("cost", "holding_cost", "stockout_cost", "ordering_cost", "fill_rate",
               "service_level", "bullwhip")


def _safe_ratio(num, den, empty=1.0):
    num, den = np.asarray(num, float), np.asarray(den, float)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)


def node_kpis(ledger: np.ndarray) -> dict[str, np.ndarray]:
    """KPIs per replica and node, each of shape (B, M). ``ledger`` is (T, B, M, K, F)."""
    tot = ledger.sum(axis=(0, 3))  # (B, M, F)
    out = {
        "holding_cost": tot[..., F["holding_cost"]],
        "stockout_cost": tot[..., F["stockout_cost"]],
        "ordering_cost": tot[..., F["ordering_cost"]],
    }
    out["cost"] = out["holding_cost"] + out["stockout_cost"] + out["ordering_cost"]
    out["fill_rate"] = 1.0 - _safe_ratio(tot[..., F["unmet"]], tot[..., F["demand"]], 0.0)
    out["service_level"] = (ledger[..., F["unmet"]] <= 0).mean(axis=(0, 3))
    orders = ledger[..., F["order_placed"]].sum(axis=3)  # (T, B, M)
    demand = ledger[..., F["demand"]].sum(axis=3)
    out["bullwhip"] = _safe_ratio(orders.var(axis=0), demand.var(axis=0), np.nan)
    return out


def chain_kpis(ledger: np.ndarray, n_stores: int) -> dict[str, np.ndarray]:
    """Chain KPIs per replica, each of shape (B,)."""
    tot = ledger.sum(axis=(0, 3))  # (B, M, F)
    stores = tot[:, :n_stores]
    cost = tot[..., [F["holding_cost"], F["stockout_cost"], F["ordering_cost"]]]
    return {
        "cost": cost.sum(axis=(1, 2)),
        "holding_cost": cost[..., 0].sum(axis=1),
        "stockout_cost": cost[..., 1].sum(axis=1),
        "ordering_cost": cost[..., 2].sum(axis=1),
        "fill_rate": 1.0 - _safe_ratio(stores[..., F["unmet"]].sum(1), stores[..., F["demand"]].sum(1), 0.0),
        "service_level": (ledger[:, :, :n_stores, :, F["unmet"]] <= 0).mean(axis=(0, 2, 3)),
        "store_cost": cost[:, :n_stores].sum(axis=(1, 2)),
        "warehouse_cost": cost[:, n_stores].sum(axis=1),
        "supplier_cost": cost[:, n_stores + 1].sum(axis=1),
    }


def mean_ci95(x) -> tuple[float, list[float]]:
    """Mean and a normal-approximation 95% confidence interval of the mean."""
    x = np.asarray(x, float)
    m = float(x.mean())
    half = 1.96 * float(x.std(ddof=1)) / np.sqrt(len(x)) if len(x) > 1 else 0.0
    return m, [m - half, m + half]


def summarize(ledger: np.ndarray, node_names: list[str], n_stores: int) -> dict:
    """Episode-mean KPIs: ``{"chain": {...}, "per_agent": {name: {...}}, "episodes": B}``."""
    chain = chain_kpis(ledger, n_stores)
    nodes = node_kpis(ledger)
    cost_mean, ci = mean_ci95(chain["cost"])
    out = {
        "episodes": int(ledger.shape[1]),
        "cost_mean": cost_mean,
        "cost_ci95": ci,
        "fill_rate_mean": float(chain["fill_rate"].mean()),
        "service_level_mean": float(chain["service_level"].mean()),
        "holding_cost_mean": float(chain["holding_cost"].mean()),
        "stockout_cost_mean": float(chain["stockout_cost"].mean()),
        "ordering_cost_mean": float(chain["ordering_cost"].mean()),
        "store_cost_mean": float(chain["store_cost"].mean()),
        "warehouse_cost_mean": float(chain["warehouse_cost"].mean()),
        "supplier_cost_mean": float(chain["supplier_cost"].mean()),
        "per_agent": {},
    }
    for m, name in enumerate(node_names):
        out["per_agent"][name] = {k: float(np.nanmean(v[:, m])) if not np.all(np.isnan(v[:, m])) else None
                                  for k, v in nodes.items()}
    return out


def kpi_frame(ledger: np.ndarray, node_names: list[str], seeds) -> pd.DataFrame:
    """Per replica and agent KPIs as a DataFrame (one row per episode and node)."""
    nodes = node_kpis(ledger)
    B, M = nodes["cost"].shape
    frame = pd.DataFrame({"replica": np.repeat(np.arange(B), M), "seed": np.repeat(np.asarray(seeds), M),
                          "agent": np.tile(node_names, B)})
    for k, v in nodes.items():
        frame[k] = v.reshape(-1)
    return frame


def daily_costs(row: np.ndarray) -> np.ndarray:
    """Cost per replica, node and SKU of one ledger day row (B, M, K, F) -> (B, M, K)."""
    return row[..., F["holding_cost"]] + row[..., F["stockout_cost"]] + row[..., F["ordering_cost"]]


def rewards(row: np.ndarray, cost_scale: float, team_weight: float, cost: np.ndarray | None = None) -> np.ndarray:
    """Per-day reward of every (node, SKU) agent, shape (B, M, K) (see module docstring);
    ``cost`` (B, M, K): the costs to reward instead of the day's realized ones (e.g. the stores'
    expected costs, :func:`expected_store_costs`)."""
    cost = daily_costs(row) if cost is None else cost
    n_agents = cost.shape[1] * cost.shape[2]
    chain = cost.sum(axis=(1, 2), keepdims=True)
    return -cost_scale * ((1.0 - team_weight) * cost + team_weight * chain / n_agents)


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean of the per-seed differences a − b of two policies' episode costs on the same seeds,
    with its 95% confidence interval (normal approximation): negative means a is cheaper."""
    d = np.asarray(a, float) - np.asarray(b, float)
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    m = float(d.mean())
    return {"mean": m, "ci95": [m - half, m + half], "relative": m / float(np.mean(b)),
            "significant": bool(abs(m) > half)}


def expected_shortfall(G: np.ndarray, y: np.ndarray) -> np.ndarray:
    """E[(D − y⁺)+] for stock levels ``y`` of shape (B, N, K), from the day's tables ``G`` (N, K, Z)
    (:class:`~hmarl_rllib.sim.demand.ShortfallTables`): exact for a fractional y (an allocation's
    share) too, linear between whole units; 0 past the table (no demand beyond the truncation)."""
    N, K = G.shape[:2]
    n_i, k_i = np.arange(N)[None, :, None], np.arange(K)[None, None, :]
    top = G.shape[-1] - 1  # G[..., top] = 0
    pos = np.minimum(np.maximum(y, 0.0), top)
    z = np.minimum(np.floor(pos), top - 1).astype(np.int64)  # z + 1 <= top
    lo, hi = G[n_i, k_i, z], G[n_i, k_i, z + 1]
    return lo + (pos - z) * (hi - lo)


def expected_store_costs(row: np.ndarray, G: np.ndarray, mu: np.ndarray, h: np.ndarray, p: np.ndarray,
                         b: np.ndarray, lost_sales: bool) -> np.ndarray:
    """The stores' costs of one day row (B, M, K, F) with holding, stockout penalty and backorder
    cost replaced by their expectations over the day's demand, given what the store held once
    today's shipments arrived and the backlog it carried in; ordering costs as realized. Shape
    (B, N, K). ``G`` (N, K, Z) and ``mu`` (N, K): the day's :class:`~hmarl_rllib.sim.demand.ShortfallTables`;
    ``h``, ``p``, ``b`` (K,): the stores' holding cost, stockout penalty and backorder cost.

    With y = stock after arrivals − backlog carried in and D the day's demand: holding h·(y − D)+,
    today's unmet demand p·(D − y⁺)+, the backlog left b·(D − y)+ (the twin's step). Their
    expectation given the state is what the realized cost averages to, so every policy's
    expected return is unchanged while the demand's noise leaves the reward."""
    N = G.shape[0]
    s = row[:, :N]
    x = s[..., F["on_hand"]] + s[..., F["sales"]]  # on hand once today's shipments arrived
    y = x if lost_sales else x - (s[..., F["backorders"]] - s[..., F["demand"]] + s[..., F["sales"]])
    shortfall = expected_shortfall(G, y)
    holding = np.where(y >= 0, y - mu + shortfall, 0.0)  # (y − D)+ = y − D + (D − y)+
    cost = h * holding + p * shortfall + s[..., F["ordering_cost"]]
    if not lost_sales:  # lost sales leave no backlog, whatever backorder_cost says
        cost += b * np.where(y >= 0, shortfall, mu - y)
    return cost
