"""Exact optimal echelon base-stock levels and cost of a serial system with backorders.

The model (Clark & Scarf 1960): stages ``N → … → 2 → 1``, stage 1 faces customer demand,
the top stage is replenished from an unlimited source; every shortage is backordered, at every
stage; each stage follows an echelon base-stock policy (order up to ``S_j`` on its echelon
inventory position: its own stock, everything downstream of it, in transit to it and owed to
it, minus the customers' backlog). Clark and Scarf proved this policy optimal; Chen and Zheng
(1994) gave the recursion below, which yields the optimal levels ``S*_j`` one stage at a time
and the optimal long-run average cost per period. Snyder & Shen, *Fundamentals of Supply Chain
Theory* (2nd ed., Wiley 2019), §6.2, state it and work Example 6.1 (``stockpyl.ssm_serial``
implements it by the same equations; nothing here is taken from its code).

Recursion (echelon holding costs ``h_j`` [h_j], local ones ``h'_j = h_j + … + h_N``,
backorder cost ``b`` per unit-period at stage 1 [p in Snyder & Shen], ``D_j`` the demand over
stage j's window, see below)::

    C_0(x) = (b + h'_1) · max(−x, 0)
    Ĉ_j(x) = h_j · x + C_{j−1}(x)
    g_j(y) = E[ Ĉ_j(y − D_j) ]
    S*_j   = argmin_y g_j(y)
    C_j(x) = g_j(min(S*_j, x))                   optimal cost = g_N(S*_N)

Fixing the levels instead of minimising (``levels=``) evaluates any echelon base-stock policy
exactly (:func:`chen_zheng`). Holding is charged on echelon stock, which includes the stock in
transit from stage j + 1 to stage j at the rate h'_{j+1} (not the top stage's inbound pipeline).

Windows (which demand each ``D_j`` covers)
------------------------------------------
Snyder & Shen's periodic model: ``D_j`` is the demand over ``L_j`` periods for every stage
(:func:`textbook_problem`). The twin's day (:mod:`hmarl_rllib.sim.network`: orders first,
shipments and arrivals in the same day top-down, then demand, then costs on the end-of-day
state) gives ``D_1`` = demand over ``L_store + 1`` days (a unit shipped on day t with lead time
L reaches the shelf before day t + L's demand, and day t's own demand comes after the order),
``D_2`` over ``L_warehouse`` days and ``D_3`` over ``L_production`` days: the echelon position
stage j can actually ship to its echelon on day t is ``min(S_j, V_{j+1} − D[L_{j+1} days])``
where ``V_{j+1}`` is stage j+1's shipped echelon position ``L_{j+1}`` days earlier.

The twin's scenario that *is* the Clark–Scarf model (:func:`problem_from_scenario`)
---------------------------------------------------------------------------------
- one store, one SKU, stationary demand (Poisson, negative binomial or normal; the daily
  distribution of :mod:`hmarl_rllib.sim.demand`, truncated with tail mass ``tail_mass``);
- ``shortage: backorder`` (customers wait) and ``internal_shortage: backorder`` (store and
  warehouse orders wait instead of being cancelled);
- three stages: store (1, lead time ``stores[0].lead_time``), warehouse (2,
  ``warehouse.lead_time``), supplier's finished stock (3, production lead time
  ``supplier.lead_time``), production unlimited (``production_capacity`` ≥ the largest daily
  demand kept, so the clip never binds), no capacities, no random lead times;
- echelon holding costs from the twin's installation costs: ``h_1 = h_store − h_warehouse``,
  ``h_2 = h_warehouse − h_supplier``, ``h_3 = h_supplier`` (all ≥ 0);
- ``b = backorder_cost``; ``stockout_penalty`` p = 0 (a charge per unit of *today's* demand not
  served today is not in the Clark–Scarf model); no fixed order costs. Per-unit order costs c
  add exactly ``μ (c_store + c_warehouse + c_supplier)`` per day in the long run (every unit
  demanded is shipped once by each stage and produced once) and are added.

**The pipeline constant.** The twin charges no holding on stock in transit, the recursion
charges echelon holding on it, and the recursion's stage-j echelon term is measured *before*
the day's demand. Both shift the cost by a constant: with ``μ`` the mean daily demand,

    twin cost per day = g_3(S*_3) − μ · [h'_2 · (L_store + 1) + h'_3 · L_warehouse] + μ · Σ c,

(``h'_2 = h_warehouse``, ``h'_3 = h_supplier``: the stock in transit to the store, L_store days
of shipments, is held at the warehouse's rate in the recursion; in transit to the warehouse,
L_warehouse days, at the supplier's; and each upstream stage's echelon term counts one day of
demand that the twin's end-of-day state has already served.) Levels and optimality are
unchanged by a constant. :func:`solve_scenario` reports both numbers.

numpy only. Refusals are :class:`~hmarl_rllib.errors.ConfigError` (one line).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from hmarl_rllib.errors import ConfigError

TAIL_MASS = 1e-12  # demand mass left beyond each truncated distribution (lumped on its largest value)


@dataclass(frozen=True)
class SerialProblem:
    """A serial system in the recursion's terms; stage 1 (index 0) faces demand.

    ``window_pmfs[j]`` is the distribution of ``D_{j+1}`` on the grid ``0, step, 2·step, …``.
    """

    echelon_holding: tuple  # [h_j], j = 1..N
    window_pmfs: tuple  # pmfs of D_1..D_N
    backorder_cost: float  # [b] (Snyder & Shen's p)
    step: float = 1.0  # grid spacing of demand and levels (1: whole units)
    mean_demand: float = 0.0  # [μ] per period
    offset: float = 0.0  # added to the recursion's cost to give the modelled system's cost
    name: str = "serial"
    notes: dict = field(default_factory=dict)

    @property
    def stages(self) -> int:
        return len(self.echelon_holding)


@dataclass
class SerialSolution:
    levels: np.ndarray  # echelon base-stock levels S_1..S_N (units)
    recursion_cost: float  # g_N(S_N): the cost in the recursion's accounting
    cost: float  # recursion_cost + offset: the modelled system's long-run cost per period
    stage_costs: np.ndarray  # g_j(S_j), j = 1..N
    seconds: float
    optimal: bool  # True when the levels were optimised, False when given

    def as_dict(self) -> dict:
        return {"levels": [float(x) for x in self.levels], "recursion_cost": self.recursion_cost,
                "cost": self.cost, "stage_costs": [float(x) for x in self.stage_costs],
                "seconds": self.seconds, "optimal": self.optimal}


# ------------------------------------------------------------------------------ recursion
def chen_zheng(problem: SerialProblem, levels=None) -> SerialSolution:
    """The Chen–Zheng (1994) recursion: optimal echelon base-stock levels and cost, or (with
    ``levels`` = S_1..S_N in units, on the grid) the exact cost of those levels.

    Raises ``ValueError`` when an optimal level sits on the edge of the grid (the demand
    truncation is too tight for this backorder cost).
    """
    t0 = time.perf_counter()
    h = np.asarray(problem.echelon_holding, dtype=float)
    N, dx = len(h), float(problem.step)
    pmfs = [np.asarray(p, dtype=float) for p in problem.window_pmfs]
    if len(pmfs) != N:
        raise ValueError(f"{N} stages but {len(pmfs)} demand windows")
    dmax = [len(p) - 1 for p in pmfs]
    top = sum(dmax)  # no level above the largest total-window demand is ever worth holding
    if levels is not None:
        given = np.rint(np.asarray(levels, dtype=float) / dx).astype(int)
        top = max(top, int(given.max()))
    lo = -sum(dmax) - 1  # grid index of the lowest x any stage needs (x = index · step)
    x = np.arange(lo, top + 1) * dx
    C = (problem.backorder_cost + h.sum()) * np.maximum(-x, 0.0)  # C_0 on the grid
    first = lo  # index (in x units) of C's first valid entry
    S, g_at_S = np.zeros(N), np.zeros(N)
    for j in range(N):
        c_hat = h[j] * (np.arange(first, top + 1) * dx) + C
        g = np.convolve(c_hat, pmfs[j])[: len(c_hat)][dmax[j]:]  # g(y) = Σ_d pmf(d) Ĉ(y − d)
        first += dmax[j]  # g is valid from here up
        if levels is None:
            k = int(np.argmin(g))
            if (k == len(g) - 1 or k == 0) and len(g) > 1:
                raise ValueError(f"stage {j + 1}: the optimal level is on the edge of the grid"
                                 f" ({(first + k) * dx:g}); lower the tail mass")
        else:
            k = int(given[j]) - first
            if not 0 <= k < len(g):
                raise ValueError(f"stage {j + 1}: level {given[j] * dx:g} is outside the grid"
                                 f" [{first * dx:g}, {top * dx:g}]")
        S[j], g_at_S[j] = (first + k) * dx, g[k]
        C = np.where(np.arange(len(g)) < k, g, g[k])  # C_j(x) = g_j(min(S_j, x))
    cost = float(g_at_S[-1])
    return SerialSolution(levels=S, recursion_cost=cost, cost=cost + problem.offset, stage_costs=g_at_S,
                          seconds=time.perf_counter() - t0, optimal=levels is None)


# ---------------------------------------------------------------------- demand windows
def window_pmf(model: str, mean: float, days: int, std: float | None = None, dispersion: float | None = None,
               tail_mass: float = TAIL_MASS) -> np.ndarray:
    """Distribution of the twin's demand summed over ``days`` i.i.d. days, in whole units
    (Poisson: exactly Poisson(days·μ), truncated; other models: the truncated day's pmf
    convolved ``days`` times). ``days`` = 0: no demand."""
    from hmarl_rllib.policies.optimum import day_pmf

    if days <= 0:
        return np.ones(1)
    if model == "poisson":
        return day_pmf("poisson", mean * days, tail_mass=tail_mass)
    day = day_pmf(model, mean, std=std, dispersion=dispersion, tail_mass=tail_mass / days)
    out = np.ones(1)
    for _ in range(days):
        out = np.convolve(out, day)
    keep = len(out) - int(np.searchsorted(np.cumsum(out[::-1]), tail_mass))  # drop the negligible tail
    out = out[:max(keep, 1)].copy()
    out[-1] += 1.0 - out.sum()
    return out


def _normal_window(mean: float, sd: float, periods: int, step: float, tail_mass: float) -> np.ndarray:
    """N(periods·μ, periods·σ²) on the grid 0, step, …: the mass of each cell of width step
    centred on the point; the mass below 0 is lumped on 0 and the upper tail on the last point."""
    if periods <= 0:
        return np.ones(1)
    m, s = mean * periods, sd * np.sqrt(periods)
    hi = m + s * stats.norm.isf(tail_mass)
    k = np.arange(int(np.ceil(hi / step)) + 1)
    cdf = stats.norm.cdf(((k + 0.5) * step - m) / s)
    pmf = np.diff(np.concatenate([[0.0], cdf]))
    pmf[-1] += 1.0 - cdf[-1]
    return pmf


def textbook_problem(echelon_holding, lead_times, stockout_cost: float, mean: float, std: float,
                     step: float = 0.01, tail_mass: float = 1e-7) -> SerialProblem:
    """Snyder & Shen's periodic-review serial system (§6.2): stage 1 first, ``D_j`` = normal
    demand over ``L_j`` periods [L_j], echelon holding [h_j], stockout cost [p] per unit-period
    backordered at stage 1. Continuous demand is discretised on a grid of ``step``."""
    pmfs = tuple(_normal_window(mean, std, int(L), step, tail_mass) for L in lead_times)
    return SerialProblem(echelon_holding=tuple(float(x) for x in echelon_holding), window_pmfs=pmfs,
                         backorder_cost=float(stockout_cost), step=step, mean_demand=mean, name="textbook")


# ------------------------------------------------------------------------ the twin's model
def problem_from_scenario(scenario, tail_mass: float = TAIL_MASS) -> SerialProblem:
    """The Clark–Scarf problem a twin scenario poses (see the module docstring), or one
    :class:`ConfigError` line saying why the scenario is not that model."""
    from hmarl_rllib.sim.demand import mean_path

    src = scenario.source_path or scenario.name

    def refuse(why):
        raise ConfigError(f"{src}: not a serial Clark–Scarf system: {why}")

    if len(scenario.store_list) != 1:
        refuse(f"{len(scenario.store_list)} stores (one store only)")
    if len(scenario.skus) != 1:
        refuse(f"{len(scenario.skus)} SKUs (one SKU only)")
    if scenario.shortage != "backorder":
        refuse("shortage is lost_sales (set shortage: backorder)")
    if scenario.internal_shortage != "backorder":
        refuse("internal orders are cancelled when short (set internal_shortage: backorder)")
    if scenario.demand_file:
        refuse("demand comes from a file (a stationary demand model is needed)")
    if scenario.random_lead_times.enabled and scenario.random_lead_times.probability > 0:
        refuse("random lead times are enabled")
    store, sku = scenario.store_list[0], scenario.skus[0]
    if store.capacity is not None or scenario.warehouse.capacity is not None:
        refuse("a store or warehouse capacity is set")
    dm = scenario.store_demand(0, 0)
    T = scenario.warmup_days + scenario.episode_length
    path = mean_path(scenario, T)[:, 0, 0]
    if not np.allclose(path, path[0]) or dm.promotions.probability > 0 or dm.promotions.days:
        refuse("demand is not stationary (weekly, yearly, trend or promotions)")
    oc = sku.ordering_cost
    if oc.store.fixed or oc.warehouse.fixed or oc.supplier.fixed:
        refuse("a fixed order cost is set (echelon base-stock is optimal only without one)")
    if sku.stockout_penalty:
        refuse(f"stockout_penalty = {sku.stockout_penalty:g} (set 0: Clark–Scarf charges the backlog only)")
    hc = sku.holding_cost
    h = (hc.store - hc.warehouse, hc.warehouse - hc.supplier, hc.supplier)
    if min(h) < 0:
        refuse(f"holding costs must not fall downstream (store {hc.store:g} >= warehouse"
               f" {hc.warehouse:g} >= supplier {hc.supplier:g})")
    mu = float(path[0])
    Ls, Lw, Lp = store.lead_time, scenario.warehouse.lead_time, scenario.supplier.lead_time
    kw = dict(std=dm.std, dispersion=dm.dispersion, tail_mass=tail_mass)
    pmfs = (window_pmf(dm.model, mu, Ls + 1, **kw), window_pmf(dm.model, mu, Lw, **kw),
            window_pmf(dm.model, mu, Lp, **kw))
    d_day = len(window_pmf(dm.model, mu, 1, **kw)) - 1
    if scenario.supplier.production_capacity < d_day:
        refuse(f"production_capacity {scenario.supplier.production_capacity} can bind (a day's demand"
               f" reaches {d_day}; production must be unlimited)")
    pipeline = mu * (hc.warehouse * (Ls + 1) + hc.supplier * Lw)
    per_unit = mu * (oc.store.per_unit + oc.warehouse.per_unit + oc.supplier.per_unit)
    return SerialProblem(echelon_holding=h, window_pmfs=pmfs, backorder_cost=float(sku.backorder_cost),
                         step=1.0, mean_demand=mu, offset=per_unit - pipeline, name=scenario.name,
                         notes={"pipeline_constant": pipeline, "per_unit_constant": per_unit,
                                "windows_days": (Ls + 1, Lw, Lp)})


def solve_scenario(scenario, levels=None, tail_mass: float = TAIL_MASS) -> dict:
    """Optimal (or, with ``levels`` = (store, warehouse echelon, supplier echelon), the given)
    echelon base-stock levels of a Clark–Scarf scenario and the twin's long-run cost per day."""
    problem = problem_from_scenario(scenario, tail_mass)
    sol = chen_zheng(problem, levels)
    return {"store_S": float(sol.levels[0]), "warehouse_S": float(sol.levels[1]), "supplier_S": float(sol.levels[2]),
            "cost_per_day": sol.cost, "recursion_cost": sol.recursion_cost,
            "pipeline_constant": problem.notes["pipeline_constant"],
            "per_unit_constant": problem.notes["per_unit_constant"], "optimal": sol.optimal,
            "seconds": sol.seconds}


def echelon_policy(scenario, solution: dict):
    """The solution's levels as the project's ``echelon_base_stock`` :class:`ChainPolicy`."""
    from hmarl_rllib.policies.heuristics import ChainPolicy

    return ChainPolicy(kind="echelon_base_stock", store_S=np.array([[solution["store_S"]]]),
                       warehouse_S=np.array([solution["warehouse_S"]]),
                       supplier_S=np.array([solution["supplier_S"]]), meta={"source": "Chen–Zheng recursion"})
