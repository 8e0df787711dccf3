"""The digital twin: supplier → warehouse → N stores, K SKUs, B independent replicas at once.

Daily timing convention (one call to :meth:`SupplyChainTwin.step` is one day ``t``)
---------------------------------------------------------------------------------
1. **Orders are placed** (the decisions taken on the state at the end of day ``t − 1``):
   each store orders from the warehouse, the warehouse orders from the supplier, the supplier
   starts production. Orders are rounded to whole units, floored at 0, and clipped so that the
   ordering node's inventory position (on hand + in transit, + what its supplier still owes it
   with ``internal_shortage: backorder``) never exceeds its capacity;
   production is clipped to ``production_capacity`` (units/day over all SKUs, shared
   proportionally). Fixed ordering cost [K] is charged for every positive order *as placed*
   (after the rounding and the capacity clip), whether or not it is then filled: K per order
   placed, the standard convention, so an order cancelled in step 3 or 4 still pays its K.
   With ``internal_shortage: backorder`` an order joins what the node already waits for (its
   internal backlog upstream), and only its new units count as ``order_placed``.
2. **Supplier produces**: production started today enters the production line (lead time
   ``supplier.lead_time`` [L_p]); production due today completes into the supplier's stock.
3. **Supplier ships** ``min(order, on hand)`` to the warehouse (transit ``warehouse.lead_time``
   [L_w]); the unfilled part of the warehouse's order is cancelled (counted as ``unmet`` on
   the supplier's row) or, with ``internal_shortage: backorder``, waits (see below).
4. **Warehouse receives** shipments due today, then **allocates** to the store orders: all of
   them if it can; otherwise ``proportional`` (largest remainder) or ``priority`` (in the order
   the stores are listed). Unfilled store orders are cancelled (counted as ``unmet`` on the
   warehouse's row) or wait. Shipments travel ``stores[i].lead_time`` [L_i] days.
5. **Stores receive** shipments due today (a lead time of 0 arrives the same day).
6. **Demand is served** from on-hand stock (``backorder`` mode: the backlog first). Unserved
   demand is lost (``lost_sales``) or joins the backlog (``backorder``).
7. **Costs are charged** on the end-of-day state: holding [h] per unit on hand at each echelon
   (stock in transit or in production carries no holding cost: the pipeline is free, the
   standard convention); stockout penalty [p] per unit of today's demand not served today;
   backorder cost [b] per unit in the backlog; per-unit ordering cost [c] on the units
   delivered into the pipeline (production for the supplier), so a cancelled part pays no [c].

Random lead times (optional) delay a shipment by 1..``max_extra_days`` extra days.

Internal shortages (``internal_shortage``)
------------------------------------------
``cancel`` (the default): the unfilled part of an internal order is dropped, as above.
``backorder``: it waits in an **internal backlog**, one per store at the warehouse
(:attr:`SupplyChainTwin.store_owed`, (B, N, K)) and one of the warehouse at the supplier
(:attr:`SupplyChainTwin.wh_owed`, (B, K)). Each day the node's request is its backlog plus
today's order, so the backlog ships first, as soon as stock allows (FIFO within a node); when
the warehouse cannot serve every store, the stores' requests (backlog + new order) are shared
by the scenario's ``allocation`` rule, exactly as new orders are (``proportional`` or
``priority``). Nothing is ever lost between echelons. Ledger: the warehouse's row has
``backorders`` = its backlog owed to the stores (summed over stores), ``demand`` = today's new
store orders, ``shipped`` = all units sent (backlog first), ``unmet`` = the part of today's
orders not shipped today (so ``backorders[t] = backorders[t−1] + demand − shipped``); the
supplier's row likewise for the warehouse's backlog. ``in_transit`` stays physical stock on
the way. The inventory positions count the backlog: a store's position adds what the warehouse
owes it (its order is outstanding), the warehouse's adds what the supplier owes it and
subtracts what it owes the stores, the supplier's subtracts what it owes the warehouse (see
:meth:`SupplyChainTwin.store_position`). A serial supplier → warehouse → one store chain in
this mode, with ``shortage: backorder``, is the Clark–Scarf (1960) model
(:mod:`hmarl_rllib.policies.serial`).

Each day writes a ledger row per replica, node and SKU (:data:`FIELDS`). Nodes are numbered
``0..N−1`` for the stores, ``N`` for the warehouse and ``N+1`` for the supplier. Conservation
holds at every node every day: ``on_hand[t−1] + received = on_hand[t] + shipped`` (for a store
``shipped`` = sales to customers) and for every pipeline ``in_transit[t−1] + inflow = in_transit[t]
+ received``; demand = served-today + unmet (internal backorders: and every backlog
``backorders[t−1] + demand = backorders[t] + shipped``). ``lost_sales`` counts customers' lost sales only:
it equals the stores' ``unmet`` in ``lost_sales`` mode and is 0 in ``backorder`` mode and on the
warehouse's and the supplier's rows, whose cancelled internal orders are their ``unmet``.

numpy only: no RL imports. The step is vectorised over replicas, stores and SKUs.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from hmarl_rllib.sim.demand import DemandSampler

FIELDS = ("on_hand", "in_transit", "backorders", "demand", "sales", "lost_sales", "unmet",
          "order_placed", "shipped", "received", "holding_cost", "stockout_cost", "ordering_cost")
F = {name: i for i, name in enumerate(FIELDS)}
_COL = SimpleNamespace(**F)  # the same indices as attributes: ``row[..., _COL.on_hand]``
COST_FIELDS = ("holding_cost", "stockout_cost", "ordering_cost")


class SupplyChainTwin:
    """Batched simulation of the network described by a :class:`~hmarl_rllib.sim.config.Scenario`.

    Parameters
    ----------
    scenario : Scenario
    record : bool
        Keep every day's ledger rows (needed for :meth:`ledger_frame` and reconciliation).
        Turn off for benchmarks on very large batches.
    """

    def __init__(self, scenario, record: bool = True):
        self.scenario = scenario
        self.record = record
        stores = scenario.store_list
        self.n_stores, self.n_skus = len(stores), len(scenario.skus)
        self.days_total = scenario.warmup_days + scenario.episode_length
        self.lost_sales = scenario.shortage == "lost_sales"
        self.priority = scenario.warehouse.allocation == "priority"
        self.internal_backorder = scenario.internal_shortage == "backorder"
        rl = scenario.random_lead_times
        self.extra_max = rl.max_extra_days if rl.enabled else 0
        self.lt_store = np.array([s.lead_time for s in stores], dtype=np.int64)  # [L_i]
        self.lt_wh = scenario.warehouse.lead_time  # [L_w]
        self.lt_prod = scenario.supplier.lead_time  # [L_p]
        self.P_s = int(self.lt_store.max()) + self.extra_max + 1
        self.P_w = self.lt_wh + self.extra_max + 1
        self.P_p = self.lt_prod + 1
        inf = np.inf
        self.store_cap = np.array([s.capacity or inf for s in stores], dtype=float)[:, None]
        self._store_cap_any = bool(np.isfinite(self.store_cap).any())
        self._uniform_lt = self.extra_max == 0 and bool((self.lt_store == self.lt_store[0]).all())
        self.wh_cap = float(scenario.warehouse.capacity or inf)
        self.prod_cap = float(scenario.supplier.production_capacity)
        skus = scenario.skus
        self.h = np.array([[s.holding_cost.store for s in skus], [s.holding_cost.warehouse for s in skus],
                           [s.holding_cost.supplier for s in skus]])  # (3, K)  [h]
        self.K = np.array([[s.ordering_cost.store.fixed for s in skus],
                           [s.ordering_cost.warehouse.fixed for s in skus],
                           [s.ordering_cost.supplier.fixed for s in skus]])  # [K]
        self.c = np.array([[s.ordering_cost.store.per_unit for s in skus],
                           [s.ordering_cost.warehouse.per_unit for s in skus],
                           [s.ordering_cost.supplier.per_unit for s in skus]])  # [c]
        self.p = np.array([s.stockout_penalty for s in skus])  # [p]
        self.b = np.array([s.backorder_cost for s in skus])  # [b]
        self.init_store = np.array([[scenario.per_sku(st.initial_inventory, k) for k in range(self.n_skus)]
                                    for st in stores], dtype=float)
        self.init_wh = np.array([scenario.per_sku(scenario.warehouse.initial_inventory, k)
                                 for k in range(self.n_skus)], dtype=float)
        self.init_sup = np.array([scenario.per_sku(scenario.supplier.initial_inventory, k)
                                  for k in range(self.n_skus)], dtype=float)
        self.batch = 0
        self.day = 0
        self._demand = DemandSampler(scenario, self.days_total)

    # ------------------------------------------------------------------------------ reset
    def reset(self, seeds) -> None:
        """Start one replica per seed. The seed alone fixes the replica's demand and delays."""
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        B, N, K, T = len(seeds), self.n_stores, self.n_skus, self.days_total
        self.seeds, self.batch, self.day = seeds, B, 0
        self.demand = self._demand.sample(seeds)  # (B, T, N, K)
        self.extra_store = np.zeros((B, T, N), dtype=np.int64)
        self.extra_wh = np.zeros((B, T), dtype=np.int64)
        if self.extra_max:
            rl = self.scenario.random_lead_times
            for r, seed in enumerate(seeds):
                rng = np.random.default_rng([int(seed), 2])
                late = rng.random((T, N + 1)) < rl.probability
                extra = np.where(late, rng.integers(1, self.extra_max + 1, (T, N + 1)), 0)
                self.extra_store[r], self.extra_wh[r] = extra[:, :N], extra[:, N]
        self.on_hand = np.broadcast_to(self.init_store, (B, N, K)).copy()
        self.backorders = np.zeros((B, N, K))
        self.in_transit = np.zeros((B, N, K))
        self.store_pipe = np.zeros((B, N, K, self.P_s))
        self.wh_on_hand = np.broadcast_to(self.init_wh, (B, K)).copy()
        self.wh_in_transit = np.zeros((B, K))
        self.wh_pipe = np.zeros((B, K, self.P_w))
        self.sup_on_hand = np.broadcast_to(self.init_sup, (B, K)).copy()
        self.sup_in_production = np.zeros((B, K))
        self.prod_pipe = np.zeros((B, K, self.P_p))
        self.store_owed = np.zeros((B, N, K))  # each store's backlog at the warehouse (internal backorders)
        self.wh_owed = np.zeros((B, K))  # the warehouse's backlog at the supplier (internal backorders)
        self._bI = np.arange(B)[:, None, None]
        self._nI = np.arange(N)[None, :, None]
        self._kI = np.arange(K)[None, None, :]
        self.ledger = np.zeros((T, B, N + 2, K, len(FIELDS))) if self.record else None
        # yesterday's orders as placed (stores, warehouse, production), kept with or without a ledger
        self.last_placed = np.zeros((B, N + 2, K))

    # the replicas' state: every array reset() starts and step() moves, one row per replica
    _STATE = ("seeds", "demand", "extra_store", "extra_wh", "on_hand", "backorders", "in_transit", "store_pipe",
              "wh_on_hand", "wh_in_transit", "wh_pipe", "sup_on_hand", "sup_in_production", "prod_pipe",
              "store_owed", "wh_owed", "last_placed")

    def take(self, rows) -> "SupplyChainTwin":
        """A new twin (no ledger) whose replicas are copies of this twin's replicas ``rows``
        (indices, repeats allowed) on the same day, in the same state, with the same demand and
        delays: stepping it with the same orders gives the same rows as stepping those replicas.
        A planner branches many simulated futures from the states it has reached this way,
        without replaying the days before."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        twin = SupplyChainTwin.__new__(SupplyChainTwin)
        twin.__dict__.update({k: v for k, v in self.__dict__.items() if k not in self._STATE})
        for k in self._STATE:
            setattr(twin, k, getattr(self, k)[rows].copy())
        B = twin.batch = len(rows)
        twin.record, twin.ledger = False, None
        twin._bI = np.arange(B)[:, None, None]
        return twin

    # ------------------------------------------------------------------------------- state
    @property
    def done(self) -> bool:
        return self.day >= self.days_total

    def store_position(self) -> np.ndarray:
        """Store inventory position: on hand + in transit − backorders (+ what the warehouse
        still owes it, with internal backorders), (B, N, K)."""
        pos = self.on_hand + self.in_transit - self.backorders
        return pos + self.store_owed if self.internal_backorder else pos

    def warehouse_position(self) -> np.ndarray:
        """Warehouse inventory position: on hand + in transit from the supplier (with internal
        backorders: + what the supplier still owes it − what it owes the stores), (B, K)."""
        pos = self.wh_on_hand + self.wh_in_transit
        return pos + self.wh_owed - self.store_owed.sum(axis=1) if self.internal_backorder else pos

    def supplier_position(self) -> np.ndarray:
        """Supplier inventory position: finished stock + production in progress (with internal
        backorders: − what it owes the warehouse), (B, K)."""
        pos = self.sup_on_hand + self.sup_in_production
        return pos - self.wh_owed if self.internal_backorder else pos

    def store_pipeline(self) -> np.ndarray:
        """Units arriving at each store in 1, 2, … P_s−1 days, (B, N, K, P_s−1).

        "In 1 day" is the next :meth:`step` (day ``self.day``); the slots sum to ``in_transit``.
        """
        return _upcoming(self.store_pipe, self.P_s, self.day)

    def warehouse_pipeline(self) -> np.ndarray:
        """Units arriving at the warehouse in 1, 2, … P_w−1 days, (B, K, P_w−1)."""
        return _upcoming(self.wh_pipe, self.P_w, self.day)

    def production_pipeline(self) -> np.ndarray:
        """Production completing in 1, 2, … L_p days, (B, K, L_p)."""
        return _upcoming(self.prod_pipe, self.P_p, self.day)

    def demand_history(self, days: int) -> np.ndarray:
        """Demand of the last ``days`` days (zeros before day 0), (B, days, N, K), oldest first."""
        t = self.day
        out = np.zeros((self.batch, days, self.n_stores, self.n_skus))
        lo = max(0, t - days)
        if t > lo:
            out[:, days - (t - lo):] = self.demand[:, lo:t]
        return out

    # -------------------------------------------------------------------------------- step
    def placed_orders(self, store_order, warehouse_order, production):
        """The orders :meth:`step` places for these requests today: whole units, >= 0, cut to
        the room left under each ordering node's capacity and to the supplier's production
        capacity (shared pro rata over SKUs). (B, N, K), (B, K), (B, K)."""
        B, N, K, ib = self.batch, self.n_stores, self.n_skus, self.internal_backorder
        so = _whole(store_order, (B, N, K))
        if self._store_cap_any:
            pos = self.on_hand + self.in_transit
            room = self.store_cap - (pos + self.store_owed if ib else pos)
            so = np.minimum(so, np.maximum(room, 0.0))
        wo = _whole(warehouse_order, (B, K))
        if self.wh_cap != np.inf:
            pos = self.wh_on_hand + self.wh_in_transit
            wo = np.minimum(wo, np.maximum(self.wh_cap - (pos + self.wh_owed if ib else pos), 0.0))
        pr = _whole(production, (B, K))
        total = pr.sum(axis=1, keepdims=True) if K > 1 else pr
        if total.max() > self.prod_cap:
            pr = np.floor(pr * np.minimum(1.0, self.prod_cap / np.maximum(total, 1.0)))
        return so, wo, pr

    def step(self, store_order, warehouse_order, production) -> np.ndarray:
        """Simulate one day. Arguments are orders in units: (B, N, K), (B, K), (B, K).

        Returns the day's ledger rows, shape (B, N+2, K, len(FIELDS)).
        """
        if self.day >= self.days_total:
            raise RuntimeError("episode is over: call reset() first")
        t, B, N, K = self.day, self.batch, self.n_stores, self.n_skus
        ib = self.internal_backorder
        # 1. orders placed: whole units, >= 0, within capacity of the ordering node
        so, wo, pr = self.placed_orders(store_order, warehouse_order, production)
        # 2. supplier produces
        self.prod_pipe[:, :, (t + self.lt_prod) % self.P_p] += pr
        completed = _arrivals(self.prod_pipe, t % self.P_p)
        self.sup_in_production += pr - completed
        sup = self.sup_on_hand + completed
        # 3. supplier ships to the warehouse
        if ib:  # the backlog first: the request is backlog + today's order
            prev_wh_owed = self.wh_owed
            wreq = prev_wh_owed + wo
            sup_ship = np.minimum(wreq, sup)
            self.wh_owed = wreq - sup_ship
        else:
            sup_ship = np.minimum(wo, sup)
        self.sup_on_hand = sup - sup_ship
        if self.extra_max:
            wslot = (t + self.lt_wh + self.extra_wh[:, t]) % self.P_w
            self.wh_pipe[self._bI[:, :, 0], self._kI[:, 0, :], wslot[:, None]] += sup_ship
        else:
            self.wh_pipe[:, :, (t + self.lt_wh) % self.P_w] += sup_ship
        # 4. warehouse receives, then allocates to store orders
        wh_recv = _arrivals(self.wh_pipe, t % self.P_w)
        self.wh_in_transit += sup_ship - wh_recv
        wh = self.wh_on_hand + wh_recv
        requested = so.sum(axis=1)  # (B, K): today's new orders
        req = so
        if ib:  # each store's request: its backlog + today's order, shared by the allocation rule
            prev_owed = self.store_owed
            req = prev_owed + so
        total_req = req.sum(axis=1) if ib else requested
        ship = req
        short = total_req > wh
        if N == 1:  # one store: both rules ship min(request, stock) (the same numbers, faster)
            ship = np.minimum(req, wh[:, None, :])
        elif short.any():
            ship = np.where(short[:, None, :], self._allocate(req, wh), req)
        if ib:
            self.store_owed = req - ship
        shipped_wh = ship.sum(axis=1)
        self.wh_on_hand = wh - shipped_wh
        if self._uniform_lt:
            self.store_pipe[..., (t + int(self.lt_store[0])) % self.P_s] += ship
        else:
            sslot = (t + self.lt_store[None, :] + self.extra_store[:, t]) % self.P_s  # (B, N)
            self.store_pipe[self._bI, self._nI, self._kI, sslot[:, :, None]] += ship
        # 5. stores receive
        recv = _arrivals(self.store_pipe, t % self.P_s)
        self.in_transit += ship - recv
        on_hand = self.on_hand + recv
        # 6. demand is served
        d = self.demand[:, t]
        prev_back = self.backorders
        due = prev_back + d
        sales = np.minimum(on_hand, due)
        self.on_hand = on_hand - sales
        unmet = d - np.maximum(sales - prev_back, 0.0)  # today's demand not served today
        if self.lost_sales:
            lost = unmet
        else:
            lost = np.zeros_like(unmet)
            self.backorders = due - sales
        # 7. costs and ledger rows
        row = self.ledger[t] if self.record else np.zeros((B, N + 2, K, len(FIELDS)))
        s, f = row[:, :N], _COL
        s[..., f.on_hand], s[..., f.in_transit], s[..., f.backorders] = self.on_hand, self.in_transit, self.backorders
        s[..., f.demand], s[..., f.sales], s[..., f.lost_sales], s[..., f.unmet] = d, sales, lost, unmet
        s[..., f.order_placed], s[..., f.shipped], s[..., f.received] = so, sales, recv
        s[..., f.holding_cost] = self.h[0] * self.on_hand
        s[..., f.stockout_cost] = self.p * unmet + self.b * self.backorders
        s[..., f.ordering_cost] = self.K[0] * (so > 0) + self.c[0] * ship
        w = row[:, N]
        if ib:  # today's orders not shipped today (the backlog ships first)
            wh_unmet = requested - np.maximum(ship - prev_owed, 0.0).sum(axis=1)
            w[..., f.backorders] = self.store_owed.sum(axis=1)
        else:
            wh_unmet = requested - shipped_wh
        w[..., f.on_hand], w[..., f.in_transit] = self.wh_on_hand, self.wh_in_transit
        # the upstream rows' lost_sales stay 0 (customers only)
        w[..., f.demand], w[..., f.sales], w[..., f.unmet] = requested, shipped_wh, wh_unmet
        w[..., f.order_placed], w[..., f.shipped], w[..., f.received] = wo, shipped_wh, wh_recv
        w[..., f.holding_cost] = self.h[1] * self.wh_on_hand
        w[..., f.ordering_cost] = self.K[1] * (wo > 0) + self.c[1] * sup_ship
        p = row[:, N + 1]
        if ib:
            sup_unmet = wo - np.maximum(sup_ship - prev_wh_owed, 0.0)
            p[..., f.backorders] = self.wh_owed
        else:
            sup_unmet = wo - sup_ship
        p[..., f.on_hand], p[..., f.in_transit] = self.sup_on_hand, self.sup_in_production
        p[..., f.demand], p[..., f.sales], p[..., f.unmet] = wo, sup_ship, sup_unmet
        p[..., f.order_placed], p[..., f.shipped], p[..., f.received] = pr, sup_ship, completed
        p[..., f.holding_cost] = self.h[2] * self.sup_on_hand
        p[..., f.ordering_cost] = self.K[2] * (pr > 0) + self.c[2] * pr
        self.last_placed = row[..., f.order_placed].copy()
        self.day = t + 1
        return row

    def _allocate(self, requested: np.ndarray, available: np.ndarray) -> np.ndarray:
        """Share ``available`` (B, K) among store orders ``requested`` (B, N, K)."""
        if self.priority:
            before = np.cumsum(requested, axis=1) - requested
            return np.clip(available[:, None, :] - before, 0.0, requested)
        total = np.maximum(requested.sum(axis=1, keepdims=True), 1.0)
        exact = requested * available[:, None, :] / total
        base = np.floor(exact)
        left = np.rint(available - base.sum(axis=1))  # (B, K), < N units
        frac = exact - base
        rank = np.argsort(np.argsort(-frac, axis=1, kind="stable"), axis=1, kind="stable")
        return base + (rank < left[:, None, :])

    # ------------------------------------------------------------------------------ ledger
    def node_names(self) -> list[str]:
        return self.scenario.store_names + ["warehouse", "supplier"]

    def ledger_frame(self, include_warmup: bool = False) -> pd.DataFrame:
        """The ledger as a long DataFrame: one row per day, replica, node and SKU."""
        if self.ledger is None:
            raise RuntimeError("this twin was created with record=False")
        start = 0 if include_warmup else self.scenario.warmup_days
        data = self.ledger[start: self.day]
        T, B, M, K, _ = data.shape
        idx = np.indices((T, B, M, K)).reshape(4, -1)
        nodes = np.asarray(self.node_names())
        frame = pd.DataFrame({
            "day": (idx[0] + start).astype(np.int32),
            "replica": idx[1].astype(np.int32),
            "seed": self.seeds[idx[1]],
            "node": pd.Categorical(nodes[idx[2]], categories=list(nodes)),
            "sku": pd.Categorical(np.asarray(self.scenario.sku_names)[idx[3]], categories=self.scenario.sku_names),
        })
        flat = data.reshape(-1, len(FIELDS))
        for i, name in enumerate(FIELDS):
            frame[name] = flat[:, i]
        return frame


def _upcoming(pipe: np.ndarray, P: int, day: int) -> np.ndarray:
    """Arrivals of a circular pipeline buffer (last axis, length P) on days ``day .. day+P−2``:
    the slot of the day about to be simulated first. (Slot ``(day − 1) % P`` was emptied when
    day − 1 received its arrivals, so P − 1 slots hold everything in transit.)"""
    return pipe[..., (day + np.arange(P - 1)) % P]


def _arrivals(pipe: np.ndarray, slot: int) -> np.ndarray:
    """Take what a circular pipeline (last axis = days) delivers today and empty that slot."""
    out = pipe[..., slot].copy()
    pipe[..., slot] = 0.0
    return out


def _whole(order, shape) -> np.ndarray:
    """Orders as whole, non-negative units of the given shape."""
    out = np.maximum(np.rint(np.asarray(order, dtype=float)), 0.0)
    return out if out.shape == shape else np.broadcast_to(out, shape)


def write_ledger(frame: pd.DataFrame, path) -> None:
    """Write a ledger DataFrame to Parquet (pyarrow)."""
    frame.to_parquet(path, index=False)
