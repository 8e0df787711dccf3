"""Exact optimal costs of one-store problems by dynamic programming, under the twin's convention.

A **single-echelon problem** is a one-store scenario whose upstream never runs short and costs
nothing (warehouse and supplier hold enough stock for every order the store could place, and
their holding and ordering costs are 0): the chain cost is then the store's cost, and the store
faces the classic periodic-review inventory problem:

- each day ``t`` the store orders ``q_t`` units [fixed cost K if q_t > 0, c per unit];
- the order arrives ``L`` days later, at the start of day ``t + L`` and before that day's demand
  (``L = 0``: the same day) [lead time L];
- demand ``D_t`` (the scenario's distribution for day t, truncated at ``d_max`` where the tail
  beyond it has mass at most ``tail_mass``, the tail lumped on ``d_max``) is served from stock;
  the unserved part is lost (``lost_sales``) or waits (``backorder``);
- costs on the end-of-day state: holding h per unit on hand, penalty p per unit of today's demand
  not served today, backorder cost b per unit in the backlog.

This is exactly the twin's timing (:mod:`hmarl_rllib.sim.network`), and it is Zipkin's (2008)
lost-sales model: "an order placed at the start of period t arrives at the start of period t + L,
before that period's demand".

Two quantities are computed:

- the **finite-horizon** expected cost of an episode from the scenario's initial state (initial
  inventory on hand, empty pipeline, ``episode_length`` scored days, no warm-up), by backward
  induction; it is what the benchmark compares with the mean cost of simulated episodes;
- the **long-run average cost per day** (stationary demand only), by relative value iteration
  (Puterman 1994, §8.5.5), with the span bounds as the stopping rule.

State spaces (Zipkin 2008, §2): with lost sales the state before ordering is
``(on hand + arriving today, arriving in 1 day, …, arriving in L−1 days)``; positions after
ordering are capped at ``M``, set from the backorder system's critical fractile (the lost-sales
optimum never orders above it; Janakiraman & Roundy 2004) plus an (s, S) allowance when K > 0,
and checked by solving again with a larger cap. With backorders the state is the inventory
position (on hand + in transit − backlog): day ``t + L``'s cost depends only on the position
after day t's order and the demand in between (Zipkin 2000, *Foundations*, §9.4).

numpy only: no RL imports. Refusals are :class:`~hmarl_rllib.errors.ConfigError` (one line).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from hmarl_rllib.errors import ConfigError
from hmarl_rllib.sim.demand import TAIL_MASS, day_pmf  # noqa: F401 (re-exported: the solver's tail mass and pmfs)

MAX_STATES = 3_000_000  # post-decision states of the lost-sales chain (memory ~ states × d_max × 4 B)
# Zipkin (2008), Operations Research 56(5): optimal average cost per period, Poisson(5), h = 1
ZIPKIN_2008 = {(1, 4): 4.04, (2, 4): 4.40, (3, 4): 4.60, (4, 4): 4.73,
               (1, 9): 5.44, (2, 9): 6.09, (3, 9): 6.53, (4, 9): 6.84,
               (1, 19): 6.68, (2, 19): 7.66, (3, 19): 8.36, (4, 19): 8.89,
               (1, 39): 7.84, (2, 39): 9.11, (3, 39): 10.04, (4, 39): 10.79}


@dataclass(frozen=True)
class SingleStoreProblem:
    """One store, an upstream that never runs short. Symbols as in Zipkin (2000)."""

    lead_time: int  # [L] days from order to arrival (arrives before that day's demand)
    holding: float  # [h] per unit on hand at the end of a day
    penalty: float  # [p] per unit of today's demand not served today
    backorder_cost: float  # [b] per unit in the backlog at the end of a day (backorder mode)
    fixed_cost: float  # [K] per positive order
    unit_cost: float  # [c] per unit ordered
    lost_sales: bool
    pmfs: np.ndarray  # (T, d_max + 1): day t's demand distribution, tail lumped on d_max
    initial_inventory: int  # on hand at the start of day 0, empty pipeline
    capacity: int | None = None  # cap on on hand + in transit after ordering (the twin's clip)
    tail_mass: float = TAIL_MASS  # the largest demand tail beyond d_max on any day
    name: str = "problem"

    @property
    def horizon(self) -> int:
        return int(self.pmfs.shape[0])

    @property
    def stationary(self) -> bool:
        return bool(np.abs(self.pmfs - self.pmfs[:1]).max() < 1e-12)

    @property
    def mean_demand(self) -> float:
        return float((self.pmfs * np.arange(self.pmfs.shape[1])).sum(axis=1).mean())


@dataclass
class Solution:
    cost: float | None  # expected episode cost from the initial state (finite horizon)
    average_cost: float | None  # long-run average cost per day (stationary demand)
    seconds: float
    cap: int  # positions after ordering are <= cap
    states: int
    iterations: int | None = None
    policy: dict = field(default_factory=dict)  # {"initial_order": q_0, "base_stock_like": ...}

    def as_dict(self) -> dict:
        return {"cost": self.cost, "average_cost": self.average_cost, "seconds": self.seconds,
                "cap": self.cap, "states": self.states, "iterations": self.iterations, **self.policy}


# ---------------------------------------------------------------------------- demand pmfs
# day_pmf (the twin's demand distribution for one day) lives with the demand models:
# hmarl_rllib.sim.demand.day_pmf, imported above.


def problem_from_scenario(scenario, tail_mass: float = TAIL_MASS) -> SingleStoreProblem:
    """The single-echelon problem a scenario poses, or one :class:`ConfigError` line saying why
    the scenario cannot be solved exactly."""
    from hmarl_rllib.sim.demand import mean_path

    sc = scenario
    stores = sc.store_list
    why = None
    if len(stores) != 1:
        why = f"it has {len(stores)} stores (the exact solver handles one store; set stores.count: 1)"
    elif len(sc.skus) != 1:
        why = f"it has {len(sc.skus)} SKUs (the exact solver handles one)"
    elif sc.demand_file:
        why = "its demand comes from demand_file (the exact solver needs a demand model)"
    elif sc.random_lead_times.enabled:
        why = "random_lead_times is enabled (the exact solver needs a fixed lead time)"
    elif sc.warmup_days:
        why = f"warmup_days = {sc.warmup_days} (the exact solver starts from the initial state; set 0)"
    if why:
        raise ConfigError(f"optimum: scenario {sc.name!r} cannot be solved exactly: {why}")
    st, sku = stores[0], sc.skus[0]
    m = sc.store_demand(0, 0)
    if m.promotions.probability > 0:
        raise ConfigError(f"optimum: scenario {sc.name!r} cannot be solved exactly: random promotions"
                          " (promotions.probability > 0) make demand depend on the past; set it to 0")
    up = {"holding_cost.warehouse": sku.holding_cost.warehouse, "holding_cost.supplier": sku.holding_cost.supplier,
          "ordering_cost.warehouse.fixed": sku.ordering_cost.warehouse.fixed,
          "ordering_cost.warehouse.per_unit": sku.ordering_cost.warehouse.per_unit,
          "ordering_cost.supplier.fixed": sku.ordering_cost.supplier.fixed,
          "ordering_cost.supplier.per_unit": sku.ordering_cost.supplier.per_unit}
    costly = [k for k, v in up.items() if v > 0]
    if costly:
        raise ConfigError(f"optimum: scenario {sc.name!r} cannot be solved exactly: the upstream costs"
                          f" something (skus[0].{costly[0]} = {up[costly[0]]:g}); set the warehouse's and"
                          " supplier's holding and ordering costs to 0 so that the chain cost is the store's")
    T = sc.episode_length
    mp = mean_path(sc, T)[:, 0, 0]
    d_max = max(int(day_pmf(m.model, float(mu), m.std, m.dispersion, tail_mass).shape[0]) - 1 for mu in np.unique(mp))
    pmfs = np.stack([day_pmf(m.model, float(mu), m.std, m.dispersion, d_max=d_max) for mu in mp])
    init = int(sc.per_sku(st.initial_inventory, 0))
    upstream = int(sc.per_sku(sc.warehouse.initial_inventory, 0))
    cap = st.capacity
    need = (cap if cap is not None else init + int(math.ceil(4 * (mp.max() + 1) * (st.lead_time + 1) + 50))) \
        + T * d_max
    if upstream < need:
        raise ConfigError(f"optimum: scenario {sc.name!r} cannot be solved exactly: the warehouse's"
                          f" initial_inventory ({upstream}) may run short; give it at least {need} units"
                          " (enough for every order the store can place) so that the upstream never runs short")
    if sc.shortage == "backorder" and cap is not None:
        raise ConfigError(f"optimum: scenario {sc.name!r} cannot be solved exactly: a store capacity with"
                          " backorders (remove stores.capacity)")
    return SingleStoreProblem(
        lead_time=int(st.lead_time), holding=float(sku.holding_cost.store), penalty=float(sku.stockout_penalty),
        backorder_cost=float(sku.backorder_cost), fixed_cost=float(sku.ordering_cost.store.fixed),
        unit_cost=float(sku.ordering_cost.store.per_unit), lost_sales=sc.shortage == "lost_sales",
        pmfs=pmfs, initial_inventory=init, capacity=cap, tail_mass=tail_mass, name=sc.name)


def zipkin_problem(lead_time: int, penalty: float, mean: float = 5.0, holding: float = 1.0,
                   horizon: int = 1, tail_mass: float = TAIL_MASS) -> SingleStoreProblem:
    """Zipkin (2008)'s lost-sales instance: Poisson demand, no fixed cost."""
    pmf = day_pmf("poisson", mean, tail_mass=tail_mass)
    return SingleStoreProblem(lead_time=lead_time, holding=holding, penalty=penalty, backorder_cost=0.0,
                              fixed_cost=0.0, unit_cost=0.0, lost_sales=True,
                              pmfs=np.repeat(pmf[None], horizon, axis=0), initial_inventory=0,
                              tail_mass=tail_mass, name=f"zipkin_L{lead_time}_p{penalty:g}")


