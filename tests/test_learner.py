"""hmarl_rllib.rl.learner: RLlib's PPO update, reward centering as a connector piece, schedules."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.conftest import DEFAULT_YAML

pytestmark = pytest.mark.slow


def test_training_uses_rllibs_ppo_update():
    """rl/learner.py adds a connector piece and the loss of the stores' group: the learner training
    builds is RLlib's PPOTorchLearner, its update RLlib's own, its loss RLlib's for every module but
    a group of stores (tests/test_group_stores.py checks that one against RLlib's)."""
    from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner

    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.sim.config import load_config

    cls = build_algo_config(load_config(DEFAULT_YAML), num_env_runners=0).learner_class
    assert issubclass(cls, PPOTorchLearner)
    # its own: the connector piece (build), the loss of a group of stores (RLlib's loss for every
    # other module) and RLlib's Adam with torch's fused kernel
    assert {name for name in vars(cls) if callable(vars(cls)[name]) and not name.startswith("__")} == \
        {"build", "compute_loss_for_module", "_grouped_loss", "configure_optimizers_for_module"}


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
    the fused Adam takes) and the reported lr follows the schedule."""
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
        # torch's fused Adam took the scheduled (tensor) lr
        optims = algo.learner_group._learner._named_optimizers.values()
        assert optims and all(o.defaults["fused"] for o in optims)
        assert coeff == pytest.approx(0.0, abs=1e-6)
    finally:
        ray.shutdown()
