"""What a discrete action means: decoding action indices into orders (and back).

Modes (per agent type, ``actions:`` in the scenario; see :class:`hmarl_rllib.config.ActionSet`):

- ``quantities``: order ``values[a]`` units;
- ``order_up_to``: order ``max(0, values[a]·μ − IP)``: up to a multiple of the mean daily demand μ;
- ``base_stock_correction``: order ``max(0, S* − IP + values[a]·μ)``, S* the tuned base-stock level;
- ``baseline_correction``: order ``max(0, rule(IP) + values[a]·μ)``, ``rule`` the baseline policy's
  own order for this agent: (s, S) when the baseline is (s, S) (``base_reorder`` = s), else
  base-stock.

μ is the mean daily demand the agent faces: its store's demand for a store; the sum over stores
for the warehouse and the supplier. IP is the agent's own inventory position. When the baseline
follows the season (``s_S_seasonal``), S* and s are today's seasonal levels, so the decoded
order depends on the day too.
"""
from __future__ import annotations

import numpy as np

from hmarl_rllib.policies.heuristics import s_S_order

AGENT_TYPES = ("store", "warehouse", "supplier")


class ActionCodec:
    """Decode / encode actions for one agent type.

    ``mu`` and ``base_level`` broadcast against the positions passed in ((B, N, K) for stores,
    (B, K) otherwise). ``scale`` (T, ...): per-day multipliers of the baseline's levels (a
    seasonal baseline's :class:`~hmarl_rllib.policies.heuristics.Forecast`); then :meth:`decode`
    needs the day.
    """

    def __init__(self, mode: str, values, mu, base_level=None, base_reorder=None, scale=None):
        self.mode = mode
        self.values = np.asarray(values, dtype=float)
        self.mu = np.asarray(mu, dtype=float)
        self.base_level = None if base_level is None else np.asarray(base_level, dtype=float)
        self.base_reorder = None if base_reorder is None else np.asarray(base_reorder, dtype=float)
        self.scale = None if scale is None or not mode.endswith("_correction") else np.asarray(scale, dtype=float)
        if mode.endswith("_correction") and self.base_level is None:
            raise ValueError(f"{mode} needs the baseline's order-up-to level")

    @property
    def needs_position(self) -> bool:
        """False when an action's order does not depend on the inventory position."""
        return self.mode != "quantities"

    @property
    def n(self) -> int:
        return len(self.values)

    def decode(self, action, position, day: int | None = None):
        """Orders in units for integer actions (same shape as ``position``) on ``day``."""
        v = self.values[np.asarray(action, dtype=np.int64)]
        if self.mode == "quantities":
            return v
        if self.mode == "order_up_to":
            return np.maximum(0.0, v * self.mu - position)
        level, reorder = self.base_level, self.base_reorder
        if self.scale is not None:
            if day is None:
                raise ValueError("a seasonal baseline's correction needs the day to decode")
            f = self.scale[min(int(day), len(self.scale) - 1)]
            level, reorder = level * f, None if reorder is None else reorder * f
        if self.mode == "baseline_correction" and reorder is not None:
            rule = s_S_order(position, reorder, level)
            return np.maximum(0.0, rule + v * self.mu)
        return np.maximum(0.0, level - position + v * self.mu)

    def encode(self, order, position, day: int | None = None):
        """The action whose decoded order is nearest to ``order`` (for scripted heuristics)."""
        order = np.asarray(order, dtype=float)
        cand = self.decode(np.arange(self.n).reshape((-1,) + (1,) * order.ndim),
                           np.asarray(position)[None], day)
        return np.abs(cand - order[None]).argmin(axis=0)


def codecs(scenario, base_policy=None) -> dict[str, ActionCodec]:
    """Codecs for the three agent types of a scenario.

    ``base_policy`` (a :class:`~hmarl_rllib.policies.heuristics.ChainPolicy`, default the
    scenario's rule-based (s, S)) is the rule that ``baseline_correction`` corrects; a
    base-stock ``base_policy`` also supplies S* for ``base_stock_correction`` (otherwise the
    textbook initial guess is used).
    """
    from hmarl_rllib.policies.heuristics import initial_guess, rule_based_policy

    mu = scenario.mean_demand()  # (N, K)
    mus = {"store": mu, "warehouse": mu.sum(axis=0), "supplier": mu.sum(axis=0)}
    base = base_policy or rule_based_policy(scenario, "s_S")
    out = {}
    for kind in AGENT_TYPES:
        spec = getattr(scenario.actions, kind)
        level = reorder = scale = None
        if spec.mode == "base_stock_correction":
            src = base if base.kind == "base_stock" else initial_guess(scenario, "base_stock")
            level = getattr(src, f"{kind}_S")
        elif spec.mode == "baseline_correction":
            if base.kind == "echelon_base_stock":
                raise ValueError("baseline_correction corrects a base_stock or s_S baseline, not an echelon one")
            level = getattr(base, f"{kind}_S")
            reorder = getattr(base, f"{kind}_s") if base.kind == "s_S" else None
            scale = None if base.forecast is None else getattr(base.forecast, kind)
        out[kind] = ActionCodec(spec.mode, spec.values, mus[kind], level, reorder, scale)
    return out


def random_orders(scenario, twin, rng, c: dict[str, ActionCodec]):
    """Orders from uniformly random actions for every agent (the ``random`` policy)."""
    B, N, K = twin.batch, twin.n_stores, twin.n_skus
    d = twin.day
    so = c["store"].decode(rng.integers(0, c["store"].n, (B, N, K)), twin.store_position(), d)
    wo = c["warehouse"].decode(rng.integers(0, c["warehouse"].n, (B, K)), twin.warehouse_position(), d)
    pr = c["supplier"].decode(rng.integers(0, c["supplier"].n, (B, K)), twin.supplier_position(), d)
    return so, wo, pr
