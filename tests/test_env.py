"""The RLlib MultiAgentEnv: passes RLlib's checker, reproduces seeded episodes, maps actions,
observations and rewards to the right agents as its docstring says, reports KPIs at the end."""
from __future__ import annotations

import numpy as np
import pytest
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from hmarl_rllib.rl.env import OBS_BOUND, HMARLEnv, unsquash
from hmarl_rllib.sim.network import F

from conftest import DEFAULT_YAML, WALKTHROUGH_YAML, scenario

TWO_SKUS = dict(episode_length=8, skus=[{"name": "A"}, {"name": "B"}],
                stores={"count": 2, "demand": {"A": {"mean": 60}, "B": {"mean": 20}}})


def _env(mode="walkthrough", **fields):
    fields.setdefault("episode_length", 10)
    return HMARLEnv({"scenario": scenario(observations={"mode": mode}, **fields)})


@pytest.mark.parametrize("make", [
    lambda: HMARLEnv({"scenario": str(DEFAULT_YAML)}),
    lambda: HMARLEnv({"scenario": str(WALKTHROUGH_YAML)}),
    lambda: _env("walkthrough"),
    lambda: _env("rich", random_lead_times={"enabled": True}, warmup_days=3),
    lambda: _env("walkthrough", **TWO_SKUS),
    lambda: _env("rich", **TWO_SKUS),
], ids=["default-yaml", "walkthrough-yaml", "walkthrough", "rich", "walkthrough-2sku", "rich-2sku"])
def test_passes_rllib_checker_and_full_episodes_stay_in_spaces(make):
    env = make()
    check_multiagent_environments(env)
    obs, _ = env.reset(seed=1)
    steps = 0
    while True:
        assert set(obs) == set(env.possible_agents)
        for aid, o in obs.items():
            space = env.observation_spaces[aid]
            assert o.shape == space.shape and o.dtype == np.float32 and np.isfinite(o).all()
            assert space.contains(o), (aid, o)
        actions = {a: env.action_spaces[a].sample() for a in env.possible_agents}
        obs, rew, term, trunc, infos = env.step(actions)
        steps += 1
        assert set(rew) == set(env.possible_agents)
        assert all(np.isfinite(r) and r <= 0 for r in rew.values())
        if term["__all__"] or trunc["__all__"]:
            break
    assert steps == env.scenario.episode_length


def test_walkthrough_spaces_match_the_walkthrough():
    env = HMARLEnv({"scenario": str(WALKTHROUGH_YAML)})
    assert env.possible_agents == ["store_1", "store_2", "store_3", "warehouse", "supplier"]
    assert env.observation_spaces["store_1"].shape == (7,)
    assert env.observation_spaces["warehouse"].shape == (6,)
    assert env.observation_spaces["supplier"].shape == (3,)
    assert env.action_spaces["store_2"].n == 4 and env.action_spaces["warehouse"].n == 4
    assert env.action_spaces["supplier"].n == 3


def _rollout(env, seed, steps=8, action_seed=0):
    rng = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    trace = [np.concatenate([obs[a] for a in env.possible_agents])]
    for _ in range(steps):
        act = {a: int(rng.integers(env.action_spaces[a].n)) for a in env.possible_agents}
        obs, rew, term, _, _ = env.step(act)
        trace.append(np.concatenate([obs[a] for a in env.possible_agents] + [[rew[a] for a in env.possible_agents]]))
        if term["__all__"]:
            break
    return trace


