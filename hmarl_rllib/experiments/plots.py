"""Training-curve PNGs from Tune's ``progress.csv``, without Jupyter (``hmarl plot RUN_DIR``).

``RUN_DIR`` is a trial folder (it holds ``progress.csv``), or an experiment folder such as
``tune_results/<name>`` whose trials each hold one (``hmarl tune`` runs many). One line per
trial in every figure, against sampled env steps (``training_iteration`` if a run did not log
them). Figures, each written only when its columns are in the file:

- ``training_curve.png``: chain cost per episode, training episodes and greedy evaluation on
  the validation seeds (``env_runners/chain_cost``, ``eval_chain_cost``);
- ``fill_rate.png``: chain fill rate, training and evaluation;
- ``returns.png``: mean episode return of the learned store module and of all agents;
- ``losses.png``: the store module's PPO policy loss, value-function loss and entropy;
- ``throughput.png``: env steps sampled per second of each iteration.

Matplotlib's object API only (no pyplot): nothing here changes the caller's backend.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hmarl_rllib.errors import InputError

STEPS = "env_runners/num_env_steps_sampled_lifetime"
ITERATION = "training_iteration"
STORE = "store_policy"


@dataclass(frozen=True)
class Panel:
    """One axes: (column, label) pairs sharing a y axis."""

    ylabel: str
    series: tuple[tuple[str, str], ...]


# figure file -> panels (one row each)
FIGURES: dict[str, tuple[Panel, ...]] = {
    "training_curve.png": (
        Panel("chain cost per episode", (("env_runners/chain_cost", "training episodes"),
                                         ("eval_chain_cost", "evaluation (greedy, validation seeds)"))),
    ),
    "fill_rate.png": (
        Panel("chain fill rate", (("env_runners/fill_rate", "training episodes"),
                                  ("eval_fill_rate", "evaluation"))),
    ),
    "returns.png": (
        Panel("episode return", ((f"env_runners/module_episode_returns_mean/{STORE}", "store module (sum over stores)"),
                                 ("env_runners/episode_return_mean", "all agents"))),
    ),
    "losses.png": (
        Panel("policy loss", ((f"learners/{STORE}/policy_loss", "policy loss"),)),
        Panel("value-function loss", ((f"learners/{STORE}/vf_loss", "vf loss"),)),
        Panel("entropy", ((f"learners/{STORE}/entropy", "entropy"),)),
    ),
    "throughput.png": (
        Panel("env steps / s", (("env_steps_per_s", "sampled env steps per second"),)),
    ),
}


def find_progress_files(run_dir) -> dict[str, Path]:
    """``{trial name: progress.csv}`` under ``run_dir`` (itself a trial, or an experiment)."""
    root = Path(run_dir).expanduser()
    if not root.exists():
        raise InputError(f"RUN_DIR {root}: no such folder (pass tune_results/<name> or one of its trial folders)")
    if root.is_file():
        if root.name == "progress.csv":
            return {root.parent.name: root}
        raise InputError(f"RUN_DIR {root}: a file; pass the folder that holds progress.csv")
    if (root / "progress.csv").is_file():
        return {root.name: root / "progress.csv"}
    found = {p.parent.name: p for p in sorted(root.glob("*/progress.csv"))}
    if not found:
        raise InputError(f"RUN_DIR {root}: no progress.csv in it or in its sub-folders"
                         " (pass tune_results/<name> written by `hmarl train` or `hmarl tune`)")
    return found


def load_progress(path: Path) -> pd.DataFrame:
    """One trial's ``progress.csv`` with a derived ``env_steps_per_s`` column; empty if the
    trial finished no iteration."""
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable progress.csv ({str(err).splitlines()[0]})") from None
    if "env_runners/num_env_steps_sampled" in df and "time_this_iter_s" in df:
        rate = df["env_runners/num_env_steps_sampled"] / df["time_this_iter_s"]
        df = pd.concat([df, rate.rename("env_steps_per_s")], axis=1)  # (df[...] = ... warns on wide frames)
    return df


def _x_axis(frames: dict[str, pd.DataFrame]) -> tuple[str, str]:
    if all(STEPS in df for df in frames.values()):
        return STEPS, "env steps sampled"
    if all(ITERATION in df for df in frames.values()):
        return ITERATION, "training iteration"
    raise InputError(f"progress.csv has neither {STEPS!r} nor {ITERATION!r}: not written by Tune")


def plot_progress(frames: dict[str, pd.DataFrame], out) -> list[Path]:
    """Write every figure whose columns appear in at least one trial; return the files."""
    figures = progress_figures(frames)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, fig in figures.items():
        path = out / filename
        fig.savefig(path, dpi=90)
        written.append(path)
    return written


def progress_figures(frames: dict[str, pd.DataFrame]) -> dict:
    """Figure file name -> matplotlib Figure, for every figure whose columns appear in at least
    one trial (:data:`FIGURES`); one line per trial and series."""
    from matplotlib.figure import Figure

    frames = {name: df for name, df in frames.items() if len(df)}
    if not frames:
        raise InputError("no trial has finished an iteration yet (every progress.csv is empty)")
    x, xlabel = _x_axis(frames)
    figures = {}
    many = len(frames) > 1
    for filename, panels in FIGURES.items():
        present = [p for p in panels if any(col in df for df in frames.values() for col, _ in p.series)]
        if not present:
            continue
        fig = Figure(figsize=(8, 3.2 * len(present)))
        axes = fig.subplots(len(present), 1, sharex=True, squeeze=False)[:, 0]
        for ax, panel in zip(axes, present):
            for trial, df in frames.items():
                for col, label in panel.series:
                    if col not in df:
                        continue
                    d = df[[x, col]].dropna()
                    if d.empty:
                        continue
                    evaluation = col.startswith("eval")
                    ax.plot(d[x], d[col], marker="o" if evaluation or len(d) < 3 else None,
                            linestyle="--" if evaluation and not many else "-",
                            label=f"{trial}: {label}" if many else label)
            ax.set_ylabel(panel.ylabel)
            ax.grid(alpha=0.3)
            if ax.has_data():
                ax.legend(fontsize=7 if many else 8)
        axes[-1].set_xlabel(xlabel)
        fig.tight_layout()
        figures[filename] = fig
    if not figures:
        cols = sorted({c for df in frames.values() for c in df.columns})[:8]
        raise InputError(f"progress.csv has none of the plotted columns (it has {', '.join(cols)}, ...):"
                         " not a run of `hmarl train` or `hmarl tune`")
    return figures


def plot_run(run_dir, out=None) -> list[Path]:
    """``hmarl plot``: PNGs for the trial(s) under ``run_dir``, into ``out`` (default
    ``<run_dir>/plots``)."""
    files = find_progress_files(run_dir)
    frames = {name: load_progress(path) for name, path in files.items()}
    root = Path(run_dir).expanduser()
    default = (root.parent if root.is_file() else root) / "plots"
    return plot_progress(frames, Path(out).expanduser() if out else default)
