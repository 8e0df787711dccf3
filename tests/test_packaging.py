"""Process and packaging: the bound's process pool does not fork a process that has loaded
torch, and `hmarl bench-twin` benchmarks the shipped scenarios or says it cannot find them
(as when the package is installed without `-e`, as in the Docker image)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import DEFAULT_YAML, ROOT, WALKTHROUGH_YAML
from hmarl_rllib.cli import main
from hmarl_rllib.experiments import bench, benchmark
from hmarl_rllib.sim.config import load_config


# --------------------------------------------------------------------- the bound's process pool
def test_bound_costs_pool_spawns_its_workers(monkeypatch):
    seen = {}

    class FakePool:  # records how the pool was made, runs the chunks in this process
        def __init__(self, max_workers=None, mp_context=None, **kw):
            seen["workers"], seen["context"] = max_workers, mp_context

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, fn, items):
            return [(np.zeros(len(c)), np.ones(len(c), bool), np.zeros((len(c), 7))) for _, c, *_ in items]

    monkeypatch.setattr(benchmark, "ProcessPoolExecutor", FakePool)
    bounds, optimal, plans = benchmark.bound_costs(load_config(DEFAULT_YAML), np.arange(8), workers=2)
    assert len(bounds) == len(optimal) == len(plans) == 8
    assert seen["workers"] == 2
    assert seen["context"] is not None, "default context: fork on Linux, after torch may be loaded"
    assert seen["context"].get_start_method() in ("spawn", "forkserver")


# ------------------------------------------------------------------- bench-twin's scenarios
def test_bench_twin_finds_the_repository_configs(monkeypatch):
    monkeypatch.delenv(bench.CONFIGS_ENV, raising=False)
    assert bench.find_config("default.yaml") == DEFAULT_YAML
    assert bench.find_config("walkthrough.yaml") == WALKTHROUGH_YAML


def _installed_copy(tmp_path):
    """The package alone in a site folder, no configs/ beside it: `pip install .` without -e."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "hmarl_rllib", site / "hmarl_rllib", ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"  # an unrelated working directory
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != bench.CONFIGS_ENV}
    env["PYTHONPATH"] = str(site)
    return site, work, env


def _bench_twin(work, env):
    return subprocess.run([sys.executable, "-c", "import sys, hmarl_rllib; print(hmarl_rllib.__file__, file=sys.stderr);"
                           " from hmarl_rllib.cli import main; sys.exit(main(sys.argv[1:]))",
                           "bench-twin", "--seconds", "0", "--json"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)


def test_bench_twin_installed_without_configs_is_one_error_line_exit_2(tmp_path):
    site, work, env = _installed_copy(tmp_path)
    proc = _bench_twin(work, env)
    where, *lines = proc.stderr.strip().splitlines()
    assert where.startswith(str(site)), f"not the copied package: {where}"
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("error: bench-twin: default.yaml not found"), proc.stderr
    assert bench.CONFIGS_ENV in lines[0] and str(work / "configs") in lines[0]


def test_bench_twin_installed_uses_hmarl_configs(tmp_path):
    site, work, env = _installed_copy(tmp_path)
    configs = tmp_path / "opt" / "configs"  # as the Docker image's /opt/hmarl/configs
    shutil.copytree(ROOT / "configs", configs)
    env[bench.CONFIGS_ENV] = str(configs)
    proc = _bench_twin(work, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["configs"] == {"default": str(configs / "default.yaml"), "walkthrough": str(configs / "walkthrough.yaml")}
    assert out["env_steps_per_s"] > 0 and out["env_steps_per_s_walkthrough"] > 0


def test_bench_twin_missing_config_in_process(tmp_path, monkeypatch, capsys):
    """Same, through `main` with the package location faked: the error comes before any timing."""
    monkeypatch.setattr(bench, "__file__", str(tmp_path / "site" / "hmarl_rllib" / "experiments" / "bench.py"))
    monkeypatch.delenv(bench.CONFIGS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "twin_rate", lambda *a, **k: pytest.fail("timed the twin before checking the configs"))
    assert main(["bench-twin", "--seconds", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: bench-twin: default.yaml not found"), err


def test_docker_image_points_bench_twin_at_its_configs():
    """The image installs the package without -e (configs are not beside it): HMARL_CONFIGS
    names the folder the configs are copied to."""
    from test_deploy import dockerfile_instructions, image_path_to_repo

    env = " ".join(a for k, a in dockerfile_instructions() if k == "ENV")
    found = [v for k, v in (kv.split("=", 1) for kv in env.split() if "=" in kv) if k == bench.CONFIGS_ENV]
    assert len(found) == 1, f"the Dockerfile sets no {bench.CONFIGS_ENV}"
    assert (image_path_to_repo(found[0]) / "default.yaml").resolve() == DEFAULT_YAML.resolve()
