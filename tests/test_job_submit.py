"""`ray job submit` against a real local head node: training runs as a job, writes a
checkpoint under an absolute --storage, and `hmarl evaluate` reads it afterwards.

The head is started with `ray start --head --block` in its own process group, on 127.0.0.1
with free ports and its own --temp-dir, and stopped by killing exactly the processes it
started (not `ray stop`, which would stop every Ray instance on a shared machine).

Token authentication is on (`RAY_AUTH_MODE=token`, as Ray 2.59+ does by default once a token
exists) with a token made for this test by Ray's own CLI (`ray get-auth-token --generate`) and
handed to the head, the job client and the job's entrypoint through `RAY_AUTH_TOKEN_PATH`.
Every process runs with `HOME` set to an empty folder: nothing is read from or written to the
real home folder (no `~/.ray/auth_token` left by an earlier test or run is needed or touched).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_training import _descendants, tiny_config  # tests/ is on sys.path (rootdir-less layout)

RAY = str(Path(sys.executable).with_name("ray"))
pytestmark = pytest.mark.slow


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _worker_port_range(width: int = 40, avoid=()) -> tuple[int, int]:
    """A free range of worker ports that holds none of ``avoid`` (the components' own ports:
    Ray refuses to start when a component's port lies in the worker range)."""
    for base in range(30000 + os.getpid() % 2000 * 10, 60000, 997):
        ports = range(base, base + width)
        if any(p in ports for p in avoid):
            continue
        free = True
        for p in ports:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    free = False
                    break
        if free:
            return base, base + width - 1
    raise RuntimeError("no free worker port range")


def _clean_env(home: Path, **extra) -> dict:
    """This environment without Ray's address and auth settings, with ``HOME=home``."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("RAY_AUTH_")}
    env.update(OMP_NUM_THREADS="1", HOME=str(home), **extra)
    return env


@pytest.fixture
def ray_token(tmp_path_factory) -> dict:
    """A fresh token from `ray get-auth-token --generate` (which writes ``$HOME/.ray/auth_token``,
    so it runs with a throwaway HOME), moved to its own file; and an empty HOME for the test's
    processes, which find the token only through RAY_AUTH_TOKEN_PATH."""
    gen_home = tmp_path_factory.mktemp("gen_home")
    proc = subprocess.run([RAY, "get-auth-token", "--generate"], env=_clean_env(gen_home), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    made = gen_home / ".ray" / "auth_token"
    assert made.is_file() and proc.stdout.strip() == made.read_text().strip()
    token = tmp_path_factory.mktemp("token") / "auth_token"
    shutil.move(made, token)
    os.chmod(token, 0o600)
    home = tmp_path_factory.mktemp("home")  # stays empty of Ray files: checked at the end
    yield {"path": token, "home": home,
           "env": _clean_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))}
    assert not (home / ".ray" / "auth_token").exists(), "a process wrote a token into HOME"


@pytest.fixture
def ray_head(ray_token):
    gcs, dash, client, nm, om, agent_listen, agent_grpc, rt_agent, metrics = _free_ports(9)
    wmin, wmax = _worker_port_range(avoid=(gcs, dash, client, nm, om, agent_listen, agent_grpc, rt_agent, metrics))
    temp = tempfile.mkdtemp(prefix="rj")  # short: Ray's socket paths must stay under 107 chars
    cmd = [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--ray-client-server-port={client}",
           f"--node-manager-port={nm}", f"--object-manager-port={om}",
           f"--dashboard-agent-listen-port={agent_listen}", f"--dashboard-agent-grpc-port={agent_grpc}",
           f"--runtime-env-agent-port={rt_agent}", f"--metrics-export-port={metrics}",
           f"--min-worker-port={wmin}", f"--max-worker-port={wmax}", "--num-cpus=2", f"--temp-dir={temp}",
           "--disable-usage-stats"]
    log = open(Path(temp) / "head.log", "w")
    head = subprocess.Popen(cmd, env=ray_token["env"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        end = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2):
                    break
            except urllib.error.HTTPError:  # it answers (401 with token authentication): up
                break
            except OSError:
                if head.poll() is not None or time.time() > end:
                    raise AssertionError("head did not start: " + (Path(temp) / "head.log").read_text()[-3000:])
                time.sleep(1)
        yield {"address": address, "temp": temp, "env": ray_token["env"], "home": ray_token["home"]}
    finally:
        procs = _descendants(head.pid) + [head.pid]
        for sig, wait in ((signal.SIGTERM, 8), (signal.SIGKILL, 0)):
            for pid in procs:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            end = time.time() + wait
            while time.time() < end and any(Path(f"/proc/{p}").exists() for p in procs):
                time.sleep(0.5)
        head.wait(timeout=30)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _ray(head, *args, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], env=env or head["env"], capture_output=True, text=True, timeout=timeout)


def test_ray_job_submit_trains_and_the_checkpoint_evaluates(ray_head, tmp_path):
    # the head enforces the token: a client without it is turned away
    anon = _ray(ray_head, "job", "list", "--address", ray_head["address"], env=_clean_env(ray_head["home"]))
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
