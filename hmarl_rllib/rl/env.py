"""The RLlib multi-agent environment: a thin adapter around the digital twin.

Registered as ``"hmarl"`` with :func:`ray.tune.registry.register_env` by :func:`register`.
"""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from hmarl_rllib.policies.heuristics import ChainPolicy, rule_based_policy
from hmarl_rllib.rl.actions import codecs, decode_orders
from hmarl_rllib.rl.observe import (HISTORY, MU_FLOOR, OBS_BOUND, OBS_LINEAR, SCALE_DAYS,  # noqa: F401
                                    ObservationBuilder, _extra, _squash_inplace, agent_ids, agent_type, obs_sizes,
                                    observation_units, squash, unsquash)
from hmarl_rllib.sim import SupplyChainTwin, reconciliation
from hmarl_rllib.sim.config import Scenario, load_config, parse_config
from hmarl_rllib.sim.demand import ShortfallTables
from hmarl_rllib.sim.simulate import TUNE_SEED_BASE

ENV_NAME = "hmarl"
# env_config ``groups``: the agent types whose agents act as one agent, one row each of its
# observation and action arrays, under these ids; a group's reward is the mean of its agents'
GROUP_IDS = {"store": "stores", "warehouse": "warehouses", "supplier": "suppliers"}
ENV_VERSION = 2


def scenario_from(env_config) -> Scenario:
    """Accept a Scenario, a dict of scenario fields, or a path to a YAML file."""
    sc = env_config.get("scenario", env_config.get("config"))
    if isinstance(sc, Scenario):
        return sc
    if isinstance(sc, dict):
        return parse_config(sc, "env_config.scenario")
    if isinstance(sc, (str, Path)):
        return load_config(sc)
    raise ValueError("env_config needs 'scenario' (a Scenario, a dict or a YAML path)")


