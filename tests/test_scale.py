"""configs/scale_300.yaml: 300 stores (as one agent: training.group_stores) train for two
iterations and evaluate from a fresh clone, tuning included (issue 16: no cached baseline ships for it; the scaled search takes seconds)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from test_training import checkpoints, hmarl, trial_dir

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_300_stores_train_two_iterations_and_evaluate(tmp_path):
    shutil.copy(ROOT / "configs" / "scale_300.yaml", tmp_path / "scale_300.yaml")  # tuned files land here
    t0 = time.perf_counter()
    proc = hmarl("train", "--config", "scale_300.yaml", "--storage", tmp_path / "runs", cwd=tmp_path, timeout=900)
    took = time.perf_counter() - t0
    table = proc.stdout
    assert "tuning s_S for scenario 'scale_300'" in proc.stderr + proc.stdout
    assert "(256 asked, scaled to the 300 store agents)" in proc.stderr + proc.stdout
    assert "stores (mean of 300)" in table and "learned" in table and "s_S" in table
    trial = trial_dir(tmp_path / "runs", "scale_300")
    progress = pd.read_csv(trial / "progress.csv")
    assert progress["training_iteration"].tolist() == [1, 2]
    # every agent of every day was sampled: the 300 stores as one agent (group_stores), the
    # warehouse and the supplier, one step each per env step
    last = progress.iloc[-1]
    prefix = "env_runners/num_agent_steps_sampled_lifetime/"
    agent_cols = [c for c in progress.columns if c.startswith(prefix)]
    assert sorted(c[len(prefix):] for c in agent_cols) == ["stores", "supplier", "warehouse"]
    assert (last[agent_cols] == last["env_runners/num_env_steps_sampled_lifetime"]).all()
    ckpt = max(checkpoints(trial))
    out = json.loads(hmarl("evaluate", "--checkpoint", ckpt, "--episodes", "8", "--json", cwd=tmp_path,
                           timeout=600).stdout)
    assert out["episodes"] == 8
    learned = out["policies"]["learned"]
    # the rules tuned at this scale behave as at 3 stores: with a fixed cost per order, (s, S) costs
    # far less than base-stock. (A 2-iteration policy's cost is not asserted: one run of three moved
    # it 50% above its rule, the others not at all.)
    rule, base = out["policies"]["s_S"]["cost_mean"], out["policies"]["base_stock"]["cost_mean"]
    assert base > 1.5 * rule > 0
    assert 0 < learned["cost_mean"] < float("inf") and 0 < learned["fill_rate_mean"] <= 1.0
    print(f"300 stores: hmarl train (tuning, 2 iterations, evaluation) took {took:.0f} s")
