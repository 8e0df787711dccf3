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

import math
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



# ------------------------------------------------------------------------- scale ladder
SCALE_LADDER = ((3, 1), (30, 1), (300, 1), (100, 10))  # (stores, SKUs)
STORE_STEPS_PER_ITERATION = 28_800  # store-agent steps per iteration at every rung (default.yaml: 9,600 env steps x 3)


def scale_scenario(stores: int, skus: int = 1, store_steps: int = STORE_STEPS_PER_ITERATION,
                   minibatch: int | None = None, group_stores: bool = False):
    """``configs/default.yaml`` grown to ``stores`` stores x ``skus`` SKUs (identical SKUs, the
    warehouse's and supplier's stock and capacity grown in proportion), training sized so every
    rung learns from about ``store_steps`` store-agent steps per iteration with the same
    ``minibatch`` of store-agent steps (default: the config's) and epochs: whole 30-day episodes,
    one env runner in the driver process (``num_env_runners: 0``), no evaluation;
    ``group_stores``: the stores act as one agent (``training.group_stores``)."""
    import yaml

    data = yaml.safe_load(find_config("default.yaml").read_text())
    grow = stores * skus / 3
    data["name"] = f"scale_{stores}x{skus}"
    data["stores"]["count"] = stores
    data["skus"] = [dict(data["skus"][0], name=f"SKU{k + 1}") for k in range(skus)]
    data["warehouse"]["initial_inventory"] = round(data["warehouse"]["initial_inventory"] * stores / 3)
    data["supplier"]["initial_inventory"] = round(data["supplier"]["initial_inventory"] * stores / 3)
    data["supplier"]["production_capacity"] = round(data["supplier"]["production_capacity"] * grow)
    days = data["episode_length"]
    episodes = max(1, round(store_steps / (stores * skus * days)))
    minibatch = minibatch or data["training"]["minibatch"]
    if group_stores:  # a group step holds every store's: the same store-agent steps per minibatch
        minibatch = max(1, math.ceil(minibatch / (stores * skus)))
    data["training"] = {**data["training"], "num_env_runners": 0, "train_batch": episodes * days, "minibatch": minibatch,
                        "evaluation_interval": 10**6, "checkpoint_frequency": 10**6, "group_stores": group_stores}
    return parse_config(data, f"bench-scale {stores}x{skus}")


