"""A real two-node Ray cluster on this machine: `ray job submit` trains with the env runner on the
second node and the learner on the head; the second node's raylet is killed mid-run.

Both nodes are `ray start --block` processes on 127.0.0.1 (tests/ray_cluster.py), each in its
own session with its own ports and --temp-dir, token authentication on, HOME empty. The head
offers 1 CPU; the worker node 1 CPU and the custom resource ``hmarl_runner``. The trial asks
for ``driver_cpus: 1`` and one env runner with ``runner_cpus: 1`` and
``runner_resources: {hmarl_runner: 1}``: the runner's bundle fits only the worker node, which
then has no CPU left, so the driver (learner + evaluation) lands on the head. The test checks
both in the nodes' process trees rather than assuming them.

After the second checkpoint the worker node's raylet is SIGKILLed: the node and its runner die.
A replacement node with the same resource joins (as an autoscaler or an operator would bring
one). Training stops on sampled env steps, so it must get samples from a restarted runner
(RLlib's restart_failed_env_runners, on in every run) to finish. Once the runner restarted on
the new node has sampled, the job's driver gets a Ctrl+C (SIGINT: Tune saves and stops, `hmarl
train` says "interrupted after N iterations ... --resume", the job fails) unless the job already
failed by itself with a one-line error; either way the same job resubmitted with ``--resume``
restores the trial and finishes it, and every checkpoint written before the kill and before the
interruption is still there. Checkpoints go to a local absolute --storage, which both nodes (one
machine) reach. Every process the test started, and only those, is killed at the end (the test
checks that none is left).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray_cluster import RAY, alive, cmdline, comm, start_node, stop_node  # tests/ is on sys.path (rootdir-less layout)
from test_training import tiny_config

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="the nodes' processes are found and stopped through /proc (Linux only)")]

RESOURCE = "hmarl_runner"
BATCH = 240  # tiny_config's train_batch
STOP_STEPS = 40 * BATCH  # far more than sampled before the kill (checked)


def _ray(env, *args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _submit(head, env, work: Path, cfg: Path, storage: Path, job_id: str, *extra) -> None:
    sub = _ray(env, "job", "submit", "--address", head.dashboard, "--working-dir", str(work),
               "--submission-id", job_id, "--no-wait", "--",
               sys.executable, "-m", "hmarl_rllib", "train", "--config", cfg.name, "--name", "mn",
               "--storage", str(storage), "--stop-timesteps", str(STOP_STEPS), *extra)
    assert sub.returncode == 0, sub.stdout + sub.stderr


def _driver_log(head, job_id: str) -> str:
    """The job's output so far, read from the head's log folder (no CLI call per poll)."""
    for path in Path(head.temp).glob(f"session_*/logs/job-driver-{job_id}.log"):
        try:
            return path.read_text(errors="replace")
        except OSError:
            pass
    return ""


class _Status:
    """`ray job status`, run beside the test's polling, never in its way: ``poll()`` returns
    "succeeded", "failed" or "stopped" once the job has ended, else "" (and starts the next
    check when the last one is done)."""

    def __init__(self, head, env, job_id: str):
        self.cmd, self.env, self.proc = [RAY, "job", "status", "--address", head.dashboard, job_id], env, None

    def poll(self) -> str:
        if self.proc is None:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True)
            return ""
        if self.proc.poll() is None:
            return ""
        text = self.proc.stdout.read().lower()  # "Job '<id>' succeeded" / "failed" / "stopped"
        self.proc.stdout.close()
        self.proc = None
        return next((s for s in ("succeeded", "failed", "stopped") if f"' {s}" in text), "")

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.communicate()
            self.proc = None


def _wait_for_job(head, env, job_id: str, timeout: float, on_poll=None) -> str:
    """The job's final status; ``on_poll()`` every half second meanwhile."""
    end, status = time.time() + timeout, _Status(head, env, job_id)
    try:
        while time.time() < end:
            if on_poll:
                on_poll()
            if done := status.poll():
                return done
            time.sleep(0.5)
    finally:
        status.close()
    raise AssertionError(f"job {job_id} did not finish in {timeout:.0f}s:\n" + _driver_log(head, job_id)[-4000:])


