"""Observations the network can use whatever the scenario's magnitudes (issue 14, item 1).

Every observation lies in the documented [-10, 10] (:class:`hmarl_rllib.rl.env.HMARLEnv`, env v2)
on extreme scenarios: an upstream of 10^7 units, stores selling 0.1 or 10,000 a day, with and
without capacities, both observation modes, lost sales and backorders, under random actions
and under classic rules. And a store module trained briefly from scratch on a one-store
scenario whose warehouse holds 10^7 units acts on its state (in env v1 the warehouse fields
were ~200,000 there and the trained policy was one constant order).
"""
from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
import yaml

from hmarl_rllib.policies.heuristics import initial_guess, rule_based_policy
from hmarl_rllib.rl.env import MU_FLOOR, OBS_BOUND, OBS_LINEAR, HMARLEnv, squash, unsquash
from hmarl_rllib.rl.observe import ObservationBuilder
from hmarl_rllib.sim import SupplyChainTwin

from conftest import scenario

BIG = 10**7


def _extreme(mu, mode, shortage, capacity, episode_length=60, **fields):
    """One store selling ``mu`` a day (Poisson), a warehouse and a supplier holding 10^7 units."""
    store = {"count": 1, "lead_time": 2, "demand": {"mean": mu}, "initial_inventory": int(min(5 * mu, BIG))}
    warehouse = {"initial_inventory": BIG, "lead_time": 2}
    supplier = {"initial_inventory": BIG}
    if capacity:
        store["capacity"] = max(int(20 * mu), 3)
        warehouse["capacity"] = 2 * BIG
        supplier["production_capacity"] = max(int(3 * mu), 1)
    if mode == "rich":
        fields.setdefault("random_lead_times", {"enabled": True, "probability": 0.3})
    return scenario(episode_length=episode_length, shortage=shortage, stores=store, warehouse=warehouse,
                    supplier=supplier, observations={"mode": mode}, **fields)


def _check(env, obs, seen):
    assert set(obs) == set(env.possible_agents)
    for aid, o in obs.items():
        space = env.observation_spaces[aid]
        assert o.dtype == np.float32 and o.shape == space.shape, aid
        assert np.isfinite(o).all(), (aid, o)
        assert np.abs(o).max() <= OBS_BOUND, (aid, o)
        assert space.contains(o), (aid, o)
        seen.append(np.abs(o).max())


def _play(env, policy_fn, seeds=(0, 1)):
    """Play whole episodes; check every observation; return the largest |value| seen."""
    seen = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        _check(env, obs, seen)
        rng = np.random.default_rng(seed)
        while True:
            obs, rew, term, _, _ = env.step(policy_fn(env, rng))
            _check(env, obs, seen)
            assert all(np.isfinite(r) for r in rew.values())
            if term["__all__"]:
                break
    return max(seen)


def _random(env, rng):
    return {a: int(rng.integers(env.action_spaces[a].n)) for a in env.possible_agents}


def _correction_zero(env, rng):
    """Correction 0 in baseline_correction mode: the env plays its baseline rule exactly."""
    return {a: int(np.flatnonzero(env.codecs[kind].values == 0)[0])
            for a, kind in zip(env.possible_agents, ["store"] * len(env.store_ids) + ["warehouse", "supplier"])}


CORRECTIONS = {t: {"mode": "baseline_correction", "values": [-2, -1, 0, 1, 2]}
               for t in ("store", "warehouse", "supplier")}
ORDER_UP_TO = {"store": {"mode": "order_up_to", "values": [0, 1, 3, 6]},
               "warehouse": {"mode": "order_up_to", "values": [0, 5, 10]},
               "supplier": {"mode": "order_up_to", "values": [0, 5, 10]}}
GRID = list(itertools.product([0.1, 10_000], ["walkthrough", "rich"], ["lost_sales", "backorder"], [False, True]))


def _id(case):
    mu, mode, shortage, cap = case
    return f"mu{mu:g}-{mode}-{shortage}-{'cap' if cap else 'nocap'}"