def test_seeded_resets_reproduce():
    a = _rollout(_env("rich", **TWO_SKUS), seed=7)
    b = _rollout(_env("rich", **TWO_SKUS), seed=7)
    c = _rollout(_env("rich", **TWO_SKUS), seed=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    env = _env()
    env.reset(options={"episode_seed": 123})
    d1 = env.twin.demand.copy()
    env.reset(options={"episode_seed": 123})
    np.testing.assert_array_equal(env.twin.demand, d1)


def test_actions_reach_the_right_node_and_sku():
    env = _env(**TWO_SKUS)
    env.reset(seed=0)
    actions = {a: 0 for a in env.possible_agents}
    actions["store_2:B"] = 3
    actions["warehouse:A"] = 2
    actions["supplier:B"] = 1
    env.step(actions)
    row = env.twin.ledger[0, 0, :, :, F["order_placed"]]  # (M, K)
    expected = np.zeros((4, 2))
    expected[1, 1] = env.scenario.actions.store.values[3]
    expected[2, 0] = env.scenario.actions.warehouse.values[2]
    expected[3, 1] = env.scenario.actions.supplier.values[1]
    np.testing.assert_array_equal(row, expected)


def test_a_missing_agents_action_is_refused_not_defaulted():
    """Every agent acts every day: a step without one agent's action names it instead of
    quietly playing action 0 for it, and the day is not simulated."""
    env = _env(**TWO_SKUS)
    env.reset(seed=0)
    actions = {a: 1 for a in env.possible_agents}
    del actions["warehouse:B"]
    with pytest.raises(ValueError, match="no action for warehouse:B"):
        env.step(actions)
    assert env.twin.day == 0
    actions["warehouse:B"] = 1
    env.step(actions)
    assert env.twin.day == 1


def test_rewards_are_each_agents_scaled_cost_and_sum_to_the_chain_cost():
    env = _env(reward={"cost_scale": 0.01, "team_weight": 0.0}, **TWO_SKUS)
    env.reset(seed=3)
    total = dict.fromkeys(env.possible_agents, 0.0)
    rng = np.random.default_rng(1)
    while True:
        _, rew, term, _, infos = env.step({a: int(rng.integers(env.action_spaces[a].n)) for a in env.possible_agents})
        row = env.twin.ledger[env.twin.day - 1, 0]
        cost = row[..., F["holding_cost"]] + row[..., F["stockout_cost"]] + row[..., F["ordering_cost"]]
        assert rew["store_1:B"] == pytest.approx(-0.01 * cost[0, 1])
        assert rew["warehouse:A"] == pytest.approx(-0.01 * cost[2, 0])
        assert rew["supplier:B"] == pytest.approx(-0.01 * cost[3, 1])
        for a in total:
            total[a] += rew[a]
        if term["__all__"]:
            break
    chain = infos["store_1:A"]["chain"]
    assert sum(total.values()) == pytest.approx(-0.01 * chain["cost"])


def test_final_kpis_of_a_per_sku_agent_are_its_own_sku():
    env = _env(**TWO_SKUS)
    env.reset(seed=3)
    total = dict.fromkeys(env.possible_agents, 0.0)
    while True:
        _, rew, term, _, infos = env.step({a: 1 for a in env.possible_agents})
        for a in total:
            total[a] += rew[a]
        if term["__all__"]:
            break
    scale = env.scenario.reward.cost_scale
    for aid in ("store_2:B", "warehouse:A", "supplier:B"):
        assert infos[aid]["kpi"]["cost"] == pytest.approx(-total[aid] / scale)


def test_final_infos_carry_kpis():
    env = HMARLEnv({"scenario": str(DEFAULT_YAML)})
    env.reset(seed=0)
    infos = {}
    for _ in range(env.scenario.episode_length):
        _, _, term, _, infos = env.step({a: 1 for a in env.possible_agents})
        if not term["__all__"]:
            assert not any("kpi" in v for v in infos.values() if isinstance(v, dict))
    assert term["__all__"]
    for aid in env.possible_agents:
        kpi = infos[aid]["kpi"]
        assert {"cost", "fill_rate", "service_level", "holding_cost", "stockout_cost", "ordering_cost",
                "bullwhip"} <= set(kpi)
        assert 0 <= kpi["fill_rate"] <= 1
        assert infos[aid]["chain"]["episode_seed"] == env.episode_seed


def test_team_weight_shares_the_chain_cost():
    env = _env(reward={"cost_scale": 0.01, "team_weight": 1.0})
    env.reset(seed=0)
    _, rew, _, _, _ = env.step({a: 1 for a in env.possible_agents})
    assert len(set(np.round(list(rew.values()), 9))) == 1


@pytest.mark.parametrize("mode", ["walkthrough", "rich"])
def test_observation_indices_mean_what_the_docstring_says(mode):
    env = _env(mode, shortage="backorder", stores={"count": 3, "lead_time": 2, "demand": {"mean": 50}},
               episode_length=12)
    env.reset(seed=4)
    rng = np.random.default_rng(2)
    mu = env.scenario.mean_demand()[:, 0]
    mu_w = mu.sum()
    tw = env.twin
    for _ in range(10):
        obs, *_ = env.step({a: int(rng.integers(env.action_spaces[a].n)) for a in env.possible_agents})
        day = tw.day
        s2 = unsquash(obs["store_2"])  # the scaled quantities behind the squash
        assert s2[0] * 10 * mu[1] == pytest.approx(tw.on_hand[0, 1, 0], abs=1e-2)
        assert s2[1] * 10 * mu[1] == pytest.approx(tw.in_transit[0, 1, 0], abs=1e-2)
        assert s2[2] * 10 * mu[1] == pytest.approx(tw.backorders[0, 1, 0], abs=1e-2)
        assert s2[3] * mu[1] == pytest.approx(tw.demand[0, day - 1, 1, 0], abs=1e-3)
        start = max(0, day - 7)
        assert s2[4] * mu[1] == pytest.approx(tw.demand[0, start:day, 1, 0].sum() / 7, abs=1e-3)
        assert s2[5] * 10 * mu_w == pytest.approx(tw.wh_on_hand[0, 0], abs=1e-1)
        assert s2[6] == pytest.approx((env.scenario.episode_length - day) / env.scenario.episode_length)
        w = unsquash(obs["warehouse"])
        assert w[0] * 10 * mu_w == pytest.approx(tw.wh_on_hand[0, 0], abs=1e-1)
        assert w[1] * 10 * mu_w == pytest.approx(tw.wh_in_transit[0, 0], abs=1e-1)
        assert w[2] * mu_w == pytest.approx(tw.ledger[day - 1, 0, :3, 0, F["order_placed"]].sum(), abs=1e-2)
        assert w[3] * 10 * mu_w == pytest.approx(tw.store_position()[0, :, 0].sum(), abs=1e-1)
        assert w[4] * 10 * mu_w == pytest.approx(tw.sup_on_hand[0, 0], abs=1e-1)
        p = unsquash(obs["supplier"])
        assert p[0] * 10 * mu_w == pytest.approx(tw.sup_on_hand[0, 0], abs=1e-1)
        assert p[1] * 10 * mu_w == pytest.approx(tw.sup_in_production[0, 0], abs=1e-1)
        assert p[2] * mu_w == pytest.approx(tw.ledger[day - 1, 0, 3, 0, F["order_placed"]], abs=1e-2)
        if mode == "rich":
            assert s2[7] * 10 * mu[1] == pytest.approx(tw.store_position()[0, 1, 0], abs=1e-2)
            assert s2[8] * 10 * mu_w == pytest.approx(tw.warehouse_position()[0, 0], abs=1e-1)
            # arrivals due in 1..P-1 days sum to what is in transit
            P = tw.P_s
            assert s2[10:10 + P - 1].sum() * 10 * mu[1] == pytest.approx(tw.in_transit[0, 1, 0], abs=1e-1)
            assert w[6] * 10 * mu_w == pytest.approx(tw.warehouse_position()[0, 0], abs=1e-1)
            assert p[3] * 10 * mu_w == pytest.approx(tw.supplier_position()[0, 0], abs=1e-1)


def test_rich_upstream_pipelines_sum_to_what_is_in_transit():
    env = _env("rich", warehouse={"lead_time": 3}, supplier={"lead_time": 2}, episode_length=10)
    env.reset(seed=4)
    tw = env.twin
    mu_w = env.scenario.mean_demand().sum()
    for _ in range(8):
        obs, *_ = env.step({a: 2 for a in env.possible_agents})
        w, p = unsquash(obs["warehouse"]), unsquash(obs["supplier"])
        assert w[7:7 + tw.P_w - 1].sum() * 10 * mu_w == pytest.approx(tw.wh_in_transit[0, 0], abs=1e-1)
        assert p[6:6 + tw.P_p - 1].sum() * 10 * mu_w == pytest.approx(tw.sup_in_production[0, 0], abs=1e-1)


@pytest.mark.parametrize("mode", ["walkthrough", "rich"])
def test_observations_stay_finite_and_scaled_when_a_store_has_no_demand(mode):
    env = _env(mode, stores=[{"name": "quiet", "demand": {"mean": 0}}, {"name": "busy"}])
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        assert all(np.isfinite(o).all() and np.abs(o).max() <= OBS_BOUND for o in obs.values())
        obs, *_ = env.step({a: 1 for a in env.possible_agents})
    assert all(np.isfinite(o).all() and np.abs(o).max() <= OBS_BOUND for o in obs.values())


def test_action_codec_decodes_and_encodes_every_mode():
    from hmarl_rllib.rl.actions import ActionCodec

    ip = np.array([[100.0, 250.0, 0.0]])
    q = ActionCodec("quantities", [0, 150, 300], mu=60)
    np.testing.assert_array_equal(q.decode(np.array([[2, 0, 1]]), ip), [[300, 0, 150]])
    np.testing.assert_array_equal(q.encode(np.array([[290.0, 10.0, 160.0]]), ip), [[2, 0, 1]])
    u = ActionCodec("order_up_to", [0, 2, 4], mu=60)
    np.testing.assert_array_equal(u.decode(np.array([[2, 2, 1]]), ip), [[140, 0, 120]])
    c = ActionCodec("base_stock_correction", [-1, 0, 1], mu=60, base_level=200)
    np.testing.assert_array_equal(c.decode(np.array([[0, 1, 2]]), ip), [[40, 0, 260]])
    for codec in (q, u, c):
        a = np.array([[0, 1, 2]])
        orders = codec.decode(a, ip)
        np.testing.assert_array_equal(codec.decode(codec.encode(orders, ip), ip), orders)


def test_seasonal_correction_decodes_with_the_days_levels():
    from hmarl_rllib.rl.actions import ActionCodec

    scale = np.array([0.5, 1.0, 2.0])  # three days' levels
    c = ActionCodec("baseline_correction", [-1, 0, 1], mu=10, base_level=200 * scale, base_reorder=100 * scale,
                    daily=True)
    ip = np.array([[60.0, 120.0, 250.0]])
    zero = np.ones((1, 3), np.int64)
    # day 0: s, S = 50, 100; day 2: 200, 400 (an (s, S) order only at or below s)
    np.testing.assert_array_equal(c.decode(zero, ip, day=0), [[0, 0, 0]])
    np.testing.assert_array_equal(c.decode(zero, ip, day=2), [[340, 280, 0]])
    np.testing.assert_array_equal(c.decode(zero + 1, ip, day=2), [[350, 290, 10]])
    np.testing.assert_array_equal(c.decode(zero, ip, day=9), c.decode(zero, ip, day=2))  # past the end: last day
    with pytest.raises(ValueError, match="needs the day"):
        c.decode(zero, ip)


@pytest.mark.parametrize("kind", ["s_S_seasonal", "echelon_s_S", "echelon_s_S_seasonal", "echelon_base_stock",
                                  "s_S_endgame", "base_stock_endgame", "echelon_s_S_seasonal_endgame",
                                  "s_S_endgame_schedule", "base_stock_schedule",
                                  "echelon_s_S_seasonal_endgame_schedule"])
def test_env_with_a_seasonal_or_echelon_baseline_plays_it_exactly_on_correction_zero(kind):
    """configs/seasonal.yaml's design (baseline_correction everywhere) over a rule that follows
    the season, reviews echelon positions, stops before the end and/or follows a schedule of its
    levels: correction 0 for every
    agent is, day by day, exactly that rule (the env decodes the warehouse's and supplier's
    corrections on the position the rule reviews, and the rule's order is 0 once it stops)."""
    from pathlib import Path

    from hmarl_rllib.policies.heuristics import Forecast, initial_guess
    from hmarl_rllib.policies.spec import RuleSpec
    from hmarl_rllib.rl.env import ChainDynamics
    from hmarl_rllib.sim import simulate
    from hmarl_rllib.sim.config import load_config

    sc = load_config(Path(DEFAULT_YAML).with_name("seasonal.yaml"))
    spec = RuleSpec.from_name(kind)
    rule = initial_guess(sc, spec.kind)
    rule = rule.with_(forecast=Forecast.build(sc)) if spec.seasonal else rule
    rule = rule.with_(stop_days=(4, 9, 15)) if spec.endgame else rule
    if spec.schedule is not None:  # factors that differ by period, echelon and level
        sch = 1 + 0.4 * np.sin(np.arange(10 * 3 * 2)).reshape(10, 3, 2)
        rule = rule.with_(schedule=sch, period_days=9)
    assert rule.name == kind
    seeds = [5, 6, 7]
    chain = ChainDynamics(sc, rule)
    chain.reset(seeds)
    zero = {k: int(np.flatnonzero(chain.codecs[k].values == 0)[0]) for k in ("store", "warehouse", "supplier")}
    B, N, K = len(seeds), len(sc.store_list), len(sc.skus)
    while not chain.twin.done:
        chain.step(np.full((B, N, K), zero["store"]), np.full((B, K), zero["warehouse"]),
                   np.full((B, K), zero["supplier"]))
    twin = simulate.run(sc, rule.orders, seeds)
    np.testing.assert_array_equal(chain.twin.ledger, twin.ledger)


def _seed_sequence(env, n=6, seed=None):
    out = []
    for i in range(n):
        env.reset(seed=seed if i == 0 else None)
        out.append(env.episode_seed)
    return out


def test_envs_with_different_vector_index_get_their_own_seed_streams():
    """Several envs per env runner (RLlib's EnvContext: worker_index, vector_index) must not
    replay one another's episodes: neither the cycled ``episode_seeds`` nor, seeded alike, the
    random training seeds."""
    from ray.rllib.env.env_context import EnvContext

    from hmarl_rllib.rl.env import make_env

    sc = scenario(episode_length=5)
    fixed = list(range(1_500_000, 1_500_030))

    def env(worker, vector, **cfg):  # as RLlib builds it: make_env(EnvContext) with index attributes
        return make_env(EnvContext({"scenario": sc, **cfg}, worker_index=worker, vector_index=vector))

    e00, e01, e10 = (env(w, v, episode_seeds=fixed) for w, v in ((0, 0), (0, 1), (1, 0)))
    s00, s01, s10 = (_seed_sequence(e) for e in (e00, e01, e10))
    assert s00 == fixed[:6]  # env 0 of worker 0 (the evaluation env) starts at the first seed
    assert len({s00[0], s01[0], s10[0]}) == 3 and not set(s00) & set(s01), (s00, s01, s10)
    # random training seeds: the same reset(seed=...) on two sub-envs of one runner
    r0, r1 = (_seed_sequence(env(1, v), seed=7) for v in (0, 1))
    assert r0 != r1 and not set(r0) & set(r1), (r0, r1)
    assert r0 == _seed_sequence(env(1, 0), seed=7)  # still reproducible per stream
    assert (e01.worker_index, e01.vector_index) == (0, 1)


def test_the_run_callback_numbers_the_sub_envs_of_a_vector_env():
    """RLlib 2.60 builds every sub-env of a multi-agent vector env from one EnvContext
    (vector_index 0 for all): the run's callback gives them their own streams."""
    from types import SimpleNamespace

    from hmarl_rllib.experiments.training import KPICallback

    sc = scenario(episode_length=5)
    subs = [HMARLEnv({"scenario": sc, "episode_seeds": list(range(100, 130))}) for _ in range(3)]
    vector_env = SimpleNamespace(envs=[SimpleNamespace(unwrapped=e) for e in subs])
    KPICallback().on_environment_created(env_runner=SimpleNamespace(worker_index=2), env=vector_env,
                                         metrics_logger=None, env_context=None)
    firsts = [_seed_sequence(e, n=1)[0] for e in subs]
    assert len(set(firsts)) == 3, firsts
    assert [(e.worker_index, e.vector_index) for e in subs] == [(2, 0), (2, 1), (2, 2)]


# ----------------------------------------------------------------------- exploring starts
RANDOM_START = dict(episode_length=12, observations={"mode": "rich"},
                    stores={"count": 2, "lead_time": 3, "capacity": 30, "initial_inventory": 20, "demand": {"model": "poisson", "mean": 10}})


def test_random_starts_give_varied_store_states_whose_pipeline_arrives_on_time():
    from hmarl_rllib.policies.heuristics import rule_based_policy
    from hmarl_rllib.rl.env import ChainDynamics

    sc = scenario(**RANDOM_START)
    chain = ChainDynamics(sc, rule_based_policy(sc, "s_S"))
    B, L, mu = 4000, 3, 10.0
    chain.reset(np.arange(B), 0.5, np.random.default_rng(3))
    tw = chain.twin
    start = tw.on_hand[:, :, 0].copy(), tw.store_pipeline()[:, :, 0].copy()
    fixed = (tw.in_transit[:, :, 0] == 0).all(axis=1) & (tw.on_hand[:, :, 0] == tw.init_store[:, 0]).all(axis=1)
    assert 0.45 < 1 - fixed.mean() < 0.55  # half the replicas start at random, both stores alike
    moved = ~fixed
    on_hand, pipe = start[0][moved], start[1][moved]
    assert on_hand.min() == 0 and on_hand.max() == 30  # whole units, capped by the store's capacity
    np.testing.assert_array_equal(on_hand, np.round(on_hand))
    position = on_hand + pipe.sum(axis=-1)
    assert position.max() <= 2 * (L + 1) * mu + L + 1
    assert abs(position.mean() - (L + 1) * mu) < 0.05 * (L + 1) * mu  # minus the capacity's cut
    assert pipe.shape[-1] == L and (pipe == 0).any(axis=-1).mean() > 0.15  # empty slots come up
    np.testing.assert_allclose(tw.in_transit[moved][:, :, 0], pipe.sum(axis=-1))
    # with no orders, the pipeline arrives on its days: day d receives slot d, then nothing is in transit
    for d in range(L):
        row = tw.step(np.zeros((B, 2, 1)), np.zeros((B, 1)), np.zeros((B, 1)))
        np.testing.assert_array_equal(row[moved][:, :2, 0, F["received"]], pipe[..., d])
    assert (tw.in_transit == 0).all()


def test_random_starts_are_drawn_after_the_warm_up_where_the_learned_play_starts():
    """With warm-up days (the average-cost grid plays 20 days of base-stock first) exploring
    starts must survive them: the learned play starts from the random state, not from the
    state the warm-up rule brings every replica back to."""
    from hmarl_rllib.policies.heuristics import rule_based_policy
    from hmarl_rllib.rl.env import ChainDynamics

    sc = scenario(**{**RANDOM_START, "warmup_days": 15})
    B, L, mu = 2000, 3, 10.0

    def start(share):
        chain = ChainDynamics(sc, rule_based_policy(sc, "s_S"))
        chain.reset(np.arange(B), share, np.random.default_rng(5))
        tw = chain.twin
        assert tw.day == 15
        return tw.on_hand[:, :, 0] + tw.in_transit[:, :, 0]  # inventory position (B, 2)

    warm, explored = start(0.0), start(1.0)
    low = 0.5 * (L + 1) * mu  # half of the lead-time demand: a state the (s, S) rule seldom leaves
    assert (explored < low).mean() > 0.15  # U[0, 2 (L + 1) mu]: about a quarter of the stores
    assert (explored < low).mean() > 5 * (warm < low).mean()
    assert explored.max() > warm.max()

    # with backorders, a warm-up that left some owed demand: the random state replaces it whole
    sc = scenario(**{**RANDOM_START, "warmup_days": 15, "shortage": "backorder"})
    chain = ChainDynamics(sc, rule_based_policy(sc, "s_S"))
    chain.reset(np.arange(B), 1.0, np.random.default_rng(5))
    assert (chain.twin.backorders == 0).all()


def test_random_starts_never_touch_validation_or_held_out_episodes():
    sc = scenario(**RANDOM_START)
    fixed = HMARLEnv({"scenario": sc, "random_starts": 1.0, "episode_seeds": [1, 2, 3]})
    plain = HMARLEnv({"scenario": sc, "episode_seeds": [1, 2, 3]})
    for _ in range(3):
        a, b = fixed.reset(seed=0)[0], plain.reset(seed=0)[0]
        assert all(np.array_equal(a[k], b[k]) for k in a)
    chosen = HMARLEnv({"scenario": sc, "random_starts": 1.0})
    chosen.reset(options={"episode_seed": 5})
    assert (chosen.twin.in_transit == 0).all()
    training = HMARLEnv({"scenario": sc, "random_starts": 1.0})
    starts = {float(training.reset(seed=s)[0]["store_1"][7]) for s in range(20)}  # inventory position
    assert len(starts) > 10
    with pytest.raises(ValueError, match="random_starts"):
        HMARLEnv({"scenario": sc, "random_starts": 1.5})
