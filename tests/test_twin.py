"""The digital twin: units are conserved at every node every day, the timing convention holds,
allocation and capacities are respected, and seeds fix the whole trace.

The conservation test draws many random networks with hypothesis (store counts, SKUs, lead
times including 0, capacities, random lead times on/off, both allocation rules, both shortage
modes) and drives them with random orders, then checks every ledger row against the previous one.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmarl_rllib.sim import FIELDS, SupplyChainTwin
from hmarl_rllib.sim.config import parse_config
from hmarl_rllib.sim.network import F

from conftest import scenario

ON_HAND, IN_TRANSIT, BACK = F["on_hand"], F["in_transit"], F["backorders"]
DEMAND, SALES, LOST, UNMET = F["demand"], F["sales"], F["lost_sales"], F["unmet"]
ORDER, SHIPPED, RECEIVED = F["order_placed"], F["shipped"], F["received"]


# ------------------------------------------------------------------ random scenarios
@st.composite
def networks(draw):
    n = draw(st.integers(1, 5))
    k = draw(st.integers(1, 3))
    skus = [{"name": f"sku{j}", "holding_cost": {"store": 0.1, "warehouse": 0.05, "supplier": 0.01},
             "ordering_cost": {"store": {"fixed": 3.0, "per_unit": 0.5}}} for j in range(k)]
    stores = []
    for i in range(n):
        cap = draw(st.one_of(st.none(), st.integers(5, 200)))
        init = draw(st.integers(0, cap if cap is not None else 150))
        stores.append({
            "name": f"s{i}",
            "lead_time": draw(st.integers(0, 4)),
            "capacity": cap,
            "initial_inventory": init,
            "demand": {"model": "poisson", "mean": draw(st.floats(0.0, 30.0))},
        })
    wh_cap = draw(st.one_of(st.none(), st.integers(20, 500)))
    wh_init = draw(st.integers(0, wh_cap if wh_cap is not None else 300))
    cfg = {
        "episode_length": draw(st.integers(1, 25)),
        "warmup_days": draw(st.integers(0, 3)),
        "shortage": draw(st.sampled_from(["lost_sales", "backorder"])),
        "skus": skus,
        "stores": stores,
        "warehouse": {"capacity": wh_cap, "initial_inventory": wh_init, "lead_time": draw(st.integers(0, 3)),
                      "allocation": draw(st.sampled_from(["proportional", "priority"]))},
        "supplier": {"production_capacity": draw(st.integers(1, 400)), "lead_time": draw(st.integers(0, 3)),
                     "initial_inventory": draw(st.integers(0, 300))},
        "random_lead_times": {"enabled": draw(st.booleans()), "probability": draw(st.floats(0.0, 1.0)),
                              "max_extra_days": draw(st.integers(1, 3))},
    }
    return cfg


def _drive(twin, seeds, order_seed, scale):
    """Run one episode with random orders (some negative or fractional: the twin must round
    and floor them). Yields (previous state, ledger row, orders as given)."""
    rng = np.random.default_rng(order_seed)
    twin.reset(seeds)
    B, N, K = twin.batch, twin.n_stores, twin.n_skus
    while not twin.done:
        so = rng.integers(-5, int(40 * scale) + 2, (B, N, K)) * (rng.random((B, N, K)) < 0.6)
        so = so + rng.choice([0.0, 0.4, -0.4], (B, N, K))
        wo = rng.integers(0, int(120 * scale) + 2, (B, K)) * (rng.random((B, K)) < 0.5)
        pr = rng.integers(0, int(200 * scale) + 2, (B, K))
        row = twin.step(so, wo, pr).copy()
        yield row, so, wo, pr


def _check_run(cfg, seeds, order_seed, scale):
    sc = parse_config(cfg, "hypothesis")
    twin = SupplyChainTwin(sc)
    N, K = twin.n_stores, twin.n_skus
    lt_store = np.array([s.lead_time for s in sc.store_list])
    random_lt = sc.random_lead_times.enabled
    caps = np.array([s.capacity if s.capacity is not None else np.inf for s in sc.store_list])
    wh_cap = sc.warehouse.capacity or np.inf
    backorder = sc.shortage == "backorder"

    B = len(seeds)
    prev_on_hand = np.zeros((B, N + 2, K))
    prev_on_hand[:, :N] = twin.init_store
    prev_on_hand[:, N] = twin.init_wh
    prev_on_hand[:, N + 1] = twin.init_sup
    prev_transit = np.zeros((B, N + 2, K))
    prev_back = np.zeros((B, N, K))
    store_inflow_hist, wh_inflow_hist, prod_hist = [], [], []
    rows = []
    for t, (row, so, wo, pr) in enumerate(_drive(twin, seeds, order_seed, scale)):
        rows.append(row)
        on_hand, transit = row[..., ON_HAND], row[..., IN_TRANSIT]
        # never negative, whole units
        assert (row[..., [ON_HAND, IN_TRANSIT, BACK, SALES, LOST, UNMET, ORDER, SHIPPED, RECEIVED]] >= 0).all()
        for f in (ON_HAND, IN_TRANSIT, BACK, SALES, ORDER, SHIPPED, RECEIVED):
            np.testing.assert_array_equal(row[..., f], np.rint(row[..., f]))
        # node conservation: on_hand[t-1] + received = on_hand[t] + shipped (sales for stores)
        np.testing.assert_allclose(prev_on_hand + row[..., RECEIVED], on_hand + row[..., SHIPPED], atol=1e-9)
        np.testing.assert_array_equal(row[:, :N, :, SHIPPED], row[:, :N, :, SALES])
        # pipelines: in_transit[t-1] + inflow = in_transit[t] + received
        store_inflow = transit[:, :N] - prev_transit[:, :N] + row[:, :N, :, RECEIVED]
        wh_inflow = transit[:, N] - prev_transit[:, N] + row[:, N, :, RECEIVED]
        prod_inflow = transit[:, N + 1] - prev_transit[:, N + 1] + row[:, N + 1, :, RECEIVED]
        np.testing.assert_allclose(wh_inflow, row[:, N + 1, :, SHIPPED], atol=1e-9)  # supplier → warehouse
        np.testing.assert_allclose(prod_inflow, row[:, N + 1, :, ORDER], atol=1e-9)  # production started
        np.testing.assert_allclose(store_inflow.sum(axis=1), row[:, N, :, SHIPPED], atol=1e-9)  # warehouse → stores
        # allocation never ships more than requested, nor more than available
        assert (store_inflow >= -1e-9).all()
        assert (store_inflow <= row[:, :N, :, ORDER] + 1e-9).all()
        available = prev_on_hand[:, N] + row[:, N, :, RECEIVED]
        assert (row[:, N, :, SHIPPED] <= available + 1e-9).all()
        np.testing.assert_allclose(row[:, N, :, DEMAND], row[:, :N, :, ORDER].sum(axis=1))
        np.testing.assert_allclose(row[:, N, :, SHIPPED] + row[:, N, :, UNMET], row[:, N, :, DEMAND])
        # the warehouse ships everything asked for when it can; otherwise everything it has
        full = row[:, N, :, DEMAND] <= available
        np.testing.assert_allclose(np.where(full, row[:, N, :, UNMET], 0), 0)
        np.testing.assert_allclose(np.where(~full, row[:, N, :, ON_HAND], 0), 0)
        short = ~full  # (B, K)
        if sc.warehouse.allocation == "priority":
            # a store is cut only if every store listed after it gets nothing
            cut = store_inflow < row[:, :N, :, ORDER] - 1e-9
            got = store_inflow > 1e-9
            for i in range(N):
                later = got[:, i + 1:].any(axis=1)
                assert not (cut[:, i] & later).any()
        else:
            req = row[:, :N, :, ORDER]
            share = req * available[:, None, :] / np.maximum(req.sum(axis=1, keepdims=True), 1)
            dev = np.abs(store_inflow - share)
            assert (np.where(short[:, None, :], dev, 0) < 1 + 1e-9).all()
        # supplier: ships min(order, stock); production within capacity
        np.testing.assert_allclose(row[:, N + 1, :, DEMAND], row[:, N, :, ORDER])
        np.testing.assert_allclose(row[:, N + 1, :, SHIPPED] + row[:, N + 1, :, UNMET], row[:, N + 1, :, DEMAND])
        assert (row[:, N + 1, :, ORDER].sum(axis=1) <= sc.supplier.production_capacity + 1e-9).all()
        # orders as placed: rounded, floored at 0, never above what was asked
        asked_store = np.maximum(np.rint(so), 0)
        assert (row[:, :N, :, ORDER] <= asked_store + 1e-9).all()
        assert (row[:, N, :, ORDER] <= np.maximum(np.rint(wo), 0) + 1e-9).all()
        # capacity: stock on hand and inventory position stay within the node's capacity
        assert (on_hand[:, :N] + transit[:, :N] <= caps[None, :, None] + 1e-9).all()
        assert (on_hand[:, N] + transit[:, N] <= wh_cap + 1e-9).all()
        if np.isinf(caps).all():
            np.testing.assert_array_equal(row[:, :N, :, ORDER], asked_store)
        # customers: demand = served today + unmet; backlog bookkeeping
        d, sales, unmet, lost, back = (row[:, :N, :, f] for f in (DEMAND, SALES, UNMET, LOST, BACK))
        served_today = sales - np.minimum(sales, prev_back)
        np.testing.assert_allclose(served_today + unmet, d, atol=1e-9)
        assert (np.where(unmet > 0, on_hand[:, :N], 0) == 0).all()  # no one turned away while stock is left
        if backorder:
            np.testing.assert_allclose(back, prev_back + d - sales, atol=1e-9)
            np.testing.assert_array_equal(lost, 0)
        else:
            np.testing.assert_array_equal(back, 0)
            np.testing.assert_array_equal(lost, unmet)
            assert (sales <= d + 1e-9).all()
        # lost_sales is customers' only: cancelled internal orders are the upstream rows' unmet
        np.testing.assert_array_equal(row[:, N:, :, LOST], 0)
        # timing: with fixed lead times a shipment arrives exactly L days later (L = 0: same day)
        store_inflow_hist.append(store_inflow)
        wh_inflow_hist.append(wh_inflow)
        prod_hist.append(prod_inflow)
        if not random_lt:
            for i, L in enumerate(lt_store):
                due = store_inflow_hist[t - L][:, i] if t - L >= 0 else 0
                np.testing.assert_allclose(row[:, i, :, RECEIVED], due, atol=1e-9)
            Lw = sc.warehouse.lead_time
            due = wh_inflow_hist[t - Lw] if t - Lw >= 0 else 0
            np.testing.assert_allclose(row[:, N, :, RECEIVED], due, atol=1e-9)
        Lp = sc.supplier.lead_time
        due = prod_hist[t - Lp] if t - Lp >= 0 else 0
        np.testing.assert_allclose(row[:, N + 1, :, RECEIVED], due, atol=1e-9)
        # pipeline views: slot 0 is tomorrow's arrivals; the slots sum to what is in transit
        # (plus today's own shipments where the lead time is 0 and nothing was delayed)
        if t > 0:
            same_day = (lt_store == 0)[None, :, None]
            if not random_lt:
                np.testing.assert_allclose(row[:, :N, :, RECEIVED], next_store + np.where(same_day, store_inflow, 0))
                np.testing.assert_allclose(row[:, N, :, RECEIVED], next_wh + (sc.warehouse.lead_time == 0) * wh_inflow)
            else:
                np.testing.assert_allclose(np.where(lt_store[None, :, None] > 0, row[:, :N, :, RECEIVED] - next_store, 0), 0)
                assert (row[:, :N, :, RECEIVED] >= next_store).all() and (row[:, N, :, RECEIVED] >= next_wh).all()
            np.testing.assert_allclose(row[:, N + 1, :, RECEIVED], next_prod + (sc.supplier.lead_time == 0) * prod_inflow)
        sp, wp, pp = twin.store_pipeline(), twin.warehouse_pipeline(), twin.production_pipeline()
        np.testing.assert_allclose(sp.sum(axis=-1), transit[:, :N])
        np.testing.assert_allclose(wp.sum(axis=-1), transit[:, N])
        np.testing.assert_allclose(pp.sum(axis=-1), transit[:, N + 1])
        zero = np.zeros(transit[:, 0].shape)
        next_store = sp[..., 0] if sp.shape[-1] else np.zeros_like(transit[:, :N])
        next_wh = wp[..., 0] if wp.shape[-1] else zero
        next_prod = pp[..., 0] if pp.shape[-1] else zero
        prev_on_hand, prev_transit, prev_back = on_hand, transit, back
    # the recorded ledger is what step() returned
    np.testing.assert_array_equal(twin.ledger, np.stack(rows))
    # random delays: every shipped unit arrives within lead time + max_extra_days
    if random_lt:
        extra = sc.random_lead_times.max_extra_days
        T = len(rows)
        for i, L in enumerate(lt_store):
            sent = sum(store_inflow_hist[s][:, i] for s in range(max(0, T - L - extra)))
            got = sum(r[:, i, :, RECEIVED] for r in rows)
            assert (got >= sent - 1e-9).all()
    return twin


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=networks(), seeds=st.lists(st.integers(0, 2**31), min_size=1, max_size=3),
       order_seed=st.integers(0, 2**31), scale=st.sampled_from([0.2, 1.0, 5.0]))
def test_units_conserved_on_random_networks(cfg, seeds, order_seed, scale):
    _check_run(cfg, seeds, order_seed, scale)


@pytest.mark.parametrize("shortage", ["lost_sales", "backorder"])
@pytest.mark.parametrize("allocation", ["proportional", "priority"])
def test_conservation_under_heavy_shortage(shortage, allocation):
    """Every day short at the warehouse: allocation runs daily in both rules and both modes."""
    cfg = {"episode_length": 30, "shortage": shortage,
           "stores": [{"name": f"s{i}", "lead_time": i % 3, "initial_inventory": 5,
                       "demand": {"model": "poisson", "mean": 20}} for i in range(4)],
           "warehouse": {"initial_inventory": 30, "lead_time": 1, "allocation": allocation},
           "supplier": {"production_capacity": 37, "lead_time": 0, "initial_inventory": 0},
           "random_lead_times": {"enabled": False}}
    twin = _check_run(cfg, [1, 2, 3], order_seed=7, scale=5.0)
    led = twin.ledger
    assert (led[:, :, 4, :, UNMET] > 0).mean() > 0.5  # the warehouse really was short
    if shortage == "backorder":
        assert led[-1, :, :4, :, BACK].sum() > 0


def test_costs_follow_the_documented_formulas():
    sc = scenario(episode_length=10, shortage="backorder",
                  skus=[{"name": "A", "holding_cost": {"store": 0.3, "warehouse": 0.2, "supplier": 0.1},
                         "stockout_penalty": 4.0, "backorder_cost": 1.5,
                         "ordering_cost": {"store": {"fixed": 7, "per_unit": 0.25},
                                           "warehouse": {"fixed": 11, "per_unit": 0.5},
                                           "supplier": {"fixed": 13, "per_unit": 0.75}}}],
                  stores={"count": 2, "initial_inventory": 20, "demand": {"mean": 15}})
    twin = SupplyChainTwin(sc)
    twin.reset([3])
    rng = np.random.default_rng(0)
    while not twin.done:
        twin.step(rng.integers(0, 30, (1, 2, 1)), rng.integers(0, 60, (1, 1)), rng.integers(0, 60, (1, 1)))
    led = twin.ledger[:, 0, :, 0]  # (T, M, F)
    h = np.array([0.3, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(led[..., F["holding_cost"]], h * led[..., ON_HAND])
    np.testing.assert_allclose(led[:, :2, F["stockout_cost"]], 4.0 * led[:, :2, UNMET] + 1.5 * led[:, :2, BACK])
    np.testing.assert_allclose(led[:, 2:, F["stockout_cost"]], 0)
    sup_ship = led[:, 3, SHIPPED]
    np.testing.assert_allclose(led[:, 2, F["ordering_cost"]], 11 * (led[:, 2, ORDER] > 0) + 0.5 * sup_ship)
    np.testing.assert_allclose(led[:, 3, F["ordering_cost"]], 13 * (led[:, 3, ORDER] > 0) + 0.75 * led[:, 3, ORDER])
    store_ship = led[:, :2, IN_TRANSIT] - np.vstack([np.zeros((1, 2)), led[:-1, :2, IN_TRANSIT]]) + led[:, :2, RECEIVED]
    np.testing.assert_allclose(led[:, :2, F["ordering_cost"]], 7 * (led[:, :2, ORDER] > 0) + 0.25 * store_ship)


def _one_day(sc, store_order, warehouse_order, production):
    twin = SupplyChainTwin(sc)
    twin.reset([0])
    return twin, twin.step(store_order, warehouse_order, production)[0, :, 0]  # (M, F)


@pytest.mark.parametrize("shortage", ["lost_sales", "backorder"])
def test_cancelled_internal_orders_are_unmet_not_lost_sales(shortage):
    # an empty warehouse and an empty supplier: every store order and the warehouse's order are
    # cancelled. That is the upstream rows' unmet; lost_sales stays for customers (stores).
    sc = scenario(shortage=shortage, stores={"count": 2, "initial_inventory": 0, "demand": {"mean": 30}},
                  warehouse={"initial_inventory": 0}, supplier={"initial_inventory": 0},
                  random_lead_times={"enabled": False})
    twin, row = _one_day(sc, 50, 80, 0)
    wh, sup = row[2], row[3]
    assert wh[DEMAND] == 100 and wh[UNMET] == 100 and wh[SHIPPED] == 0
    assert sup[DEMAND] == 80 and sup[UNMET] == 80 and sup[SHIPPED] == 0
    assert wh[LOST] == 0 and sup[LOST] == 0
    stores = row[:2]
    assert (stores[:, UNMET] == stores[:, DEMAND]).all() and stores[:, DEMAND].sum() > 0
    if shortage == "lost_sales":
        np.testing.assert_array_equal(stores[:, LOST], stores[:, UNMET])
    else:
        np.testing.assert_array_equal(stores[:, LOST], 0)


def test_fixed_cost_is_charged_per_placed_order_even_if_cancelled():
    # K per positive order placed: a store order the empty warehouse cancels, a warehouse order
    # the empty supplier cancels and a production start all pay K; no unit is shipped, so no
    # per-unit cost. A zero order, or one the capacity clips to zero, pays nothing.
    sc = scenario(stores=[{"name": "a", "initial_inventory": 0}, {"name": "b", "initial_inventory": 0},
                          {"name": "full", "initial_inventory": 100, "capacity": 100}],
                  skus=[{"name": "A", "ordering_cost": {"store": {"fixed": 7, "per_unit": 0.5},
                                                        "warehouse": {"fixed": 11, "per_unit": 0.25},
                                                        "supplier": {"fixed": 13, "per_unit": 0.0}}}],
                  warehouse={"initial_inventory": 0}, supplier={"initial_inventory": 0, "lead_time": 2},
                  random_lead_times={"enabled": False})
    twin, row = _one_day(sc, np.array([[[40], [0], [40]]]), 60, 30)
    cost = row[:, F["ordering_cost"]]
    assert row[0, ORDER] == 40 and row[0, RECEIVED] == 0 and row[3, UNMET] == 40  # cancelled
    assert row[2, ORDER] == 0  # clipped to the store's capacity: no order placed
    np.testing.assert_allclose(cost, [7, 0, 0, 11, 13])
    assert row[4, UNMET] == 60 and row[4, SHIPPED] == 0


def test_stock_in_transit_carries_no_holding_cost():
    # the warehouse ships all its stock to a store 3 days away: while the units travel nobody
    # pays holding for them; once they arrive the store does.
    sc = scenario(episode_length=4, stores=[{"name": "a", "lead_time": 3, "initial_inventory": 0,
                                             "demand": {"mean": 0}}],
                  skus=[{"name": "A", "holding_cost": {"store": 0.3, "warehouse": 0.2, "supplier": 0.1},
                         "ordering_cost": {"store": {"fixed": 0}, "warehouse": {"fixed": 0}}}],
                  warehouse={"initial_inventory": 500}, supplier={"initial_inventory": 0},
                  random_lead_times={"enabled": False})
    twin = SupplyChainTwin(sc)
    twin.reset([0])
    rows = [twin.step(500 if t == 0 else 0, 0, 0)[0, :, 0] for t in range(4)]
    for t in range(3):
        assert rows[t][0, IN_TRANSIT] == 500 and rows[t][1, ON_HAND] == 0
        assert rows[t][0, F["holding_cost"]] == 0 and rows[t][1, F["holding_cost"]] == 0
    assert rows[3][0, ON_HAND] == 500 and rows[3][0, F["holding_cost"]] == pytest.approx(0.3 * 500)


# ------------------------------------------------------------------------ determinism
def _random_run(sc, seeds, order_seed=0):
    twin = SupplyChainTwin(sc)
    rng = np.random.default_rng(order_seed)
    twin.reset(seeds)
    B, N, K = twin.batch, twin.n_stores, twin.n_skus
    while not twin.done:
        twin.step(rng.integers(0, 120, (B, N, K)), rng.integers(0, 400, (B, K)), rng.integers(0, 400, (B, K)))
    return twin.ledger


def _policy_run(sc, seeds):
    """Orders that depend on each replica's own state only (base-stock), so a replica's trace
    must not depend on its batch-mates."""
    twin = SupplyChainTwin(sc)
    twin.reset(seeds)
    while not twin.done:
        twin.step(np.maximum(0, 250 - twin.store_position()), np.maximum(0, 1500 - twin.warehouse_position()),
                  np.maximum(0, 1500 - twin.supplier_position()))
    return twin.ledger


def _rich_scenario():
    return scenario(episode_length=25, shortage="backorder",
                    skus=[{"name": "A"}, {"name": "B"}],
                    stores={"count": 3, "demand": {"model": "negative_binomial", "mean": 50, "dispersion": 4,
                                                   "promotions": {"probability": 0.1, "multiplier": 2.0}}},
                    random_lead_times={"enabled": True, "probability": 0.4, "max_extra_days": 2})


def test_same_seed_gives_identical_ledgers():
    sc = _rich_scenario()
    a, b = _random_run(sc, [5, 6, 7]), _random_run(sc, [5, 6, 7])
    np.testing.assert_array_equal(a, b)


def test_different_seeds_give_different_ledgers():
    sc = _rich_scenario()
    a, b = _random_run(sc, [5]), _random_run(sc, [6])
    assert not np.array_equal(a[..., DEMAND], b[..., DEMAND])
    assert not np.array_equal(a, b)


def test_a_seed_trace_does_not_depend_on_its_batch():
    sc = _rich_scenario()
    alone = _policy_run(sc, [11])
    batched = _policy_run(sc, [3, 11, 4, 11, 99])
    np.testing.assert_array_equal(batched[:, 1], alone[:, 0])
    np.testing.assert_array_equal(batched[:, 3], alone[:, 0])
    assert not np.array_equal(batched[:, 0], alone[:, 0])


def test_stepping_past_the_end_is_refused():
    twin = SupplyChainTwin(scenario(episode_length=2))
    twin.reset([0])
    twin.step(0, 0, 0)
    twin.step(0, 0, 0)
    assert twin.done
    with pytest.raises(RuntimeError, match="reset"):
        twin.step(0, 0, 0)


def test_ledger_has_every_documented_field(default_scenario):
    twin = SupplyChainTwin(default_scenario)
    twin.reset([1, 2])
    twin.step(100, 100, 100)
    frame = twin.ledger_frame()
    assert set(FIELDS) <= set(frame.columns)
    assert len(frame) == 1 * 2 * (3 + 2) * 1
    assert list(frame["node"].cat.categories) == ["store_1", "store_2", "store_3", "warehouse", "supplier"]


@pytest.mark.parametrize("allocation", ["proportional", "priority"])
def test_allocation_rule_on_many_stores(allocation):
    """The allocation alone, on wide networks: ships exactly what it has (all of it when short),
    never more than asked; proportional stays within one unit of the exact share."""
    rng = np.random.default_rng(0)
    n = 300
    twin = SupplyChainTwin(scenario(stores={"count": n}, skus=[{"name": "A"}, {"name": "B"}],
                                    warehouse={"allocation": allocation}))
    req = rng.integers(0, 50, (64, n, 2)) * (rng.random((64, n, 2)) < 0.7)
    avail = np.floor(req.sum(axis=1) * rng.random((64, 2)))  # always short (or exactly enough)
    ship = twin._allocate(req.astype(float), avail)
    np.testing.assert_array_equal(ship.sum(axis=1), avail)
    assert (ship >= 0).all() and (ship <= req).all()
    np.testing.assert_array_equal(ship, np.rint(ship))
    if allocation == "proportional":
        share = req * avail[:, None, :] / np.maximum(req.sum(axis=1, keepdims=True), 1)
        assert (np.abs(ship - share) < 1).all()
    else:
        first_cut = (ship < req).argmax(axis=1)  # stores after the first one cut get nothing
        for b in range(64):
            for k in range(2):
                i = first_cut[b, k]
                if ship[b, i, k] < req[b, i, k]:
                    assert ship[b, i + 1:, k].sum() == 0


# ------------------------------------------------------------- internal backorders
def _check_internal_backlog_run(cfg, seeds, order_seed, scale):
    """``internal_shortage: backorder``: every internal order unit is shipped or waits; the
    backlog ships first; the ledger's backorders rows reconcile; the positions count the backlog."""
    sc = parse_config({**cfg, "internal_shortage": "backorder"}, "hypothesis")
    twin = SupplyChainTwin(sc)
    N = twin.n_stores
    prev_owed = np.zeros((len(seeds), N, twin.n_skus))
    prev_wh_owed = np.zeros((len(seeds), twin.n_skus))
    prev_on_hand = None
    for row, so, wo, pr in _drive(twin, seeds, order_seed, scale):
        owed, wh_owed = twin.store_owed.copy(), twin.wh_owed.copy()
        wh, sup = row[:, N], row[:, N + 1]
        assert (owed >= 0).all() and (wh_owed >= 0).all()
        # the ledger's backorders rows are the internal backlogs, and they reconcile
        np.testing.assert_allclose(wh[..., BACK], owed.sum(axis=1))
        np.testing.assert_allclose(sup[..., BACK], wh_owed)
        np.testing.assert_allclose(wh[..., BACK], prev_owed.sum(axis=1) + wh[..., DEMAND] - wh[..., SHIPPED], atol=1e-9)
        np.testing.assert_allclose(sup[..., BACK], prev_wh_owed + sup[..., DEMAND] - sup[..., SHIPPED], atol=1e-9)
        np.testing.assert_allclose(wh[..., DEMAND], row[:, :N, :, ORDER].sum(axis=1))
        np.testing.assert_allclose(sup[..., DEMAND], wh[..., ORDER])
        # per store: what was shipped today covers its backlog first, never more than it asked
        shipped_i = prev_owed + row[:, :N, :, ORDER] - owed
        assert (shipped_i >= -1e-9).all()
        served_today = np.maximum(shipped_i - prev_owed, 0).sum(axis=1)
        np.testing.assert_allclose(wh[..., UNMET], wh[..., DEMAND] - served_today, atol=1e-9)
        np.testing.assert_allclose(sup[..., UNMET], sup[..., DEMAND] - np.maximum(sup[..., SHIPPED] - prev_wh_owed, 0))
        # a backlog is left only when the node ran out of stock
        np.testing.assert_allclose(np.where(owed.sum(axis=1) > 0, wh[..., ON_HAND], 0), 0)
        np.testing.assert_allclose(np.where(wh_owed > 0, sup[..., ON_HAND], 0), 0)
        # lost_sales stays customers' only
        np.testing.assert_array_equal(row[:, N:, :, LOST], 0)
        # positions count the backlog: a store is owed its backlog, the warehouse owes it
        sp, wp, pp = twin.store_position(), twin.warehouse_position(), twin.supplier_position()
        s = row[:, :N]
        np.testing.assert_allclose(sp, s[..., ON_HAND] + s[..., IN_TRANSIT] + owed - s[..., BACK])
        np.testing.assert_allclose(wp, wh[..., ON_HAND] + wh[..., IN_TRANSIT] + wh_owed - owed.sum(axis=1))
        np.testing.assert_allclose(pp, sup[..., ON_HAND] + sup[..., IN_TRANSIT] - wh_owed)
        # the chain's position (supplier echelon) never sees internal backlogs at all
        chain = (s[..., ON_HAND] + s[..., IN_TRANSIT] - s[..., BACK]).sum(axis=1) + wh[..., ON_HAND] \
            + wh[..., IN_TRANSIT] + sup[..., ON_HAND] + sup[..., IN_TRANSIT]
        np.testing.assert_allclose(sp.sum(axis=1) + wp + pp, chain)
        prev_owed, prev_wh_owed = owed, wh_owed
    # nothing is lost between echelons: every unit ordered was shipped or is still owed
    led = twin.ledger
    np.testing.assert_allclose(led[:, :, N, :, DEMAND].sum(axis=0),
                               led[:, :, N, :, SHIPPED].sum(axis=0) + twin.store_owed.sum(axis=1))
    np.testing.assert_allclose(led[:, :, N + 1, :, DEMAND].sum(axis=0),
                               led[:, :, N + 1, :, SHIPPED].sum(axis=0) + twin.wh_owed)
    return twin


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=networks(), seeds=st.lists(st.integers(0, 2**31), min_size=1, max_size=3),
       order_seed=st.integers(0, 2**31), scale=st.sampled_from([0.2, 1.0, 5.0]))