@pytest.mark.parametrize("case", GRID, ids=[_id(c) for c in GRID])
def test_observations_stay_in_range_on_extreme_scenarios(case):
    """Random actions (the walkthrough's quantities, which are absurd for both demand levels,
    and order-up-to levels), then the scenario's rule-based (s, S) levels (300/700 units: far
    too much for 0.1 a day, far too little for 10,000) and the textbook base-stock / (s, S)
    played exactly through correction 0."""
    mu, mode, shortage, cap = case
    sc = _extreme(mu, mode, shortage, cap)
    biggest = [_play(HMARLEnv({"scenario": sc}), _random)]
    biggest.append(_play(HMARLEnv({"scenario": _extreme(mu, mode, shortage, cap, actions=ORDER_UP_TO)}), _random))
    sc_c = _extreme(mu, mode, shortage, cap, actions=CORRECTIONS)
    for rule in (rule_based_policy(sc_c, "s_S"), initial_guess(sc_c, "base_stock"), initial_guess(sc_c, "s_S")):
        biggest.append(_play(HMARLEnv({"scenario": sc_c, "baseline": rule}), _correction_zero, seeds=(3,)))
    # the 10^7 upstream is there (and squashed): the store's warehouse fields saturate
    env = HMARLEnv({"scenario": sc})
    obs, _ = env.reset(seed=0)
    assert obs["store_1"][5] == pytest.approx(OBS_BOUND)
    assert max(biggest) <= OBS_BOUND


def test_two_skus_of_very_different_magnitudes_in_one_store():
    sc = scenario(episode_length=40, shortage="backorder", skus=[{"name": "slow"}, {"name": "fast"}],
                  stores={"count": 2, "demand": {"slow": {"mean": 0.1}, "fast": {"mean": 10_000}},
                          "initial_inventory": {"slow": 1, "fast": 20_000}},
                  warehouse={"initial_inventory": {"slow": BIG, "fast": BIG}},
                  supplier={"initial_inventory": {"slow": BIG, "fast": BIG}}, observations={"mode": "rich"})
    assert _play(HMARLEnv({"scenario": sc}), _random) <= OBS_BOUND


def test_a_store_without_demand_and_a_big_one_stay_in_range():
    sc = scenario(episode_length=30, stores=[{"name": "quiet", "demand": {"mean": 0}},
                                             {"name": "busy", "demand": {"mean": 10_000}}],
                  warehouse={"initial_inventory": BIG}, observations={"mode": "rich"})
    assert _play(HMARLEnv({"scenario": sc}), _random) <= OBS_BOUND


def test_squash_is_the_identity_within_five_then_bounded_monotone_and_invertible():
    x = np.linspace(-OBS_LINEAR, OBS_LINEAR, 101)
    np.testing.assert_array_equal(squash(x), x)
    big = np.array([-1e12, -1e7, -2e5, -50.0, -20.0, -10.0, -5.5, 5.5, 10.0, 20.0, 50.0, 2e5, 1e7, 1e12])
    y = squash(big)
    assert (np.abs(y) <= OBS_BOUND).all() and (np.diff(y) >= 0).all() and (np.diff(y[4:10]) > 0).all()
    assert squash(np.array([10.0]))[0] == pytest.approx(8.808, abs=1e-3)
    assert squash(np.array([2e5], np.float32))[0] == OBS_BOUND  # float32: saturated exactly
    mid = np.array([-20.0, -7.0, 5.2, 8.0, 20.0])
    np.testing.assert_allclose(unsquash(squash(mid)), mid, rtol=1e-9)
    np.testing.assert_allclose(unsquash(squash(mid.astype(np.float32))), mid, rtol=1e-5)


def test_a_slow_movers_unit_of_stock_is_visible():
    """μ is floored at 0.1 a day: at 0.1 a day one unit of stock observes as 1.0 (v1 floored μ
    at 1, so a unit observed as 0.1); at 10,000 a day nothing is floored."""
    for mu, unit in ((0.1, 1.0), (0.01, 1.0 / (10 * MU_FLOOR)), (10_000, 1e-5)):
        sc = _extreme(mu, "rich", "lost_sales", False)
        env = HMARLEnv({"scenario": sc.model_copy(update={"stores": sc.stores.model_copy(
            update={"initial_inventory": 3})})})
        obs, _ = env.reset(seed=0)
        assert obs["store_1"][0] == pytest.approx(3 * unit, rel=1e-6)
        assert obs["store_1"][7] == pytest.approx(3 * unit, rel=1e-6)  # inventory position


