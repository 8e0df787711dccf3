"""`ray job submit` against a real local head node: training runs as a job, writes a
checkpoint under an absolute --storage, and `hmarl evaluate` reads it afterwards.

The head is started with `ray start --head --block` in its own session, on 127.0.0.1 with
free ports and its own --temp-dir, and stopped by killing exactly the processes it started
(not `ray stop`, which would stop every Ray instance on a shared machine): tests/ray_cluster.py.

Token authentication is on (`RAY_AUTH_MODE=token`, as Ray 2.59+ does by default once a token
exists) with a token made for this test by Ray's own CLI (`ray get-auth-token --generate`) and
handed to the head, the job client and the job's entrypoint through `RAY_AUTH_TOKEN_PATH`.
Every process runs with `HOME` set to an empty folder: nothing is read from or written to the
real home folder (no `~/.ray/auth_token` left by an earlier test or run is needed or touched).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from ray_cluster import RAY, clean_env, start_node, stop_node  # tests/ is on sys.path (rootdir-less layout)
from test_training import tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_head(ray_token):
    head = start_node(ray_token["env"], num_cpus=2)
    try:
        yield {"address": head.dashboard, "temp": head.temp, "env": ray_token["env"], "home": ray_token["home"]}
    finally:
        stop_node(head)


def _ray(head, *args, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], env=env or head["env"], capture_output=True, text=True, timeout=timeout)


def test_ray_job_submit_trains_and_the_checkpoint_evaluates(ray_head, tmp_path):
    # the head enforces the token: a client without it is turned away
    anon = _ray(ray_head, "job", "list", "--address", ray_head["address"], env=clean_env(ray_head["home"]))
    assert anon.returncode != 0 and "unauthorized" in (anon.stdout + anon.stderr).lower(), anon.stdout + anon.stderr
    work = tmp_path / "job"
    cfg = tiny_config(work)
    storage = tmp_path / "results"  # absolute: the job's working directory is a copy elsewhere
    job_id = f"hmarl_test_{os.getpid()}"
    sub = _ray(ray_head, "job", "submit", "--address", ray_head["address"], "--working-dir", str(work),
               "--submission-id", job_id, "--no-wait", "--",
               sys.executable, "-m", "hmarl_rllib", "train", "--config", cfg.name, "--name", "job",
               "--storage", str(storage), "--stop-iters", "2")
    assert sub.returncode == 0, sub.stdout + sub.stderr
    end, status = time.time() + 420, ""
    while time.time() < end:
        st = _ray(ray_head, "job", "status", "--address", ray_head["address"], job_id)
        status = (st.stdout + st.stderr).lower()  # "Job '<id>' succeeded" / "failed" / "stopped"
        if any(f"' {s}" in status for s in ("succeeded", "failed", "stopped")):
            break
        time.sleep(3)
    logs = _ray(ray_head, "job", "logs", "--address", ray_head["address"], job_id).stdout
    assert f"job '{job_id}' succeeded" in status, status + "\n" + logs[-4000:]
    assert "best checkpoint:" in logs and "iter    2" in logs, logs[-4000:]
    ckpts = sorted(storage.glob("job/PPO_*/checkpoint_*"))
    assert ckpts, logs[-4000:]
    ev = subprocess.run([sys.executable, "-m", "hmarl_rllib", "evaluate", "--checkpoint", str(ckpts[-1]),
                         "--episodes", "4", "--json"], cwd=work, env=ray_head["env"], capture_output=True, text=True,
                        timeout=180)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert json.loads(ev.stdout)["policies"]["learned"]["cost_mean"] > 0
