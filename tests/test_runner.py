"""The batched sampler of hmarl_rllib.rl.runner: its episodes are the env's episodes.

Training samples whole batches of episodes on ChainDynamics instead of stepping HMARLEnv
through RLlib's per-agent loop. These tests replay every sampled episode in the env itself
(same demand seed, same actions) and require the same observations, rewards and final KPIs,
and check that the stored action log-probabilities and logits are the module's own.
"""
from __future__ import annotations

import numpy as np
import pytest

from hmarl_rllib.rl.env import HMARLEnv
from hmarl_rllib.sim.config import load_config

from conftest import DEFAULT_YAML, WALKTHROUGH_YAML, scenario

ALL = ["stores", "warehouse", "supplier"]
# two SKUs (an agent per store and SKU, scripted modules per SKU), backorders, random lead
# times and warm-up days: every branch of the env's dynamics
TWO_SKUS = dict(episode_length=30, warmup_days=3, shortage="backorder", random_lead_times={"enabled": True},
                skus=[{"name": "A"}, {"name": "B"}], observations={"mode": "rich"},
                stores={"count": 2, "demand": {"A": {"mean": 60}, "B": {"mean": 20}}})


@pytest.fixture
def local_ray():
    import ray

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _algo(learn, seed=None, sc=None, group_stores=False):
    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.policies.heuristics import rule_based_policy

    sc = sc or load_config(DEFAULT_YAML)
    baseline = None if sc.source_path else rule_based_policy(sc, "s_S")  # nothing to tune for a test scenario
    config = build_algo_config(sc, baseline=baseline, num_env_runners=0, envs_per_runner=2, learn=learn, seed=seed,
                               hidden=[16, 16], train_batch=90, minibatch=90, epochs=1, group_stores=group_stores)
    return config.build_algo(), config


@pytest.mark.parametrize("sc,learn,group", [
    (None, ["stores"], False),
    (None, ALL, False),
    (lambda: load_config(WALKTHROUGH_YAML), ["stores", "warehouse"], False),
    (lambda: scenario(**TWO_SKUS), ["stores"], False),
    (lambda: scenario(**TWO_SKUS), ALL, False),
    (lambda: scenario(**TWO_SKUS, horizon="infinite"), ["stores"], False),
    (None, ALL, True),
    (lambda: scenario(**TWO_SKUS), ALL, True),
], ids=["default-stores", "default-all", "walkthrough-phase2", "2sku-backorder-stores", "2sku-backorder-all",
        "2sku-infinite-horizon", "default-all-grouped", "2sku-backorder-all-grouped"])