class HMARLEnv(MultiAgentEnv):
    """Supplier → warehouse → N stores, one agent per store (per SKU), a warehouse and a supplier.

    **Description.** Each step is one day of the digital twin (timing convention in
    :mod:`hmarl_rllib.sim.network`): the agents' actions are the orders placed at the start of
    the day; then the supplier produces and ships, the warehouse allocates, stores receive and
    serve demand, and costs are charged. With several SKUs every agent id gets ``:<sku>``.

    **Action space** (``actions:`` in the scenario; Discrete(len(values)) per agent type).
    Default (the walkthrough's): stores Discrete(4) order ``[0, 150, 300, 450]`` units; warehouse
    Discrete(4) orders ``[0, 1000, 2000, 3000]``; supplier Discrete(3) produces ``[0, 200, 400]``.
    Other modes: ``order_up_to`` (order up to ``values[a]`` × mean daily demand μ),
    ``base_stock_correction`` (tuned base-stock order + ``values[a]`` × μ) and
    ``baseline_correction`` (the baseline rule's order + ``values[a]`` × μ); see
    :mod:`hmarl_rllib.rl.actions`.

    **Observation space** (Box(−10, 10), float32). μ is the mean daily demand the agent faces
    (its own store's; the sum over stores μ_w for the warehouse and the supplier, and for the
    upstream stock a store sees: whether the warehouse can fill the chain's orders); stock is
    scaled by ``10·μ`` (ten days of demand; ``observations.stock_days`` in the scenario sets
    another number of days, and "10" below then reads as that number) and demand by μ. μ is floored at 0.1 unit/day
    (:data:`MU_FLOOR`: a store without demand stays finite, and one unit of a slow mover's stock
    is 1.0 at most). Every scaled value x then goes through the squash
    ``S(x) = x`` for |x| ≤ 5, ``sign(x)·(5 + 5·tanh((|x| − 5)/5))`` beyond (:func:`squash`,
    inverse :func:`unsquash`): values up to 50 days of stock (5× the mean demand) are observed
    exactly as scaled, larger ones are compressed smoothly into (5, 10] (S(10) ≈ 8.8, S(20) ≈
    9.98, ±10 from about 50 on). So **every observation lies in [−10, 10]** whatever the
    scenario's magnitudes (an upstream of 10⁷ units, a store selling 0.1 or 10,000 a day); the
    share of the episode to go lies in [0, 1] and the calendar features in [−1, 1]. The
    "scaled by" column below is the x before the squash.

    ``walkthrough`` mode — store (7):

    ====  ===========================================  ==========
    idx   quantity                                     scaled by
    ====  ===========================================  ==========
    0     on hand                                      10·μ
    1     in transit from the warehouse                10·μ
    2     backorders (0 in lost-sales mode)            10·μ
    3     yesterday's demand                           μ
    4     mean demand of the last 7 days               μ
    5     warehouse on hand                            10·μ_w
    6     share of the episode still to go (1 → 0;     —
          always 1 with ``horizon: infinite``)
    ====  ===========================================  ==========

    warehouse (6): 0 on hand, 1 in transit from the supplier, 2 stores' orders yesterday (÷ μ_w),
    3 sum of the stores' inventory positions, 4 supplier on hand, 5 share of the episode to go.
    supplier (3): 0 finished stock, 1 production in progress, 2 warehouse order yesterday (÷ μ_w).
    Stock indices are ÷ 10·μ_w.

    ``rich`` mode appends, store: 7 inventory position, 8 warehouse inventory position, 9 mean
    demand forecast over lead time + 1 days (÷ μ·(L+1)), then arrivals due in 1..P−1 days,
    demand of the last 7 days (oldest first), sin/cos of the weekday and of the day of the year.
    Warehouse: 6 own inventory position, arrivals due in 1..P−1 days, the stores' total demand of
    the last 7 days, calendar (4). Supplier: 3 own inventory position, 4 warehouse inventory
    position, 5 share of the episode to go, production completing in 1..L_p days, calendar (4).

    **Rewards** (per agent, per day, :func:`hmarl_rllib.sim.reconciliation.rewards`):
    ``−cost_scale · [(1 − team_weight)·own cost + team_weight·chain cost / n_agents]``; own
    cost = holding + stockout penalty + backorder + ordering cost of the agent's node and SKU.
    With ``reward.expected_costs`` a store's holding, stockout and backorder costs are their
    expectations over the day's demand given its stock after today's arrivals
    (:func:`hmarl_rllib.sim.reconciliation.expected_store_costs`): the same expected return for
    every policy, less noise. KPIs and the episode's infos always count realized costs.

    **Starting state.** The scenario's initial inventories, empty pipelines; ``warmup_days``
    are then played with the warm-up policy (env_config ``baseline``, default the scenario's
    rule-based (s, S) levels) and not scored.

    **Episode end.** After ``episode_length`` scored days all agents are terminated (a finite
    horizon: the remaining time is part of the observation); with ``horizon: infinite`` they
    are truncated instead (a time limit on an endless problem: RLlib bootstraps the last
    value, and the share of time to go is always observed as 1). The last step's infos carry the
    episode's KPIs per agent (``kpi``) and for the chain (``chain``).

    **Arguments** (``env_config``): ``scenario`` (Scenario, dict or YAML path); ``baseline``
    (a :class:`ChainPolicy` or a parameters dict for warm-up and corrections); ``episode_seeds``
    (a list of demand seeds cycled through, e.g. held-out evaluation seeds; default: random
    training seeds below 1,000,000); ``random_starts`` (share of random-seed episodes whose
    stores start from a random state, :meth:`ChainDynamics.randomize_stores`; default 0).

    **Version history.** v1: first release. v2: observations are squashed into [−10, 10] (the
    identity within ±5, so a v1 observation up to 5 is unchanged) and the Box spaces carry those
    bounds; μ is floored at 0.1 unit/day instead of 1 (a store selling under 1 a day observes
    other values than in v1). v1 let an upstream of 10⁷ units reach 200,000 in a store's
    observation, which swamped the network (issue 14).
    """

    metadata = {"render_modes": []}

    def __init__(self, env_config: dict | None = None):
        super().__init__()
        ctx = env_config  # RLlib's EnvContext: worker_index / vector_index are attributes, not keys
        env_config = dict(env_config or {})
        self.scenario = sc = scenario_from(env_config)
        base = env_config.get("baseline")
        if isinstance(base, dict):
            from hmarl_rllib.policies.tuning import policy_from_dict

            base = policy_from_dict(base, sc)
        self.baseline: ChainPolicy = base or rule_based_policy(sc, "s_S")
        self.episode_seeds = list(env_config.get("episode_seeds") or [])
        self.random_starts = float(env_config.get("random_starts") or 0.0)
        if not 0.0 <= self.random_starts <= 1.0:
            raise ValueError(f"env_config.random_starts = {self.random_starts}: give a share in [0, 1]")
        self.set_stream(*(env_config.get(k, getattr(ctx, k, 0)) for k in ("worker_index", "vector_index")))
        self.chain = ChainDynamics(sc, self.baseline)
        self.twin, self.codecs = self.chain.twin, self.chain.codecs
        self.N, self.K = self.twin.n_stores, self.twin.n_skus
        self.store_ids, self.wh_ids, self.sup_ids = agent_ids(sc)
        # groups: agent types whose agents act as one agent (GROUP_IDS), one row each
        groups = env_config.get("groups") or []
        unknown = sorted(set(groups) - set(GROUP_IDS))
        if unknown:
            raise ValueError(f"env_config.groups: {', '.join(map(str, unknown))} is not an agent type;"
                             f" give some of {', '.join(GROUP_IDS)}")
        self.groups = tuple(t for t in GROUP_IDS if t in groups)
        self.type_ids = {"store": self.store_ids, "warehouse": self.wh_ids, "supplier": self.sup_ids}
        self.type_agents = {t: [GROUP_IDS[t]] if t in self.groups else ids for t, ids in self.type_ids.items()}
        self.store_agents = self.type_agents["store"]
        self.possible_agents = [a for ids in self.type_agents.values() for a in ids]
        self.agents = list(self.possible_agents)
        sizes = obs_sizes(sc)
        box = {t: gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (n,), np.float32) for t, n in sizes.items()}
        n_act = {t: c.n for t, c in self.codecs.items()}
        self.observation_spaces = {a: box[agent_type(a)] for a in self.possible_agents}
        self.action_spaces = {a: gym.spaces.Discrete(n_act[agent_type(a)]) for a in self.possible_agents}
        for t in self.groups:
            rows = len(self.type_ids[t])
            self.observation_spaces[GROUP_IDS[t]] = gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (rows, sizes[t]), np.float32)
            self.action_spaces[GROUP_IDS[t]] = gym.spaces.MultiDiscrete([n_act[t]] * rows)
        self._rng = np.random.default_rng()

    def set_stream(self, worker_index: int = 0, vector_index: int = 0) -> None:
        """This env's own seed stream, one per (env runner ``worker_index``, sub-env
        ``vector_index``) pair, numbered k by the Cantor pairing of the two (k = 0 for env 0 of
        worker 0). ``episode_seeds`` (L of them) are cycled from offset k x m mod L, m the
        integer next to L / golden ratio that is coprime with L: the first L streams start at
        distinct seeds, spread over the list. ``reset(seed=s)`` draws training seeds from
        ``default_rng([s, worker_index, vector_index])`` (``default_rng(s)`` for k = 0), so
        envs that RLlib seeds alike still play different episodes."""
        w, v = int(worker_index or 0), int(vector_index or 0)
        self.worker_index, self.vector_index = w, v
        self._stream = (w + v) * (w + v + 1) // 2 + v
        self._seed_cursor = 0  # episodes played from episode_seeds

    # -------------------------------------------------------------------------- gym API
    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed if self._stream == 0 else
                                              [int(seed), self.worker_index, self.vector_index])
        if options and "episode_seed" in options:
            ep_seed = int(options["episode_seed"])
        elif self.episode_seeds:
            n = len(self.episode_seeds)
            offset = self._stream * _spread(n) if self._stream else 0
            ep_seed = int(self.episode_seeds[(offset + self._seed_cursor) % n])
            self._seed_cursor += 1
        else:
            ep_seed = int(self._rng.integers(0, TUNE_SEED_BASE))
        self.episode_seed = ep_seed
        self.agents = list(self.possible_agents)
        # exploring starts only on training seeds: fixed seeds (validation, held-out) start as the scenario says
        explore = 0.0 if (self.episode_seeds or (options and "episode_seed" in options)) else self.random_starts
        return self._agent_dict(self.chain.reset([ep_seed], explore, self._rng)), {}

    def step(self, action_dict):
        N, K = self.N, self.K
        missing = [a for a in self.possible_agents if a not in action_dict]
        if missing:  # every agent acts every day (RLlib sends one action per observed agent)
            raise ValueError(f"step(): no action for {', '.join(missing)}; every agent acts every day"
                             f" (agents: {', '.join(self.possible_agents)})")
        def acts(t):
            n = len(self.type_ids[t])
            if t in self.groups:
                return np.asarray(action_dict[GROUP_IDS[t]], np.int64).reshape(n)
            return np.fromiter((action_dict.get(a, 0) for a in self.type_ids[t]), np.int64, n)

        so, wo, pa = acts("store"), acts("warehouse"), acts("supplier")
        obs, r = self.chain.step(so.reshape(1, N, K), wo.reshape(1, K), pa.reshape(1, K))
        rewards = dict(zip(self.possible_agents, self.chain.agent_rewards(r, self.groups)[0].tolist()))
        done = self.chain.done
        endless = self.scenario.horizon == "infinite"  # the last day is a time limit, not the end
        terminateds = {"__all__": done and not endless}
        truncateds = {"__all__": done and endless}
        infos = self.chain.final_infos(self.groups)[0] if done else {}
        return self._agent_dict(obs), rewards, terminateds, truncateds, infos

    def _agent_dict(self, obs) -> dict:
        """Replica 0 of the chain's observation arrays, keyed by agent id."""
        out = {}
        for t, ids in self.type_ids.items():
            rows = obs[t][0].reshape(len(ids), -1)
            out.update({GROUP_IDS[t]: rows} if t in self.groups else zip(ids, rows))
        return out

    # ------------------------------------------------------------------------ KPIs out
    def episode_ledger(self) -> np.ndarray:
        """The scored part of this episode's ledger, (T, 1, M, K, F)."""
        return self.chain.episode_ledger()


