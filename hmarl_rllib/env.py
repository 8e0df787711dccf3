"""The RLlib multi-agent environment: a thin adapter around the digital twin.

Registered as ``"hmarl"`` with :func:`ray.tune.registry.register_env` by :func:`register`.
"""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from hmarl_rllib import reconciliation
from hmarl_rllib.config import Scenario, load_config, parse_config
from hmarl_rllib.policies.actions import codecs, decode_orders
from hmarl_rllib.policies.heuristics import ChainPolicy, rule_based_policy
from hmarl_rllib.simulate import TUNE_SEED_BASE
from hmarl_rllib.twin import SupplyChainTwin
from hmarl_rllib.twin.network import F

ENV_NAME = "hmarl"
ENV_VERSION = 2
SCALE_DAYS = 10.0  # stock quantities are observed in units of SCALE_DAYS days of mean demand
MU_FLOOR = 0.1  # units/day: the smallest demand unit μ (so one unit of stock is observed as at most 1.0)
OBS_LINEAR = 5.0  # scaled values within ±OBS_LINEAR are observed as they are (see squash)
OBS_BOUND = 10.0  # every observation lies in [-OBS_BOUND, OBS_BOUND] (the Box bounds)
HISTORY = 7


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


def agent_ids(scenario) -> tuple[list[str], list[str], list[str]]:
    """Store, warehouse and supplier agent ids. With several SKUs every id gets ``:<sku>``."""
    skus = scenario.sku_names
    if len(skus) == 1:
        return list(scenario.store_names), ["warehouse"], ["supplier"]
    return ([f"{s}:{k}" for s in scenario.store_names for k in skus],
            [f"warehouse:{k}" for k in skus], [f"supplier:{k}" for k in skus])


def agent_type(agent_id: str) -> str:
    return agent_id.split(":")[0] if agent_id.split(":")[0] in ("warehouse", "supplier") else "store"


def obs_sizes(scenario) -> dict[str, int]:
    """Observation length per agent type (see :class:`HMARLEnv`)."""
    if scenario.observations.mode == "walkthrough":
        return {"store": 7, "warehouse": 6, "supplier": 3}
    ps = max(s.lead_time for s in scenario.store_list) + _extra(scenario)
    pw = scenario.warehouse.lead_time + _extra(scenario)
    pp = scenario.supplier.lead_time
    return {"store": 7 + 3 + ps + HISTORY + 4, "warehouse": 6 + 1 + pw + HISTORY + 4,
            "supplier": 3 + 3 + pp + 4}


def observation_units(scenario) -> tuple[np.ndarray, np.ndarray]:
    """The demand units μ observations are scaled by: per store and SKU (N, K), and for the
    warehouse and supplier (K,) the sum over stores; floored at :data:`MU_FLOOR` (0.1 unit/day)
    so that a store without demand still gets finite observations and a slow mover's stock
    unit 10·μ is never below one unit (one unit of stock observes as at most 1.0)."""
    mu = scenario.mean_demand()
    return np.maximum(mu, MU_FLOOR), np.maximum(mu.sum(axis=0), MU_FLOOR)


def squash(x):
    """The observation squash S: the identity on [−5, 5] (:data:`OBS_LINEAR`), then a smooth
    (C¹) saturation to ±10 (:data:`OBS_BOUND`): ``S(x) = sign(x)·(5 + 5·tanh((|x| − 5)/5))``.
    Strictly increasing, so an observation orders states as the scaled quantity does; S(10) ≈
    8.8, S(20) ≈ 9.98, and from |x| ≈ 50 on (float32) exactly ±10. Returns a new array."""
    x = np.array(x, dtype=np.float64 if np.asarray(x).dtype == np.float64 else np.float32)
    _squash_inplace(x)
    return x


def unsquash(y):
    """The inverse of :func:`squash` (±inf at ±10): the scaled quantity behind an observation.
    Exact on [−5, 5]; beyond, as exact as float32 allows (a saturated ±10 gives ±inf)."""
    y = np.asarray(y, dtype=np.float64)
    a, w = OBS_LINEAR, OBS_BOUND - OBS_LINEAR
    ay = np.abs(y)
    with np.errstate(divide="ignore"):
        far = np.sign(y) * (a + w * np.arctanh(np.clip((ay - a) / w, 0.0, 1.0)))
    return np.where(ay <= a, y, far)


