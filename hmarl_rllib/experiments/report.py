"""Plain-text KPI tables for the terminal."""
from __future__ import annotations


def _fmt(v, pct=False):
    if v is None:
        return "-"
    return f"{100 * v:6.2f}%" if pct else f"{v:,.1f}"


def chain_table(summaries: dict[str, dict]) -> str:
    """One row per policy: chain cost mean ± CI, fill rate, service level, cost breakdown."""
    w = max([22] + [len(n) + 2 for n in summaries])  # the name column fits the longest policy name
    head = f"{'policy':<{w}}{'chain cost':>12}{'95% CI':>22}{'fill rate':>11}{'service':>10}" \
           f"{'holding':>10}{'stockout':>10}{'ordering':>10}{'stores':>10}{'warehouse':>11}{'supplier':>10}"
    lines = [head, "-" * len(head)]
    for name, s in summaries.items():
        lo, hi = s["cost_ci95"]
        lines.append(
            f"{name:<{w}}{s['cost_mean']:>12,.1f}{f'[{lo:,.1f}, {hi:,.1f}]':>22}"
            f"{_fmt(s['fill_rate_mean'], True):>11}{_fmt(s['service_level_mean'], True):>10}"
            f"{s['holding_cost_mean']:>10,.1f}{s['stockout_cost_mean']:>10,.1f}{s['ordering_cost_mean']:>10,.1f}"
            f"{s['store_cost_mean']:>10,.1f}{s['warehouse_cost_mean']:>11,.1f}{s['supplier_cost_mean']:>10,.1f}")
    return "\n".join(lines)


def agent_table(summary: dict, title: str = "") -> str:
    """Per-agent KPIs of one policy (episode means)."""
    head = f"{'agent':<14}{'cost':>10}{'holding':>10}{'stockout':>10}{'ordering':>10}" \
           f"{'fill rate':>11}{'service':>10}{'bullwhip':>10}"
    lines = ([title] if title else []) + [head, "-" * len(head)]
    for name, k in summary["per_agent"].items():
        bw = "-" if k["bullwhip"] is None else f"{k['bullwhip']:.2f}"
        lines.append(f"{name:<14}{k['cost']:>10,.1f}{k['holding_cost']:>10,.1f}{k['stockout_cost']:>10,.1f}"
                     f"{k['ordering_cost']:>10,.1f}{_fmt(k['fill_rate'], True):>11}"
                     f"{_fmt(k['service_level'], True):>10}{bw:>10}")
    return "\n".join(lines)


def json_policy(summary: dict) -> dict:
    """The JSON fields promised for every policy."""
    return {k: summary[k] for k in ("cost_mean", "cost_ci95", "fill_rate_mean", "service_level_mean")}