class ChainDynamics:
    """What the env does, for a batch of B replicas at once, in arrays: reset to demand seeds
    (and play the warm-up days with the baseline), decode actions into orders, step the twin,
    compute rewards, build observations, and the episode's KPIs at the end.

    :class:`HMARLEnv` is this with B = 1 behind RLlib's dict API; the batched sampler of
    :mod:`hmarl_rllib.rl.runner` uses it with one replica per episode.
    """

    def __init__(self, scenario: Scenario, baseline: ChainPolicy):
        self.scenario = sc = scenario
        self.baseline = baseline
        self.codecs = codecs(sc, baseline)
        self.twin = SupplyChainTwin(sc, record=True)
        self.N, self.K = self.twin.n_stores, self.twin.n_skus
        self.store_ids, self.wh_ids, self.sup_ids = agent_ids(sc)
        self.observe = ObservationBuilder(sc)
        self.cost_scale, self.team_weight = sc.reward.cost_scale, sc.reward.team_weight
        # reward.expected_costs: the stores' holding and stockout costs as expectations over the day's demand
        self.shortfall = ShortfallTables(sc, self.twin.days_total) if sc.reward.expected_costs else None

    @property
    def done(self) -> bool:
        return self.twin.done

    def reset(self, seeds, random_starts: float = 0.0, rng=None) -> dict:
        """One replica per demand seed; returns the first observations (see :meth:`observations`).

        ``random_starts``: the share of replicas whose stores start the learned play (day
        ``warmup_days``, after the warm-up policy's days) from a random state instead of the one
        the warm-up left (exploring starts, for training only): see :meth:`randomize_stores`.
        """
        tw = self.twin
        tw.reset(seeds)
        while tw.day < self.scenario.warmup_days:
            tw.step(*self.baseline.orders(tw))
        if random_starts > 0.0:  # after the warm-up: the learned play itself starts there
            rng = np.random.default_rng() if rng is None else rng
            self.randomize_stores(rng.random(tw.batch) < random_starts, rng)
        return self.observations()

    def randomize_stores(self, which: np.ndarray, rng) -> None:
        """Exploring starts: give the stores of the replicas ``which`` (B,) a random state today.

        Per store and SKU, an inventory position X ~ U[0, 2 (L + 1) mu] (L the store's lead time,
        mu its mean daily demand on day 0) is split over on hand and the L pipeline slots (units
        arriving today .. in L−1 days) by a flat Dirichlet draw, in whole units: empty and full
        pipelines, low and high stock, all come up. On hand is capped by the store's capacity.
        The stores' backorders are cleared (drawn after a warm-up, the state is the store's own
        and consistent); the warehouse and the supplier keep their state.
        """
        tw = self.twin
        rows = np.flatnonzero(which)
        if not len(rows):
            return
        K, P = self.K, tw.P_s
        mu = self.observe.mu_s  # (N, K), units/day
        for n in range(self.N):
            L = int(tw.lt_store[n])
            X = rng.random((len(rows), K)) * 2.0 * (L + 1) * mu[n]
            share = rng.dirichlet(np.ones(L + 1), size=(len(rows), K))  # (R, K, L+1)
            units = np.floor(X[..., None] * share + rng.random(share.shape))  # unbiased rounding
            on_hand = np.minimum(units[..., 0], tw.store_cap[n, 0])
            tw.on_hand[rows, n] = on_hand
            tw.backorders[rows, n] = 0.0
            pipe = np.zeros((len(rows), K, P))
            pipe[..., (tw.day + np.arange(L)) % P] = units[..., 1:]
            tw.store_pipe[rows, n] = pipe
            tw.in_transit[rows, n] = pipe.sum(axis=-1)

    def step(self, store_actions, wh_actions, sup_actions) -> tuple[dict, np.ndarray]:
        """Integer actions (B, N, K), (B, K), (B, K) → (observations, rewards (B, N+2, K))."""
        tw = self.twin
        day = tw.day
        row = tw.step(*decode_orders(self.codecs, tw, store_actions, wh_actions, sup_actions))
        cost = None
        if self.shortfall is not None:
            cost = reconciliation.daily_costs(row)
            G, mu = self.shortfall(day)
            cost[:, : self.N] = reconciliation.expected_store_costs(row, G, mu, tw.h[0], tw.p, tw.b, tw.lost_sales)
        return self.observations(), reconciliation.rewards(row, self.cost_scale, self.team_weight, cost)

    def agent_rewards(self, r: np.ndarray, groups=()) -> np.ndarray:
        """Rewards (B, N+2, K) as (B, agents), in the env's agent order (stores, warehouse,
        supplier); the group of a type in ``groups`` gets the mean of its agents' rewards (with
        ``team_weight`` 1 every agent's reward)."""
        B, N = r.shape[0], self.N
        parts = {"store": r[:, :N].reshape(B, -1), "warehouse": r[:, N], "supplier": r[:, N + 1]}
        return np.concatenate([x.mean(axis=1, keepdims=True) if t in groups else x for t, x in parts.items()], axis=1)

    def observations(self) -> dict:
        """``{"store": (B, N, K, n_s), "warehouse": (B, K, n_w), "supplier": (B, K, n_p)}``."""
        last = self.twin.last_placed  # yesterday's orders, the warm-up's included
        return self.observe(self.twin, last[:, : self.N], last[:, self.N])

    def episode_ledger(self) -> np.ndarray:
        """The scored part of the episodes' ledger, (T, B, M, K, F)."""
        return self.twin.ledger[self.scenario.warmup_days: self.twin.day]

    def final_infos(self, groups=()) -> list[dict]:
        """Per replica: every agent's episode KPIs (its own node and SKU, ``kpi``) and the
        chain's (``chain``, with ``episode_seed``); the group of a type in ``groups``
        (:data:`GROUP_IDS`) reports its agents' costs summed and their rates averaged."""
        led = self.episode_ledger()
        N, K = self.N, self.K
        chain = reconciliation.chain_kpis(led, N)
        per_sku = [reconciliation.node_kpis(led[..., k:k + 1, :]) for k in range(K)]  # (B, M) per KPI
        out = []
        for b in range(self.twin.batch):
            ch = {k: float(v[b]) for k, v in chain.items()}
            ch["episode_seed"] = int(self.twin.seeds[b])
            infos = {}
            for k, nodes in enumerate(per_sku):
                ids = [self.store_ids[i * K + k] for i in range(N)] + [self.wh_ids[k], self.sup_ids[k]]
                for m, aid in enumerate(ids):
                    infos[aid] = {"kpi": {name: float(v[b, m]) for name, v in nodes.items()}, "chain": ch}
            if groups:
                infos = self._grouped_infos(infos, groups, ch)
            out.append(infos)
        return out

    def _grouped_infos(self, infos: dict, groups, chain: dict) -> dict:
        """One replica's infos with each type in ``groups`` as its group: its agents' costs
        summed, their rates averaged."""
        out = {}
        for t, ids in (("store", self.store_ids), ("warehouse", self.wh_ids), ("supplier", self.sup_ids)):
            if t not in groups:
                out.update((aid, infos[aid]) for aid in ids)
                continue
            rows = [infos[aid]["kpi"] for aid in ids]
            kpi = {name: float((sum if name.endswith("cost") else np.mean)([x[name] for x in rows]))
                   for name in rows[0]}
            out[GROUP_IDS[t]] = {"kpi": kpi, "chain": chain}
        return out


def _spread(n: int) -> int:
    """The stride between the first seeds of successive streams over n episode seeds: the
    integer nearest n / golden ratio that is coprime with n (so k x stride mod n differ)."""
    import math

    target = n / ((1 + 5 ** 0.5) / 2)
    return min((m for m in range(1, n + 1) if math.gcd(m, n) == 1), key=lambda m: (abs(m - target), m))


def make_env(env_config):
    return HMARLEnv(env_config)  # not dict(env_config): that drops EnvContext's worker/vector index


def register() -> None:
    """Register the env with Ray Tune under the name ``"hmarl"``."""
    from ray.tune.registry import register_env

    register_env(ENV_NAME, make_env)
