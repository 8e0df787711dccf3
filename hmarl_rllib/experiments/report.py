"""Plain-text KPI tables for the terminal."""
from __future__ import annotations

import pandas as pd

from hmarl_rllib.sim.state import UPSTREAM


def _fmt(v, pct=False):
    if v is None:
        return "-"
    return f"{100 * v:6.2f}%" if pct else f"{v:,.1f}"


def text_table(rows: dict[str, dict], label: str) -> str:
    """``{row name: {column: formatted cell}}`` as a plain-text table (pandas sizes the columns):
    the names left-aligned under ``label``, the cells right-aligned, two spaces apart at least,
    a rule under the header."""
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis(index=None, columns=label)
    head, *body = frame.to_string(col_space={c: len(c) + 1 for c in frame.columns}).splitlines()
    return "\n".join([head, "-" * len(head), *body])


def chain_table(summaries: dict[str, dict]) -> str:
    """One row per policy: chain cost mean ± CI, fill rate, service level, cost breakdown."""
    costs = {"holding": "holding", "stockout": "stockout", "ordering": "ordering", "stores": "store",
             "warehouse": "warehouse", "supplier": "supplier"}  # column: <key>_cost_mean
    return text_table({name: {
        "chain cost": _fmt(s["cost_mean"]), "95% CI": "[{:,.1f}, {:,.1f}]".format(*s["cost_ci95"]),
        "fill rate": _fmt(s["fill_rate_mean"], True), "service": _fmt(s["service_level_mean"], True),
        **{col: _fmt(s[f"{key}_cost_mean"]) for col, key in costs.items()},
    } for name, s in summaries.items()}, "policy")


def _agent_cells(k: dict) -> dict:
    return {
        "cost": _fmt(k["cost"]), "holding": _fmt(k["holding_cost"]), "stockout": _fmt(k["stockout_cost"]),
        "ordering": _fmt(k["ordering_cost"]),
        "fill rate": _fmt(k["fill_rate"], True), "service": _fmt(k["service_level"], True),
        "bullwhip": "-" if k["bullwhip"] is None else f"{k['bullwhip']:.2f}",
    }


def agent_table(summary: dict, title: str = "", max_stores: int = 10) -> str:
    """Per-agent KPIs of one policy (episode means). Above ``max_stores`` stores the table keeps
    its size: one row of the mean over all stores, the ``max_stores // 2`` costliest stores, then
    the upstream agents."""
    agents = summary["per_agent"]
    stores = [n for n in agents if n not in UPSTREAM]
    if len(stores) <= max_stores:
        rows = {name: _agent_cells(k) for name, k in agents.items()}
        note = ""
    else:
        def mean(key):
            vals = [agents[n][key] for n in stores if agents[n][key] is not None]
            return sum(vals) / len(vals) if vals else None
        keys = agents[stores[0]].keys()
        rows = {f"stores (mean of {len(stores)})": _agent_cells({k: mean(k) for k in keys})}
        costliest = sorted(stores, key=lambda n: -agents[n]["cost"])[:max_stores // 2]
        rows.update({n: _agent_cells(agents[n]) for n in costliest})
        rows.update({n: _agent_cells(agents[n]) for n in agents if n in UPSTREAM})
        note = (f"\nthe {len(costliest)} costliest stores shown, {len(stores) - len(costliest)} more not:"
                " `hmarl evaluate --out DIR` writes every store's KPIs (kpi_episodes.csv),"
                " `hmarl simulate --json` prints them")
    table = text_table(rows, "agent") + note
    return f"{title}\n{table}" if title else table


def json_policy(summary: dict) -> dict:
    """The JSON fields promised for every policy."""
    return {k: summary[k] for k in ("cost_mean", "cost_ci95", "fill_rate_mean", "service_level_mean")}
