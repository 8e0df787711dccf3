"""Plain-text KPI tables for the terminal."""
from __future__ import annotations

import pandas as pd


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


def agent_table(summary: dict, title: str = "") -> str:
    """Per-agent KPIs of one policy (episode means)."""
    table = text_table({name: {
        "cost": _fmt(k["cost"]), "holding": _fmt(k["holding_cost"]), "stockout": _fmt(k["stockout_cost"]),
        "ordering": _fmt(k["ordering_cost"]),
        "fill rate": _fmt(k["fill_rate"], True), "service": _fmt(k["service_level"], True),
        "bullwhip": "-" if k["bullwhip"] is None else f"{k['bullwhip']:.2f}",
    } for name, k in summary["per_agent"].items()}, "agent")
    return f"{title}\n{table}" if title else table


def json_policy(summary: dict) -> dict:
    """The JSON fields promised for every policy."""
    return {k: summary[k] for k in ("cost_mean", "cost_ci95", "fill_rate_mean", "service_level_mean")}
