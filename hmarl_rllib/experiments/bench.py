"""Throughput: of the digital twin and the RLlib env (``hmarl bench-twin``), and of training
(``hmarl bench-train``, :func:`bench_train`).

``bench-twin``: two figures, each the **median** of repeated timed runs:

- ``twin``: store-days simulated per second by :class:`~hmarl_rllib.sim.SupplyChainTwin` with
  ``record=False``, at 3, 30 and 300 stores, many replicas batched in one twin. A store-day is
  one store × one SKU × one day of one replica. Each run times a full episode *including*
  ``reset`` (demand sampling), with fixed base-stock-like orders so that every code path
  (shipping, allocation, receipts, sales) does real work.
- ``env_steps_per_s``: :meth:`hmarl_rllib.rl.env.HMARLEnv.step` calls per second for the default
  3-store scenario with fixed actions (episode resets included, as in RLlib sampling), with
  ``configs/default.yaml``'s agent design (rich observations, baseline-correction actions);
  ``env_steps_per_s_walkthrough`` the same with the walkthrough's design.

Targets on 2 cores: ≥ 1,000,000 store-days/s at 300 stores; ≥ 10,000 env steps/s at 3 stores.

The two env figures need ``default.yaml`` and ``walkthrough.yaml`` (and their tuned baselines in
``baselines/`` beside them). They are looked for in ``$HMARL_CONFIGS`` (the Docker image sets
it to ``/opt/hmarl/configs``), then in ``configs/`` beside the package (a source checkout or an
editable install), then in ``./configs``; when none holds them, the command stops with one
``error:`` line (exit 2) rather than benchmarking some other scenario.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from hmarl_rllib.errors import ConfigError
from hmarl_rllib.sim.config import parse_config

CONFIGS_ENV = "HMARL_CONFIGS"  # a folder holding default.yaml and walkthrough.yaml

# (stores, replicas): about 100k store-days per simulated day at the larger sizes
TWIN_SIZES = ((3, 4096), (30, 1024), (300, 256))
EPISODE_DAYS = 60


def _scenario(stores: int, days: int = EPISODE_DAYS):
    return parse_config({"name": f"bench_{stores}", "episode_length": days, "stores": {"count": stores},
                         "warehouse": {"initial_inventory": 200 * stores}}, "bench")


def _repeat(fn, seconds: float) -> list[float]:
    """Call ``fn`` (which returns a rate) until ``seconds`` have passed and at least 3 runs are
    done (1 run when ``seconds`` is 0, a smoke test); return the rates."""
    min_runs = 3 if seconds > 0 else 1
    rates, t_end = [], time.perf_counter() + seconds
    while len(rates) < min_runs or time.perf_counter() < t_end:
        rates.append(fn())
    return rates


def twin_rate(stores: int, replicas: int, seconds: float = 2.0) -> dict:
    """Median store-days/s of the batched twin (record=False) over repeated episodes."""
    from hmarl_rllib.sim import SupplyChainTwin

    sc = _scenario(stores)
    twin = SupplyChainTwin(sc, record=False)
    mu = 60.0
    store_order = np.full((replicas, stores, 1), mu)
    wh_order = np.full((replicas, 1), mu * stores)
    seed0 = [0]

    def one_episode() -> float:
        seeds = seed0[0] + np.arange(replicas)
        seed0[0] += replicas
        t0 = time.perf_counter()
        twin.reset(seeds)
        while not twin.done:
            twin.step(store_order, wh_order, wh_order)
        dt = time.perf_counter() - t0
        return stores * replicas * twin.days_total / dt

    one_episode()  # warm-up (imports, allocations)
    rates = _repeat(one_episode, seconds)
    return {"stores": stores, "replicas": replicas, "store_days_per_s": statistics.median(rates),
            "runs": len(rates)}


def config_dirs() -> list[Path]:
    """Where :func:`find_config` looks, in order: ``$HMARL_CONFIGS``, ``configs/`` beside the
    package (source checkout, editable install), ``./configs``."""
    dirs = [Path(os.environ[CONFIGS_ENV]).expanduser()] if os.environ.get(CONFIGS_ENV) else []
    dirs += [Path(__file__).resolve().parents[2] / "configs", Path.cwd() / "configs"]
    out = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def find_config(name: str) -> Path:
    """The first ``<dir>/<name>`` of :func:`config_dirs` that is a file; else a one-line
    :class:`ConfigError` saying where it looked and how to point at the configs."""
    dirs = config_dirs()
    for d in dirs:
        if (d / name).is_file():
            return d / name
    where = ", ".join(str(d) for d in dirs)
    raise ConfigError(f"bench-twin: {name} not found in {where}; run from the repository root or set"
                      f" {CONFIGS_ENV} to the folder holding default.yaml and walkthrough.yaml"
                      " (in the Docker image: /opt/hmarl/configs)")


def env_rate(seconds: float = 2.0, steps_per_run: int = 3000, config: str = "default.yaml") -> dict:
    """Median HMARLEnv.step() calls per second at 3 stores with fixed actions, for the agent
    design of ``configs/<config>``."""
    from hmarl_rllib.rl.env import HMARLEnv
    from hmarl_rllib.sim.config import load_config

    sc = load_config(find_config(config))
    env = HMARLEnv({"scenario": sc})
    actions = {a: 1 for a in env.possible_agents}

    def run() -> float:
        env.reset(seed=0)
        t0 = time.perf_counter()
        for _ in range(steps_per_run):
            _, _, term, _, _ = env.step(actions)
            if term["__all__"]:
                env.reset()
        return steps_per_run / (time.perf_counter() - t0)

    run()
    rates = _repeat(run, seconds)
    return {"env_steps_per_s": statistics.median(rates), "runs": len(rates), "config": str(sc.source_path)}


def bench_twin(seconds: float = 2.0) -> dict:
    """All figures: ``{"twin": [{stores, replicas, store_days_per_s, runs}, ...],
    "env_steps_per_s": float, ...}`` (medians of repeated runs, ``seconds`` per measurement)."""
    for name in ("default.yaml", "walkthrough.yaml"):  # before minutes of timing, not after
        find_config(name)
    twin = [twin_rate(n, b, seconds) for n, b in TWIN_SIZES]
    env = env_rate(seconds)
    walk = env_rate(seconds, config="walkthrough.yaml")
    return {"twin": twin, "env_steps_per_s": env["env_steps_per_s"], "env_runs": env["runs"],
            "env_steps_per_s_walkthrough": walk["env_steps_per_s"],
            "configs": {"default": env["config"], "walkthrough": walk["config"]},
            "episode_days": EPISODE_DAYS, "statistic": "median"}


# ------------------------------------------------------------------------- training speed
def bench_train(scenario, seconds: float = 120.0, storage: str | None = None, num_env_runners=None,
                envs_per_runner=None, progress=None) -> dict:
    """Train for a fixed wall time (the config's ``training:`` settings) and report throughput.

    ``env_steps_per_s`` / ``agent_steps_per_s``: sampled steps over the training wall time
    (Tune's ``time_total_s``, so Ray start-up is excluded); ``first_below_baseline_s``: the
    training time of the first evaluation whose chain cost (on the run's fixed validation
    seeds, disjoint from the held-out ones) was below the best tuned baseline's cost on the
    same seeds (None if never).
    """
    import sys
    import tempfile

    import pandas as pd

    from hmarl_rllib.experiments.benchmark import BASELINE_RULES, POLICIES
    from hmarl_rllib.experiments.training import train, training_settings
    from hmarl_rllib.policies.tuning import tuned_policy
    from hmarl_rllib.sim import simulate

    settings = training_settings(scenario)
    root = storage or tempfile.mkdtemp(prefix="hmarl_bench_train_")
    res = train(scenario, name="bench_train", storage=root, time_budget_s=seconds,
                num_env_runners=num_env_runners, envs_per_runner=envs_per_runner, progress=progress,
                iteration_stream=sys.stderr)  # stdout carries the result only
    df = pd.read_csv(Path(res.trial_dir) / "progress.csv")
    last = df.iloc[-1]
    wall = float(last["time_total_s"])
    env_steps = float(last["env_runners/num_env_steps_sampled_lifetime"])
    agent_cols = [c for c in df.columns if c.startswith("env_runners/num_agent_steps_sampled_lifetime/")]
    agent_steps = float(last[agent_cols].sum()) if agent_cols else float("nan")
    seeds = simulate.validation_seeds(settings.evaluation_episodes)
    base = {k: float(simulate.chain_cost(scenario, tuned_policy(scenario, spec).orders, seeds).mean())
            for k, spec in zip(POLICIES, BASELINE_RULES)}
    best_kind = min(base, key=base.get)
    evals = df[["time_total_s", "eval_chain_cost"]].dropna()
    below = evals[evals["eval_chain_cost"] < base[best_kind]]
    return {
        "scenario": scenario.name,
        "env_steps_per_s": env_steps / wall,
        "agent_steps_per_s": agent_steps / wall,
        "iterations": int(last["training_iteration"]),
        "wall_s": wall,
        "env_steps": int(env_steps),
        "best_eval_cost": float(evals["eval_chain_cost"].min()) if len(evals) else None,
        "best_baseline": best_kind,
        "best_baseline_cost": base[best_kind],
        "first_below_baseline_s": float(below["time_total_s"].iloc[0]) if len(below) else None,
        "num_env_runners": settings.num_env_runners if num_env_runners is None else num_env_runners,
        "envs_per_runner": settings.envs_per_runner if envs_per_runner is None else envs_per_runner,
        "storage": str(res.experiment),
    }


# ------------------------------------------------------------------------- learner speed
def bench_learner(scenario, repeats: int = 5, progress=None) -> dict:
    """Seconds per PPO update of :class:`~hmarl_rllib.rl.learner.FastPPOTorchLearner` and of
    RLlib's ``PPOTorchLearner``, side by side in one process: both start from the same weights and
    update on the same train batch (the config's ``train_batch`` env steps, ``epochs`` and
    ``minibatch``), alternately, ``repeats`` times each; medians and their ratio. The learners'
    updates are bitwise equal (tests/test_learner.py), so only the time differs."""
    import copy

    import ray
    from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner

    from hmarl_rllib.experiments.training import build_algo_config, training_settings

    s = training_settings(scenario)
    config = build_algo_config(scenario, num_env_runners=0, seed=5)
    reference = config.copy(copy_frozen=False).learners(learner_class=PPOTorchLearner)
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    times = {"fast": [], "rllib": []}
    try:
        algos = {"fast": config.build_algo(), "rllib": reference.build_algo()}
        learners = {k: a.learner_group._learner for k, a in algos.items()}
        weights = learners["rllib"].module.get_state()
        episodes = algos["fast"].env_runner.sample(num_timesteps=s.train_batch)
        for r in range(repeats + 1):  # the first round warms up, untimed
            for name, learner in learners.items():
                learner.module.set_state(weights)
                batch = copy.deepcopy(episodes)
                t0 = time.perf_counter()
                learner.update(episodes=batch, timesteps={"num_env_steps_sampled_lifetime": s.train_batch},
                               num_epochs=s.epochs, minibatch_size=s.minibatch, shuffle_batch_per_epoch=True)
                if r:
                    times[name].append(time.perf_counter() - t0)
            if progress and r:
                progress(f"bench-learner: round {r}/{repeats}: fast {times['fast'][-1]:.3f}s,"
                         f" RLlib {times['rllib'][-1]:.3f}s per update")
        for a in algos.values():
            a.stop()
    finally:
        if started:
            ray.shutdown()
    fast, rllib = statistics.median(times["fast"]), statistics.median(times["rllib"])
    return {"scenario": scenario.name, "train_batch": s.train_batch, "epochs": s.epochs, "minibatch": s.minibatch,
            "fast_update_s": fast, "rllib_update_s": rllib, "saving": 1 - fast / rllib, "repeats": repeats,
            "statistic": "median", "runs": times}
