"""Real Ray nodes for tests: `ray start --block` on 127.0.0.1, each in its own session, with
free ports and its own --temp-dir, and stopped by killing exactly the processes it started
(never `ray stop`, which would stop every Ray instance on a shared machine).

Used by tests/test_job_submit.py (a head) and tests/test_multinode.py (a head and worker
nodes). The ``ray_token`` fixture (tests/conftest.py) gives them a test-made token and an
empty HOME.
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
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def worker_port_range(width: int = 40, avoid=()) -> tuple[int, int]:
    """A free range of worker ports that holds none of ``avoid`` (the components' own ports,
    and other nodes' worker ranges: Ray refuses to start when a component's port lies in the
    worker range, and worker ports are bound only when workers start)."""
    avoid = set(avoid)
    for base in range(30000 + os.getpid() % 2000 * 10, 60000, 997):
        ports = range(base, base + width)
        if any(p in avoid for p in ports):
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


def clean_env(home: Path, **extra) -> dict:
    """This environment without Ray's address and auth settings, with ``HOME=home``."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("RAY_AUTH_")}
    env.update(OMP_NUM_THREADS="1", HOME=str(home), **extra)
    return env


def make_token(tmp_path_factory) -> dict:
    """A fresh token from `ray get-auth-token --generate` (which writes ``$HOME/.ray/auth_token``,
    so it runs with a throwaway HOME), moved to its own file; and an empty HOME for the test's
    processes, which find the token only through RAY_AUTH_TOKEN_PATH."""
    gen_home = tmp_path_factory.mktemp("gen_home")
    proc = subprocess.run([RAY, "get-auth-token", "--generate"], env=clean_env(gen_home), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    made = gen_home / ".ray" / "auth_token"
    assert made.is_file() and proc.stdout.strip() == made.read_text().strip()
    token = tmp_path_factory.mktemp("token") / "auth_token"
    shutil.move(made, token)
    os.chmod(token, 0o600)
    home = tmp_path_factory.mktemp("home")  # stays empty of Ray files: checked by the fixture
    return {"path": token, "home": home,
            "env": clean_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))}


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def session_members(sid: int) -> list[int]:
    """The processes of session ``sid`` (those that outlived their parent included)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass
class Node:
    """One `ray start --block` and everything it started (its session)."""

    proc: subprocess.Popen
    temp: str
    log: object
    gcs: str  # the head's GCS address, 127.0.0.1:<port>
    dashboard: str | None  # the head's job API / dashboard, http://127.0.0.1:<port>; None on a worker node
    ports: set = field(default_factory=set)  # its components' ports and its worker port range

    def members(self) -> list[int]:
        """Its processes now: ``ray start`` itself, its session, and their descendants."""
        procs = {self.proc.pid, *session_members(self.proc.pid), *descendants(self.proc.pid)}
        return sorted(p for p in procs if alive(p))

    def processes(self, match: str) -> list[int]:
        """Its processes whose command line contains ``match`` (Ray names workers ``ray::<Actor>``)."""
        return [p for p in self.members() if match in cmdline(p)]

    def log_text(self) -> str:
        try:
            return (Path(self.temp) / "node.log").read_text(errors="replace")
        except OSError:
            return ""


STARTUP_TIMEOUT = "timed out during startup"  # ray start's own 30 s limit for a raylet to register


def start_node(env: dict, *, num_cpus: int, head: Node | None = None, resources: dict | None = None,
               avoid=(), object_store_bytes: int = 300_000_000, timeout: float = 120, attempts: int = 3) -> Node:
    """A head (``head=None``) or a worker node joining ``head``, started and up. ``avoid``: ports
    other nodes of the cluster use (so the worker port ranges do not overlap). ``ray start`` gives
    a raylet a fixed 30 s to register with the GCS; on a loaded 2-core machine it can miss that,
    and then (only then) the node, stopped, is started again, up to ``attempts`` times."""
    for attempt in range(1, attempts + 1):
        try:
            return _start_node(env, num_cpus=num_cpus, head=head, resources=resources, avoid=avoid,
                               object_store_bytes=object_store_bytes, timeout=timeout)
        except AssertionError as e:
            if attempt == attempts or STARTUP_TIMEOUT not in str(e):
                raise
            print(f"ray start: the raylet did not register in ray's 30 s (attempt {attempt} of {attempts});"
                  " starting the node again")


def _start_node(env: dict, *, num_cpus: int, head: Node | None, resources: dict | None, avoid,
                object_store_bytes: int, timeout: float) -> Node:
    n_ports = 9 if head is None else 7
    ports = free_ports(n_ports)
    wmin, wmax = worker_port_range(avoid={*ports, *avoid})
    temp = tempfile.mkdtemp(prefix="rh" if head is None else "rw")  # short: socket paths stay under 107 chars
    common = ["--block", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
              f"--object-store-memory={object_store_bytes}", f"--min-worker-port={wmin}",
              f"--max-worker-port={wmax}", f"--temp-dir={temp}", "--disable-usage-stats"]
    if resources:
        common.append(f"--resources={json.dumps(resources)}")
    if head is None:
        gcs, dash, client, nm, om, agent_listen, agent_grpc, rt_agent, metrics = ports
        cmd = [RAY, "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
               f"--ray-client-server-port={client}"]
        gcs_address, dashboard = f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}"
    else:
        nm, om, agent_listen, agent_grpc, rt_agent, metrics, _ = ports
        cmd = [RAY, "start", f"--address={head.gcs}"]
        gcs_address, dashboard = head.gcs, None
    cmd += [f"--node-manager-port={nm}", f"--object-manager-port={om}",
            f"--dashboard-agent-listen-port={agent_listen}", f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={rt_agent}", f"--metrics-export-port={metrics}", *common]
    log = open(Path(temp) / "node.log", "w")
    proc = subprocess.Popen(cmd, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    node = Node(proc, temp, log, gcs_address, dashboard, {*ports, *range(wmin, wmax + 1)})
    try:
        end = time.time() + timeout
        while not _up(node):
            if proc.poll() is not None or time.time() > end:
                raise AssertionError(f"{'head' if head is None else 'worker'} node did not start:\n"
                                     + node.log_text()[-3000:])
            time.sleep(0.5)
    except BaseException:
        stop_node(node)
        raise
    return node


def _up(node: Node) -> bool:
    if node.dashboard is None:  # a worker node: ray start says so once its raylet is up
        return "Ray runtime started" in node.log_text()
    try:
        with urllib.request.urlopen(f"{node.dashboard}/api/version", timeout=2):
            return True
    except urllib.error.HTTPError:  # it answers (401 with token authentication): up
        return True
    except OSError:
        return False


def stop_node(node: Node) -> set[int]:
    """SIGTERM, then SIGKILL, exactly the node's processes; wait for them; remove its temp dir.
    Returns the processes it signalled."""
    seen: set[int] = set()
    for sig, wait in ((signal.SIGTERM, 8), (signal.SIGKILL, 5)):
        procs = node.members()
        seen.update(procs)
        for pid in procs:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.time() + wait
        while time.time() < end and node.members():
            time.sleep(0.3)
    try:
        node.proc.wait(timeout=30)
    finally:
        node.log.close()
        shutil.rmtree(node.temp, ignore_errors=True)
    return seen
