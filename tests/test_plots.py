"""`hmarl plot RUN_DIR [--out DIR]`: training-curve PNGs from Tune's progress.csv, no Jupyter.

The progress.csv files here are fabricated with the column names a `hmarl train` run writes
(tests/test_notebooks.py runs the command on a real run as well).
"""
from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import HMARL
from hmarl_rllib.experiments.plots import FIGURES, plot_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def progress_frame(iterations=6, seed=0, with_losses=True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    it = np.arange(1, iterations + 1)
    df = pd.DataFrame({
        "training_iteration": it,
        "time_this_iter_s": 10.0 + rng.random(iterations),
        "env_runners/num_env_steps_sampled": 2400,
        "env_runners/num_env_steps_sampled_lifetime": 2400 * it,
        "env_runners/chain_cost": 9000 - 400 * it + rng.normal(0, 50, iterations),
        "env_runners/fill_rate": 0.9 + 0.01 * it,
        "env_runners/episode_return_mean": -90 + 4 * it,
        "env_runners/module_episode_returns_mean/store_policy": -60 + 3 * it,
        # evaluation every other iteration: empty cells in between, as Tune writes them
        "eval_chain_cost": np.where(it % 2 == 0, 8000 - 300 * it, np.nan),
        "eval_fill_rate": np.where(it % 2 == 0, 0.95, np.nan),
    })
    if with_losses:
        df["learners/store_policy/policy_loss"] = rng.normal(0, 0.1, iterations)
        df["learners/store_policy/vf_loss"] = 50 / it
        df["learners/store_policy/entropy"] = 1.3 - 0.05 * it
    return df


def run_plot(*args):
    return subprocess.run([str(HMARL), "plot", *map(str, args)], capture_output=True, text=True, timeout=120)


def assert_png(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC, path
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > 0.01, f"{path} is blank"


def test_experiment_dir_with_two_trials_writes_every_figure(tmp_path):
    exp = tmp_path / "tune_results" / "search"
    for i in range(2):
        (exp / f"PPO_trial{i}").mkdir(parents=True)
        progress_frame(seed=i).to_csv(exp / f"PPO_trial{i}" / "progress.csv", index=False)
    out = tmp_path / "pngs"
    proc = run_plot(exp, "--out", out)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(FIGURES)
    assert proc.stdout.split() == [str(out / n) for n in FIGURES]
    for name in names:
        assert_png(out / name)


def test_trial_dir_defaults_to_plots_subfolder_and_skips_missing_columns(tmp_path):
    trial = tmp_path / "PPO_abc"
    trial.mkdir()
    progress_frame(with_losses=False).to_csv(trial / "progress.csv", index=False)
    proc = run_plot(trial)
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in (trial / "plots").iterdir())
    assert "losses.png" not in written
    assert {"training_curve.png", "fill_rate.png", "returns.png", "throughput.png"} <= set(written)


def test_the_plotted_lines_are_the_progress_data():
    """The training curve's lines carry the progress.csv values against env steps, the greedy
    evaluations only where they were run (Tune leaves the other rows empty), one line per trial."""
    from hmarl_rllib.experiments.plots import STEPS, progress_figures

    a, b = progress_frame(seed=1), progress_frame(seed=2)
    b["env_runners/chain_cost"] *= 3
    fig = progress_figures({"a": a, "b": b})["training_curve.png"]
    lines = {ln.get_label(): ln.get_xydata() for ln in fig.axes[0].lines}
    assert set(lines) == {"a: training episodes", "b: training episodes", "a: evaluation (greedy, validation seeds)",
                          "b: evaluation (greedy, validation seeds)"}
    np.testing.assert_array_equal(lines["b: training episodes"], b[[STEPS, "env_runners/chain_cost"]].to_numpy())
    evals = a[[STEPS, "eval_chain_cost"]].dropna().to_numpy()
    assert len(evals) == 3
    np.testing.assert_array_equal(lines["a: evaluation (greedy, validation seeds)"], evals)
    # one trial: no trial names in the labels
    single = progress_figures({"a": a})["training_curve.png"]
    assert [ln.get_label() for ln in single.axes[0].lines] == ["training episodes", "evaluation (greedy, validation seeds)"]


@pytest.mark.parametrize("case", ["missing", "no_progress", "empty", "foreign_columns", "garbage"])
def test_bad_run_dir_is_one_error_line_exit_2(tmp_path, case):
    run = tmp_path / "run"
    if case != "missing":
        run.mkdir()
    if case == "empty":
        (run / "progress.csv").write_text("")
    elif case == "foreign_columns":
        pd.DataFrame({"training_iteration": [1, 2], "loss": [1.0, 0.5]}).to_csv(run / "progress.csv", index=False)
    elif case == "garbage":
        (run / "progress.csv").write_bytes(b"a,b\n1,2,3,4\n\xff\xfe\x00")
    proc = run_plot(run)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not (run / "plots").exists() or not any((run / "plots").iterdir())
