"""Shared helpers: small scenarios built from plain dicts (the same path a YAML file takes)."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from hmarl_rllib.sim.config import load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_YAML = ROOT / "configs" / "default.yaml"
WALKTHROUGH_YAML = ROOT / "configs" / "walkthrough.yaml"  # default.yaml's scenario, the original agent design
HMARL = ROOT / ".venv" / "bin" / "hmarl"


def deep_update(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = v
    return out


def scenario(**fields):
    """A validated Scenario from keyword fields (nested dicts allowed), defaults elsewhere."""
    return parse_config(fields, "test")


@pytest.fixture(scope="session")
def default_scenario():
    return load_config(DEFAULT_YAML)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _no_leaked_ray_address():
    """A test must not leave RAY_ADDRESS behind: later tests (and the notebook kernels they
    start) would try to attach to a cluster that is gone instead of starting a local Ray."""
    import os

    before = os.environ.get("RAY_ADDRESS")
    yield
    assert os.environ.get("RAY_ADDRESS") == before, "this test leaked RAY_ADDRESS into the environment"


@pytest.fixture(scope="session", autouse=True)
def _ray_token_outside_home(tmp_path_factory):
    """Ray 2.59+ turns token authentication on for every local ``ray.init()`` and, when no
    token exists, writes one to ``~/.ray/auth_token``. Tests neither read nor write the home
    folder: one token for the session in a temporary file (``RAY_AUTH_TOKEN_PATH``, inherited by
    the ``hmarl`` subprocesses and notebook kernels). A test that starts its own Ray head makes
    its own token (tests/test_job_submit.py)."""
    import os
    import secrets

    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")}
    path = tmp_path_factory.mktemp("ray_auth") / "auth_token"
    path.write_text(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
    path.chmod(0o600)
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)
    yield path
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def ray_token(tmp_path_factory) -> dict:
    """For a test that starts its own Ray nodes (tests/ray_cluster.py): a token made by Ray's own
    CLI in its own file, an empty HOME, and the environment that points the nodes, the job client
    and the jobs at them (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN_PATH``, ``HOME``)."""
    from ray_cluster import make_token

    token = make_token(tmp_path_factory)
    yield token
    assert not (token["home"] / ".ray" / "auth_token").exists(), "a process wrote a token into HOME"
