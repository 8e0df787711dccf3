"""What a discrete action means: decoding action indices into orders (and back).

Modes (per agent type, ``actions:`` in the scenario; see :class:`hmarl_rllib.sim.config.ActionSet`):

- ``quantities``: order ``values[a]`` units;
- ``order_up_to``: order ``max(0, values[a]·μ − IP)``: up to a multiple of the mean daily demand μ;
- ``base_stock_correction``: order ``max(0, S* − IP + values[a]·μ)``, S* the tuned base-stock level;
- ``baseline_correction``: order ``max(0, rule(IP) + values[a]·μ)``, ``rule`` the baseline policy's
  own order for this agent: (s, S) when the baseline is (s, S) (``base_reorder`` = s), else
  base-stock.

μ is the mean daily demand the agent faces: its store's demand for a store; the sum over stores
for the warehouse and the supplier. IP is the agent's own inventory position, or, when an
``echelon_*`` baseline is corrected, the warehouse's and the supplier's echelon position (the
position the rule reviews). When the baseline follows the season (``*_seasonal``) or a schedule
(``*_schedule``), S* and s are today's levels, so the decoded order depends on the day too; so it
does when the baseline stops ordering before the end (``*_endgame``): from then on ``rule`` is 0. :func:`decode_orders`
decodes all three agent types from a twin state.
"""
from __future__ import annotations

import numpy as np

from hmarl_rllib.policies.heuristics import WITH_REORDER_POINT, s_S_order

AGENT_TYPES = ("store", "warehouse", "supplier")


class ActionCodec:
    """Decode / encode actions for one agent type.

    ``mu`` and ``base_level`` broadcast against the positions passed in ((B, N, K) for stores,
    (B, K) otherwise). ``daily``: ``base_level`` and ``base_reorder`` are per-day tables (T, ...)
    (a seasonal or scheduled baseline's :meth:`~hmarl_rllib.policies.heuristics.ChainPolicy.level_table`);
    then :meth:`decode` needs the day. ``echelon``: the baseline's levels apply to the agent's echelon position
    (:func:`decode_orders` passes it). ``active`` (T,) booleans: the days on which the
    baseline's rule orders at all (``baseline_correction`` only; an ``*_endgame`` baseline).
    """

    def __init__(self, mode: str, values, mu, base_level=None, base_reorder=None, daily=False, echelon=False,
                 active=None):
        self.mode = mode
        self.echelon = bool(echelon)
        self.active = None if active is None or mode != "baseline_correction" else np.asarray(active, dtype=bool)
        self.values = np.asarray(values, dtype=float)
        self.mu = np.asarray(mu, dtype=float)
        self.base_level = None if base_level is None else np.asarray(base_level, dtype=float)
        self.base_reorder = None if base_reorder is None else np.asarray(base_reorder, dtype=float)
        self.daily = bool(daily) and mode.endswith("_correction")
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
        if (self.daily or self.active is not None) and day is None:
            raise ValueError("a seasonal, scheduled or endgame baseline's correction needs the day to decode")
        if self.daily:
            d = min(int(day), len(level) - 1)
            level, reorder = level[d], None if reorder is None else reorder[d]
        if self.mode == "baseline_correction":
            rule = s_S_order(position, reorder, level) if reorder is not None else level - position
            if self.active is not None and not self.active[min(int(day), len(self.active) - 1)]:
                rule = np.zeros_like(rule)
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
    days_total = scenario.warmup_days + scenario.episode_length
    daily = base.forecast is not None or base.schedule is not None  # levels change by the day
    table = base.level_table(days_total) if daily else None
    for i, kind in enumerate(AGENT_TYPES):
        spec = getattr(scenario.actions, kind)
        level = reorder = None
        if spec.mode == "base_stock_correction":
            src = base if base.kind == "base_stock" else initial_guess(scenario, "base_stock")
            level = getattr(src, f"{kind}_S")
        elif spec.mode == "baseline_correction":
            if daily:
                reorder, level = table[i]
            else:
                level = getattr(base, f"{kind}_S")
                reorder = getattr(base, f"{kind}_s") if base.kind in WITH_REORDER_POINT else None
        per_day = daily and spec.mode == "baseline_correction"
        echelon = spec.mode == "baseline_correction" and base.echelon and kind != "store"
        act = base.active(days_total)
        active = None if act is None else act[:, i]
        out[kind] = ActionCodec(spec.mode, spec.values, mus[kind], level, reorder, per_day, echelon, active)
    return out


def decode_orders(c: dict[str, ActionCodec], twin, store_actions, wh_actions, sup_actions):
    """Orders (store (B,N,K), warehouse (B,K), production (B,K)) for integer actions on the
    twin's current day: each agent type's codec gets the position its rule reviews."""
    d = twin.day
    sp = twin.store_position() if any(x.needs_position for x in c.values()) else None
    wp = pp = None
    if c["warehouse"].needs_position or c["supplier"].needs_position:
        wp, pp = twin.warehouse_position(), twin.supplier_position()
        if c["warehouse"].echelon or c["supplier"].echelon:
            wp_e = wp + sp.sum(axis=1)
            pp = pp + wp_e if c["supplier"].echelon else pp
            wp = wp_e if c["warehouse"].echelon else wp
    return (c["store"].decode(store_actions, sp, d), c["warehouse"].decode(wh_actions, wp, d),
            c["supplier"].decode(sup_actions, pp, d))


def random_orders(scenario, twin, rng, c: dict[str, ActionCodec]):
    """Orders from uniformly random actions for every agent (the ``random`` policy)."""
    B, N, K = twin.batch, twin.n_stores, twin.n_skus
    return decode_orders(c, twin, rng.integers(0, c["store"].n, (B, N, K)), rng.integers(0, c["warehouse"].n, (B, K)),
                         rng.integers(0, c["supplier"].n, (B, K)))


def random_policy(scenario, seed: int = 0):
    """Uniformly random actions from each agent type's action set (the scenario's ``actions``),
    as an order function for :func:`hmarl_rllib.sim.simulate.evaluate`."""
    rng = np.random.default_rng(seed)
    c = codecs(scenario)
    return lambda twin: random_orders(scenario, twin, rng, c)