# --------------------------------------------------------------- a trained store acts on its state
ONE_STORE = {
    "name": "one_store", "episode_length": 60, "shortage": "lost_sales",
    "skus": [{"name": "A", "holding_cost": {"store": 1.0, "warehouse": 0.0, "supplier": 0.0},
              "stockout_penalty": 4.0,
              "ordering_cost": {"store": {"fixed": 0.0}, "warehouse": {"fixed": 0.0}, "supplier": {"fixed": 0.0}}}],
    "stores": {"count": 1, "lead_time": 2, "demand": {"mean": 5}, "initial_inventory": 15},
    "warehouse": {"initial_inventory": BIG, "lead_time": 2},  # an upstream that never runs short
    "supplier": {"initial_inventory": BIG},
    "observations": {"mode": "rich"},
    "actions": {"store": {"mode": "quantities", "values": [0, 5, 10, 15]},
                "warehouse": {"mode": "quantities", "values": [0, 1000]},
                "supplier": {"mode": "quantities", "values": [0, 1000]}},
    "training": {"baseline": "base_stock", "lr": 1e-3, "train_batch": 2400, "minibatch": 512, "epochs": 8,
                 "hidden": [64, 64], "num_env_runners": 1, "envs_per_runner": 16,
                 "evaluation_interval": 20, "evaluation_episodes": 10, "checkpoint_frequency": 20,
                 "keep_checkpoints": 1, "final_eval_episodes": 10, "seed": 0},
}