def test_batched_episodes_replay_exactly_in_the_env(local_ray, sc, learn, group):
    """Batched sampling plays what the env plays; with ``group_stores`` the stores are one agent
    whose rows are the stores (observations (rows, n_obs), actions and log-probabilities per row)."""
    import torch
    from ray.rllib.core.columns import Columns

    algo, config = _algo(learn, sc=sc() if sc else None, group_stores=group)
    try:
        runner = algo.env_runner
        episodes = runner.sample(num_timesteps=90)  # 3 whole 30-day episodes
        # a finite horizon ends the problem; an infinite one is cut by a time limit, which RLlib
        # bootstraps only when the episode (and every agent's) is truncated, not terminated
        endless = config.env_config["scenario"].get("horizon") == "infinite"
        assert len(episodes) == 3 and all(len(ep) == 30 for ep in episodes)
        for ep in episodes:
            assert (ep.is_truncated, ep.is_terminated) == (endless, not endless)
            assert all((a.is_truncated, a.is_terminated) == (endless, not endless) for a in ep.agent_episodes.values())
        env = HMARLEnv(config.env_config)
        seeds = set()
        for ep in episodes:
            final = ep.get_infos(-1)
            seed = next(iter(final.values()))["chain"]["episode_seed"]
            seeds.add(seed)
            obs, _ = env.reset(options={"episode_seed": seed})
            agents = env.possible_agents
            assert (agents[0] == "stores") == group and len(env.store_agents) == (1 if group else len(env.store_ids))
            for aid in agents:
                np.testing.assert_array_equal(ep.agent_episodes[aid].get_observations(0), obs[aid])
            for day in range(30):
                actions = {aid: np.asarray(ep.agent_episodes[aid].get_actions(day)) for aid in agents}
                actions = {aid: a if a.ndim else int(a) for aid, a in actions.items()}
                obs, rew, term, trunc, infos = env.step(actions)
                for aid in agents:
                    sa = ep.agent_episodes[aid]
                    np.testing.assert_array_equal(sa.get_observations(day + 1), obs[aid])
                    assert sa.get_rewards(day) == pytest.approx(rew[aid], rel=1e-12, abs=1e-12)
            assert (term["__all__"], trunc["__all__"]) == (not endless, endless)
            if endless:  # the share of time to go is not part of an endless problem
                assert all(np.all(obs[a][..., 6] == 1.0) for a in env.store_agents)
            # KPIs are sums over the ledger: equal up to summation order (batch of 1 vs many)
            assert infos.keys() == final.keys()
            for aid, info in infos.items():
                for part in ("kpi", "chain"):
                    assert info[part] == pytest.approx(final[aid][part], rel=1e-12, abs=1e-9), (aid, part)
            # what the learned modules stored is what they compute on those observations
            for aid in agents:
                sa = ep.agent_episodes[aid]
                module = runner.module[sa.module_id]
                if sa.module_id not in config.policies_to_train:
                    assert not sa.extra_model_outputs  # scripted: actions only, like RLlib's own path
                    continue
                with torch.no_grad():
                    logits = module.forward_exploration(
                        {Columns.OBS: torch.from_numpy(np.asarray(sa.get_observations(slice(0, 30))))}
                    )[Columns.ACTION_DIST_INPUTS].numpy()
                np.testing.assert_allclose(sa.get_extra_model_outputs(Columns.ACTION_DIST_INPUTS), logits, rtol=1e-5,
                                           atol=1e-6)
                logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
                got = sa.get_extra_model_outputs(Columns.ACTION_LOGP)
                chosen = np.asarray(sa.get_actions(), np.int64)  # (30,), or (30, rows) for the stores' group
                np.testing.assert_allclose(got, np.take_along_axis(logp, chosen[..., None], -1)[..., 0], rtol=1e-4,
                                           atol=1e-5)
        assert len(seeds) == 3  # three different demand paths
        # the same columns, shapes and dtypes per agent as RLlib's own sampling path stores
        runner._batched = False
        theirs = runner.sample(num_timesteps=2 * 30)[0]
        for aid, sa in theirs.agent_episodes.items():
            ours = episodes[0].agent_episodes[aid]
            assert {k: (v.data.dtype, v.data.shape) for k, v in ours.extra_model_outputs.items()} == \
                {k: (v.data.dtype, v.data.shape) for k, v in sa.extra_model_outputs.items()}, aid
            for col in ("observations", "actions", "rewards"):
                a, b = getattr(ours, col).data, getattr(sa, col).data
                assert (a.dtype, a.shape) == (b.dtype, b.shape), (aid, col)
        metrics = runner.get_metrics()
        assert metrics["num_env_steps_sampled"].peek() == 90 + 60
        assert metrics["num_episodes"].peek() == 3 + 2
        assert np.isfinite(metrics["chain_cost"].peek())
    finally:
        algo.stop()


def test_batched_sampling_is_seeded(local_ray):
    """With training.seed the sampled demand seeds and actions repeat; without it they differ."""
    def sample(seed):
        algo, _ = _algo(ALL, seed=seed)
        try:
            eps = algo.env_runner.sample(num_timesteps=60)
            return [(next(iter(ep.get_infos(-1).values()))["chain"]["episode_seed"],
                     ep.agent_episodes["store_1"].get_actions().tolist()) for ep in eps]
        finally:
            algo.stop()

    a, b = sample(7), sample(7)
    assert a == b
    assert sample(8) != a


def test_the_batched_sampler_refuses_what_it_would_skip(local_ray):
    """A user connector or a per-step episode callback would run in evaluation (RLlib's path) but
    not in batched training: the runner refuses it with one error naming it, instead of
    training without it. The shipped config has neither."""
    from ray.rllib.callbacks.callbacks import RLlibCallback

    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.rl.runner import _BatchedSampler

    sc = load_config(DEFAULT_YAML)
    assert _BatchedSampler.unsupported(build_algo_config(sc, num_env_runners=0)) == ""
    # weights pulled from a state server happen inside RLlib's own sample(), which batches skip
    pulled = build_algo_config(sc, num_env_runners=0).env_runners(use_env_runner_state_server=True)
    assert "use_env_runner_state_server" in _BatchedSampler.unsupported(pulled)

    class StepCounter(RLlibCallback):
        def on_episode_step(self, **kwargs):
            pass

    cases = [
        (lambda c: c.env_runners(env_to_module_connector=lambda env, spaces=None, device=None: []),
         "env-to-module connector"),
        (lambda c: c.callbacks(on_episode_step=lambda **kw: None), "on_episode_step callback"),
        (lambda c: c.callbacks(StepCounter), "StepCounter.on_episode_step"),
    ]
    for change, needle in cases:
        config = change(build_algo_config(sc, num_env_runners=0, envs_per_runner=2, hidden=[16, 16],
                                          train_batch=90, minibatch=90, epochs=1))
        algo = config.build_algo()
        try:
            with pytest.raises(ValueError, match=needle):
                algo.env_runner.sample(num_timesteps=60)
        finally:
            algo.stop()
