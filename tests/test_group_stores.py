"""``training.group_stores``: the stores as one RLlib agent, one row each (rl.env.STORES_GROUP).

The grouped env is the per-store env with the stores' observations and actions stacked as rows,
and the learner's loss for the group is PPO's loss per store."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DEFAULT_YAML, scenario

from hmarl_rllib.rl.env import STORES_GROUP, HMARLEnv
from hmarl_rllib.sim.config import load_config

TWO_SKUS = dict(episode_length=20, shortage="backorder", skus=[{"name": "A"}, {"name": "B"}],
                stores={"count": 3, "demand": {"A": {"mean": 60}, "B": {"mean": 20}}})


@pytest.mark.parametrize("sc", [lambda: load_config(DEFAULT_YAML), lambda: scenario(**TWO_SKUS)],
                         ids=["default", "2sku-backorder"])
def test_the_grouped_env_is_the_per_store_env_with_the_stores_as_rows(sc):
    sc = sc()
    per, grp = HMARLEnv({"scenario": sc}), HMARLEnv({"scenario": sc, "group_stores": True})
    assert grp.possible_agents == [STORES_GROUP] + per.wh_ids + per.sup_ids
    rows = len(per.store_ids)
    assert grp.observation_spaces[STORES_GROUP].shape == (rows,) + per.observation_spaces[per.store_ids[0]].shape
    assert list(grp.action_spaces[STORES_GROUP].nvec) == [per.action_spaces[per.store_ids[0]].n] * rows
    o1, _ = per.reset(options={"episode_seed": 11})
    o2, _ = grp.reset(options={"episode_seed": 11})
    rng = np.random.default_rng(0)
    for day in range(sc.episode_length):
        np.testing.assert_array_equal(o2[STORES_GROUP], np.stack([o1[a] for a in per.store_ids]))
        store_acts = rng.integers(0, per.action_spaces[per.store_ids[0]].n, size=rows)
        up = {a: int(rng.integers(0, per.action_spaces[a].n)) for a in per.wh_ids + per.sup_ids}
        o1, r1, t1, _, i1 = per.step({**dict(zip(per.store_ids, store_acts.tolist())), **up})
        o2, r2, t2, _, i2 = grp.step({STORES_GROUP: store_acts, **up})
        assert t1 == t2
        assert r2[STORES_GROUP] == pytest.approx(np.mean([r1[a] for a in per.store_ids]), rel=1e-12)
        for a in up:
            np.testing.assert_array_equal(o1[a], o2[a])
            assert r1[a] == r2[a]
    assert t2["__all__"]
    assert i2[STORES_GROUP]["chain"] == i1[per.store_ids[0]]["chain"]
    group_kpi = i2[STORES_GROUP]["kpi"]
    for name in ("cost", "holding_cost", "stockout_cost", "ordering_cost"):  # summed over the stores
        assert group_kpi[name] == pytest.approx(sum(i1[a]["kpi"][name] for a in per.store_ids), rel=1e-12)
    assert group_kpi["fill_rate"] == pytest.approx(np.mean([i1[a]["kpi"]["fill_rate"] for a in per.store_ids]))


@pytest.mark.slow
def test_the_groups_loss_is_ppos_loss_per_store():
    """The learner's loss for the stores' group equals RLlib's own PPO loss on the same data laid
    out one row per store with the group's advantage: each store's ratio is clipped on its own."""
    import ray
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY
    from ray.rllib.evaluation.postprocessing import Postprocessing

    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.rl.modules import STORE_MODULE

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        config = build_algo_config(load_config(DEFAULT_YAML), num_env_runners=0, envs_per_runner=1, hidden=[16, 16],
                                   train_batch=30, minibatch=30, epochs=1, group_stores=True)
        algo = config.build_algo()
        try:
            learner = algo.learner_group._learner
            module = learner.module[STORE_MODULE]
            B, G = 40, 3
            g = torch.Generator().manual_seed(0)
            obs = torch.randn(B, G, module.observation_space.shape[0], generator=g)
            with torch.no_grad():
                old = module.forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS] \
                    + 0.5 * torch.randn(B, G, module.action_space.n, generator=g)  # a policy a step behind
            dist = torch.distributions.Categorical(logits=old)
            actions = dist.sample()
            adv = torch.randn(B, generator=g)
            group = {Columns.OBS: obs, Columns.ACTIONS: actions, Columns.ACTION_LOGP: dist.log_prob(actions),
                     Columns.ACTION_DIST_INPUTS: old, Postprocessing.ADVANTAGES: adv,
                     Postprocessing.VALUE_TARGETS: torch.randn(B, generator=g)}
            flat = {k: v.reshape(B * G, *v.shape[2:]) for k, v in group.items() if v.dim() >= 2}
            flat[Postprocessing.ADVANTAGES] = adv.repeat_interleave(G)
            flat[Postprocessing.VALUE_TARGETS] = torch.zeros(B * G)
            out = {}
            for name, batch in (("group", group), ("flat", flat)):
                fwd = module.forward_train(batch)
                learner.compute_loss_for_module(module_id=STORE_MODULE, config=learner.config, batch=batch,
                                                fwd_out=fwd)
                out[name] = {k: float(learner.metrics.peek((STORE_MODULE, k))) for k in (POLICY_LOSS_KEY, ENTROPY_KEY)}
            assert out["group"][POLICY_LOSS_KEY] == pytest.approx(out["flat"][POLICY_LOSS_KEY], rel=1e-5)
            assert out["group"][ENTROPY_KEY] == pytest.approx(out["flat"][ENTROPY_KEY], rel=1e-5)
            # and some ratios are clipped (the check above is not vacuous)
            ratio = torch.exp(torch.distributions.Categorical(logits=module.forward_train(group)[
                Columns.ACTION_DIST_INPUTS]).log_prob(actions) - group[Columns.ACTION_LOGP])
            assert ((ratio - 1).abs() > learner.config.clip_param).any()
            # one real update with a sampled group batch runs and moves the store module
            before = [p.detach().clone() for p in module.parameters()]
            algo.train()
            assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))
        finally:
            algo.stop()
    finally:
        ray.shutdown()
