"""Run the twin with a policy over a batch of seeds (one replica per seed) and reconcile.

This is the one code path through which every policy is evaluated: classic baselines, the
random policy and learned policies (via :class:`hmarl_rllib.evaluation` adapters) all produce
orders from the twin's state day by day, on the same demand for the same seeds.

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

from hmarl_rllib import reconciliation
from hmarl_rllib.errors import InputError
from hmarl_rllib.twin import SupplyChainTwin
from hmarl_rllib.twin.demand import EVAL_SEED_BASE, TUNE_SEED_BASE, VALIDATION_SEED_BASE  # noqa: F401 (defined there)

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
    """Chain cost per replica (no ledger kept beyond what is needed)."""
    twin = run(scenario, order_fn, seeds, warmup_fn=warmup_fn)
    return reconciliation.chain_kpis(scored_ledger(twin), twin.n_stores)["cost"]


def random_policy(scenario, seed: int = 0) -> OrderFn:
    """Uniformly random actions from each agent type's action set (the scenario's ``actions``)."""
    from hmarl_rllib.policies.actions import codecs, random_orders

    rng = np.random.default_rng(seed)
    c = codecs(scenario)
    return lambda twin: random_orders(scenario, twin, rng, c)
