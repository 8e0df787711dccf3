"""Run the twin with a policy over a batch of seeds (one replica per seed) and reconcile.

This is the one code path through which every policy is evaluated: a policy is an order function
(:data:`OrderFn`, the twin's state -> orders), so classic baselines, the random policy
(:func:`hmarl_rllib.rl.actions.random_policy`) and learned policies (via
:mod:`hmarl_rllib.experiments.evaluation` adapters) all produce orders from the twin's state day by
day, on the same demand for the same seeds. Nothing here imports a policy (this is the ``sim`` layer).

Seed ranges (disjoint, so that nothing is tuned or trained on evaluation demand):

- :data:`TUNE_SEED_BASE` + i: baseline parameter search;
- :data:`VALIDATION_SEED_BASE` + i: the greedy evaluations during training, by which the best
  checkpoint is chosen (model selection must not see the held-out seeds either);
- :data:`EVAL_SEED_BASE` + i: held-out evaluation (``--seed`` shifts the start; a start below
  :data:`EVAL_SEED_BASE`, into the ranges above, is refused: :func:`eval_seeds`);
- RL training draws env seeds below :data:`TUNE_SEED_BASE`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from hmarl_rllib.errors import InputError
from hmarl_rllib.sim import SupplyChainTwin, reconciliation
from hmarl_rllib.sim.demand import EVAL_SEED_BASE, TUNE_SEED_BASE, VALIDATION_SEED_BASE  # noqa: F401 (defined there)
from hmarl_rllib.sim.network import F

MAX_SEED = 2**63 - 1  # demand seeds are int64

OrderFn = Callable[[SupplyChainTwin], tuple]


def tune_seeds(n: int) -> np.ndarray:
    return TUNE_SEED_BASE + np.arange(n)


def validation_seeds(n: int) -> np.ndarray:
    return VALIDATION_SEED_BASE + np.arange(n)


def eval_seeds(n: int, start: int | None = None) -> np.ndarray:
    """``n`` held-out seeds from ``start`` (default :data:`EVAL_SEED_BASE`). A range that
    reaches below :data:`EVAL_SEED_BASE` (the training, tuning and validation seeds) is refused
    with one line naming ``--seed``, the flag through which a start arrives."""
    start = EVAL_SEED_BASE if start is None else int(start)
    last = MAX_SEED - max(int(n), 1) + 1
    if not EVAL_SEED_BASE <= start <= last:
        raise InputError(f"--seed {start}: must be from {EVAL_SEED_BASE} to {last} for {n} held-out episodes"
                         f" (seeds below {EVAL_SEED_BASE} are RL training 0..{TUNE_SEED_BASE - 1}, baseline tuning"
                         f" {TUNE_SEED_BASE}..{VALIDATION_SEED_BASE - 1} and validation"
                         f" {VALIDATION_SEED_BASE}..{EVAL_SEED_BASE - 1} seeds)")
    return start + np.arange(n)


def run(scenario, order_fn: OrderFn, seeds, record: bool = True, warmup_fn: OrderFn | None = None,
        twin: SupplyChainTwin | None = None) -> SupplyChainTwin:
    """Simulate one episode per seed; ``order_fn(twin)`` gives each day's orders.

    ``warmup_fn`` (default: ``order_fn``) runs the ``warmup_days``, which are not scored.
    """
    twin = twin or SupplyChainTwin(scenario, record=record)
    twin.reset(seeds)
    warm = warmup_fn or order_fn
    while not twin.done:
        fn = warm if twin.day < scenario.warmup_days else order_fn
        twin.step(*fn(twin))
    return twin


def scored_ledger(twin: SupplyChainTwin) -> np.ndarray:
    """The ledger without the warm-up days, (T, B, M, K, F)."""
    return twin.ledger[twin.scenario.warmup_days: twin.day]


def evaluate(scenario, order_fn: OrderFn, seeds, warmup_fn: OrderFn | None = None) -> tuple[dict, SupplyChainTwin]:
    """Simulate and summarise: (KPI summary dict, twin with its ledger)."""
    twin = run(scenario, order_fn, seeds, warmup_fn=warmup_fn)
    summary = reconciliation.summarize(scored_ledger(twin), twin.node_names(), twin.n_stores)
    return summary, twin


def chain_cost(scenario, order_fn: OrderFn, seeds, warmup_fn: OrderFn | None = None) -> np.ndarray:
    """Chain cost per replica (the scored days' costs summed as they are simulated: no ledger
    kept, so memory grows with replicas × nodes × SKUs, not × days × fields)."""
    twin = SupplyChainTwin(scenario, record=False)
    twin.reset(seeds)
    warm = warmup_fn or order_fn
    cost_fields = [F["holding_cost"], F["stockout_cost"], F["ordering_cost"]]
    total = np.zeros((twin.batch, twin.n_stores + 2, twin.n_skus, len(cost_fields)))
    while not twin.done:
        day = twin.day
        row = twin.step(*(warm if day < scenario.warmup_days else order_fn)(twin))
        if day >= scenario.warmup_days:
            total += row[..., cost_fields]
    return total.sum(axis=2).sum(axis=(1, 2))


def replica_bytes(scenario) -> int:
    """About what one replica of a twin run without a ledger holds (demand for every day,
    random lead times, stock, pipelines, one day's rows and their temporaries), in bytes:
    what :func:`candidate_costs` divides its memory budget by."""
    N, K = len(scenario.store_list), len(scenario.skus)
    T = scenario.warmup_days + scenario.episode_length
    pipes = max(s.lead_time for s in scenario.store_list) + scenario.warehouse.lead_time + scenario.supplier.lead_time
    floats = T * N * K + T * (N + 1) + (N + 2) * K * (3 * len(F) + 16 + pipes + 8)
    return 8 * floats


BATCH_BYTES = 256 * 2**20  # memory budget of one batched twin run in candidate_costs


def candidate_costs(scenario, policy_for, n_candidates: int, seeds, budget: int = BATCH_BYTES) -> np.ndarray:
    """Mean chain cost of each of ``n_candidates`` policies on the same ``seeds`` (common random
    numbers), batched in the twin: ``policy_for(cand)`` gives the order function of a batch whose
    replica r plays candidate ``cand[r]``. The (candidate, seed) pairs run in chunks of at most
    ``budget`` bytes (:func:`replica_bytes`), so memory stays bounded however many candidates,
    seeds, stores and SKUs; each replica's demand depends on its seed only, so the chunking does
    not change the result."""
    seeds = np.asarray(seeds, dtype=np.int64)
    cand = np.repeat(np.arange(n_candidates), len(seeds))
    reps = np.tile(seeds, n_candidates)
    per = max(1, int(budget // replica_bytes(scenario)))
    total = np.zeros(n_candidates)
    for i in range(0, len(cand), per):
        c = cand[i:i + per]
        np.add.at(total, c, chain_cost(scenario, policy_for(c), reps[i:i + per]))
    return total / len(seeds)