def _scale_rung(stores: int, skus: int, iterations: int, store_steps: int, minibatch: int | None,
                group_stores: bool = False) -> dict:
    """One rung, in its own process (so its peak memory is its own): build the algorithm with
    the textbook (s, S) as the rule (no minutes of tuning), then run PPO's training step by hand,
    timed in parts (sample a train batch on the batched runner; update the learner and send the
    weights back), ``iterations`` times after one untimed."""
    import resource

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ray
    import torch

    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.policies.heuristics import initial_guess
    from hmarl_rllib.quiet import quiet_ray
    from hmarl_rllib.rl.env import GROUP_IDS

    torch.set_num_threads(1)
    quiet_ray()
    sc = scale_scenario(stores, skus, store_steps, minibatch, group_stores)
    rows = {GROUP_IDS["store"]: stores * skus, GROUP_IDS["warehouse"]: skus, GROUP_IDS["supplier"]: skus}
    t_start = time.perf_counter()
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        config = build_algo_config(sc, baseline=initial_guess(sc, "s_S"))
        # RLlib checks minibatch (512 agent steps of a module) <= train batch in *env* steps; a
        # 300-store env step holds 302 agent steps, so past 30 stores the check refuses the rung's
        # 28,800-store-step batch. The minibatches are cut from each module's agent steps either way.
        algo = config.experimental(_validate_config=config.train_batch_size_per_learner >= config.minibatch_size)\
            .build_algo()
        s = algo.config
        runner, learners = algo.env_runner, algo.learner_group

        def iteration() -> tuple[float, float, int, int]:
            """PPO's training step, timed in parts: sample, update, weights back to the runner."""
            t0 = time.perf_counter()
            episodes = runner.sample(num_timesteps=s.train_batch_size_per_learner)
            # counted before the update, whose learner connector adds a bootstrap step to each episode
            n_env = sum(len(e) for e in episodes)
            # every agent's steps; a group's step counts one step per agent in it
            n_agent = sum(len(a) * rows.get(aid, 1)
                          for e in episodes for aid, a in e.agent_episodes.items())
            t1 = time.perf_counter()
            learners.update(episodes=episodes, timesteps={"num_env_steps_sampled_lifetime": 0},
                            num_epochs=s.num_epochs, minibatch_size=s.minibatch_size, shuffle_batch_per_epoch=True)
            algo.env_runner_group.sync_weights(from_worker_or_learner_group=learners, inference_only=True)
            t2 = time.perf_counter()
            return t1 - t0, t2 - t1, n_env, n_agent

        iteration()  # untimed: first forward passes, allocations
        build_s = time.perf_counter() - t_start
        sample_s = learn_s = 0.0
        steps = agent_steps = 0
        for _ in range(iterations):
            a, b, n, m = iteration()
            sample_s, learn_s, steps, agent_steps = sample_s + a, learn_s + b, steps + n, agent_steps + m
        wall = sample_s + learn_s
        algo.stop()
    finally:
        ray.shutdown()
    agents = stores * skus + 2 * skus
    return {"stores": stores, "skus": skus, "store_agents": stores * skus, "agents": agents,
            "train_batch_env_steps": sc.training["train_batch"], "minibatch": sc.training["minibatch"],
            "group_stores": group_stores,
            "minibatch_store_steps": sc.training["minibatch"] * (stores * skus if group_stores else 1),
            "store_steps_per_iteration": sc.training["train_batch"] * stores * skus, "iterations": iterations,
            "env_steps_per_s": steps / wall, "agent_steps_per_s": agent_steps / wall,
            "sampling_share": sample_s / wall, "learner_share": learn_s / wall,
            "seconds_per_iteration": wall / iterations, "build_and_first_iteration_s": build_s,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def bench_scale(rungs=SCALE_LADDER, iterations: int = 5, store_steps: int = STORE_STEPS_PER_ITERATION,
                minibatch: int | None = None, group_stores: bool = False, progress=None) -> dict:
    """The ladder: per rung (stores x SKUs) env steps/s, agent steps/s (every agent's steps:
    stores, warehouse, supplier), the shares of sampling and learning in the wall time, seconds
    per iteration and the peak memory of the training process, each rung in a fresh process,
    one after the other. ``agent_steps_vs_first``: agent steps/s over the first rung's."""
    import multiprocessing as mp

    find_config("default.yaml")  # before minutes of work, not after
    rows = []
    ctx = mp.get_context("spawn")
    for stores, skus in rungs:
        if progress:
            progress(f"bench-scale: {stores} stores x {skus} SKU(s), {iterations} iterations ...")
        with ctx.Pool(1) as pool:
            row = pool.apply(_scale_rung, (stores, skus, iterations, store_steps, minibatch, group_stores))
        rows.append(row)
        if progress:
            progress(f"  {row['env_steps_per_s']:,.0f} env steps/s, {row['agent_steps_per_s']:,.0f} agent steps/s,"
                     f" learner {row['learner_share']:.0%} of the time, peak {row['peak_rss_gib']:.2f} GiB")
    for row in rows:
        row["agent_steps_vs_first"] = row["agent_steps_per_s"] / rows[0]["agent_steps_per_s"]
    return {"rungs": rows, "store_steps_per_iteration": store_steps, "statistic": "total over the timed"
            " iterations", "processes": "one per rung, num_env_runners 0 (sampling and learning in one process)"}


def plot_scale(result: dict, path) -> Path:
    """Log-log PNG of the ladder: microseconds of training wall time per agent step (all, and
    of it the learner's) against the number of store agents."""
    from matplotlib.figure import Figure

    rows = result["rungs"]
    x = [r["store_agents"] for r in rows]
    per = [1e6 / r["agent_steps_per_s"] for r in rows]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.loglog(x, per, "o-", label="training (sampling + learning)")
    ax.loglog(x, [p * r["learner_share"] for p, r in zip(per, rows)], "s--", label="of it, the learner")
    ax.loglog(x, [p * r["sampling_share"] for p, r in zip(per, rows)], "^:", label="of it, sampling")
    for xi, pi, r in zip(x, per, rows):
        ax.annotate(f"{r['stores']}x{r['skus']}", (xi, pi), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_xlabel("store agents (stores x SKUs)")
    ax.set_ylabel("µs of wall time per agent step")
    ax.set_title("hmarl bench-scale: one process, 2-core machine", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
