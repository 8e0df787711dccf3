"""hmarl_rllib.rl.learner.FastPPOTorchLearner: the same PPO updates as RLlib's PPOTorchLearner.

Both learners start from the same weights and seeds and update twice on the same episodes
(several epochs, minibatches that wrap around the batch, shuffled every epoch): the weights,
the optimizer state and every reported learner metric must come out bitwise equal.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from tests.conftest import DEFAULT_YAML

pytestmark = pytest.mark.slow

REPORTED = ("policy_loss", "vf_loss", "vf_loss_unclipped", "vf_explained_var", "entropy", "mean_kl_loss",
            "total_loss", "curr_kl_coeff", "curr_entropy_coeff", "gradients_default_optimizer_global_norm",
            "diff_num_grad_updates_vs_sampler_policy", "num_module_steps_trained", "weights_seq_no",
            "default_optimizer_learning_rate")


def _peek(results: dict) -> dict:
    return {(mid, key): stats.peek() for mid, metrics in results.items() if isinstance(metrics, dict)
            for key, stats in metrics.items() if key in REPORTED}


def test_fast_learner_updates_exactly_as_rllib():
    import ray
    from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner

    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.rl.learner import FastPPOTorchLearner
    from hmarl_rllib.sim.config import load_config

    config = build_algo_config(load_config(DEFAULT_YAML), num_env_runners=0, envs_per_runner=4, seed=5)
    assert config.learner_class is FastPPOTorchLearner
    reference = config.copy(copy_frozen=False).learners(learner_class=PPOTorchLearner)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        algos = {"fast": config.build_algo(), "rllib": reference.build_algo()}
        learners = {k: a.learner_group._learner for k, a in algos.items()}
        assert type(learners["rllib"]) is PPOTorchLearner and type(learners["fast"]) is FastPPOTorchLearner
        learners["fast"].module.set_state(learners["rllib"].module.get_state())
        episodes = algos["rllib"].env_runner.sample(num_timesteps=400)
        assert learners["fast"]._fast  # the fast paths, not RLlib's fallbacks
        results = {}
        for name, learner in learners.items():
            for i in range(2):  # the second update also checks Adam's state and the KL coefficient
                np.random.seed(11 + i)
                torch.manual_seed(11 + i)
                results[name] = learner.update(
                    episodes=copy.deepcopy(episodes), timesteps={"num_env_steps_sampled_lifetime": 400 * (i + 1)},
                    num_epochs=3, minibatch_size=96, shuffle_batch_per_epoch=True)
        weights = {k: learner.module.get_state() for k, learner in learners.items()}
        optimizers = {k: learner._get_optimizer_state() for k, learner in learners.items()}
        for a in algos.values():
            a.stop()
    finally:
        ray.shutdown()

    learned = set(config.policies_to_train)
    assert learned == {"store_policy", "warehouse_policy", "supplier_policy"}
    for mid in learned:
        assert weights["fast"][mid].keys() == weights["rllib"][mid].keys()
        for key, ref in weights["rllib"][mid].items():
            assert np.array_equal(np.asarray(weights["fast"][mid][key]), np.asarray(ref)), (mid, key)
    for name, ref in optimizers["rllib"].items():
        fast = optimizers["fast"][name]["state"]["state"]
        for pid, slots in ref["state"]["state"].items():
            for slot, value in slots.items():
                assert np.array_equal(np.asarray(fast[pid][slot]), np.asarray(value)), (name, pid, slot)

    ours, theirs = _peek(results["fast"]), _peek(results["rllib"])
    assert ours.keys() == theirs.keys()
    assert {key for _, key in theirs} == set(REPORTED)  # every statistic is still reported
    for key, value in theirs.items():
        value, mine = float(value), float(ours[key])
        assert mine == value or (math.isnan(mine) and math.isnan(value)), (key, mine, value)


def test_reward_centering_hands_gae_rewards_centred_on_the_batch_mean():
    """``training.reward_centering``: a learner connector piece right before GAE subtracts the
    mean reward of the batch's real steps; the bootstrap step RLlib adds stays untouched."""
    import ray
    from ray.rllib.connectors.learner import GeneralAdvantageEstimation
    from ray.rllib.core.columns import Columns

    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.rl.modules import STORE_MODULE
    from hmarl_rllib.sim.config import load_config

    sc = load_config(DEFAULT_YAML)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        batches = {}
        for on in (False, True):
            config = build_algo_config(sc, num_env_runners=0, envs_per_runner=4, seed=5, reward_centering=on)
            algo = config.build_algo()
            try:
                learner = algo.learner_group._learner
                names = [type(c).__name__ for c in learner._learner_connector.connectors]
                assert ("RewardCentering" in names) == on
                if on:
                    assert names.index("RewardCentering") == names.index(GeneralAdvantageEstimation.__name__) - 1
                if not batches:
                    episodes = algo.env_runner.sample(num_timesteps=300)
                batches[on] = learner._learner_connector(rl_module=learner.module, batch={},
                                                         episodes=copy.deepcopy(episodes), shared_data={},
                                                         metrics=learner.metrics)
            finally:
                algo.stop()
        mid = STORE_MODULE
        raw, centred = (batches[k][mid][Columns.REWARDS].numpy() for k in (False, True))
        mask = batches[True][mid][Columns.LOSS_MASK].numpy()
        assert (~mask).any()  # RLlib's bootstrap steps are in the batch...
        np.testing.assert_array_equal(centred[~mask], raw[~mask])  # ...and keep their reward
        assert abs(raw[mask].mean()) > 0.01
        assert abs(centred[mask].mean()) < 1e-6
        np.testing.assert_allclose(raw[mask] - centred[mask], raw[mask].mean(), rtol=1e-5)
    finally:
        ray.shutdown()


def test_training_follows_lr_and_entropy_schedules():
    """Schedules ``[[env steps, value], ...]`` train (RLlib sets a scheduled lr as a tensor, which
    the fast learner's foreach Adam would refuse) and the reported lr follows the schedule."""
    import ray

    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.sim.config import load_config

    config = build_algo_config(load_config(DEFAULT_YAML), num_env_runners=0, envs_per_runner=4, seed=5,
                               train_batch=120, minibatch=60, epochs=1, evaluation_interval=50,
                               checkpoint_frequency=50, lr=[[0, 1e-3], [600, 1e-4]], entropy=[[0, 0.01], [600, 0.0]])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        algo = config.build_algo()
        try:
            lrs = []
            for _ in range(6):
                res = algo.train()["learners"]["store_policy"]
                lrs.append(float(res["default_optimizer_learning_rate"]))
                coeff = float(res["curr_entropy_coeff"])
        finally:
            algo.stop()
        assert lrs[0] > lrs[1] > lrs[2] and lrs[-1] == pytest.approx(1e-4, rel=1e-6), lrs
        assert coeff == pytest.approx(0.0, abs=1e-6)
    finally:
        ray.shutdown()