# ---------------------------------------------------------------------------- the cap M
def _convolve_days(pmf: np.ndarray, days: int) -> np.ndarray:
    out = np.array([1.0])
    for _ in range(days):
        out = np.convolve(out, pmf)
    return out


def default_cap(problem: SingleStoreProblem) -> int:
    """Largest position after ordering worth considering: the backorder system's optimal
    base-stock level (critical fractile p / (p + h) of demand over L + 1 days), plus room for
    an (s, S) order quantity when K > 0, never below the initial inventory."""
    pmf = problem.pmfs.max(axis=0)
    pmf = pmf / pmf.sum()  # a stochastically large day: a safe cap for non-stationary demand too
    lt = _convolve_days(pmf, problem.lead_time + 1)
    h = max(problem.holding, 1e-9)
    ratio = (problem.penalty + problem.backorder_cost) / (problem.penalty + problem.backorder_cost + h)
    S = int(np.searchsorted(np.cumsum(lt), min(ratio, 1 - 1e-12)))
    mu = problem.mean_demand
    eoq = math.sqrt(2.0 * problem.fixed_cost * max(mu, 1e-9) / h) if problem.fixed_cost > 0 else 0.0
    cap = S + int(math.ceil(2 * eoq)) + 2
    cap = max(cap, problem.initial_inventory)
    if problem.capacity is not None:
        cap = min(cap, int(problem.capacity))
    return cap