def _squash_inplace(arr: np.ndarray) -> None:
    """:func:`squash` in place; costs one comparison per element when nothing is beyond ±5."""
    a, w = OBS_LINEAR, OBS_BOUND - OBS_LINEAR
    far = np.abs(arr) > a
    if far.any():
        v = arr[far]
        arr[far] = np.clip(np.sign(v) * (a + w * np.tanh((np.abs(v) - a) / w)), -OBS_BOUND, OBS_BOUND)


def _extra(scenario):
    return scenario.random_lead_times.max_extra_days if scenario.random_lead_times.enabled else 0


class HMARLEnv(MultiAgentEnv):
    """Supplier → warehouse → N stores, one agent per store (per SKU), a warehouse and a supplier.

    **Description.** Each step is one day of the digital twin (timing convention in
    :mod:`hmarl_rllib.twin.network`): the agents' actions are the orders placed at the start of
    the day; then the supplier produces and ships, the warehouse allocates, stores receive and
    serve demand, and costs are charged. With several SKUs every agent id gets ``:<sku>``.

    **Action space** (``actions:`` in the scenario; Discrete(len(values)) per agent type).
    Default (the walkthrough's): stores Discrete(4) order ``[0, 150, 300, 450]`` units; warehouse
    Discrete(4) orders ``[0, 1000, 2000, 3000]``; supplier Discrete(3) produces ``[0, 200, 400]``.
    Other modes: ``order_up_to`` (order up to ``values[a]`` × mean daily demand μ),
    ``base_stock_correction`` (tuned base-stock order + ``values[a]`` × μ) and
    ``baseline_correction`` (the baseline rule's order + ``values[a]`` × μ); see
    :mod:`hmarl_rllib.policies.actions`.

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

    **Rewards** (per agent, per day, :func:`hmarl_rllib.reconciliation.rewards`):
    ``−cost_scale · [(1 − team_weight)·own cost + team_weight·chain cost / n_agents]``; own
    cost = holding + stockout penalty + backorder + ordering cost of the agent's node and SKU.

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
        self.possible_agents = self.store_ids + self.wh_ids + self.sup_ids
        self.agents = list(self.possible_agents)
        sizes = obs_sizes(sc)
        box = {t: gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (n,), np.float32) for t, n in sizes.items()}
        n_act = {t: c.n for t, c in self.codecs.items()}
        self.observation_spaces = {a: box[agent_type(a)] for a in self.possible_agents}
        self.action_spaces = {a: gym.spaces.Discrete(n_act[agent_type(a)]) for a in self.possible_agents}
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
        so = np.fromiter((action_dict.get(a, 0) for a in self.store_ids), np.int64, N * K)
        wo = np.fromiter((action_dict.get(a, 0) for a in self.wh_ids), np.int64, K)
        pa = np.fromiter((action_dict.get(a, 0) for a in self.sup_ids), np.int64, K)
        obs, r = self.chain.step(so.reshape(1, N, K), wo.reshape(1, K), pa.reshape(1, K))
        rewards = dict(zip(self.possible_agents, self.chain.agent_rewards(r)[0].tolist()))
        done = self.chain.done
        endless = self.scenario.horizon == "infinite"  # the last day is a time limit, not the end
        terminateds = {"__all__": done and not endless}
        truncateds = {"__all__": done and endless}
        infos = self.chain.final_infos()[0] if done else {}
        return self._agent_dict(obs), rewards, terminateds, truncateds, infos

    def _agent_dict(self, obs) -> dict:
        """Replica 0 of the chain's observation arrays, keyed by agent id."""
        out = dict(zip(self.store_ids, obs["store"][0].reshape(self.N * self.K, -1)))
        out.update(zip(self.wh_ids, obs["warehouse"][0]))
        out.update(zip(self.sup_ids, obs["supplier"][0]))
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
    :mod:`hmarl_rllib.runner` uses it with one replica per episode.
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

    @property
    def done(self) -> bool:
        return self.twin.done

    def reset(self, seeds, random_starts: float = 0.0, rng=None) -> dict:
        """One replica per demand seed; returns the first observations (see :meth:`observations`).

        ``random_starts``: the share of replicas whose stores start from a random state instead
        of the scenario's (exploring starts, for training only): see :meth:`randomize_stores`.
        """
        tw = self.twin
        tw.reset(seeds)
        if random_starts > 0.0:
            rng = np.random.default_rng() if rng is None else rng
            self.randomize_stores(rng.random(tw.batch) < random_starts, rng)
        while tw.day < self.scenario.warmup_days:
            tw.step(*self.baseline.orders(tw))
        B = tw.batch
        self._last_store_orders = np.zeros((B, self.N, self.K))
        self._last_wh_order = np.zeros((B, self.K))
        return self.observations()

    def randomize_stores(self, which: np.ndarray, rng) -> None:
        """Exploring starts: give the stores of the replicas ``which`` (B,) a random day-0 state.

        Per store and SKU, an inventory position X ~ U[0, 2 (L + 1) mu] (L the store's lead time,
        mu its mean daily demand on day 0) is split over on hand and the L pipeline slots (units
        arriving on days 0 .. L−1) by a flat Dirichlet draw, in whole units: empty and full
        pipelines, low and high stock, all come up. On hand is capped by the store's capacity.
        Backorders stay zero; the warehouse and the supplier keep the scenario's start.
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
            pipe = np.zeros((len(rows), K, P))
            pipe[..., (tw.day + np.arange(L)) % P] = units[..., 1:]
            tw.store_pipe[rows, n] = pipe
            tw.in_transit[rows, n] = pipe.sum(axis=-1)

    def step(self, store_actions, wh_actions, sup_actions) -> tuple[dict, np.ndarray]:
        """Integer actions (B, N, K), (B, K), (B, K) → (observations, rewards (B, N+2, K))."""
        tw = self.twin
        row = tw.step(*decode_orders(self.codecs, tw, store_actions, wh_actions, sup_actions))
        self._last_store_orders = row[:, : self.N, :, F["order_placed"]]
        self._last_wh_order = row[:, self.N, :, F["order_placed"]]
        return self.observations(), reconciliation.rewards(row, self.cost_scale, self.team_weight)

    def agent_rewards(self, r: np.ndarray) -> np.ndarray:
        """Rewards (B, N+2, K) as (B, agents), in the env's agent order (stores, warehouse, supplier)."""
        B, N = r.shape[0], self.N
        return np.concatenate([r[:, :N].reshape(B, -1), r[:, N], r[:, N + 1]], axis=1)

    def observations(self) -> dict:
        """``{"store": (B, N, K, n_s), "warehouse": (B, K, n_w), "supplier": (B, K, n_p)}``."""
        return self.observe(self.twin, self._last_store_orders, self._last_wh_order)

    def episode_ledger(self) -> np.ndarray:
        """The scored part of the episodes' ledger, (T, B, M, K, F)."""
        return self.twin.ledger[self.scenario.warmup_days: self.twin.day]

    def final_infos(self) -> list[dict]:
        """Per replica: every agent's episode KPIs (its own node and SKU, ``kpi``) and the
        chain's (``chain``, with ``episode_seed``)."""
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
            out.append(infos)
        return out


