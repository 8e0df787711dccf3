"""Training flags that cannot work on this machine are refused before Ray starts."""
import os

import pytest

from hmarl_rllib.config import load_config
from hmarl_rllib.errors import InputError
from hmarl_rllib.training import train

from conftest import DEFAULT_YAML


def test_more_env_runners_than_cpus_is_refused_not_left_pending(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    too_many = (os.cpu_count() or 1) + 1
    with pytest.raises(InputError, match="--num-env-runners"):
        train(load_config(DEFAULT_YAML), "x", storage=str(tmp_path), num_env_runners=too_many, stop_iters=1)
    assert not any(tmp_path.iterdir())  # nothing written, no Ray started