def test_internal_backorders_conserve_every_unit_on_random_networks(cfg, seeds, order_seed, scale):
    _check_internal_backlog_run(cfg, seeds, order_seed, scale)


@pytest.mark.parametrize("allocation", ["proportional", "priority"])
def test_internal_backlog_under_heavy_shortage(allocation):
    cfg = {"episode_length": 30, "shortage": "backorder",
           "stores": [{"name": f"s{i}", "lead_time": i % 3, "initial_inventory": 5,
                       "demand": {"model": "poisson", "mean": 20}} for i in range(4)],
           "warehouse": {"initial_inventory": 30, "lead_time": 1, "allocation": allocation},
           "supplier": {"production_capacity": 37, "lead_time": 0, "initial_inventory": 0},
           "random_lead_times": {"enabled": False}}
    twin = _check_internal_backlog_run(cfg, [1, 2, 3], order_seed=7, scale=5.0)
    assert (twin.ledger[:, :, 4, :, BACK] > 0).mean() > 0.5  # the stores really waited
    assert (twin.ledger[:, :, 5, :, BACK] > 0).mean() > 0.5  # and the warehouse did


def test_internal_backlog_waits_and_ships_first():
    # an empty warehouse cannot fill the store's order of 50 on day 0: it waits (the store's
    # position still counts it, so the store orders nothing more) and ships on day 2, when the
    # supplier's stock arrives, before the store's next order. The default cancels it.
    base = dict(episode_length=4, shortage="backorder", random_lead_times={"enabled": False},
                skus=[{"name": "A", "ordering_cost": {"store": {"fixed": 0}, "warehouse": {"fixed": 0}}}],
                stores=[{"name": "a", "lead_time": 1, "initial_inventory": 0, "demand": {"mean": 0}}],
                warehouse={"initial_inventory": 0, "lead_time": 2}, supplier={"initial_inventory": 80, "lead_time": 0})
    for mode in ("backorder", "cancel"):
        twin = SupplyChainTwin(scenario(internal_shortage=mode, **base))
        twin.reset([0])
        rows = [twin.step(50 if t == 0 else (20 if t == 2 else 0), 80 if t == 0 else 0, 0)[0, :, 0]
                for t in range(4)]
        st, wh = [r[0] for r in rows], [r[1] for r in rows]
        assert wh[0][DEMAND] == 50 and wh[0][SHIPPED] == 0
        if mode == "backorder":
            assert wh[0][BACK] == 50 and wh[0][UNMET] == 50 and wh[1][BACK] == 50
            assert twin.store_position()[0, 0, 0] == 70  # after day 3: the 50 waited for + the 20
            assert wh[2][SHIPPED] == 70 and wh[2][UNMET] == 0 and wh[2][BACK] == 0  # backlog 50 + today's 20
            assert st[3][RECEIVED] == 70 and wh[2][ON_HAND] == 10
        else:
            assert wh[0][BACK] == 0 and wh[1][SHIPPED] == 0 and wh[2][SHIPPED] == 20 and st[3][RECEIVED] == 20


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=networks(), internal=st.sampled_from(["cancel", "backorder"]), data=st.data())
def test_a_taken_replica_continues_exactly_as_its_source(cfg, internal, data):
    """``take(rows)`` copies replicas mid-episode (repeats and any order): stepped on with the same
    orders, every copy writes the same ledger rows as the replica it was taken from, to the end,
    on random networks (random delays, capacities, both shortage modes, internal backorders)."""
    sc = parse_config({**cfg, "internal_shortage": internal}, "test")
    B = 3
    twin = SupplyChainTwin(sc)
    twin.reset(np.arange(B) + data.draw(st.integers(0, 1000)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    N, K = twin.n_stores, twin.n_skus

    def orders(b):
        return rng.integers(0, 60, (b, N, K)), rng.integers(0, 200, (b, K)), rng.integers(0, 200, (b, K))

    cut = data.draw(st.integers(0, twin.days_total - 1))
    for _ in range(cut):
        twin.step(*orders(B))
    rows = np.array(data.draw(st.lists(st.integers(0, B - 1), min_size=1, max_size=6)))
    copy = twin.take(rows)
    assert copy.day == twin.day == cut and copy.batch == len(rows)
    while not twin.done:
        so, wo, pr = orders(B)
        theirs = twin.step(so, wo, pr)
        ours = copy.step(so[rows], wo[rows], pr[rows])
        np.testing.assert_array_equal(ours, theirs[rows])
    assert copy.done
