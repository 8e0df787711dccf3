"""A scripted warehouse / supplier rule played from its observation, in numpy.

:class:`ScriptedRule` is what :class:`hmarl_rllib.rl.modules.HeuristicModule` does inside
RLlib, and what an exported policy (:mod:`hmarl_rllib.serving.deploy`) does without Ray or torch: the
same ``model_config`` (plain floats, kept in checkpoints and in an export's manifest), the same
actions.

1. un-scale the observation into the agent's inventory position IP (index 0, on hand / finished
   stock, plus index 1, in transit / in production, observed in units of ``stock_days·μ_w``,
   squashed: :func:`~hmarl_rllib.rl.observe.unsquash` undoes it), rounded to whole units;
2. the rule's order: base-stock ``max(0, S − IP)`` or (s, S) ``S − IP if IP ≤ s``;
3. the action whose decoded order is nearest (:meth:`ActionCodec.encode`). In
   ``baseline_correction`` mode the rule *is* the action with correction 0.
"""
from __future__ import annotations

import numpy as np

from hmarl_rllib.policies.heuristics import base_stock_order, s_S_order
from hmarl_rllib.rl.actions import ActionCodec
from hmarl_rllib.rl.observe import unsquash


def rule_action(codec: ActionCodec) -> int | None:
    """The action that reproduces the baseline rule: correction 0 in a ``*_correction`` mode."""
    if not codec.mode.endswith("_correction") or not np.any(codec.values == 0):
        return None
    return int(np.flatnonzero(codec.values == 0)[0])


class ScriptedRule:
    """``model_config`` keys: ``agent_type``; ``kind`` (``base_stock`` or ``s_S``);
    ``order_up_to`` [S]; ``reorder_point`` [s] (``s_S`` only); ``position_scale`` (the unit of
    the observed stock); ``codec`` (``mode``, ``values``, ``mu``, ``base_level``, ``base_reorder``:
    the agent type's :class:`ActionCodec` for this SKU)."""

    def __init__(self, mc: dict):
        self.kind = mc["kind"]
        self.order_up_to = float(mc["order_up_to"])
        self.reorder_point = None if mc.get("reorder_point") is None else float(mc["reorder_point"])
        self.position_scale = float(mc["position_scale"])
        c = mc["codec"]
        self.codec = ActionCodec(c["mode"], c["values"], c["mu"], c.get("base_level"), c.get("base_reorder"))
        self.rule_action = rule_action(self.codec) if c["mode"] == "baseline_correction" else None

    def actions(self, obs) -> np.ndarray:
        """Integer actions for a (B, n_obs) array of observations."""
        obs = np.asarray(obs, dtype=np.float64)
        if self.rule_action is not None:
            return np.full(len(obs), self.rule_action, dtype=np.int64)
        # a saturated field (+inf once unsquashed) is a position no rule orders at
        with np.errstate(invalid="ignore"):
            raw = (unsquash(obs[:, 0]) + unsquash(obs[:, 1])) * self.position_scale
        position = np.rint(np.where(np.isfinite(raw), raw, np.finfo(np.float64).max))
        if self.kind == "s_S":
            order = s_S_order(position, self.reorder_point, self.order_up_to)
        else:
            order = base_stock_order(position, self.order_up_to)
        return self.codec.encode(order, position).astype(np.int64)