# ---------------------------------------------------------------------------- lost sales
def _compositions(n: int, total: int) -> np.ndarray:
    """All vectors of n non-negative integers with sum <= total, in lexicographic order."""
    rows = np.zeros((1, 0), dtype=np.int32)
    for _ in range(n):
        room = total - rows.sum(axis=1)
        reps = room + 1
        first = np.repeat(rows, reps, axis=0)
        last = np.concatenate([np.arange(r) for r in reps]).astype(np.int32)[:, None]
        rows = np.concatenate([first, last], axis=1)
    return rows


def _count_compositions(n: int, total: int) -> int:
    return math.comb(total + n, n)


class _LostSalesChain:
    """Enumerated states and transitions of the lost-sales chain with positions <= cap."""

    def __init__(self, problem: SingleStoreProblem, cap: int):
        L = problem.lead_time
        n_post = _count_compositions(max(L, 1) + 1, cap)
        if n_post > MAX_STATES:
            raise ConfigError(f"optimum: lead time {L} with positions up to {cap} needs {n_post:,} states"
                              f" (more than {MAX_STATES:,}); the exact solver handles smaller problems"
                              " (shorter lead time or less demand per lead time)")
        d = np.arange(problem.pmfs.shape[1])
        post = _compositions(max(L, 1) + 1, cap)  # (a, y_1..y_{L-1}, q) or, for L = 0, (x, q)
        pre = post[:, :-1]
        q = post[:, -1]
        # contiguous runs of the same pre-state (q is the innermost coordinate)
        new = np.ones(len(post), dtype=bool)
        new[1:] = (pre[1:] != pre[:-1]).any(axis=1)
        self.starts = np.flatnonzero(new)
        self.pre = pre[self.starts]
        self.q = q
        self.position = post.sum(axis=1)  # position after ordering
        pre_pos = self.pre.sum(axis=1)
        self.pre_position = pre_pos
        self._base = base = cap + 1
        code = np.zeros(len(self.pre), dtype=np.int64)
        for j in range(self.pre.shape[1]):
            code = code * base + self.pre[:, j]
        order = np.argsort(code)
        self._codes, self._order = code[order], order
        inv = post[:, 0] + (q if L == 0 else 0)  # on hand before demand
        left = np.maximum(inv[:, None] - d[None, :], 0)  # (n_post, D)
        lost = np.maximum(d[None, :] - inv[:, None], 0)
        self.stage_cost = (problem.holding * left + problem.penalty * lost).astype(float)  # per demand value
        if L == 0:
            nxt = left[..., None]
        else:
            shift = post[:, 1:]  # (y_1..y_{L-1}, q): the next state after adding x' to its first slot
            nxt = np.repeat(shift[:, None, :], len(d), axis=1)
            nxt[..., 0] += left
        self.next_idx = self.index(nxt.reshape(-1, nxt.shape[-1])).reshape(len(post), len(d)).astype(np.int32)
        self.order_cost = problem.fixed_cost * (q > 0) + problem.unit_cost * q
        self.n_post, self.n_pre = len(post), len(self.pre)

    def index(self, states: np.ndarray) -> np.ndarray:
        code = np.zeros(len(states), dtype=np.int64)
        for j in range(states.shape[1]):
            code = code * self._base + states[:, j]
        pos = np.searchsorted(self._codes, code)
        pos = np.minimum(pos, len(self._codes) - 1)
        if not (self._codes[pos] == code).all():
            raise AssertionError("a transition left the enumerated state space")
        return self._order[pos]

    def q_values(self, pmf: np.ndarray, V_next: np.ndarray) -> np.ndarray:
        """Expected cost of every (state, order) pair: order cost + today's + V_next."""
        return self.order_cost + (self.stage_cost + V_next[self.next_idx]) @ pmf

    def minimise(self, Q: np.ndarray, argmin: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        V = np.minimum.reduceat(Q, self.starts)
        if not argmin:
            return V, None
        # first argmin per run: the smallest optimal order
        is_min = Q <= np.repeat(V, np.diff(np.append(self.starts, len(Q)))) + 1e-12
        idx = np.flatnonzero(is_min)
        run = np.searchsorted(self.starts, idx, side="right") - 1
        first = np.full(len(self.starts), -1)
        rev = np.arange(len(idx))[::-1]
        first[run[rev]] = idx[rev]
        return V, first

    def initial_state(self, problem) -> int:
        s = np.zeros((1, self.pre.shape[1]), dtype=np.int64)
        s[0, 0] = problem.initial_inventory
        return int(self.index(s)[0])


def _solve_lost_sales(problem, cap, average, tol, max_iter, progress=None):
    chain = _LostSalesChain(problem, cap)
    out = {"states": chain.n_post}
    T = problem.horizon
    V = np.zeros(chain.n_pre)
    first = None
    for t in range(T - 1, -1, -1):
        V, first = chain.minimise(chain.q_values(problem.pmfs[t], V), argmin=t == 0)
    s0 = chain.initial_state(problem)
    out["cost"] = float(V[s0])
    out["initial_order"] = int(chain.q[first[s0]])
    out["cap_binding"] = bool(chain.position[first[s0]] >= cap and chain.q[first[s0]] > 0)
    if average:
        pmf = problem.pmfs[0]
        h = np.zeros(chain.n_pre)
        g = None
        for it in range(1, max_iter + 1):
            TV, _ = chain.minimise(chain.q_values(pmf, h), argmin=False)
            diff = TV - h
            lo, hi = float(diff.min()), float(diff.max())
            h = TV - TV[0]
            if hi - lo < tol:
                g = 0.5 * (lo + hi)
                break
            if progress and it % 200 == 0:
                progress(f"relative value iteration {it}: average cost in [{lo:.5f}, {hi:.5f}]")
        out["average_cost"], out["iterations"] = g, it
        if g is None:
            out["average_bounds"] = (lo, hi)
        _, first = chain.minimise(chain.q_values(pmf, h))
        pos_after = chain.position[first]
        out["max_position_after_order"] = int(pos_after[chain.pre_position <= cap].max())
    return out


# ---------------------------------------------------------------------------- backorders
def _day_cost(problem, net: np.ndarray, pmf: np.ndarray) -> np.ndarray:
    """Expected cost of one day given the net inventory ``net`` after arrivals, before demand:
    holding on what is left, p per unit of today's demand not served today, b per unit of
    backlog at the end of the day."""
    d = np.arange(len(pmf))
    end = net[:, None] - d[None, :]
    served = np.minimum(d[None, :], np.maximum(net[:, None], 0))
    cost = (problem.holding * np.maximum(end, 0) + problem.penalty * (d[None, :] - served)
            + problem.backorder_cost * np.maximum(-end, 0))
    return cost @ pmf


def _solve_backorder(problem, cap, average, tol, max_iter, progress=None):
    """Position DP: V_t(x) = min_{y >= x} K[y > x] + c(y − x) + G_t(y) + E V_{t+1}(y − D_t)."""
    L, T = problem.lead_time, problem.horizon
    dmax = problem.pmfs.shape[1] - 1
    x0 = problem.initial_inventory
    lo = min(0, x0) - (T + L + 2) * dmax if not average else -4 * cap - 4 * dmax
    lo = max(lo, -200_000)
    xs = np.arange(lo, cap + 1)  # positions (after ordering: y in the same grid)
    n = len(xs)

    def day_cost(net, pmf):
        return _day_cost(problem, net, pmf)

    def G(t):  # expected cost on day t + L of the position y after day t's order
        if t + L >= T:
            return np.zeros(n)
        lead = np.array([1.0])
        for j in range(t, t + L):
            lead = np.convolve(lead, problem.pmfs[j])
        nets = np.arange(lo - len(lead) + 1, cap + 1)
        dc = day_cost(nets, problem.pmfs[t + L])  # indexed by net - (lo - len(lead) + 1)
        # E over D_lead of dc[y - D_lead]
        out = np.zeros(n)
        base = len(lead) - 1
        for k, pk in enumerate(lead):
            if pk:
                out += pk * dc[base - k: base - k + n]
        return out

    def expect_next(V, pmf):  # E V(y − D) for each y, clamped at the grid's bottom
        out = np.zeros(n)
        for k, pk in enumerate(pmf):
            if pk:
                idx = np.maximum(np.arange(n) - k, 0)
                out += pk * V[idx]
        return out

    K, c = problem.fixed_cost, problem.unit_cost

    def minimise(J):  # V(x) = min( J(x), min_{y > x} K + c(y − x) + J(y) )
        cy = J + c * xs
        suffix = np.minimum.accumulate(cy[::-1])[::-1]
        later = np.append(suffix[1:], np.inf)
        return np.minimum(J, K - c * xs + later)

    const = 0.0  # days 0..L−1: no arrivals, fixed by the initial inventory
    lead = np.array([1.0])
    for j in range(min(L, T)):
        nets = x0 - np.arange(len(lead))
        const += float(lead @ day_cost(nets, problem.pmfs[j]))
        lead = np.convolve(lead, problem.pmfs[j])
    V = np.zeros(n)
    for t in range(T - 1, -1, -1):
        V = minimise(G(t) + expect_next(V, problem.pmfs[t]))
    out = {"states": n, "cost": const + float(V[x0 - lo])}
    if average:
        pmf = problem.pmfs[0]
        lead = _convolve_days(pmf, L)
        nets = np.arange(lo - len(lead) + 1, cap + 1)
        dc = day_cost(nets, pmf)
        Gs = np.zeros(n)
        for k, pk in enumerate(lead):
            Gs += pk * dc[len(lead) - 1 - k: len(lead) - 1 - k + n]
        hv, g = np.zeros(n), None
        for it in range(1, max_iter + 1):
            TV = minimise(Gs + expect_next(hv, pmf))
            diff = (TV - hv)[xs >= -2 * dmax - 2]  # the recurrent part of the grid
            a, z = float(diff.min()), float(diff.max())
            hv = TV - TV[-lo]
            if z - a < tol:
                g = 0.5 * (a + z)
                break
        out["average_cost"], out["iterations"] = g, it
    return out


# ---------------------------------------------------------------------------- entry point
def solve(problem: SingleStoreProblem, average: bool | None = None, cap: int | None = None,
          tol: float = 1e-7, max_iter: int = 50_000, progress=None) -> Solution:
    """The exact optimum of ``problem``: finite-horizon cost and (stationary demand) average cost.

    The cap on positions is checked by solving again with a larger cap: if the costs differ,
    the larger cap is kept and checked in turn.
    """
    t0 = time.perf_counter()
    if average is None:
        average = problem.stationary
    if average and not problem.stationary:
        raise ConfigError("optimum: the average cost per day needs stationary demand (a seasonal or"
                          " trending demand model has only a finite-horizon optimum)")
    run = _solve_lost_sales if problem.lost_sales else _solve_backorder
    cap = cap or default_cap(problem)
    res = run(problem, cap, average, tol, max_iter, progress)
    # Lost sales without a fixed cost: the optimum never orders above the backorder system's
    # base-stock level (Janakiraman & Roundy 2004), which the default cap exceeds, so positions
    # <= cap form a closed set and the cap changes nothing. Otherwise it is checked.
    proven = problem.lost_sales and problem.fixed_cost == 0 and cap == default_cap(problem) \
        and problem.initial_inventory < cap
    while not proven and (problem.capacity is None or cap < problem.capacity):
        bigger = cap + max(3, cap // 8)
        if problem.capacity is not None:
            bigger = min(bigger, int(problem.capacity))
        if progress:
            progress(f"checking the cap: positions up to {bigger} (was {cap})")
        res2 = run(problem, bigger, average, tol, max_iter, progress)
        same = abs(res2["cost"] - res["cost"]) <= 1e-9 * max(1.0, abs(res["cost"]))
        if average and res.get("average_cost") is not None and res2.get("average_cost") is not None:
            same = same and abs(res2["average_cost"] - res["average_cost"]) <= 10 * tol
        if same:
            break
        cap, res = bigger, res2
    policy = {k: res[k] for k in ("initial_order", "max_position_after_order") if k in res}
    return Solution(cost=res["cost"], average_cost=res.get("average_cost"),
                    seconds=time.perf_counter() - t0, cap=cap, states=res["states"],
                    iterations=res.get("iterations"), policy=policy)


class Referee:
    """Where a policy loses against the optimum, day by day (lost sales, finite horizon).

    The performance-difference identity: for any policy π played from the initial state,
    ``cost(π) − V*_0(s_0) = E Σ_t [Q*_t(s_t, q_t) − V*_t(s_t)]`` along π's own path, where
    ``Q*_t(s, q)`` is the expected cost of ordering q on day t in state s and acting optimally
    afterwards. Each term is ≥ 0 (0 where π orders as the optimum does), so the sum splits the
    gap to the optimum by day and by state. :meth:`loss` gives the term for a batch of twin
    states (state before ordering: on hand + arriving today, arriving in 1 … L−1 days). It is a
    referee: it is computed after training and never reaches it.
    """

    def __init__(self, problem: SingleStoreProblem, cap: int | None = None):
        if not problem.lost_sales:
            raise ConfigError("optimum: the day-by-day referee covers lost-sales problems")
        self.problem, self.cap = problem, int(cap or default_cap(problem))
        self.chain = ch = _LostSalesChain(problem, self.cap)
        T = problem.horizon
        self.V = [None] * (T + 1)
        self.V[T] = np.zeros(ch.n_pre)
        self.best = [None] * T
        for t in range(T - 1, -1, -1):
            self.V[t], self.best[t] = ch.minimise(ch.q_values(problem.pmfs[t], self.V[t + 1]))

    @property
    def cost(self) -> float:
        return float(self.V[0][self.chain.initial_state(self.problem)])

    def _states(self, on_hand, pipeline) -> np.ndarray:
        L = self.problem.lead_time
        B = len(on_hand)
        pre = np.zeros((B, 1), dtype=np.int64) if L == 0 else \
            np.rint(np.asarray(pipeline, dtype=float)).astype(np.int64).reshape(B, -1)[:, :L].copy()
        pre[:, 0] += np.rint(np.asarray(on_hand, dtype=float)).astype(np.int64)
        return self.chain.index(pre)

    def optimal_order(self, day: int, on_hand: np.ndarray, pipeline: np.ndarray) -> np.ndarray:
        """The optimum's order (the smallest optimal one) per replica; arguments as :meth:`loss`."""
        return self.chain.q[self.best[day][self._states(on_hand, pipeline)]]

    def loss(self, day: int, on_hand: np.ndarray, pipeline: np.ndarray, order: np.ndarray):
        """``(Q*_t(s, q) − V*_t(s), q*)`` per replica: ``on_hand`` (B,), ``pipeline`` (B, L)
        arrivals due today, in 1, … L−1 days (the twin's ``store_pipeline()``), ``order`` (B,)
        whole units (orders past the cap on positions are counted at the cap)."""
        ch = self.chain
        i = self._states(on_hand, pipeline)
        q = np.minimum(np.maximum(np.rint(order), 0).astype(np.int64), self.cap - ch.pre_position[i])
        post = ch.starts[i] + q
        Q = ch.order_cost[post] + (ch.stage_cost[post] + self.V[day + 1][ch.next_idx[post]]) @ self.problem.pmfs[day]
        return Q - self.V[day][i], ch.q[self.best[day][i]]


class AverageReferee(Referee):
    """:class:`Referee` for the long-run average cost (stationary demand, lost sales).

    With the relative values h* and the optimal average cost g* (relative value iteration),
    ``Q(s, q) = order cost + E[today's cost + h*(s')]`` and ``min_q Q(s, q) = h*(s) + g*``. For a
    policy π with stationary state distribution d_π, ``average cost(π) − g* = E_{s~d_π}[Q(s, π(s))
    − min_q Q(s, q)]``: the mean over π's own days of :meth:`loss` estimates its gap per day,
    with the noise of the states visited only (the costs are expectations).
    """

    def __init__(self, problem: SingleStoreProblem, cap: int | None = None, tol: float = 1e-9,
                 max_iter: int = 50_000):
        if not (problem.lost_sales and problem.stationary):
            raise ConfigError("optimum: the average-cost referee covers stationary lost-sales problems")
        self.problem, self.cap = problem, int(cap or default_cap(problem))
        self.chain = ch = _LostSalesChain(problem, self.cap)
        self.pmf = problem.pmfs[0]
        h = np.zeros(ch.n_pre)
        for _ in range(max_iter):
            TV, _ = ch.minimise(ch.q_values(self.pmf, h), argmin=False)
            diff = TV - h
            if float(diff.max() - diff.min()) < tol:
                break
            h = TV - TV[0]
        else:
            raise ConfigError(f"optimum: relative value iteration did not converge in {max_iter} iterations")
        self.g = float(0.5 * (diff.max() + diff.min()))
        self.h = h
        self.V_min, self.best_post = ch.minimise(ch.q_values(self.pmf, h))

    @property
    def cost(self) -> float:
        """The optimal average cost per day, g*."""
        return self.g

    def optimal_order(self, day: int, on_hand: np.ndarray, pipeline: np.ndarray) -> np.ndarray:
        return self.chain.q[self.best_post[self._states(on_hand, pipeline)]]

    def loss(self, day: int, on_hand: np.ndarray, pipeline: np.ndarray, order: np.ndarray):
        """``(Q(s, q) − min Q(s, ·), q*)`` per replica (``day`` is ignored: the problem is stationary)."""
        ch = self.chain
        i = self._states(on_hand, pipeline)
        q = np.minimum(np.maximum(np.rint(order), 0).astype(np.int64), self.cap - ch.pre_position[i])
        post = ch.starts[i] + q
        Q = ch.order_cost[post] + (ch.stage_cost[post] + self.h[ch.next_idx[post]]) @ self.pmf
        return Q - self.V_min[i], ch.q[self.best_post[i]]


def _base_stock_chain(problem, S):
    """The lost-sales chain and, per pre-order state, the index of base-stock S's order."""
    cap = max(default_cap(replace(problem, capacity=None)), S, problem.initial_inventory)
    if problem.capacity is not None:
        cap = max(min(cap, int(problem.capacity)), S if S <= problem.capacity else 0)
    chain = _LostSalesChain(problem, cap)
    target = np.maximum(S - chain.pre_position, 0)
    if problem.capacity is not None:
        target = np.minimum(target, np.maximum(int(problem.capacity) - chain.pre_position, 0))
    return chain, chain.starts + target  # q is the offset within each state's run


def evaluate_base_stock(problem: SingleStoreProblem, order_up_to: int) -> float:
    """Exact finite-horizon expected cost of the base-stock policy "order up to S on the
    inventory position" (the twin's ``base_stock`` rule) from the initial state: the same
    recursion as :func:`solve` with the order fixed, so a comparison with the twin's simulated
    cost checks that the solver's model is the twin's."""
    S = int(order_up_to)
    if problem.lost_sales:
        chain, pick = _base_stock_chain(problem, S)
        V = np.zeros(chain.n_pre)
        for t in range(problem.horizon - 1, -1, -1):
            rows = chain.next_idx[pick]
            V = chain.order_cost[pick] + (chain.stage_cost[pick] + V[rows]) @ problem.pmfs[t]
        return float(V[chain.initial_state(problem)])
    return _evaluate_backorder_base_stock(problem, S)  # the position DP with y = max(x, S)


def average_base_stock_cost(problem: SingleStoreProblem, order_up_to: int, tol: float = 1e-7,
                            max_iter: int = 50_000) -> float:
    """Exact long-run average cost per day of base-stock S on a stationary lost-sales problem:
    relative value iteration of the recursion of :func:`evaluate_base_stock`, until the one-day
    cost increase is the same (within ``tol``) from every state."""
    if not (problem.lost_sales and problem.stationary):
        raise ConfigError("optimum: the exact average cost of a base-stock level needs stationary demand and lost sales")
    chain, pick = _base_stock_chain(problem, int(order_up_to))
    rows, pmf = chain.next_idx[pick], problem.pmfs[0]
    h = np.zeros(chain.n_pre)
    for _ in range(max_iter):
        TV = chain.order_cost[pick] + (chain.stage_cost[pick] + h[rows]) @ pmf
        diff = TV - h
        if float(diff.max() - diff.min()) < tol:
            return float(0.5 * (diff.max() + diff.min()))
        h = TV - TV[0]
    raise ConfigError(f"optimum: relative value iteration for base-stock {order_up_to} did not converge"
                      f" in {max_iter} iterations")


def _evaluate_backorder_base_stock(problem, S):
    L, T = problem.lead_time, problem.horizon
    dmax = problem.pmfs.shape[1] - 1
    x0 = problem.initial_inventory
    cap = max(S, x0)
    lo = min(0, x0) - (T + L + 2) * dmax
    xs = np.arange(lo, cap + 1)
    n = len(xs)

    def day_cost(net, pmf):
        return _day_cost(problem, net, pmf)

    const, lead = 0.0, np.array([1.0])
    for j in range(min(L, T)):
        const += float(lead @ day_cost(x0 - np.arange(len(lead)), problem.pmfs[j]))
        lead = np.convolve(lead, problem.pmfs[j])
    y = np.maximum(xs, S)
    order = y - xs
    V = np.zeros(n)
    for t in range(T - 1, -1, -1):
        if t + L < T:
            lead = np.array([1.0])
            for j in range(t, t + L):
                lead = np.convolve(lead, problem.pmfs[j])
            Gy = np.zeros(n)
            for k, pk in enumerate(lead):
                if pk:
                    Gy += pk * day_cost(y - k, problem.pmfs[t + L])
        else:
            Gy = np.zeros(n)
        EV = np.zeros(n)
        for k, pk in enumerate(problem.pmfs[t]):
            if pk:
                EV += pk * V[np.maximum(y - k - lo, 0)]
        V = problem.fixed_cost * (order > 0) + problem.unit_cost * order + Gy + EV
    return const + float(V[x0 - lo])


def optimum_for_scenario(scenario, average: bool | None = None, progress=None) -> dict:
    """Solve a scenario's single-echelon problem; a dict for the CLI and the benchmark."""
    problem = problem_from_scenario(scenario)
    sol = solve(problem, average=average, progress=progress)
    return {"scenario": scenario.name, "shortage": scenario.shortage, "lead_time": problem.lead_time,
            "episode_length": problem.horizon, "d_max": int(problem.pmfs.shape[1] - 1),
            "tail_mass": problem.tail_mass, "stationary": problem.stationary, **sol.as_dict()}


def exact_optimum(scenario, progress=None) -> dict:
    """The exact optimum (:func:`optimum_for_scenario`) when the scenario is a one-store
    problem the solver handles, else ``{"cost": None, "why": reason}`` (for the benchmark and the
    evaluation report)."""
    try:
        return optimum_for_scenario(scenario, progress=progress)
    except ConfigError as err:
        return {"cost": None, "why": str(err)}