class ObservationBuilder:
    """Builds every agent's observation for a whole batch of twin replicas at once.

    ``__call__(twin, last_store_orders (B,N,K), last_wh_order (B,K))`` returns
    ``{"store": (B, N, K, n_s), "warehouse": (B, K, n_w), "supplier": (B, K, n_p)}`` float32,
    laid out as documented in :class:`HMARLEnv`. The env (B = 1) and batched evaluation of a
    learned policy share this one implementation.
    """

    def __init__(self, scenario):
        from hmarl_rllib.twin.demand import mean_path

        sc = self.scenario = scenario
        self.sizes = obs_sizes(sc)
        self.rich = sc.observations.mode == "rich"
        mu, mw = observation_units(sc)
        self.mu_s, self.mu_w = mu, mw
        self.N, self.K = mu.shape
        self.lt = np.array([s.lead_time for s in sc.store_list], float)[:, None]
        self.lt_int = self.lt[:, 0].astype(int)
        self.T = sc.episode_length
        self.endless = sc.horizon == "infinite"  # time left is not part of the problem
        days = sc.warmup_days + sc.episode_length + int(self.lt.max()) + 2
        path = mean_path(sc, days)  # (T, N, K)
        self._cum_mean = np.concatenate([np.zeros((1, self.N, self.K)), np.cumsum(path, axis=0)])
        days_unit = sc.observations.stock_days  # SCALE_DAYS unless the scenario says otherwise
        self._inv = (1.0 / (days_unit * mu), 1.0 / (days_unit * mw), 1.0 / mu, 1.0 / mw)
        self._inv_lt_mu = 1.0 / (mu * (self.lt + 1))

    def __call__(self, tw, last_store_orders, last_wh_order) -> dict:
        B, N, K, t = tw.batch, self.N, self.K, tw.day
        t_left = np.float32(1.0 if self.endless else (tw.days_total - t) / self.T)
        isd, isw, imu, imw = self._inv
        whp = tw.warehouse_position()  # (B, K)
        store = np.empty((B, N, K, self.sizes["store"]), np.float32)
        store[..., 0], store[..., 1], store[..., 2] = tw.on_hand * isd, tw.in_transit * isd, tw.backorders * isd
        if t > 0:
            store[..., 3] = tw.demand[:, t - 1] * imu
            store[..., 4] = tw.demand[:, max(0, t - HISTORY): t].sum(axis=1) * (imu / HISTORY)
        else:
            store[..., 3:5] = 0.0
        store[..., 5] = (tw.wh_on_hand * isw)[:, None, :]
        store[..., 6] = t_left
        wh = np.empty((B, K, self.sizes["warehouse"]), np.float32)
        wh[..., 0], wh[..., 1] = tw.wh_on_hand * isw, tw.wh_in_transit * isw
        wh[..., 2] = last_store_orders.sum(axis=1) * imw
        wh[..., 3] = tw.store_position().sum(axis=1) * isw
        wh[..., 4], wh[..., 5] = tw.sup_on_hand * isw, t_left
        sup = np.empty((B, K, self.sizes["supplier"]), np.float32)
        sup[..., 0], sup[..., 1] = tw.sup_on_hand * isw, tw.sup_in_production * isw
        sup[..., 2] = last_wh_order * imw
        if self.rich:
            self._rich(tw, store, wh, sup, whp, t_left)
        for arr in (store, wh, sup):  # the share of time to go and the calendar are within ±1: unchanged
            _squash_inplace(arr)
        return {"store": store, "warehouse": wh, "supplier": sup}

    def _rich(self, tw, store, wh, sup, whp, t_left):
        """Fill the ``rich`` mode's extra columns in place."""
        N, day = self.N, tw.day
        isd, isw, imu, imw = self._inv
        hist = tw.demand_history(HISTORY)  # (B, H, N, K)
        cal = _calendar(day, self.scenario.start_weekday)
        store[..., 7] = tw.store_position() * isd
        store[..., 8] = (whp * isw)[:, None, :]
        store[..., 9] = (self._cum_mean[day + self.lt_int + 1, np.arange(N)] - self._cum_mean[day]) * self._inv_lt_mu
        pipe = tw.store_pipeline()  # (B, N, K, P-1)
        p = pipe.shape[-1]
        store[..., 10: 10 + p] = pipe * isd[..., None]
        store[..., 10 + p: 10 + p + HISTORY] = np.moveaxis(hist, 1, -1) * imu[..., None]
        store[..., 10 + p + HISTORY:] = cal
        wpipe = tw.warehouse_pipeline()  # (B, K, P_w-1)
        q = wpipe.shape[-1]
        wh[..., 6] = whp * isw
        wh[..., 7: 7 + q] = wpipe * isw[:, None]
        wh[..., 7 + q: 7 + q + HISTORY] = np.moveaxis(hist.sum(axis=2), 1, -1) * imw[:, None]
        wh[..., 7 + q + HISTORY:] = cal
        ppipe = tw.production_pipeline()  # (B, K, L_p)
        r = ppipe.shape[-1]
        sup[..., 3] = tw.supplier_position() * isw
        sup[..., 4] = whp * isw
        sup[..., 5] = t_left
        sup[..., 6: 6 + r] = ppipe * isw[:, None]
        sup[..., 6 + r:] = cal


def _calendar(day, start_weekday):
    d = day + start_weekday
    w, y = 2 * np.pi * (d % 7) / 7, 2 * np.pi * (day % 365) / 365
    return np.array([np.sin(w), np.cos(w), np.sin(y), np.cos(y)], np.float32)


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
