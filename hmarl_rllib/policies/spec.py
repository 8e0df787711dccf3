"""A classic rule as data: :class:`RuleSpec`.

A rule is a small structured spec, written in YAML as, e.g.::

    baseline: {rule: s_S, positions: echelon, seasonal: true, endgame: true, schedule: {periods: 15}}

- ``rule``: ``base_stock`` (order up to S every day) or ``s_S`` (order up to S when the position
  is at or below s);
- ``positions``: ``installation`` (every echelon reviews its own inventory position, the
  default) or ``echelon`` (the warehouse and the supplier review their echelon position: their
  own plus everything downstream);
- ``seasonal``: the levels follow the demand model's season (:class:`~.heuristics.Forecast`);
- ``endgame``: no orders in the last (tuned) days of the episode;
- ``schedule``: s and S − s multiplied by factors tuned per period of the episode, which is cut
  into ``periods`` periods (default 15; ``schedule: true`` or ``{}`` for the default).

Its :attr:`RuleSpec.name` (``echelon_s_S_seasonal_endgame_schedule``) names the cached tuned
parameters (``configs/baselines/<scenario>_<name>.yaml``) and the rule's row in every table: names
are derived from the spec, never parsed. The one exception is :meth:`RuleSpec.from_name`, the
alias path: the names used before rules were data (``s_S_endgame_schedule`` ...) still work
wherever a rule is given (``--policy``, ``training.baseline``) and mean the spec they name.

This module imports nothing from the RL layers (only pydantic and :mod:`hmarl_rllib.errors`).
"""
from __future__ import annotations

import itertools
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from hmarl_rllib.errors import ConfigError

DEFAULT_PERIODS = 15  # a schedule cuts the episode into (about) this many periods
KINDS = ("base_stock", "s_S", "echelon_base_stock", "echelon_s_S")  # rule x positions, as ChainPolicy.kind

# the alias grammar: <kind>[_seasonal][_endgame][_schedule[<periods>]] (periods other than the default
# only: a name is derived from a spec, and `_schedule` alone means the default)
_NAME = re.compile(r"(echelon_)?(base_stock|s_S)(_seasonal)?(_endgame)?(_schedule([1-9][0-9]*)?)?")
NAME_FORM = ("<policy>[_seasonal][_endgame][_schedule] with <policy> one of " + ", ".join(KINDS)
             + " (e.g. echelon_s_S_seasonal_endgame_schedule)")


class Schedule(BaseModel):
    """The rule's levels follow a schedule: per period of the episode and per echelon, s and
    S − s (base-stock: S) are multiplied by tuned factors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    periods: Annotated[int, Field(ge=1, strict=True, description=(
        "the episode is cut into this many periods; s and S − s (base-stock: S) get a tuned factor per period"
        " and echelon"))] = DEFAULT_PERIODS


class RuleSpec(BaseModel):
    """One classic rule of the chain (see the module docstring). Frozen and hashable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Literal["base_stock", "s_S"] = Field(description="base_stock: order up to S every day; s_S: order up"
                                                           " to S when the position is at or below s")
    positions: Literal["installation", "echelon"] = Field(
        "installation", description="installation: every echelon reviews its own inventory position; echelon: the"
                                    " warehouse and the supplier review their echelon position (their own plus"
                                    " everything downstream)")
    seasonal: StrictBool = Field(False, description="the levels follow the demand model's season each day")
    endgame: StrictBool = Field(False, description="no orders in the last days of the episode (stop days tuned on"
                                                   " the tuning seeds)")
    schedule: Schedule | None = Field(None, description="s and S − s multiplied by factors tuned per period of the"
                                                        " episode (true or {}: 15 periods); false or null: fixed"
                                                        " levels")

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_shorthand(cls, v):  # `schedule: true` = the default schedule, `false` = none
        if v is True:
            return {}
        return None if v is False else v

    # ---- derived
    @property
    def kind(self) -> str:
        """``rule`` on ``positions``: ``s_S``, ``echelon_s_S``, ... (:attr:`ChainPolicy.kind`)."""
        return ("echelon_" if self.positions == "echelon" else "") + self.rule

    @property
    def name(self) -> str:
        """The rule's name, for file names and table rows: :attr:`kind`, + ``_seasonal``,
        + ``_endgame``, + ``_schedule`` (``_schedule<periods>`` for other than 15 periods)."""
        sch = "" if self.schedule is None else "_schedule" + (
            "" if self.schedule.periods == DEFAULT_PERIODS else str(self.schedule.periods))
        return self.kind + ("_seasonal" if self.seasonal else "") + ("_endgame" if self.endgame else "") + sch

    def with_(self, **kw) -> "RuleSpec":
        """This spec with fields replaced (validated)."""
        return RuleSpec.model_validate({**self.model_dump(), **kw})

    def __str__(self) -> str:
        return self.name

    # ---- the alias path: the only place a name is read
    @classmethod
    def from_name(cls, name: str, where: str = "rule") -> "RuleSpec":
        """The spec an old-style name stands for (``s_S_endgame_schedule`` → ``{rule: s_S,
        endgame: true, schedule: {periods: 15}}``); ``from_name(spec.name) == spec`` for every
        spec. An unknown name is refused with one :class:`ConfigError` line, ``where`` first."""
        m = _NAME.fullmatch(name) if isinstance(name, str) else None
        if m is None:
            raise ConfigError(f"{where} {name}: unknown rule; write {NAME_FORM}, or a mapping such as {{rule: s_S,"
                              " positions: echelon, seasonal: true, endgame: true, schedule: {periods: 15}}")
        echelon, rule, seasonal, endgame, schedule, periods = m.groups()
        return cls(rule=rule, positions="echelon" if echelon else "installation", seasonal=bool(seasonal),
                   endgame=bool(endgame),
                   schedule=None if schedule is None else Schedule(periods=int(periods or DEFAULT_PERIODS)))


def as_spec(rule, where: str = "rule") -> RuleSpec:
    """``rule`` as a :class:`RuleSpec`: a spec as it is, a mapping validated, a name through
    :meth:`RuleSpec.from_name` (the alias path). Bad input: one :class:`ConfigError` line."""
    if isinstance(rule, RuleSpec):
        return rule
    if isinstance(rule, dict):
        from pydantic import ValidationError

        from hmarl_rllib.sim.config import format_validation_error

        try:
            return RuleSpec.model_validate(rule)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, where)) from None
    return RuleSpec.from_name(rule, where)


def every_spec(periods: int = DEFAULT_PERIODS) -> tuple[RuleSpec, ...]:
    """Every rule (2 rules × 2 positions × seasonal × endgame × schedule: 32), schedules of
    ``periods`` periods; their names are the aliases ``--policy`` and ``training.baseline`` accept."""
    return tuple(RuleSpec(rule=r, positions=p, seasonal=sea, endgame=end,
                          schedule=Schedule(periods=periods) if sch else None)
                 for sch, sea, end, p, r in itertools.product((False, True), (False, True), (False, True),
                                                              ("installation", "echelon"), ("base_stock", "s_S")))
