"""``training.critic: chain``: a critic that sees the whole chain (every agent's observation on
the same day), while the actor, and so acting, serving and export, keep the agent's own."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DEFAULT_YAML

from hmarl_rllib.errors import ConfigError
from hmarl_rllib.experiments.training import training_settings
from hmarl_rllib.sim.config import load_config


def test_a_chain_critic_with_grouped_stores_is_refused_by_name():
    with pytest.raises(ConfigError, match="training.critic = chain: not with group_stores.*set critic: own"):
        training_settings(load_config(DEFAULT_YAML), critic="chain", group_stores=True)
    with pytest.raises(ConfigError, match="training.critic"):
        training_settings(load_config(DEFAULT_YAML), critic="everyone")


@pytest.mark.slow
def test_the_chain_critic_reads_every_agents_observation_of_the_day_and_the_actor_only_its_own():
    import ray
    import torch
    from ray.rllib.core.columns import Columns

    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.rl.env import obs_sizes
    from hmarl_rllib.rl.modules import CHAIN_OBS, STORE_MODULE, SUPPLIER_MODULE, WAREHOUSE_MODULE

    sc = load_config(DEFAULT_YAML)
    n = obs_sizes(sc)
    ns = n["store"]
    wh = slice(3 * ns, 3 * ns + n["warehouse"])  # agent order: the 3 stores, the warehouse, the supplier
    sup = slice(wh.stop, wh.stop + n["supplier"])
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        config = build_algo_config(sc, num_env_runners=0, envs_per_runner=2, hidden=[16, 16], train_batch=60,
                                   minibatch=60, epochs=1, critic="chain")
        algo = config.build_algo()
        try:
            learner = algo.learner_group._learner
            episodes = algo.env_runner.sample(num_timesteps=60)
            batch = learner._learner_connector(rl_module=learner.module, batch={}, episodes=episodes,
                                               shared_data={}, metrics=learner.metrics)
            chain = {m: batch[m][CHAIN_OBS].numpy() for m in (STORE_MODULE, WAREHOUSE_MODULE, SUPPLIER_MODULE)}
            obs = {m: batch[m][Columns.OBS].numpy() for m in chain}
            assert chain[STORE_MODULE].shape[1] == 3 * ns + n["warehouse"] + n["supplier"]
            # each agent's own observation is its block of the day's chain
            np.testing.assert_array_equal(obs[WAREHOUSE_MODULE], chain[WAREHOUSE_MODULE][:, wh])
            np.testing.assert_array_equal(obs[SUPPLIER_MODULE], chain[SUPPLIER_MODULE][:, sup])
            own = np.stack([(chain[STORE_MODULE][:, i * ns:(i + 1) * ns] == obs[STORE_MODULE]).all(axis=1)
                            for i in range(3)])  # (store block, row); stores start alike, so a row may match several
            assert own.any(axis=0).all() and not own.all()
            # every agent's row of a day carries that day's chain: the stores' rows are 3 copies of
            # the warehouse's and of the supplier's
            rows = {m: sorted(map(tuple, c)) for m, c in chain.items()}
            assert rows[WAREHOUSE_MODULE] == rows[SUPPLIER_MODULE]
            assert rows[STORE_MODULE] == sorted(rows[WAREHOUSE_MODULE] * 3)

            module = learner.module[STORE_MODULE]
            x = {Columns.OBS: batch[STORE_MODULE][Columns.OBS][:8], CHAIN_OBS: batch[STORE_MODULE][CHAIN_OBS][:8]}
            other = {**x, CHAIN_OBS: x[CHAIN_OBS].clone()}
            other[CHAIN_OBS][:, wh] += 1.0  # another agent's (the warehouse's) observation changes
            with torch.no_grad():
                v, v2 = module.compute_values(x), module.compute_values(other)
                a, a2 = (module.forward_train(b)[Columns.ACTION_DIST_INPUTS] for b in (x, other))
            assert not torch.allclose(v, v2)  # the critic sees it
            torch.testing.assert_close(a, a2)  # the actor does not
            torch.testing.assert_close(module.forward_inference({Columns.OBS: x[Columns.OBS]})[
                Columns.ACTION_DIST_INPUTS], a)  # and acts without it
            with pytest.raises(ValueError, match="chain_obs"):
                module.compute_values({Columns.OBS: x[Columns.OBS]})
            before = [p.detach().clone() for p in module.encoder.critic_encoder.parameters()]
            algo.train()
            assert any(not torch.equal(p, q) for p, q in zip(before, module.encoder.critic_encoder.parameters()))
        finally:
            algo.stop()
    finally:
        ray.shutdown()


def test_an_inference_only_module_with_a_chain_critic_acts_without_one():
    """Env runners and exported policies may build the module inference-only: no critic at all,
    the same actor."""
    import dataclasses

    import gymnasium as gym
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from hmarl_rllib.rl.modules import WarmStartPPOModule

    model = {**dataclasses.asdict(DefaultModelConfig(fcnet_hiddens=[8], fcnet_activation="tanh",
                                                          vf_share_layers=False)), "chain_obs_dim": 5}
    spaces = dict(observation_space=gym.spaces.Box(-10, 10, (3,), np.float32), action_space=gym.spaces.Discrete(4))
    full = WarmStartPPOModule(**spaces, model_config=model)
    lean = WarmStartPPOModule(**spaces, model_config=model, inference_only=True)
    assert full.encoder.critic_encoder.net.mlp[0].in_features == 3 + 5
    assert getattr(lean.encoder, "critic_encoder", None) is None
    lean.set_state(full.get_state(inference_only=True))
    obs = {Columns.OBS: torch.randn(6, 3)}
    torch.testing.assert_close(lean.forward_inference(obs)[Columns.ACTION_DIST_INPUTS],
                               full.forward_inference(obs)[Columns.ACTION_DIST_INPUTS])
