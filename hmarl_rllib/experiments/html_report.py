"""One self-contained HTML report of an evaluation or a benchmark (``--out DIR`` writes
``DIR/report.html``): nothing to serve, nothing fetched, the figures inlined as PNG.

What it shows, all on the same held-out seeds:

- the KPI table of every policy (chain cost with its 95% CI, fill rate, service level, cost parts);
- the cost breakdown per policy, by cost component and by echelon;
- inventory and order paths of a few episodes, the learned policy beside the best rule;
- the paired cost differences (learned − each rule on the same seeds) with their 95% CI;
- the training curve when the run folder is known (``progress.csv`` beside the checkpoint), with
  the best tuned rule and the rule the policy corrects drawn as reference lines, both measured on
  the validation seeds the curve's greedy evaluations use, and the exact optimum where one is known.

Matplotlib's object API only (no pyplot): the caller's backend is left alone.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from hmarl_rllib.sim.network import F
from hmarl_rllib.sim.reconciliation import paired_difference

REPORT = "report.html"
COMPONENTS = (("holding_cost_mean", "holding"), ("stockout_cost_mean", "stockout"), ("ordering_cost_mean", "ordering"))
ECHELONS = (("store_cost_mean", "stores"), ("warehouse_cost_mean", "warehouse"), ("supplier_cost_mean", "supplier"))


@dataclass
class Curve:
    """A training run's greedy-evaluation curve and the costs to read it against."""

    progress: pd.DataFrame  # a trial's progress.csv (plots.load_progress)
    references: dict[str, float] = field(default_factory=dict)  # label -> cost per episode


