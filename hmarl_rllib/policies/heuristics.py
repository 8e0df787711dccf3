"""Classic inventory policies as plain numpy functions of the twin's state.

All act on the **inventory position** IP = on hand + in transit − backorders, reviewed daily:

- base-stock (order-up-to) policy: order ``max(0, S − IP)`` [S: order-up-to level]
  (Arrow, Harris & Marschak 1951; Zipkin, *Foundations of Inventory Management*, ch. 6);
- (s, S) policy: if ``IP ≤ s`` order ``S − IP``, else nothing [s: reorder point, S: order-up-to
  level] (Scarf 1960);
- echelon base-stock: the warehouse (and the supplier) order up to ``S_e`` on their *echelon*
  inventory position, i.e. their own IP plus the IP of every node downstream
  (Clark & Scarf 1960; Chen & Zheng 1994);
- echelon (s, S): the stores' (s, S), and the warehouse and the supplier run (s, S) on their
  echelon inventory position (Chen & Zheng 1994, echelon-stock (s, S) policies for
  distribution systems): an upstream order is triggered by the stock of the whole chain below
  it, not only by its own shelf.

The supplier's "order" is the production it starts.

A policy may also **follow the season** (:class:`Forecast`): each day, every echelon's levels
are multiplied by the demand model's mean demand over that echelon's coming window, relative to
the episode's mean (a forecast from the scenario's demand model, never from realised demand).
And it may **stop before the end** (``stop_days``): an echelon places no order once that many
days or fewer are left in the finite episode (see :class:`EndgamePolicy`). And its levels may
follow a **schedule** (``schedule``): the horizon is cut into periods of ``period_days`` days and,
in each, every echelon's reorder point s and order quantity S − s are multiplied by their own
factor, tuned by simulation (a time-varying (s_t, S_t) policy, the classic optimal form for
non-stationary demand with fixed order costs; Scarf 1960, Veinott 1966): the rule's answer to a
short horizon's start-up and run-down and to a season's climb.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from hmarl_rllib.policies.spec import DEFAULT_PERIODS, KINDS, RuleSpec, Schedule

POLICIES = KINDS  # base_stock, s_S, echelon_base_stock, echelon_s_S: a rule on its positions
WITH_REORDER_POINT = ("s_S", "echelon_s_S")  # the (s, S) kinds
ECHELONS = ("store", "warehouse", "supplier")


def forecast_windows(scenario) -> dict[str, tuple[int, int]]:
    """Each echelon's forecast window (offset, length) in days: with L the lead time from the
    echelon to the shelf (store: its own; warehouse: + the warehouse's; supplier: + production),
    the window starts L // 2 days ahead and spans L + 4 days, the demand its stock will serve.
    (Chosen among a few such rules by simulation on tuning seeds of the seasonal scenario.)"""
    ls = max(s.lead_time for s in scenario.store_list)
    lw = ls + scenario.warehouse.lead_time
    lp = lw + scenario.supplier.lead_time
    return {e: (L // 2, L + 4) for e, L in zip(ECHELONS, (ls, lw, lp))}


@dataclass
class Forecast:
    """Day-by-day multipliers of a policy's levels, from the demand model's mean path.

    ``store[t]`` (N, K), ``warehouse[t]`` and ``supplier[t]`` (K,): the mean demand the echelon
    faces over its window ``windows[echelon]`` = (offset, length) starting on day t, divided by
    its mean over the scored days of the episode; 1 for a stationary model or a demand file.
    """

    windows: dict
    store: np.ndarray  # (T, N, K)
    warehouse: np.ndarray  # (T, K)
    supplier: np.ndarray  # (T, K)

    @classmethod
    def build(cls, scenario, windows=None) -> "Forecast":
        from hmarl_rllib.sim.demand import mean_path

        windows = {e: (int(o), int(n)) for e, (o, n) in (windows or forecast_windows(scenario)).items()}
        T, w = scenario.warmup_days + scenario.episode_length, scenario.warmup_days
        mp = mean_path(scenario, T + max(o + n for o, n in windows.values()))  # (days, N, K)
        out = {}
        for e, arr in (("store", mp), ("warehouse", mp.sum(axis=1)), ("supplier", mp.sum(axis=1))):
            off, n = windows[e]
            cs = np.concatenate([np.zeros((1,) + arr.shape[1:]), np.cumsum(arr, axis=0)])
            t = np.arange(T)
            ahead = (cs[t + off + n] - cs[t + off]) / n
            avg = arr[w:T].mean(axis=0)
            out[e] = np.where(avg > 0, ahead / np.where(avg > 0, avg, 1.0), 1.0)
        return cls(windows, out["store"], out["warehouse"], out["supplier"])

    def at(self, day: int):
        """The (store, warehouse, supplier) multipliers for ``day``."""
        d = min(int(day), len(self.store) - 1)
        return self.store[d], self.warehouse[d], self.supplier[d]


@dataclass
class ChainPolicy:
    """Parameters of one classic policy for the whole chain.

    Arrays broadcast against the twin's batch: store levels are (N, K) or (B, N, K); warehouse
    and supplier levels (K,) or (B, K). For ``base_stock`` and ``echelon_base_stock`` the
    reorder points are ignored (s = S − 1: order every day). The ``echelon_*`` kinds' warehouse
    and supplier levels apply to echelon positions (:meth:`positions`).
    """

    kind: str
    store_S: np.ndarray  # [S_i]
    warehouse_S: np.ndarray  # [S_w] (echelon level for the echelon_* kinds)
    supplier_S: np.ndarray  # [S_p] (echelon level for the echelon_* kinds)
    store_s: np.ndarray | None = None  # [s_i]
    warehouse_s: np.ndarray | None = None  # [s_w]
    supplier_s: np.ndarray | None = None  # [s_p]
    meta: dict = field(default_factory=dict)
    forecast: Forecast | None = None  # levels follow the season (see Forecast)
    stop_days: tuple[int, int, int] | None = None  # (store, warehouse, supplier): no orders this close to the end
    # (P, 3, 2) or (B, P, 3, 2): per period of period_days days, per echelon (store, warehouse,
    # supplier), the factors of (s, S − s); base-stock kinds: of S (the second is unused)
    schedule: np.ndarray | None = None
    period_days: int = 1
    schedule_periods: int = DEFAULT_PERIODS  # the episode was cut into this many periods (the spec's)

    @property
    def spec(self) -> RuleSpec:
        """The rule these parameters are for (:class:`~hmarl_rllib.policies.spec.RuleSpec`), from
        the fields: ``kind``; seasonal when ``forecast`` is set, endgame when ``stop_days`` is,
        a schedule of ``schedule_periods`` periods when ``schedule`` is."""
        return RuleSpec(rule="s_S" if self.kind in WITH_REORDER_POINT else "base_stock",
                        positions="echelon" if self.echelon else "installation",
                        seasonal=self.forecast is not None, endgame=self.stop_days is not None,
                        schedule=None if self.schedule is None else Schedule(periods=int(self.schedule_periods)))

    @property
    def name(self) -> str:
        """The spec's name (e.g. ``echelon_s_S_seasonal_endgame_schedule``): file names, table rows."""
        return self.spec.name

    def active(self, days_total: int) -> np.ndarray | None:
        """(days_total, 3) booleans: does (store, warehouse, supplier) order on day t? None
        when the policy never stops."""
        if self.stop_days is None:
            return None
        left = days_total - np.arange(days_total)
        return left[:, None] > np.asarray(self.stop_days)[None, :]

    def __post_init__(self):
        if self.kind not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.kind!r}")
        for name in ("store_S", "warehouse_S", "supplier_S", "store_s", "warehouse_s", "supplier_s", "schedule"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, np.asarray(v, dtype=float))

    def with_(self, **kw) -> "ChainPolicy":
        return replace(self, **kw)

    @property
    def echelon(self) -> bool:
        """True when the warehouse and the supplier review echelon positions."""
        return self.kind.startswith("echelon")

    def positions(self, twin):
        """The positions the rule reviews: (store (B,N,K), warehouse (B,K), supplier (B,K))."""
        return review_positions(twin, self.echelon)

    def levels(self, day: int) -> list[tuple]:
        """Day ``day``'s (s, S) per echelon (store, warehouse, supplier), after the season's
        multipliers and the schedule's factors; s is None for the base-stock kinds."""
        fac = (1.0, 1.0, 1.0) if self.forecast is None else self.forecast.at(day)
        out = []
        for e, (agent, f) in enumerate(zip(ECHELONS, fac)):
            S = getattr(self, f"{agent}_S") * f
            s = getattr(self, f"{agent}_s") * f if self.kind in WITH_REORDER_POINT else None
            if self.schedule is not None:
                sch = self.schedule
                m = sch[..., min(int(day) // self.period_days, sch.shape[-3] - 1), e, :]  # (2,) or (B, 2)
                ms, mq = m[..., 0], m[..., 1]
                if sch.ndim == 4:  # one schedule per replica: broadcast against (B, N, K) / (B, K)
                    ms, mq = (x.reshape((-1,) + (1,) * (2 if agent == "store" else 1)) for x in (ms, mq))
                S, s = (S * ms, None) if s is None else (s * ms + (S - s) * mq, s * ms)
            out.append((s, S))
        return out

    def level_table(self, days_total: int) -> list[tuple]:
        """:meth:`levels` for every day: per echelon (s (T, ...) or None, S (T, ...))."""
        days = [self.levels(d) for d in range(days_total)]
        return [(None if days[0][e][0] is None else np.stack([x[e][0] for x in days]),
                 np.stack([x[e][1] for x in days])) for e in range(len(ECHELONS))]

    def orders(self, twin):
        """Today's orders (store (B,N,K), warehouse (B,K), production (B,K)) for the twin state."""
        out = tuple(base_stock_order(p, S) if s is None else s_S_order(p, s, S)
                    for p, (s, S) in zip(self.positions(twin), self.levels(twin.day)))
        if self.stop_days is None:
            return out
        left = twin.days_total - twin.day  # a stop day may be one number or one per replica (B,)
        return tuple(np.where((left > np.asarray(d)).reshape((-1,) + (1,) * (o.ndim - 1)), o, 0.0)
                     for o, d in zip(out, self.stop_days))


def review_positions(twin, echelon: bool = False):
    """Inventory positions (store (B,N,K), warehouse (B,K), supplier (B,K)); with ``echelon``
    the warehouse's adds every store's and the supplier's adds the warehouse's echelon position."""
    sp, wp, pp = twin.store_position(), twin.warehouse_position(), twin.supplier_position()
    if echelon:
        wp = wp + sp.sum(axis=1)
        pp = pp + wp
    return sp, wp, pp


def to_echelon(policy: ChainPolicy, kind: str = "echelon_s_S") -> ChainPolicy:
    """An installation (s, S) or base-stock policy's levels moved onto echelon positions: the
    warehouse's (and then the supplier's) levels are raised by the typical position downstream
    (the middle of the stores' [s, S] bands; S for base-stock). A starting point for tuning."""
    def mid(s, S):
        return S if s is None else (s + S) / 2

    down_w = mid(policy.store_s, policy.store_S).sum(axis=-2)
    w_s = None if policy.warehouse_s is None else policy.warehouse_s + down_w
    w_S = policy.warehouse_S + down_w
    down_p = mid(w_s, w_S)
    return policy.with_(kind=kind, warehouse_s=w_s, warehouse_S=w_S,
                        supplier_s=None if policy.supplier_s is None else policy.supplier_s + down_p,
                        supplier_S=policy.supplier_S + down_p, meta={})


def base_stock_order(position, order_up_to):
    """Base-stock order ``max(0, S − IP)`` [S = order_up_to, IP = position]."""
    return np.maximum(0.0, np.asarray(order_up_to) - position)


def s_S_order(position, reorder_point, order_up_to):
    """(s, S) order: ``S − IP`` if ``IP ≤ s`` else 0 [s = reorder_point, S = order_up_to]."""
    return np.where(position <= reorder_point, np.maximum(0.0, order_up_to - position), 0.0)


def rule_based_policy(scenario, kind: str = "s_S") -> ChainPolicy:
    """The scenario's ``rule_based`` levels (the walkthrough's 300/700 and 2000/4000) as a policy."""
    n, k = len(scenario.store_list), len(scenario.skus)
    rb = scenario.rule_based
    return ChainPolicy(
        kind=kind,
        store_S=np.full((n, k), rb.store.order_up_to), store_s=np.full((n, k), rb.store.reorder_point),
        warehouse_S=np.full(k, rb.warehouse.order_up_to), warehouse_s=np.full(k, rb.warehouse.reorder_point),
        supplier_S=np.full(k, rb.supplier.order_up_to), supplier_s=np.full(k, rb.supplier.reorder_point),
        meta={"source": "rule_based section of the scenario"},
    )


def initial_guess(scenario, kind: str) -> ChainPolicy:
    """Textbook starting point for tuning: S = mean demand over (lead time + 1) days + 2σ
    (Poisson σ); the warehouse and supplier cover their whole replenishment time; (s, S)
    reorder points one mean order below S."""
    mu = scenario.mean_demand()  # (N, K)
    lt = np.array([s.lead_time for s in scenario.store_list], float)[:, None]
    lw, lp = scenario.warehouse.lead_time, scenario.supplier.lead_time
    store_S = mu * (lt + 1) + 2 * np.sqrt(mu * (lt + 1))
    tot = mu.sum(axis=0)
    wh_S = tot * (lw + 2) + 2 * np.sqrt(tot * (lw + 2))
    sup_S = tot * (lp + 2) + 2 * np.sqrt(tot * (lp + 2))
    if kind == "echelon_base_stock":
        wh_S = wh_S + store_S.sum(axis=0)
        sup_S = sup_S + wh_S
    if kind == "echelon_s_S":
        return to_echelon(initial_guess(scenario, "s_S"))
    pol = ChainPolicy(kind=kind, store_S=store_S, warehouse_S=wh_S, supplier_S=sup_S)
    if kind == "s_S":
        pol = pol.with_(store_s=store_S - mu * 3, warehouse_s=wh_S - tot * 5, supplier_s=sup_S - tot * 5)
        pol = pol.with_(store_s=np.maximum(pol.store_s, 0), warehouse_s=np.maximum(pol.warehouse_s, 0),
                        supplier_s=np.maximum(pol.supplier_s, 0))
    return pol


@dataclass
class EndgamePolicy:
    """A classic policy that stops ordering near the end of a finite episode.

    The scenarios score a fixed horizon and give stock left at the end no value, so a unit
    ordered too late to be sold before the end only costs holding (and fixed order costs).
    ``stop_days`` = (store, warehouse, supplier): each echelon places no order once that many
    days (or fewer) are left in the episode; otherwise ``base`` decides. Each may also be a
    (B,) array, one value per replica (to search many settings in one batch). A reference for what
    knowing the horizon alone is worth (a learned policy sees the share of the episode left);
    not one of the classic baselines.
    """

    base: ChainPolicy
    stop_days: tuple[int, int, int]
    meta: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return f"{self.base.kind}_endgame"

    def orders(self, twin):
        return self.base.with_(stop_days=self.stop_days).orders(twin)
