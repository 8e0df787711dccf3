"""``training.group_stores``: the stores as one RLlib agent, one row each (rl.env.GROUP_IDS), and
so the learned warehouse's and supplier's SKUs.

The grouped env is the per-agent env with a type's observations and actions stacked as rows,
and the learner's loss for a group is PPO's loss per row."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DEFAULT_YAML, scenario

from hmarl_rllib.rl.env import GROUP_IDS, HMARLEnv
from hmarl_rllib.sim.config import load_config

TWO_SKUS = dict(episode_length=20, shortage="backorder", skus=[{"name": "A"}, {"name": "B"}],
                stores={"count": 3, "demand": {"A": {"mean": 60}, "B": {"mean": 20}}})


@pytest.mark.parametrize("sc,groups", [
    (lambda: load_config(DEFAULT_YAML), ["store"]),
    (lambda: scenario(**TWO_SKUS), ["store"]),
    (lambda: scenario(**TWO_SKUS), ["store", "warehouse", "supplier"]),
    (lambda: scenario(**TWO_SKUS), ["warehouse"]),
], ids=["default-stores", "2sku-stores", "2sku-all", "2sku-warehouses"])
def test_the_grouped_env_is_the_per_agent_env_with_the_agents_as_rows(sc, groups):
    sc = sc()
    per, grp = HMARLEnv({"scenario": sc}), HMARLEnv({"scenario": sc, "groups": groups})
    ids = per.type_ids
    assert grp.possible_agents == [a for t in ids for a in ([GROUP_IDS[t]] if t in groups else ids[t])]
    for t in groups:
        g, first = GROUP_IDS[t], ids[t][0]
        assert grp.observation_spaces[g].shape == (len(ids[t]),) + per.observation_spaces[first].shape
        assert list(grp.action_spaces[g].nvec) == [per.action_spaces[first].n] * len(ids[t])
    o1, _ = per.reset(options={"episode_seed": 11})
    o2, _ = grp.reset(options={"episode_seed": 11})
    rng = np.random.default_rng(0)
    for day in range(sc.episode_length):
        for t in ids:
            if t in groups:
                np.testing.assert_array_equal(o2[GROUP_IDS[t]], np.stack([o1[a] for a in ids[t]]))
            else:
                for a in ids[t]:
                    np.testing.assert_array_equal(o1[a], o2[a])
        acts = {t: rng.integers(0, per.action_spaces[ids[t][0]].n, size=len(ids[t])) for t in ids}
        o1, r1, t1, _, i1 = per.step({a: int(x) for t in ids for a, x in zip(ids[t], acts[t])})
        o2, r2, t2, _, i2 = grp.step({**{GROUP_IDS[t]: acts[t] for t in groups},
                                      **{a: int(x) for t in ids if t not in groups for a, x in zip(ids[t], acts[t])}})
        assert t1 == t2
        for t in ids:
            if t in groups:
                assert r2[GROUP_IDS[t]] == pytest.approx(np.mean([r1[a] for a in ids[t]]), rel=1e-12)
            else:
                assert all(r1[a] == r2[a] for a in ids[t])
    assert t2["__all__"]
    for t in groups:
        info = i2[GROUP_IDS[t]]
        assert info["chain"] == i1[ids[t][0]]["chain"]
        for name in ("cost", "holding_cost", "stockout_cost", "ordering_cost"):  # summed over the rows
            assert info["kpi"][name] == pytest.approx(sum(i1[a]["kpi"][name] for a in ids[t]), rel=1e-12)
        assert info["kpi"]["fill_rate"] == pytest.approx(np.mean([i1[a]["kpi"]["fill_rate"] for a in ids[t]]))


def test_an_unknown_group_is_refused():
    with pytest.raises(ValueError, match="env_config.groups: shelves is not an agent type"):
        HMARLEnv({"scenario": load_config(DEFAULT_YAML), "groups": ["store", "shelves"]})


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
                out[name] = {k: float(torch.as_tensor(learner.metrics.peek((STORE_MODULE, k))).detach())
                             for k in (POLICY_LOSS_KEY, ENTROPY_KEY)}
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