def _iterations(log: str) -> str:
    """The job's lines before its KPI tables (one per iteration, warnings, errors)."""
    return log.split("best checkpoint:")[0][-6000:]


def _sampled_after_outage(log: str) -> int:
    """Iterations that sampled after the first one that could not (no healthy env runner)."""
    lines = [ln for ln in log.splitlines() if ln.startswith("iter ")]
    empty = [i for i, ln in enumerate(lines) if " nan env steps" in ln]
    return sum(" nan env steps" not in ln for ln in lines[empty[0]:]) if empty else 0


def _checkpoints(storage: Path) -> set[str]:
    return {p.name for p in storage.glob("mn/PPO_*/checkpoint_*")}


def test_two_node_cluster_trains_with_runners_on_the_worker_and_survives_losing_it(ray_token, tmp_path):
    env = ray_token["env"]
    work = tmp_path / "job"
    cfg = tiny_config(work, driver_cpus=1, runner_cpus=1, runner_resources={RESOURCE: 1}, num_env_runners=1,
                      evaluation_interval=1, checkpoint_frequency=1, keep_checkpoints=100)
    storage = tmp_path / "results"  # absolute: the job's working directory is a copy elsewhere
    job_id = f"hmarl_mn_{os.getpid()}"
    nodes, stopped = [], set()
    try:
        head = start_node(env, num_cpus=1)
        nodes.append(head)
        worker = start_node(env, num_cpus=1, head=head, resources={RESOURCE: 1}, avoid=head.ports)
        nodes.append(worker)
        _submit(head, env, work, cfg, storage, job_id)

        # two iterations done, each checkpointed; the runner and the learner where they belong
        end, status = time.time() + 300, _Status(head, env, job_id)
        try:
            while "iter    2" not in (log := _driver_log(head, job_id)) or len(_checkpoints(storage)) < 2:
                ended = status.poll()
                assert time.time() < end and not ended, f"no second iteration ({ended or 'timeout'}):\n" + log[-4000:]
                time.sleep(0.2)
        finally:
            status.close()
        runners = worker.processes("MultiAgentEnvRunner")
        assert len(runners) == 1, f"expected the env runner on the worker node: {runners}"
        assert not head.processes("MultiAgentEnvRunner"), "an env runner runs on the head"
        assert head.processes("ray::PPO"), "the algorithm (learner + evaluation) is not on the head"
        assert not worker.processes("ray::PPO"), "the algorithm runs on the worker node"
        before = _checkpoints(storage)
        t0, n_before = time.time(), _driver_log(head, job_id).count("\niter ")
        print(f"before the kill: {n_before} iterations, {sorted(before)}")

        # the worker node's raylet dies: the node and its runner go with it
        raylets = [p for p in worker.members() if comm(p) == "raylet"]
        assert len(raylets) == 1, raylets
        os.kill(raylets[0], signal.SIGKILL)
        end = time.time() + 60
        while alive(runners[0]):
            assert time.time() < end, "the env runner outlived its node's raylet by a minute"
            time.sleep(0.5)
        print(f"{time.time() - t0:.1f}s: the runner is gone")

        replacement = start_node(env, num_cpus=1, head=head, resources={RESOURCE: 1},
                                 avoid=head.ports | worker.ports)
        nodes.append(replacement)
        print(f"{time.time() - t0:.1f}s: the replacement node is up")

        restarted: list[int] = []

        def watch():
            new = [p for p in replacement.processes("MultiAgentEnvRunner") if p not in restarted]
            if new:
                print(f"{time.time() - t0:.1f}s: env runner {new} on the replacement node")
            restarted.extend(new)

        # the restarted runner samples again; then the run is interrupted (Ctrl+C to the job's
        # driver, Tune saves and stops) unless it failed by itself, and --resume finishes it
        end, status, ended = time.time() + 300, _Status(head, env, job_id), ""
        try:
            while not ended:
                watch()
                if restarted and _sampled_after_outage(_driver_log(head, job_id)) >= 2:
                    break
                ended = status.poll()
                assert time.time() < end, "no samples after the outage:\n" + _iterations(_driver_log(head, job_id))
                time.sleep(0.3)
        finally:
            status.close()
        if not ended:
            drivers = [p for p in head.members() if "hmarl_rllib train" in cmdline(p)
                       and cmdline(p).split()[0] == sys.executable]
            assert len(drivers) == 1, [cmdline(p) for p in drivers]
            os.kill(drivers[0], signal.SIGINT)
            print(f"{time.time() - t0:.1f}s: interrupted the job")
            ended = _wait_for_job(head, env, job_id, 180, on_poll=watch)
        log = _driver_log(head, job_id)
        print(f"{time.time() - t0:.1f}s: job {ended}\n" + _iterations(log))
        assert ended == "failed", f"{ended}:\n" + log[-4000:]
        errors = [ln for ln in log.splitlines() if ln.startswith(("error: ", "interrupted after "))]
        assert errors, "the job stopped without a one-line reason:\n" + log[-4000:]
        interrupted = _checkpoints(storage)
        assert before <= interrupted, f"checkpoints lost: {sorted(before - interrupted)}"
        _submit(head, env, work, cfg, storage, f"{job_id}_resume", "--resume")
        status = _wait_for_job(head, env, f"{job_id}_resume", 420, on_poll=watch)
        log = _driver_log(head, f"{job_id}_resume")
        print(f"{time.time() - t0:.1f}s: --resume {status}\n" + _iterations(log))
        assert status == "succeeded", f"{status}:\n" + log[-4000:]
        assert "best checkpoint:" in log, log[-4000:]
        if not restarted:
            actors = _ray(env, "list", "actors", "--address", head.dashboard, "--detail", "--format", "json",
                          "--filter", "class_name=FastMultiAgentEnvRunner")
            nodes_ = _ray(env, "list", "nodes", "--address", head.dashboard, "--format", "json")
            raise AssertionError("no env runner ran on the replacement node:\n" + _iterations(log)
                                 + actors.stdout[-3000:] + nodes_.stdout[-3000:])

        trials = list(storage.glob("mn/PPO_*"))
        assert len(trials) == 1, trials  # one trial, continued (not a second one started over)
        rows = [json.loads(ln) for ln in (trials[0] / "result.json").read_text().splitlines() if ln.strip()]
        steps = [r["env_runners"]["num_env_steps_sampled_lifetime"] for r in rows]
        assert steps[min(n_before, len(steps) - 1)] < STOP_STEPS, f"the run was over before the kill: {steps}"
        assert steps[-1] >= STOP_STEPS, steps
        # the first job lost its runner, then counted the one it brought back (the rows of both jobs)
        health = [r["fault_tolerance"]["num_healthy_workers"] for r in rows]
        assert 0 in health, health
        restarts = [r["fault_tolerance"]["num_remote_worker_restarts"] for r in rows]
        assert max(restarts) >= 1, restarts
        first_resumed = [ln for ln in log.splitlines() if ln.startswith("iter ")][0]
        assert int(first_resumed.split()[1]) > n_before, log[-4000:]  # restored, not started over
        after = _checkpoints(storage)
        assert interrupted <= after, f"checkpoints lost: {sorted(interrupted - after)}"
        assert len(after) > len(interrupted)
    finally:
        for node in reversed(nodes):
            stopped |= stop_node(node)
    assert not [p for p in stopped if alive(p)], "processes the test started outlived it"
