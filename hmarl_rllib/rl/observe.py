"""What each agent observes: the observation layout, its scaling and squash, for a whole batch
of twin replicas at once (:class:`ObservationBuilder`). The layout is documented in
:class:`hmarl_rllib.rl.env.HMARLEnv`; ``hmarl export``'s manifest names every field.

numpy only: no RL imports, so that a runtime without Ray or torch (``hmarl recommend``,
``hmarl serve``) observes exactly as training did.
"""
from __future__ import annotations

import numpy as np

SCALE_DAYS = 10.0  # stock quantities are observed in units of SCALE_DAYS days of mean demand
MU_FLOOR = 0.1  # units/day: the smallest demand unit μ (so one unit of stock is observed as at most 1.0)
OBS_LINEAR = 5.0  # scaled values within ±OBS_LINEAR are observed as they are (see squash)
OBS_BOUND = 10.0  # every observation lies in [-OBS_BOUND, OBS_BOUND] (the Box bounds)
HISTORY = 7


def agent_ids(scenario) -> tuple[list[str], list[str], list[str]]:
    """Store, warehouse and supplier agent ids. With several SKUs every id gets ``:<sku>``."""
    skus = scenario.sku_names
    if len(skus) == 1:
        return list(scenario.store_names), ["warehouse"], ["supplier"]
    return ([f"{s}:{k}" for s in scenario.store_names for k in skus],
            [f"warehouse:{k}" for k in skus], [f"supplier:{k}" for k in skus])


def agent_type(agent_id: str) -> str:
    """``store``, ``warehouse`` or ``supplier``; also for a group's id (``warehouses``: rl.env.GROUP_IDS)."""
    kind = agent_id.split(":")[0]
    kind = {"warehouses": "warehouse", "suppliers": "supplier"}.get(kind, kind)
    return kind if kind in ("warehouse", "supplier") else "store"


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


class ObservationBuilder:
    """Builds every agent's observation for a whole batch of twin replicas at once.

    ``__call__(twin, last_store_orders (B,N,K), last_wh_order (B,K))`` returns
    ``{"store": (B, N, K, n_s), "warehouse": (B, K, n_w), "supplier": (B, K, n_p)}`` float32,
    laid out as documented in :class:`HMARLEnv`. The env (B = 1) and batched evaluation of a
    learned policy share this one implementation.
    """

    def __init__(self, scenario):
        from hmarl_rllib.sim.demand import mean_path

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
        self.calendar, self.history = sc.observations.calendar, sc.observations.demand_history

    def __call__(self, tw, last_store_orders, last_wh_order) -> dict:
        B, N, K, t = tw.batch, self.N, self.K, tw.day
        t_left = np.float32(1.0 if self.endless else (tw.days_total - t) / self.T)
        isd, isw, imu, imw = self._inv
        whp = tw.warehouse_position()  # (B, K)
        store = np.empty((B, N, K, self.sizes["store"]), np.float32)
        store[..., 0], store[..., 1], store[..., 2] = tw.on_hand * isd, tw.in_transit * isd, tw.backorders * isd
        if t > 0 and self.history:
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
        hist = tw.demand_history(HISTORY) if self.history else np.zeros((tw.batch, HISTORY, N, self.K))  # (B, H, N, K)
        cal = _calendar(day, self.scenario.start_weekday) if self.calendar else np.zeros(4, np.float32)
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
