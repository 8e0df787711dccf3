"""report.html on its own (no training, no Ray): a rules-only benchmark's report, and the
reference lines of the training curve (best rule, exact optimum), opened in headless Chromium."""
from __future__ import annotations

import numpy as np
import pandas as pd

from browser import chromium_or_skip, render
from conftest import DEFAULT_YAML
from hmarl_rllib.experiments.html_report import Curve, ReportData, write_report
from hmarl_rllib.sim import reconciliation, simulate
from hmarl_rllib.sim.config import load_config


def test_a_rules_only_benchmark_report_compares_the_rules_with_the_best_one(tmp_path):
    from hmarl_rllib.experiments.benchmark import run_benchmark

    chromium = chromium_or_skip()
    r = run_benchmark(load_config(DEFAULT_YAML), episodes=8, bound_episodes=0, out=tmp_path)
    text = (tmp_path / "report.html").read_text()
    best = r["best_rule"]
    assert r["report"] == str(tmp_path / "report.html")
    # no learned policy: the best rule is the reference of the paired differences and of the paths
    for other in r["policies"]:
        if other != best:
            assert f"<td>{best} - {other}</td>" in text, other
    assert "no exact optimum:" in text and "3 stores" in text  # the chain is not solvable: said why
    seen = render(tmp_path / "report.html", chromium)
    assert seen["errors"] == []
    assert [i["alt"] for i in seen["images"]] == ["cost breakdown", "inventory and order paths", "paired differences"]
    assert all(i["complete"] and i["width"] > 300 for i in seen["images"])


def test_the_training_curve_draws_the_rules_and_the_optimum_as_reference_lines(tmp_path):
    chromium = chromium_or_skip()
    sc = load_config(DEFAULT_YAML)
    from hmarl_rllib.policies.tuning import tuned_policy

    seeds = simulate.eval_seeds(6)
    summaries, costs, twins = {}, {}, {}
    for name in ("s_S", "base_stock"):
        summaries[name], twins[name] = simulate.evaluate(sc, tuned_policy(sc, name).orders, seeds)
        costs[name] = reconciliation.chain_kpis(simulate.scored_ledger(twins[name]), twins[name].n_stores)["cost"]
    steps = np.arange(1, 11) * 4000
    progress = pd.DataFrame({"env_runners/num_env_steps_sampled_lifetime": steps,
                             "env_runners/chain_cost": 9000 - 300 * np.arange(10),
                             "eval_chain_cost": np.where(np.arange(10) % 2, 8000 - 250 * np.arange(10), np.nan)})
    data = ReportData(title="t", facts=["a fact"], summaries=summaries, costs=costs, paths=twins, best_rule="s_S",
                      optimum=4321.0, curve=Curve(progress, {"s_S (validation seeds)": 5000.0, "exact optimum": 4321.0}))
    text = write_report(tmp_path, data).read_text()
    assert "<td>exact optimum (expectation)</td>\n      <td>4,321.0</td>" in text  # a row of the KPI table
    assert "<td>exact optimum</td>\n      <td>4,321.0</td>" in text  # a reference line of the curve
    assert "<td>s_S (validation seeds)</td>\n      <td>5,000.0</td>" in text
    seen = render(tmp_path / "report.html", chromium)
    assert seen["errors"] == [] and [i["alt"] for i in seen["images"]][-1] == "training curve"
    assert all(i["complete"] and i["width"] > 300 for i in seen["images"])