@pytest.mark.slow
def test_a_trained_store_modules_action_changes_with_its_inventory_position(tmp_path):
    """PPO from scratch (no warm start, no rule to correct), 20 iterations (48,000 env steps,
    about a minute): the restored store module orders more when its inventory position is 0
    than when it holds many days of demand."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    from hmarl_rllib.experiments.evaluation import module_actions
    from hmarl_rllib.experiments.training import train
    from hmarl_rllib.sim.config import load_config

    cfg = tmp_path / "one_store.yaml"
    cfg.write_text(yaml.safe_dump(ONE_STORE, sort_keys=False))
    sc = load_config(cfg)
    res = train(sc, "one_store", storage=str(tmp_path / "runs"), stop_iters=20)
    module = RLModule.from_checkpoint(res.last_checkpoint / "learner_group" / "learner" / "rl_module" / "store_policy")
    env = HMARLEnv({"scenario": sc})
    n = env.action_spaces["store_1"].n
    low, high, positions = [], [], []
    for seed in range(5):
        for order, states in ((0, low), (n - 1, high)):  # six days ordering nothing / the most
            obs, _ = env.reset(seed=seed)
            for _ in range(6):
                obs, *_ = env.step({"store_1": order, "warehouse": 0, "supplier": 0})
            states.append(obs["store_1"])
            positions.append(env.twin.store_position()[0, 0, 0])
    a_low, a_high = module_actions(module, np.stack(low)), module_actions(module, np.stack(high))
    assert max(positions[0::2]) == 0 and min(positions[1::2]) >= 40, positions  # empty vs 8+ days of demand
    assert (a_low > a_high).all(), (a_low.tolist(), a_high.tolist())
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)


def test_calendar_and_demand_history_can_be_observed_as_zero_keeping_the_layout():
    """observations.calendar / demand_history: false zero exactly those fields (names from the
    export manifest's layout) on every day; every other field is what the default observes."""
    from hmarl_rllib.rl.observe import ObservationBuilder
    from hmarl_rllib.serving.export import observation_layout
    from hmarl_rllib.sim import SupplyChainTwin
    from hmarl_rllib.sim.network import F

    base = dict(episode_length=20, stores={"count": 2, "lead_time": 2, "demand": {"mean": 7}}, observations={"mode": "rich"})
    on = scenario(**base)
    off = scenario(**{**base, "observations": {"mode": "rich", "calendar": False, "demand_history": False}})
    rule = rule_based_policy(on, "s_S")
    layout = {t: [f["name"] for f in fields] for t, fields in observation_layout(on).items()}
    assert layout == {t: [f["name"] for f in fields] for t, fields in observation_layout(off).items()}
    dropped = {"weekday_sin", "weekday_cos", "yearday_sin", "yearday_cos", "demand_yesterday", "demand_mean_7d"}
    tw = SupplyChainTwin(on)
    tw.reset([0, 1])
    b_on, b_off = ObservationBuilder(on), ObservationBuilder(off)
    seen_nonzero = 0
    while not tw.done:
        N, K = tw.n_stores, tw.n_skus
        last = ((tw.ledger[tw.day - 1][:, :N, :, F["order_placed"]], tw.ledger[tw.day - 1][:, N, :, F["order_placed"]])
                if tw.day else (np.zeros((2, N, K)), np.zeros((2, K))))
        o_on, o_off = b_on(tw, *last), b_off(tw, *last)
        for t, names in layout.items():
            gone = np.array([n in dropped or n.startswith("demand_") and n.endswith("_ago") for n in names])
            np.testing.assert_array_equal(o_off[t][..., gone], 0.0)
            np.testing.assert_array_equal(o_off[t][..., ~gone], o_on[t][..., ~gone])
            seen_nonzero += int(np.abs(o_on[t][..., gone]).sum() > 0)
        tw.step(*rule.orders(tw))
    assert seen_nonzero > 20  # the default does observe something there


def _store_obs_by_day(sc, days):
    """Each day's store observation of replica 0 (store 0, SKU 0), nothing ordered."""
    tw, build = SupplyChainTwin(sc), ObservationBuilder(sc)
    tw.reset([3])
    out = []
    for _ in range(days):
        out.append(build(tw, np.zeros((1, tw.n_stores, tw.n_skus)), np.zeros((1, tw.n_skus)))["store"][0, 0, 0])
        tw.step(np.zeros((1, tw.n_stores, tw.n_skus)), np.zeros((1, tw.n_skus)), np.zeros((1, tw.n_skus)))
    return np.array(out)


def test_rich_index_9_is_the_demand_models_mean_over_the_lead_time_and_a_day():
    """Index 9: the model's expected demand from today through today + L, over (L + 1) μ. With
    Monday's factor 3 (mean 10, other days 10) over two weeks, μ = 90/7 a day; lead time 1:
    Monday 30 + 10, Tuesday 10 + 10, Sunday 10 + the next Monday's 30."""
    sc = scenario(episode_length=14, observations={"mode": "rich"},
                  stores={"count": 1, "lead_time": 1, "demand": {"mean": 10, "weekly": [3, 1, 1, 1, 1, 1, 1]}})
    idx9 = _store_obs_by_day(sc, 8)[:, 9]
    mu = 90 / 7
    np.testing.assert_allclose(idx9[[0, 1, 6, 7]], [40 / (2 * mu), 20 / (2 * mu), 40 / (2 * mu), 40 / (2 * mu)], rtol=1e-6)
    flat = scenario(episode_length=14, observations={"mode": "rich"}, stores={"count": 1, "lead_time": 1})
    np.testing.assert_allclose(_store_obs_by_day(flat, 5)[:, 9], 1.0, rtol=1e-6)  # stationary: always 1


def test_calendar_features_tell_the_weekday_and_follow_start_weekday():
    """The last four store inputs (rich mode): the weekday pair repeats every 7 days, differs
    on each of the 7 weekdays, and a scenario starting a weekday later shows on day d what the
    first shows on day d + 1; the day-of-year pair moves every day. ``calendar: false``: zeros."""
    base = dict(episode_length=20, stores={"count": 1})
    obs = _store_obs_by_day(scenario(**base, observations={"mode": "rich"}), 15)
    week, year = obs[:, -4:-2], obs[:, -2:]
    np.testing.assert_allclose(week[:7], week[7:14], atol=1e-6)
    assert len({tuple(np.round(w, 4)) for w in week[:7]}) == 7
    assert np.all(np.abs(np.diff(year, axis=0)).sum(axis=1) > 0)
    later = _store_obs_by_day(scenario(**base, start_weekday=1, observations={"mode": "rich"}), 14)
    np.testing.assert_allclose(later[:, -4:-2], week[1:15], atol=1e-6)
    off = _store_obs_by_day(scenario(**base, observations={"mode": "rich", "calendar": False}), 9)
    assert np.all(off[:, -4:] == 0.0)
