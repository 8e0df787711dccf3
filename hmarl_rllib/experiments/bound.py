"""Perfect-information lower bound on the chain cost of one demand trace.

For each trace (seed) a mixed-integer linear program that knows the whole demand path (and
any random delays) chooses every shipment, allocation and production quantity subject to the
twin's lead times, capacities and shortage rule, minimising the same cost as the twin: holding
[h] on end-of-day stock, stockout penalty [p] per unit of a day's demand not served that day,
backorder cost [b] per unit-day of backlog, fixed [K] and per-unit [c] ordering costs (the
twin charges K on every positive order placed, even one it then cancels; the program only on
shipments, which is never more). The fixed costs use binary order indicators (``x ≤ M·z``, M
from :func:`_big_m`). Solved with HiGHS through
:func:`scipy.optimize.milp`; when the time limit stops the search, HiGHS's *dual bound* is
returned, which is still a valid lower bound.

Why it is a bound: any trajectory of the twin under any policy is a feasible point of this
program with the same (or a higher) cost: the program may ship and allocate freely, so no
policy can beat it on the same trace.

Variables per day t, store i, SKU k: ``xs`` shipment warehouse→store, ``Is`` store stock,
``sn`` sales to the day's demand, ``sb``/``Bk`` backlog sales and backlog (backorder mode);
per day and SKU: ``y`` supplier→warehouse shipment, ``Iw`` warehouse stock, ``pr`` production,
``Ip`` supplier stock; ``z*`` binaries for fixed ordering costs.

**A sales penalty tightens it** (``sales_penalty`` = f in [0, 1), lost-sales mode): an
information relaxation (Brown, Smith & Sun 2010). The program knows the future, so it stocks each
store with exactly the day's demand. Adding to the cost, on every store-day and SKU,

    c·(sales − E[min(y, D)]),   c = f·p,

where y is the stock once the day's shipments arrived and D the day's demand, charges it for that
knowledge. Under any policy y is fixed before D is drawn and the day's demand is independent of
everything before it, so sales = min(y, D) and the term has mean zero: the expected penalized
cost of every policy is its expected cost, and the program's mean over traces is still a lower
bound on the optimal expected cost. On one trace it can exceed a policy's cost; only the mean is
a bound. E[min(y, D)] = mean − E[(D − y)+] comes from the day's demand distribution
(:class:`~hmarl_rllib.sim.demand.ShortfallTables`, truncated at a tail mass of 1e-9); it is concave
in y, so −c·E[min(y, D)] enters through tangent lines at whole units (a subset of them: the
penalty is underestimated between them, which keeps the bound valid). f < 1: at f ≥ 1 selling
would cost the program nothing and it could hold stock it never sells.
"""
from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from hmarl_rllib.errors import InputError
from hmarl_rllib.sim import SupplyChainTwin


