"""The notebooks run top to bottom with a tiny budget, and a training run leaves TensorBoard files.

Each notebook is executed with nbclient in a fresh kernel of this venv, from notebooks/ (so
its relative paths are the ones a user gets), with a cell injected after the one tagged
``parameters`` (as papermill does) that shrinks the budget and sends every output to a
temporary folder. Any error in any cell fails the test. Notebook 01's training run is reused
to check the TensorBoard event files and ``hmarl plot`` on a real run.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import HMARL, ROOT

NOTEBOOKS = ROOT / "notebooks"
NAMES = ("01_quickstart", "02_tune_analysis", "03_digital_twin")
# Training settings small enough for one iteration in seconds on 2 cores.
TINY_TRAINING = {"train_batch": 240, "minibatch": 240, "epochs": 1, "num_env_runners": 0, "envs_per_runner": 4,
                 "evaluation_interval": 1, "evaluation_episodes": 2, "checkpoint_frequency": 1}


def tiny_parameters(name: str, tmp: Path) -> dict:
    if name == "01_quickstart":
        return {"TRAIN_ITERS": 1, "TRAINING_OVERRIDES": TINY_TRAINING, "EPISODES": 8,
                "STORAGE": str(tmp / "tune_results"), "NAME": "quickstart", "OUT_DIR": str(tmp / "out01")}
    if name == "02_tune_analysis":
        search = {"num_samples": 1, "max_iters": 1, "grace_period": 1, "max_concurrent": 2}
        return {"EXPERIMENT": str(tmp / "tune_results" / "tune_nb"), "RUN_SEARCH_IF_MISSING": True,
                "SEARCH_OVERRIDES": {**TINY_TRAINING, "search": search},
                "BEST_CONFIG_OUT": str(tmp / "best_config.yaml")}
    return {"EPISODES": 12, "DAYS_BY_HAND": 3, "OUT_DIR": str(tmp / "out03")}


def load(name: str):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def parameters_index(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged `parameters`"
    return tagged[0]


def run_notebook(name: str, tmp: Path):
    """Execute with the tiny parameters; return the executed notebook (raises on any error)."""
    nb = load(name)
    params = tiny_parameters(name, tmp)
    lines = ["# injected by tests/test_notebooks.py", "import sys",
             f"assert sys.prefix == {sys.prefix!r}, sys.executable  # this venv's kernel"]
    lines += [f"{k} = {v!r}" for k, v in params.items()]
    injected = nbformat.v4.new_code_cell("\n".join(lines))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(parameters_index(nb) + 1, injected)
    # Whatever the notebook did with Ray, nothing may be left running at the end.
    nb.cells.append(nbformat.v4.new_code_cell("import ray\nassert not ray.is_initialized(), 'Ray left running'"))
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


# Ray's start-up notices that hmarl_rllib.quiet filters: none may reach a notebook's output.
RAY_NOISE = ("new API stack", "Missing packages: ['ipywidgets']", "Install gputil")


def images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def assert_quiet(nb):
    text = all_output_text(nb)
    for msg in RAY_NOISE:
        assert msg not in text, f"Ray notice {msg!r} reached the notebook"


def all_output_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(json.dumps(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_clean(name):
    nb = load(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), f"{name}: clear the outputs"
    assert code[0] is nb.cells[parameters_index(nb)], f"{name}: the parameters cell is the first code cell"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nb01")
    return run_notebook("01_quickstart", tmp), tmp


@pytest.mark.slow
def test_01_quickstart_runs(quickstart):
    nb, tmp = quickstart
    text = all_output_text(nb)
    assert "best checkpoint" in text and "learned" in text
    for policy in ("learned", "s_S", "base_stock"):
        assert (tmp / "out01" / f"ledger_{policy}.parquet").is_file()
    assert (tmp / "out01" / "training" / "training_curve.png").is_file()
    # inventory per agent, cost breakdown, training curve, returns: all shown inline
    assert images(nb) >= 4, images(nb)
    assert_quiet(nb)


@pytest.mark.slow
def test_training_run_writes_tensorboard_files_and_hmarl_plot_reads_it(quickstart, tmp_path):
    _, tmp = quickstart
    exp = tmp / "tune_results" / "quickstart"
    events = list(exp.glob("*/events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events), f"no TensorBoard event files under {exp}"
    proc = subprocess.run([str(HMARL), "plot", str(exp), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    written = {Path(line).name for line in proc.stdout.split()}
    assert {"training_curve.png", "losses.png", "returns.png"} <= written
    assert all((tmp_path / n).stat().st_size > 1000 for n in written)


@pytest.mark.slow
def test_02_tune_analysis_runs(tmp_path):
    nb = run_notebook("02_tune_analysis", tmp_path)
    best = tmp_path / "best_config.yaml"
    assert best.is_file()
    from hmarl_rllib.sim.config import load_config

    assert "search" not in (load_config(best).training or {})
    trials = list((tmp_path / "tune_results" / "tune_nb").glob("*/progress.csv"))
    space = load_config(ROOT / "configs" / "tune_ppo.yaml").training["search"]["space"]
    expected = math.prod(len(spec["grid"]) for spec in space.values() if "grid" in spec)  # x 1 sample
    assert len(trials) == expected, trials
    assert images(nb) >= 2, images(nb)  # learning curves, hyperparameters
    assert_quiet(nb)


def test_03_digital_twin_runs(tmp_path):
    nb = run_notebook("03_digital_twin", tmp_path)
    assert images(nb) >= 2, images(nb)  # demand paths, bullwhip
    assert (tmp_path / "out03" / "ledger_s_S.parquet").is_file()
    assert (tmp_path / "out03" / "demand.csv").is_file()
