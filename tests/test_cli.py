"""The ``hmarl`` command line: bad input gives one ``error:`` line and exit code 2 (never a
traceback); ``simulate --json`` prints the promised fields; ``baseline --tune`` writes parameters
that ``simulate --params`` reads; ``--out`` writes a Parquet ledger."""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from hmarl_rllib.cli import main

from conftest import DEFAULT_YAML, HMARL, ROOT


def _run(*args, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(HMARL), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


def _small_config(tmp_path, **override):
    data = yaml.safe_load(DEFAULT_YAML.read_text())
    data.update({"name": "small", "episode_length": 10}, **override)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _assert_one_error_line(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize("override, needles", [
    ({"shortage": "lost"}, ["shortage", "'lost'", "lost_sales"]),
    ({"stores": {"count": 3, "lead_time": -1}}, ["stores.lead_time", "-1"]),
    ({"episode_lenght": 30}, ["episode_lenght", "unknown field"]),
    ({"warehouse": {"allocation": "random"}}, ["warehouse.allocation", "proportional"]),
])
def test_bad_config_gives_one_error_line_and_exit_2(tmp_path, override, needles):
    data = yaml.safe_load(DEFAULT_YAML.read_text())
    data.update(override)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    proc = _run("simulate", "--config", bad, "--policy", "s_S", "--rule-based", "--episodes", 2)
    _assert_one_error_line(proc, str(bad), *needles)


def test_bad_inputs_in_process_give_exit_2(tmp_path, capsys):
    cfg = _small_config(tmp_path)
    cases = [
        (["simulate", "--config", tmp_path / "missing.yaml", "--policy", "s_S"], "no such file"),
        (["simulate", "--config", cfg, "--policy", "s_S", "--params", tmp_path / "nope.yaml"], "--params"),
        (["simulate", "--config", cfg, "--policy", "random", "--params", cfg], "random policy has no parameters"),
        (["simulate", "--config", cfg, "--policy", "s_S", "--episodes", "0"], "--episodes"),
        (["simulate", "--config", cfg, "--policy", "magic"], "--policy"),
        (["baseline", "--config", cfg], "--policy"),
        (["simulate", "--config", cfg, "--policy", "s_S_endgame_schedule", "--rule-based"], "has no schedule"),
        (["simulate", "--config", cfg, "--policy", "s_S_endgame", "--rule-based"], "has no stop days"),
        (["benchmark", "--config", cfg, "--out", cfg], "--out"),  # a file where the report's folder goes
        (["evaluate", "--checkpoint", tmp_path, "--out", cfg], "a file is in the way"),
    ]
    for argv, needle in cases:
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors
            rc = exc.code
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, argv
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], (argv, err)


def test_bad_demand_file_gives_one_error_line(tmp_path):
    (tmp_path / "demand.csv").write_text("date,store,sku,demand\n2026-01-01,store_9,A,5\n")
    cfg = _small_config(tmp_path, demand_file="demand.csv")
    proc = _run("simulate", "--config", cfg, "--policy", "s_S", "--rule-based", "--episodes", 2)
    _assert_one_error_line(proc, "demand.csv", "unknown store", "store_9")


def test_tune_then_simulate_with_params_json_and_parquet(tmp_path):
    cfg = _small_config(tmp_path)
    params = tmp_path / "params.yaml"
    proc = _run("baseline", "--config", cfg, "--policy", "s_S", "--tune", "--tune-episodes", 8,
                "--episodes", 10, "--out", params, "--json")
    assert proc.returncode == 0, proc.stderr
    tuned = json.loads(proc.stdout)
    assert tuned["params_file"] == str(params)
    saved = yaml.safe_load(params.read_text())
    assert saved["policy"] == "s_S" and len(saved["store"]["order_up_to"]) == 3
    assert all(S >= s for S, s in zip(np.ravel(saved["store"]["order_up_to"]), np.ravel(saved["store"]["reorder_point"])))

    ledger = tmp_path / "ledger.parquet"
    proc = _run("simulate", "--config", cfg, "--policy", "s_S", "--params", params, "--episodes", 10,
                "--seed", 2_000_000, "--json", "--out", ledger)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("policy", "episodes", "cost_mean", "cost_ci95", "fill_rate_mean", "service_level_mean", "per_agent"):
        assert key in out
    assert out["policy"] == "s_S" and out["episodes"] == 10
    lo, hi = out["cost_ci95"]
    assert lo <= out["cost_mean"] <= hi
    assert set(out["per_agent"]) == {"store_1", "store_2", "store_3", "warehouse", "supplier"}
    assert 0 <= out["fill_rate_mean"] <= 1 and 0 <= out["service_level_mean"] <= 1
    # the ledger on disk reconciles with the printed cost
    frame = pd.read_parquet(ledger)
    assert len(frame) == 10 * 10 * 5
    cost = frame[["holding_cost", "stockout_cost", "ordering_cost"]].to_numpy().sum() / 10
    assert cost == pytest.approx(out["cost_mean"])
    # simulate --params runs the tuned parameters: on the same held-out seeds it reproduces the
    # evaluation `baseline --tune` printed
    assert out["cost_mean"] == pytest.approx(tuned["cost_mean"])


def test_simulate_policies_in_process(tmp_path, capsys):
    cfg = _small_config(tmp_path)
    results = {}
    for policy in ("random", "s_S"):
        argv = ["simulate", "--config", str(cfg), "--policy", policy, "--episodes", "20", "--json"]
        if policy != "random":
            argv.append("--rule-based")
        assert main(argv) == 0
        results[policy] = json.loads(capsys.readouterr().out)
    assert results["random"]["cost_mean"] > results["s_S"]["cost_mean"]
    # the table output names every agent
    assert main(["simulate", "--config", str(cfg), "--policy", "s_S", "--rule-based", "--episodes", "3"]) == 0
    table = capsys.readouterr().out
    for name in ("store_1", "warehouse", "supplier", "chain cost"):
        assert name in table


def test_json_output_keeps_stdout_for_the_json_and_shows_progress_on_stderr(tmp_path, capsys):
    """Long work says what it is doing also with --json: its progress lines go to stderr, and
    stdout is the one JSON object."""
    cfg = _small_config(tmp_path, stores={**yaml.safe_load(DEFAULT_YAML.read_text())["stores"], "count": 1})
    assert main(["simulate", "--config", str(cfg), "--policy", "base_stock", "--episodes", "4", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["cost_mean"] > 0
    assert "tuning base_stock for scenario 'small'" in err


def test_a_network_of_40_stores_prints_the_store_mean_and_the_costliest_stores(tmp_path, capsys):
    """Above 10 stores the per-agent table keeps its size: the mean over the stores, the five
    costliest stores by name, the upstream agents, and where the rest are."""
    data = yaml.safe_load(DEFAULT_YAML.read_text())
    data.update({"name": "wide", "episode_length": 10})
    data["stores"]["count"] = 40
    cfg = tmp_path / "wide.yaml"
    cfg.write_text(yaml.safe_dump(data))
    argv = ["simulate", "--config", str(cfg), "--policy", "s_S", "--rule-based", "--episodes", "4"]
    assert main(argv + ["--json"]) == 0
    agents = json.loads(capsys.readouterr().out)["per_agent"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    table = out[:out.index("chain cost")]
    labels = {line.split()[0] for line in table.splitlines() if line.strip()}
    stores = [n for n in agents if n.startswith("store_")]
    costliest = sorted(stores, key=lambda n: -agents[n]["cost"])[:5]
    assert labels & set(stores) == set(costliest)
    assert {"warehouse", "supplier"} <= labels
    mean_row = next(line for line in table.splitlines() if line.startswith("stores (mean of 40)"))
    assert mean_row.split()[4] == f"{np.mean([agents[n]['cost'] for n in stores]):,.1f}"
    assert "35 more not" in table


def test_bench_twin_json_shape(capsys):
    """The benchmark's wiring only (not its speed: that is measured, not tested)."""
    assert main(["bench-twin", "--seconds", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [row["stores"] for row in out["twin"]] == [3, 30, 300]
    assert all(row["replicas"] > 1 and row["store_days_per_s"] > 0 for row in out["twin"])
    assert out["env_steps_per_s"] > 0


def test_seasonal_policy_tune_print_and_params_check(tmp_path):
    """`--policy s_S_seasonal`: tuned (after the static rule it starts from), written with its
    forecast windows, printed, replayed from --params; a file of it refused for --policy s_S."""
    seasonal_demand = {"model": "poisson", "mean": 60, "yearly_amplitude": 0.5, "yearly_peak_day": 150}
    data = yaml.safe_load(DEFAULT_YAML.read_text())
    data["stores"]["demand"] = seasonal_demand
    cfg = _small_config(tmp_path, stores=data["stores"])
    params = tmp_path / "seasonal.yaml"
    proc = _run("baseline", "--config", cfg, "--policy", "s_S_seasonal", "--tune", "--tune-episodes", 8,
                "--episodes", 10, "--out", params)
    assert proc.returncode == 0, proc.stderr
    assert "levels follow the season" in proc.stdout and "store 1-7 ahead" in proc.stdout
    saved = yaml.safe_load(params.read_text())
    assert saved["policy"] == "s_S" and set(saved["forecast_windows"]) == {"store", "warehouse", "supplier"}
    assert (tmp_path / "baselines" / "small_s_S.tune8.yaml").is_file()  # the static rule it started from, cached
    proc = _run("simulate", "--config", cfg, "--policy", "s_S_seasonal", "--params", params, "--episodes", 4, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["policy"] == "s_S_seasonal"
    proc = _run("simulate", "--config", cfg, "--policy", "s_S", "--params", params, "--episodes", 4)
    _assert_one_error_line(proc, "holds a s_S_seasonal policy but --policy is s_S")


def test_baseline_tunes_a_schedule_on_twice_the_tune_episodes(tmp_path):
    """`baseline --tune` of a _schedule rule: the schedule is written with the parameters, and
    --tune-episodes sets its tuning seeds (twice as many: it has many more parameters)."""
    cfg = _small_config(tmp_path)  # 10-day episodes: 10 periods of 1 day
    out = tmp_path / "sch.yaml"
    proc = _run("baseline", "--config", cfg, "--policy", "s_S_schedule", "--tune", "--tune-episodes", 4,
                "--episodes", 5, "--out", out, "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    saved = yaml.safe_load(out.read_text())
    assert saved["tuned_on"].endswith("(8 episodes)")
    assert saved["schedule"]["period_days"] == 1 and len(saved["schedule"]["store"]) == 10
    assert json.loads(proc.stdout)["params"]["schedule"] == saved["schedule"]


def test_help_shows_every_command_with_a_line_in_workflow_order(capsys):
    """What `hmarl --help` prints: one described line per command, train → evaluate → benchmark
    and export → recommend → serve in that order, and each command's own --help exits 0."""
    import re

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    shown = re.findall(r"^    ([a-z][a-z-]+) +\S", capsys.readouterr().out, flags=re.M)
    assert len(shown) == len(set(shown)) >= 17, shown
    pos = {c: i for i, c in enumerate(shown)}
    for before, after in (("train", "evaluate"), ("evaluate", "benchmark"), ("export", "recommend"),
                          ("recommend", "serve"), ("train", "export")):
        assert pos[before] < pos[after], (before, after, shown)
    for command in shown:
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0, command
        assert "usage: hmarl " + command in capsys.readouterr().out


def test_a_quick_tuning_leaves_the_default_file_alone(tmp_path, capsys):
    """`baseline --tune --tune-episodes 4` writes <scenario>_<policy>.tune4.yaml (and caches the
    rule it starts from the same way) and says so: the default files, which train and
    benchmark read, are not touched; an --out that cannot be written fails before tuning."""
    cfg = _small_config(tmp_path)
    base = tmp_path / "baselines"
    base.mkdir()
    default = {k: base / f"small_{k}.yaml" for k in ("s_S", "echelon_s_S")}
    for path in default.values():
        path.write_text("# tuned on the default 256 seeds\n")
    assert main(["baseline", "--config", str(cfg), "--policy", "echelon_s_S", "--tune", "--tune-episodes", "4",
                 "--episodes", "3"]) == 0
    out, err = capsys.readouterr()
    for path in default.values():
        assert path.read_text() == "# tuned on the default 256 seeds\n"
    quick = base / "small_echelon_s_S.tune4.yaml"
    assert yaml.safe_load(quick.read_text())["tuned_on"].endswith("(4 episodes)")
    assert (base / "small_s_S.tune4.yaml").is_file()  # the (s, S) it started from
    assert f"written to {quick}" in out
    assert f"train and benchmark read only {default['echelon_s_S']}" in err

    argv = ["baseline", "--config", str(cfg), "--policy", "s_S", "--tune", "--tune-episodes", "4",
            "--out", str(tmp_path / "small.yaml" / "p.yaml")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out ") and "p.yaml" in err[0], err


@pytest.mark.parametrize("command, seed", [
    ("evaluate", 1_500_000),  # validation seeds: they chose the checkpoint
    ("evaluate", 0),  # RL training seeds
    ("benchmark", 1_000_000),  # baseline tuning seeds
    ("benchmark", 1_999_990),  # 10 episodes from here reach into the held-out range, but start below it
    ("simulate", 999_999),
])
def test_a_seed_range_overlapping_training_tuning_or_validation_seeds_is_refused(tmp_path, capsys, command, seed):
    """`--seed` may not point the held-out evaluation at the seeds that trained, tuned or chose
    the policies: one error line naming --seed and the allowed range, exit 2, before any work
    (the checkpoint below does not even exist)."""
    cfg = _small_config(tmp_path)
    args = {"evaluate": ["--checkpoint", tmp_path / "no_such_checkpoint"],
            "benchmark": ["--config", cfg, "--bound-episodes", 0],
            "simulate": ["--config", cfg, "--policy", "s_S", "--rule-based"]}[command]
    argv = [command, *args, "--episodes", 10, "--seed", seed]
    if (command, seed) == ("evaluate", 1_500_000):  # the installed command, once
        _assert_one_error_line(_run(*argv), f"--seed {seed}", "from 2000000 to")
        return
    assert main([str(a) for a in argv]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --seed {seed}: ") and "from 2000000 to" in lines[0], err
    assert out == ""


def test_a_held_out_seed_range_is_accepted(tmp_path, capsys):
    cfg = _small_config(tmp_path)
    assert main(["simulate", "--config", str(cfg), "--policy", "s_S", "--rule-based", "--episodes", "2",
                 "--seed", "2000010", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seeds"] == [2_000_010, 2_000_011]


def test_a_bound_longer_than_an_hour_at_worst_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """`benchmark`'s bound runs its traces over the workers, each up to --bound-time-limit: its
    worst case is known before anything runs. Over an hour it is refused in one line naming the
    flags and a number of traces that fits (exit 2), before tuning or simulating anything; the
    largest that fits is not refused."""
    from hmarl_rllib.experiments import benchmark
    from hmarl_rllib.policies import tuning

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the bound's budget was checked")

    monkeypatch.setattr(tuning, "tuned_policy", no_work)
    monkeypatch.setattr(benchmark.simulate, "eval_seeds", no_work)
    cfg = _small_config(tmp_path)
    argv = ["benchmark", "--config", str(cfg), "--episodes", "1000", "--bound-episodes", "400",
            "--bound-time-limit", "20", "--workers", "2"]  # 200 traces per worker x 20 s = 67 minutes
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --bound-episodes 400 x --bound-time-limit 20s"), err
    assert "--bound-episodes 360 or fewer" in err[0]  # 180 per worker x 20 s = 60 minutes
    with pytest.raises(AssertionError, match="work started"):  # 360 fits: the work starts
        main([*argv[:-5], "360", *argv[-4:]])