@contextlib.contextmanager
def _native_stdout_silenced():
    """HiGHS's C++ code prints debug lines straight to file descriptor 1, which would break
    ``--json`` output: point fd 1 at /dev/null while it runs."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class _Vars:
    def __init__(self):
        self.n = 0
        self.lb, self.ub, self.cost, self.integer = [], [], [], []

    def add(self, shape, lb=0.0, ub=np.inf, cost=0.0, integer=False):
        size = int(np.prod(shape))
        idx = np.arange(self.n, self.n + size).reshape(shape)
        self.n += size
        self.lb.append(np.broadcast_to(lb, shape).reshape(-1).astype(float))
        self.ub.append(np.broadcast_to(ub, shape).reshape(-1).astype(float))
        self.cost.append(np.broadcast_to(cost, shape).reshape(-1).astype(float))
        self.integer.append(np.full(size, 1 if integer else 0))
        return idx


class _Rows:
    def __init__(self):
        self.r, self.c, self.v, self.lo, self.hi = [], [], [], [], []
        self.m = 0

    def add(self, terms, lo, hi, shape=None):
        """``terms``: list of (coef, index array of shape S + extra); one row per element of S
        (S defaults to the first term's shape); extra trailing axes are summed in the row."""
        shape = np.shape(terms[0][1]) if shape is None else shape
        rows = np.arange(self.m, self.m + int(np.prod(shape))).reshape(shape)
        for coef, idx in terms:
            idx = np.asarray(idx)
            r = np.broadcast_to(rows.reshape(rows.shape + (1,) * (idx.ndim - rows.ndim)), idx.shape)
            self.r.append(r.reshape(-1))
            self.c.append(idx.reshape(-1))
            self.v.append(np.broadcast_to(coef, idx.shape).reshape(-1).astype(float))
        self.lo.append(np.broadcast_to(lo, shape).reshape(-1).astype(float))
        self.hi.append(np.broadcast_to(hi, shape).reshape(-1).astype(float))
        self.m += int(np.prod(shape))


def _arrivals(send_day_arrival: np.ndarray, T: int):
    """For each arrival day t < T: the list of send days whose shipment arrives on t."""
    out = [[] for _ in range(T)]
    for tau, a in enumerate(send_day_arrival):
        if a < T:
            out[int(a)].append(tau)
    return out


def _big_m(twin: SupplyChainTwin, d: np.ndarray, arr_s: np.ndarray, scored: np.ndarray,
           kept: int = 0) -> dict[str, np.ndarray]:
    """Upper bounds on each shipment (``s``: warehouse→store, (T, N, K); ``w``: supplier→
    warehouse and ``p``: production, (T, K)) that some optimal plan of the program respects,
    for the indicator constraints ``x ≤ M·z``. Too small an M cuts optimal plans off and the
    "bound" can exceed the optimum; too large an M only weakens the LP relaxation.

    Each M is the smaller of two bounds:

    - *What an optimal plan can need.* Split a plan's flow into unit paths from a source (initial
      stock, production) to a sink (a sale, or stock left on hand or in transit at the end). A
      path from production that is never sold can be removed: every cost is non-negative and
      every shipment only shrinks, so the plan stays feasible and costs no more. So some
      optimal plan carries on each shipment only (a) units sold at the receiving stores on or
      after the shipment's day: in ``lost_sales`` mode at most the demand still to come, in
      ``backorder`` mode also the backlog carried from earlier days, so at most the trace's
      whole demand; plus (b) initial stock from upstream that is never sold (it may still be
      moved, e.g. into the pipeline, which carries no holding cost): at most the warehouse's
      and the supplier's initial stock for a store shipment, the supplier's for a warehouse
      shipment, none for production. Such a unit only leaves the warehouse on a day when
      moving it can pay: if the per-unit cost plus the store's holding from the arrival day on
      is at least the warehouse's holding from the shipping day on (and the warehouse has no
      capacity that keeping it would break), the unit may as well stay, so that shipment
      needs no room for it. Near the end it can pay (the pipeline carries no holding cost).
    - *What is physically possible,* for any plan: a node's capacity (its inventory position
      includes the order), the production capacity, and the units that can have reached the
      shipping node by that day (initial stock upstream + production completed and carried
      down at the fixed lead times; random delays only make them later).

    ``kept``: with the sales penalty, stock at a store can pay for itself (it lowers the store's
    penalty term) while it never sells. Then some optimal plan keeps at most ``kept`` never-sold
    units at each store, ``kept`` = the length of the longest demand table: the term is flat once
    the stock reaches it, and never-sold units stay at the store, so of more than ``kept`` of them
    the last to arrive can be removed (only holding and shipments shrink). Each shipment gets room
    for them (a store shipment for its store's, the others for all stores'), and initial stock
    upstream may move on any day.
    """
    T = d.shape[0]
    t = np.arange(T, dtype=float)
    if twin.lost_sales:
        sold_s = np.cumsum(d[::-1], axis=0)[::-1]  # demand from day t on
    else:
        sold_s = np.broadcast_to(d.sum(axis=0), d.shape)  # backlog + demand to come <= all demand
    sold_w = sold_s.sum(axis=1)  # (T, K): sales at any store from day t on
    left = np.cumsum(scored[::-1])[::-1]  # scored days from day t to the end
    left = np.append(left, 0.0)
    stay = twin.h[1] * left[:T, None, None]  # (T, 1, K): keeping a unit at the warehouse
    go = (twin.c[0] * scored[:, None, None] + twin.h[0] * left[np.minimum(arr_s, T)][:, :, None])  # (T, N, K)
    may_move = (go < stay) | (not np.isinf(twin.wh_cap))
    m_s = sold_s + np.where(may_move, twin.init_wh + twin.init_sup, 0.0)
    m_w = sold_w + twin.init_sup
    m_p = np.minimum(sold_w, twin.prod_cap)
    if kept:
        n_stores = d.shape[1]
        m_s = sold_s + twin.init_wh + twin.init_sup + kept
        m_w = m_w + n_stores * kept
        m_p = np.minimum(sold_w + n_stores * kept, twin.prod_cap)
    produced = twin.prod_cap * np.maximum(0.0, t - twin.lt_prod + 1)  # completed by day t
    produced_w = twin.prod_cap * np.maximum(0.0, t - twin.lt_prod - twin.lt_wh + 1)  # and at the warehouse
    m_w = np.minimum(m_w, (twin.init_sup + produced[:, None]))
    m_s = np.minimum(m_s, (twin.init_wh + twin.init_sup + produced_w[:, None])[:, None, :])
    cap_s = np.broadcast_to(twin.store_cap[None, :, :], m_s.shape).copy()  # (T, N, 1) → (T, N, K)
    cap_s[0] = cap_s[0] - twin.init_store
    m_s = np.minimum(m_s, np.maximum(cap_s, 0.0))
    if np.isfinite(twin.wh_cap):
        cap_w = np.full(m_w.shape, twin.wh_cap)
        cap_w[0] -= twin.init_wh
        m_w = np.minimum(m_w, np.maximum(cap_w, 0.0))
    return {"s": m_s + 1.0, "w": m_w + 1.0, "p": m_p + 1.0}


def sales_penalty_refusal(scenario, sales_penalty: float) -> str | None:
    """Why ``sales_penalty`` cannot be used on ``scenario`` (one line naming the fix), or None."""
    from hmarl_rllib.sim.demand import distribution_obstacle

    if not sales_penalty:
        return None
    if not 0.0 < sales_penalty < 1.0:
        return f"--bound-penalty {sales_penalty:g}: use a fraction of the stockout penalty in [0, 1) (0: no penalty)"
    if scenario.shortage != "lost_sales":
        return "--bound-penalty: needs shortage: lost_sales (a backlog carries demand over days); use --bound-penalty 0"
    why = distribution_obstacle(scenario)
    if why:
        return f"--bound-penalty: {why}; use --bound-penalty 0"
    return None


def sales_penalty_of(twin: SupplyChainTwin, sales_penalty: float, tables=None) -> np.ndarray:
    """The sales penalty (module doc) of a recorded twin's trajectories, summed over the scored
    days, stores and SKUs: shape (B,). Its mean is zero under any policy; the benchmark subtracts
    it, trace by trace, from the penalized programs' values as a control variate (same mean, a
    much narrower CI: the program's penalty and a good rule's move together)."""
    from hmarl_rllib.sim.demand import ShortfallTables
    from hmarl_rllib.sim.network import F
    from hmarl_rllib.sim.reconciliation import expected_shortfall

    if tables is None:
        tables = ShortfallTables(twin.scenario, twin.days_total)
    c = sales_penalty * np.asarray(twin.p, dtype=float).reshape(-1)  # (K,)
    N = twin.n_stores
    out = np.zeros(twin.ledger.shape[1])
    for t in range(twin.scenario.warmup_days, twin.days_total):
        G, mu = tables(t)  # (N, K, Z), (N, K)
        s = twin.ledger[t, :, :N]  # (B, N, K, F)
        sales = s[..., F["sales"]]
        y = s[..., F["on_hand"]] + sales  # the stock before the day's demand
        expected_sales = mu[None] - expected_shortfall(G, y)  # E[min(y, D)] = E[D] − E[(D − y)+]
        out += ((sales - expected_sales) * c[None, None, :]).sum(axis=(1, 2))
    return out


def _add_sales_penalty(V: _Vars, R: _Rows, Is, sn, c, tables, T, scored):
    """c·(sn − E[min(y, D)]) with y = Is + sn on every scored store-day: the +c on the sales is
    in their cost (:func:`trace_bound`); here u ≥ −c·(tangent of E[min(y, D)] at whole units z) for a subset of z (see the module doc)."""
    # u carries the term where it is charged (scored days, c > 0); elsewhere it is free at no cost
    u = V.add(Is.shape, lb=-np.inf, cost=scored[:, None, None] * (c > 0)[None, None, :])
    for t in np.flatnonzero(scored):
        G, mu = tables(int(t))  # (N, K, Z), (N, K)
        N, K, Z = G.shape
        for i in range(N):
            for k in range(K):
                g = mu[i, k] - G[i, k]  # E[min(z, D)], z = 0..Z-1 (flat past the table)
                slope = np.append(np.diff(g), 0.0)
                sd = np.sqrt(max(mu[i, k], 1.0))
                near = np.arange(max(0, int(mu[i, k] - 4 * sd)), min(Z, int(mu[i, k] + 5 * sd) + 1), 2)
                zs = np.unique(np.concatenate([[0, Z - 1], near]))
                if c[k] == 0:
                    continue
                # u + c·s_z·(Is + sn) >= −c·(g_z − s_z·z)
                for z in zs:
                    R.add([(1.0, u[t, i, k]), (c[k] * slope[z], Is[t, i, k]), (c[k] * slope[z], sn[t, i, k])],
                          -c[k] * (g[z] - slope[z] * z), np.inf, shape=())


PLAN_COSTS = ("store_holding", "store_shortage", "store_ordering", "warehouse_holding", "warehouse_ordering",
              "supplier_holding", "supplier_production")  # the parts of a plan's cost (trace_bound's plan)


def trace_bound(twin: SupplyChainTwin, r: int, time_limit: float = 20.0, mip: bool = True,
                mip_gap: float = 1e-4, with_status: bool = False, sales_penalty: float = 0.0,
                tables=None, plan: dict | None = None):
    """Lower bound on the scored chain cost of replica ``r`` of a reset twin; with
    ``with_status`` also whether the program was solved to optimality (else the value is
    HiGHS's dual bound at the time limit: valid, but looser). With ``sales_penalty`` (a
    fraction f of the stockout penalty, see the module doc) the value is one trace's penalized
    program: a lower bound only in the mean over traces. ``tables``: the scenario's
    :class:`~hmarl_rllib.sim.demand.ShortfallTables` (built when None). ``plan``: a dict that
    receives the best plan's own scored costs by :data:`PLAN_COSTS` (holding, shortage: lost
    sales or backlog, ordering: fixed + per unit), without any penalty; NaN when HiGHS stopped
    before it had a plan. Without the penalty and solved to optimality they add up to the bound
    (to HiGHS's gap)."""
    sc = twin.scenario
    T, N, K, W = twin.days_total, twin.n_stores, twin.n_skus, sc.warmup_days
    d = twin.demand[r]  # (T, N, K)
    scored = (np.arange(T) >= W).astype(float)
    s3, s2 = scored[:, None, None], scored[:, None]
    lost = twin.lost_sales
    if sales_penalty:
        why = sales_penalty_refusal(sc, sales_penalty)
        if why:
            raise InputError(why)
        if tables is None:
            from hmarl_rllib.sim.demand import ShortfallTables

            tables = ShortfallTables(sc, T)
    c_pen = sales_penalty * np.asarray(twin.p, dtype=float).reshape(-1)  # (K,)
    V = _Vars()
    h, Kf, c = twin.h, twin.K, twin.c
    xs = V.add((T, N, K), cost=s3 * c[0])
    Is = V.add((T, N, K), cost=s3 * h[0])
    sn = V.add((T, N, K), ub=d, cost=s3 * (c_pen - twin.p))  # p·(d − sn) = const − p·sn; + c·sn
    y = V.add((T, K), cost=s2 * c[1])
    Iw = V.add((T, K), cost=s2 * h[1])
    pr = V.add((T, K), cost=s2 * c[2])
    Ip = V.add((T, K), cost=s2 * h[2])
    if not lost:
        sb = V.add((T, N, K))
        Bk = V.add((T, N, K), cost=s3 * twin.b)
    z = {}
    for name, x, kf in (("s", xs, Kf[0]), ("w", y, Kf[1]), ("p", pr, Kf[2])):
        if np.any(kf > 0):
            cost = (s3 if x.ndim == 3 else s2) * kf
            z[name] = (x, V.add(x.shape, ub=1.0, cost=cost, integer=mip))
    R = _Rows()
    if sales_penalty:
        _add_sales_penalty(V, R, Is, sn, c_pen, tables, T, scored)
    # store stock balance: Is[t] - Is[t-1] - arrivals + sales = init·[t=0]
    arr_s = (np.arange(T)[:, None] + twin.lt_store[None, :] + twin.extra_store[r])  # (T, N) arrival day
    for i in range(N):
        arrivals = _arrivals(arr_s[:, i], T)
        for t in range(T):
            terms = [(1.0, Is[t, i]), (1.0, sn[t, i])]
            if t > 0:
                terms.append((-1.0, Is[t - 1, i]))
            for tau in arrivals[t]:
                terms.append((-1.0, xs[tau, i]))
            if not lost:
                terms.append((1.0, sb[t, i]))
            rhs = twin.init_store[i] if t == 0 else 0.0
            R.add([(cf, ix) for cf, ix in terms], rhs, rhs)
        if not lost:  # backlog: Bk[t] - Bk[t-1] + sb + sn = d ;  sb[t] <= Bk[t-1]
            R.add([(1.0, Bk[0, i]), (1.0, sb[0, i]), (1.0, sn[0, i])], d[0, i], d[0, i])
            R.add([(1.0, Bk[1:, i]), (-1.0, Bk[:-1, i]), (1.0, sb[1:, i]), (1.0, sn[1:, i])], d[1:, i], d[1:, i])
            R.add([(1.0, sb[0, i])], 0.0, 0.0)
            R.add([(1.0, sb[1:, i]), (-1.0, Bk[:-1, i])], -np.inf, 0.0)
        cap = twin.store_cap[i, 0]
        if np.isfinite(cap):  # position before today's receipts + today's order <= cap
            for t in range(T):
                terms = [(1.0, xs[t, i])]
                if t > 0:
                    terms.append((1.0, Is[t - 1, i]))
                    for tau in range(t):
                        if arr_s[tau, i] > t - 1:
                            terms.append((1.0, xs[tau, i]))
                R.add(terms, -np.inf, cap - (twin.init_store[i] if t == 0 else 0.0))
    # warehouse balance: Iw[t] - Iw[t-1] - arrivals + sum_i xs[t,i] = init·[t=0]
    arr_w = np.arange(T) + twin.lt_wh + twin.extra_wh[r]
    arrivals = _arrivals(arr_w, T)
    for t in range(T):
        terms = [(1.0, Iw[t])] + [(1.0, xs[t, i]) for i in range(N)]
        if t > 0:
            terms.append((-1.0, Iw[t - 1]))
        terms += [(-1.0, y[tau]) for tau in arrivals[t]]
        rhs = twin.init_wh if t == 0 else np.zeros(K)
        R.add(terms, rhs, rhs)
        if np.isfinite(twin.wh_cap):
            terms = [(1.0, y[t])]
            if t > 0:
                terms.append((1.0, Iw[t - 1]))
                terms += [(1.0, y[tau]) for tau in range(t) if arr_w[tau] > t - 1]
            R.add(terms, -np.inf, twin.wh_cap - (twin.init_wh if t == 0 else 0.0))
    # supplier balance: Ip[t] - Ip[t-1] - pr[t-Lp] + y[t] = init·[t=0];  sum_k pr[t] <= cap
    Lp = twin.lt_prod
    for t in range(T):
        terms = [(1.0, Ip[t]), (1.0, y[t])]
        if t > 0:
            terms.append((-1.0, Ip[t - 1]))
        if t - Lp >= 0:
            terms.append((-1.0, pr[t - Lp]))
        rhs = twin.init_sup if t == 0 else np.zeros(K)
        R.add(terms, rhs, rhs)
    R.add([(1.0, pr)], -np.inf, twin.prod_cap, shape=(T,))
    M = _big_m(twin, d, arr_s, scored, kept=max(tables(int(t))[0].shape[-1] for t in range(T)) if sales_penalty else 0)
    for name, (x, zz) in z.items():
        R.add([(1.0, x), (-M[name], zz)], -np.inf, 0.0)
    A = sparse.csr_matrix((np.concatenate(R.v), (np.concatenate(R.r), np.concatenate(R.c))), shape=(R.m, V.n))
    with _native_stdout_silenced():
        res = milp(np.concatenate(V.cost), constraints=LinearConstraint(A, np.concatenate(R.lo), np.concatenate(R.hi)),
                   integrality=np.concatenate(V.integer), bounds=Bounds(np.concatenate(V.lb), np.concatenate(V.ub)),
                   options={"time_limit": time_limit, "mip_rel_gap": mip_gap, "disp": False})
    const = float((twin.p * d * s3).sum())
    if plan is not None:
        plan.update(dict.fromkeys(PLAN_COSTS, float("nan")))
        if res.x is not None:
            x, cost = res.x, np.concatenate(V.cost)

            def part(*blocks):
                return float(sum((cost[ix] * x[ix]).sum() for ix in blocks))

            fixed = {name: zz for name, (_, zz) in z.items()}
            plan.update(store_holding=part(Is), warehouse_holding=part(Iw), supplier_holding=part(Ip),
                        store_shortage=const - float((twin.p * s3 * x[sn]).sum()) + (0.0 if lost else part(Bk)),
                        store_ordering=part(xs, *([fixed["s"]] if "s" in fixed else [])),
                        warehouse_ordering=part(y, *([fixed["w"]] if "w" in fixed else [])),
                        supplier_production=part(pr, *([fixed["p"]] if "p" in fixed else [])))
    if res.x is None and getattr(res, "mip_dual_bound", None) is None:
        raise RuntimeError(f"perfect-information program failed: {res.message}")
    value = getattr(res, "mip_dual_bound", None) if mip else None
    if value is None or not np.isfinite(value):
        value = res.fun
    bound = float(value) + const
    return (bound, res.status == 0) if with_status else bound


def perfect_information_bound(scenario, seeds, time_limit: float = 20.0, mip: bool = True,
                              progress=None, with_status: bool = False, sales_penalty: float = 0.0,
                              plans: list | None = None):
    """Lower bound on the chain cost for each seed's trace, shape (B,); with ``with_status``
    also a boolean array: solved to optimality (True) or stopped at the time limit. With
    ``sales_penalty`` (module doc) each value is a penalized program's: only their mean is a bound.
    ``plans``: a list that receives each trace's plan costs (:func:`trace_bound`'s ``plan``)."""
    why = sales_penalty_refusal(scenario, sales_penalty)
    if why:
        raise InputError(why)
    twin = SupplyChainTwin(scenario, record=False)
    twin.reset(seeds)
    tables = None
    if sales_penalty:
        from hmarl_rllib.sim.demand import ShortfallTables

        tables = ShortfallTables(scenario, twin.days_total)
    out, optimal = np.empty(len(twin.seeds)), np.zeros(len(twin.seeds), dtype=bool)
    for r in range(len(out)):
        plan = None if plans is None else {}
        out[r], optimal[r] = trace_bound(twin, r, time_limit=time_limit, mip=mip, with_status=True,
                                         sales_penalty=sales_penalty, tables=tables, plan=plan)
        if plans is not None:
            plans.append(plan)
        if progress and (r + 1) % 10 == 0:
            progress(f"bound: {r + 1}/{len(out)} traces")
    return (out, optimal) if with_status else out