@dataclass
class ReportData:
    title: str
    facts: list[str]  # lines under the title: scenario, checkpoint, seeds, dates
    summaries: dict[str, dict]  # policy -> reconciliation.summarize() summary
    costs: dict[str, np.ndarray]  # policy -> chain cost per episode, same seeds for all
    paths: dict[str, object]  # policy -> twin after its run (ledgers for the path figure)
    best_rule: str
    optimum: float | None = None  # exact expected cost per episode, where known
    curve: Curve | None = None
    episodes_shown: int = 3


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(fig, alt: str, caption: str) -> str:
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _breakdown(d: ReportData) -> str:
    from matplotlib.figure import Figure

    names = list(d.summaries)
    fig = Figure(figsize=(max(7.0, 1.1 * len(names) + 3), 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, parts, what in ((axes[0], COMPONENTS, "component"), (axes[1], ECHELONS, "echelon")):
        bottom = np.zeros(len(names))
        for key, label in parts:
            vals = np.array([d.summaries[n][key] for n in names])
            ax.bar(names, vals, bottom=bottom, label=label)
            bottom += vals
        if d.optimum is not None:
            ax.axhline(d.optimum, color="k", ls=":", lw=1, label="exact optimum")
        ax.set_title(f"by {what}")
        ax.tick_params(axis="x", labelrotation=35, labelsize=7)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("mean chain cost per episode")
    fig.tight_layout()
    return _figure(fig, "cost breakdown", "Mean chain cost per episode, split by cost component (left) and by"
                   " echelon (right).")


def _paths(d: ReportData) -> str:
    from matplotlib.figure import Figure

    from hmarl_rllib.sim.simulate import scored_ledger

    shown = [n for n in dict.fromkeys(["learned", d.best_rule]) if n in d.paths]
    twin0 = d.paths[shown[0]]
    nodes = twin0.node_names()
    n_ep = min(d.episodes_shown, twin0.ledger.shape[1])
    fig = Figure(figsize=(4.6 * len(shown), 1.8 * len(nodes) + 0.6))
    axes = np.asarray(fig.subplots(len(nodes), len(shown), sharex=True, squeeze=False))
    for c, name in enumerate(shown):
        twin = d.paths[name]
        led = scored_ledger(twin)[:, :n_ep, :, 0]  # (T, episodes, M, F), SKU 0
        days = np.arange(led.shape[0]) + twin.scenario.warmup_days
        for m, node in enumerate(nodes):
            ax = axes[m, c]
            for e in range(n_ep):
                color = f"C{e}"
                ax.plot(days, led[:, e, m, F["on_hand"]], color=color, lw=1.2,
                        label=f"on hand, seed {twin.seeds[e]}")
                ax.step(days, led[:, e, m, F["order_placed"]], where="mid", color=color, lw=0.8, ls="--",
                        label=f"order placed, seed {twin.seeds[e]}")
            if c == 0:
                ax.set_ylabel(node, fontsize=8)
            if m == 0:
                ax.set_title(name, fontsize=9)
        axes[-1, c].set_xlabel("day")
    for m in range(len(nodes)):  # one y scale per node, so that the columns compare
        lo = min(axes[m, c].get_ylim()[0] for c in range(len(shown)))
        hi = max(axes[m, c].get_ylim()[1] for c in range(len(shown)))
        for c in range(len(shown)):
            axes[m, c].set_ylim(lo, hi)
    axes[0, -1].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    sku = twin0.scenario.sku_names[0]
    return _figure(fig, "inventory and order paths",
                   f"On hand (solid) and orders placed (dashed) per node, the first {n_ep} held-out episodes"
                   f" (SKU {sku}): {' beside '.join(shown)}.")


def _paired(d: ReportData) -> tuple[str, dict]:
    from matplotlib.figure import Figure

    ref = "learned" if "learned" in d.costs else d.best_rule
    pairs = {other: paired_difference(d.costs[ref], d.costs[other]) for other in d.costs if other != ref}
    if not pairs:
        return "", {}
    names = list(pairs)
    means = np.array([pairs[n]["mean"] for n in names])
    lo = np.array([pairs[n]["ci95"][0] for n in names])
    hi = np.array([pairs[n]["ci95"][1] for n in names])
    fig = Figure(figsize=(7, 0.45 * len(names) + 1.2))
    ax = fig.subplots()
    y = np.arange(len(names))
    ax.errorbar(means, y, xerr=[means - lo, hi - means], fmt="o", capsize=3)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{ref} − policy, cost per episode (negative: {ref} is cheaper)")
    fig.tight_layout()
    return _figure(fig, "paired differences", f"Paired difference of episode costs, {ref} minus each policy on"
                   " the same seeds, with its 95% confidence interval."), {f"{ref} - {n}": p for n, p in pairs.items()}


def _curve(d: ReportData) -> str:
    from matplotlib.figure import Figure

    from hmarl_rllib.experiments.plots import ITERATION, STEPS

    df = d.curve.progress
    x = STEPS if STEPS in df else ITERATION
    fig = Figure(figsize=(8, 3.8))
    ax = fig.subplots()
    for col, label in (("env_runners/chain_cost", "training episodes"),
                       ("eval_chain_cost", "greedy evaluation (validation seeds)")):
        if col in df and df[col].notna().any():
            rows = df[[x, col]].dropna()
            ax.plot(rows[x], rows[col], marker="o" if col.startswith("eval") else None, ms=3, label=label)
    for i, (label, value) in enumerate(d.curve.references.items()):
        ax.axhline(value, color=f"C{i + 2}", ls="--", lw=1, label=f"{label}: {value:,.1f}")
    ax.set_xlabel("env steps sampled" if x == STEPS else "training iteration")
    ax.set_ylabel("chain cost per episode")
    ax.legend(fontsize=7)
    fig.tight_layout()
    refs = pd.DataFrame([{"reference line": k, "cost per episode": f"{v:,.1f}"} for k, v in d.curve.references.items()])
    return _figure(fig, "training curve", "Chain cost per episode during training, against the reference costs"
                   " (dashed): the rules on the validation seeds the greedy evaluations use; the exact optimum is"
                   " an expectation.") + (refs.to_html(index=False, classes="kpi", border=0) if len(refs) else "")


def _table(d: ReportData) -> str:
    rows = []
    for name, s in d.summaries.items():
        lo, hi = s["cost_ci95"]
        rows.append({"policy": name, "chain cost": f"{s['cost_mean']:,.1f}", "95% CI": f"[{lo:,.1f}, {hi:,.1f}]",
                     "fill rate": f"{100 * s['fill_rate_mean']:.2f}%",
                     "service": f"{100 * s['service_level_mean']:.2f}%",
                     **{label: f"{s[key]:,.1f}" for key, label in COMPONENTS + ECHELONS},
                     "vs best rule": f"{s['cost_mean'] / d.summaries[d.best_rule]['cost_mean']:.4f}"})
    if d.optimum is not None:
        rows.append({"policy": "exact optimum (expectation)", "chain cost": f"{d.optimum:,.1f}"})
    return pd.DataFrame(rows).fillna("").to_html(index=False, classes="kpi", border=0, escape=True)


def _pairs_table(pairs: dict) -> str:
    if not pairs:
        return ""
    frame = pd.DataFrame([{"pair": k, "mean difference": f"{p['mean']:+,.2f}",
                           "95% CI": f"[{p['ci95'][0]:+,.2f}, {p['ci95'][1]:+,.2f}]",
                           "relative": f"{100 * p['relative']:+.2f}%",
                           "significant at 95%": "yes" if p["significant"] else "no"} for k, p in pairs.items()])
    return frame.to_html(index=False, classes="kpi", border=0)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}p.fact{margin:.2em 0;color:#555}
table.kpi{border-collapse:collapse;font-size:.85em}table.kpi td,table.kpi th{padding:3px 8px;
border-bottom:1px solid #ddd;text-align:right}table.kpi td:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%}figcaption{font-size:.85em;color:#555}"""


def write_report(out: Path, data: ReportData) -> Path:
    """Write ``out/report.html`` and return its path."""
    figs = {"breakdown": _breakdown(data)}
    paired_html, pairs = _paired(data)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(data.title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(data.title)}</h1>"]
    parts += [f"<p class='fact'>{html.escape(line)}</p>" for line in data.facts]
    parts.append(f"<p class='fact'>written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by hmarl_rllib</p>")
    parts += ["<h2>KPIs on the held-out episodes</h2>", _table(data), "<h2>Cost breakdown</h2>", figs["breakdown"]]
    if data.paths:
        parts += ["<h2>Inventory and orders</h2>", _paths(data)]
    if pairs:
        parts += ["<h2>Paired differences on the same seeds</h2>", paired_html, _pairs_table(pairs)]
    if data.curve is not None and not data.curve.progress.empty:
        parts += ["<h2>Training curve</h2>", _curve(data)]
    parts.append("</body></html>")
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
