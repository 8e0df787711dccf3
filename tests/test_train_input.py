"""Training flags that cannot work on this machine are refused before Ray starts."""
import os

import pytest

from hmarl_rllib.errors import InputError
from hmarl_rllib.experiments.training import train
from hmarl_rllib.sim.config import load_config

from conftest import DEFAULT_YAML


def test_more_env_runners_than_cpus_is_refused_not_left_pending(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    too_many = (os.cpu_count() or 1) + 1
    with pytest.raises(InputError, match="--num-env-runners"):
        train(load_config(DEFAULT_YAML), "x", storage=str(tmp_path), num_env_runners=too_many, stop_iters=1)
    assert not any(tmp_path.iterdir())  # nothing written, no Ray started


def test_cli_refuses_too_many_runners_with_one_line_and_nothing_else(tmp_path, monkeypatch, capsys):
    from hmarl_rllib.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    too_many = 2 * (os.cpu_count() or 1) + 1
    code = main(["train", "--config", str(DEFAULT_YAML), "--storage", str(tmp_path), "--num-env-runners", str(too_many)])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert out.err.count("\n") == 1 and out.err.startswith("error: --num-env-runners") and "use at most" in out.err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("driver, runner, runners, fits", [(0.5, 0.75, 2, True), (1.0, 1.0, 2, False),
                                                           (1.0, 0.5, 2, True)])
def test_fractional_cpus_decide_what_fits_two_cores(monkeypatch, driver, runner, runners, fits):
    from hmarl_rllib.experiments.training import check_local_cpus, training_settings

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    s = training_settings(load_config(DEFAULT_YAML), driver_cpus=driver, runner_cpus=runner, num_env_runners=runners)
    if fits:
        check_local_cpus(s)
    else:
        with pytest.raises(InputError, match="needs 1 \\+ 2 x 1"):
            check_local_cpus(s)


def test_runner_resources_need_a_cluster_and_reach_the_env_runners(monkeypatch):
    """training.runner_resources (custom Ray resources per env runner, what places the runners on
    chosen nodes: tests/test_multinode.py) is refused on a local Ray, which has none, and counts
    neither this machine's CPUs nor its resources against a cluster."""
    from hmarl_rllib.experiments.training import build_algo_config, check_local_cpus, training_settings

    scenario = load_config(DEFAULT_YAML)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    s = training_settings(scenario, runner_resources={"runner_node": 1}, num_env_runners=4)
    with pytest.raises(InputError, match="runner_resources .*RAY_ADDRESS"):
        check_local_cpus(s)
    check_local_cpus(training_settings(scenario, runner_resources={"runner_node": 1}, num_env_runners=0))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a cluster: its nodes' CPUs and resources decide
    check_local_cpus(s)
    config = build_algo_config(scenario, s)
    assert config.custom_resources_per_env_runner == {"runner_node": 1.0}
    assert build_algo_config(scenario).custom_resources_per_env_runner == {}
