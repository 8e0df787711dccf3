"""Scenario configuration: YAML files in ``configs/`` loaded into typed, validated objects.

A YAML scenario is the only way to describe a supply chain. :func:`load_config` reads one,
validates every field with pydantic and returns a :class:`Scenario`. Any bad value raises
:class:`ConfigError` whose message is one line naming the field, the value and what is allowed;
the CLI turns it into exit code 2.

Unknown keys are refused (a typo must never become a silent default).
"""
from __future__ import annotations

import re

from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import (
                      BaseModel,
                      ConfigDict,
                      Field,
                      NonNegativeFloat,
                      NonNegativeInt,
                      PositiveFloat,
                      PositiveInt,
                      ValidationError,
                      field_validator,
                      model_serializer,
                      model_validator,
                      )

from hmarl_rllib.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------- SKUs
class EchelonCosts(_Strict):
    """A cost per unit-day at each echelon."""

    store: NonNegativeFloat = 0.10
    warehouse: NonNegativeFloat = 0.05
    supplier: NonNegativeFloat = 0.02


class OrderCost(_Strict):
    """Cost of one order: ``fixed`` if the order is positive [K], plus ``per_unit`` × units [c]."""

    fixed: NonNegativeFloat = 0.0
    per_unit: NonNegativeFloat = 0.0


class OrderingCosts(_Strict):
    store: OrderCost = OrderCost(fixed=80.0)
    warehouse: OrderCost = OrderCost(fixed=500.0)
    supplier: OrderCost = OrderCost()


class SKU(_Strict):
    name: str = "A"
    unit_cost: NonNegativeFloat = 10.0
    price: NonNegativeFloat = 20.0
    holding_cost: EchelonCosts = EchelonCosts()
    stockout_penalty: NonNegativeFloat = 5.0
    backorder_cost: NonNegativeFloat = 1.0
    ordering_cost: OrderingCosts = OrderingCosts()

    @field_validator("name")
    @classmethod
    def _file_safe(cls, v):
        # agent ids are "<store>:<sku>" and checkpoint folders are named after module ids
        if not re.fullmatch(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*", v):
            raise ValueError("use letters, digits, '_', '-' and inner '.' only (it names agents and checkpoint folders)")
        return v


# ------------------------------------------------------------------------------------- demand
class Promotions(_Strict):
    """Random promotion / shock days: each day, with ``probability``, demand is multiplied by
    ``multiplier`` for ``duration_days``; ``days`` lists fixed promotion days (0-based)."""

    probability: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    multiplier: PositiveFloat = 2.0
    duration_days: PositiveInt = 1
    days: list[NonNegativeInt] = []


class DemandModel(_Strict):
    """Daily customer demand at one store for one SKU.

    mean path: ``mean × weekly[dow] × (1 + yearly_amplitude·cos(2π(day − yearly_peak_day)/365))
    × (1 + trend_per_day·day) × promotion multiplier``; the count is drawn from ``model``:
    ``poisson``; ``normal`` (``std``, rounded, floored at 0); ``negative_binomial``
    (variance = mean + mean²/``dispersion``).
    """

    model: Literal["poisson", "normal", "negative_binomial"] = "poisson"
    mean: NonNegativeFloat = 60.0
    std: NonNegativeFloat | None = None
    dispersion: PositiveFloat | None = None
    weekly: list[NonNegativeFloat] | None = None
    yearly_amplitude: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    yearly_peak_day: NonNegativeInt = 0
    trend_per_day: float = 0.0
    promotions: Promotions = Promotions()

    @field_validator("weekly")
    @classmethod
    def _seven(cls, v):
        if v is not None and len(v) != 7:
            raise ValueError("must list 7 multiplicative factors, Monday to Sunday")
        return v

    @model_validator(mode="after")
    def _params(self):
        if self.model == "normal" and self.std is None:
            raise ValueError("model 'normal' needs std (a number >= 0)")
        if self.model == "negative_binomial" and self.dispersion is None:
            raise ValueError("model 'negative_binomial' needs dispersion (a number > 0)")
        return self


# ------------------------------------------------------------------------------------ network
class Store(_Strict):
    name: str
    demand: DemandModel | dict[str, DemandModel] = DemandModel()
    initial_inventory: NonNegativeInt | dict[str, NonNegativeInt] = 400
    capacity: PositiveInt | None = None
    lead_time: NonNegativeInt = 3


class StoreGroup(_Strict):
    """``count`` identical stores named ``store_1`` … ``store_<count>``."""

    count: Annotated[int, Field(ge=1, le=100_000)] = 3
    demand: DemandModel | dict[str, DemandModel] = DemandModel()
    initial_inventory: NonNegativeInt | dict[str, NonNegativeInt] = 400
    capacity: PositiveInt | None = None
    lead_time: NonNegativeInt = 3

    def expand(self) -> list[Store]:
        body = self.model_dump(exclude={"count"})
        return [Store(name=f"store_{i + 1}", **body) for i in range(self.count)]


class Warehouse(_Strict):
    capacity: PositiveInt | None = None
    initial_inventory: NonNegativeInt | dict[str, NonNegativeInt] = 2500
    lead_time: NonNegativeInt = 2
    allocation: Literal["proportional", "priority"] = "proportional"


class Supplier(_Strict):
    production_capacity: PositiveInt = 10_000
    lead_time: NonNegativeInt = 7
    initial_inventory: NonNegativeInt | dict[str, NonNegativeInt] = 600


class RandomLeadTimes(_Strict):
    """Optional random delays: each shipment is late by ``1..max_extra_days`` days with
    ``probability`` (uniform over the extra days)."""

    enabled: bool = False
    probability: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2
    max_extra_days: PositiveInt = 2


class Reward(_Strict):
    """reward_i = −cost_scale × [(1 − team_weight)·cost_i + team_weight·chain_cost / n_agents]."""

    cost_scale: PositiveFloat = 0.01
    team_weight: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0


class ActionSet(_Strict):
    """What one discrete action means.

    - ``quantities``: order ``values[a]`` units.
    - ``order_up_to``: order up to ``values[a] × mean daily demand`` (inventory position).
    - ``base_stock_correction``: order the tuned base-stock order plus ``values[a] × mean daily
      demand`` (never below 0).
    - ``baseline_correction``: order what the tuned baseline rule (the training's scripted
      policy, e.g. (s, S)) would order, plus ``values[a] × mean daily demand`` (never below 0);
      a 0 in ``values`` reproduces the rule exactly.
    """

    mode: Literal["quantities", "order_up_to", "base_stock_correction", "baseline_correction"] = "quantities"
    values: Annotated[list[float], Field(min_length=2, max_length=64)]

    @model_validator(mode="after")
    def _non_negative(self):
        if not self.mode.endswith("_correction") and min(self.values) < 0:
            raise ValueError(f"values must be >= 0 in mode {self.mode!r} (only the *_correction modes"
                             " take negative corrections)")
        return self


class Actions(_Strict):
    store: ActionSet = ActionSet(mode="quantities", values=[0, 150, 300, 450])
    warehouse: ActionSet = ActionSet(mode="quantities", values=[0, 1000, 2000, 3000])
    supplier: ActionSet = ActionSet(mode="quantities", values=[0, 200, 400])


class RuleParams(_Strict):
    """A classic rule: reorder point [s] and order-up-to level [S] on inventory position."""

    reorder_point: NonNegativeFloat
    order_up_to: NonNegativeFloat

    @model_validator(mode="after")
    def _order(self):
        if self.order_up_to < self.reorder_point:
            raise ValueError(f"order_up_to ({self.order_up_to:g}) must be >= reorder_point"
                             f" ({self.reorder_point:g})")
        return self


class RuleBased(_Strict):
    store: RuleParams = RuleParams(reorder_point=300, order_up_to=700)
    warehouse: RuleParams = RuleParams(reorder_point=2000, order_up_to=4000)
    supplier: RuleParams = RuleParams(reorder_point=1500, order_up_to=3000)


class Observations(_Strict):
    """``walkthrough``: store 7, warehouse 6, supplier 3 floats. ``rich``: adds pipeline,
    recent-demand and calendar features (see :class:`hmarl_rllib.rl.env.HMARLEnv`)."""

    mode: Literal["walkthrough", "rich"] = "walkthrough"
    # stock is observed in units of stock_days days of mean demand (before the squash into
    # [-10, 10]): 10 by default; smaller values resolve single units better on small problems
    stock_days: Annotated[float, Field(gt=0.0, le=1000.0)] = 10.0
    # rich mode: false observes the calendar features / the recent-demand features (yesterday,
    # the 7-day mean, the 7-day history) as 0, keeping the layout: inputs that carry nothing when
    # demand is stationary and independent from day to day, only noise for the network
    calendar: bool = True
    demand_history: bool = True


class DemandSplit(_Strict):
    """A demand file split by date: RL training and baseline tuning draw their windows from the
    first part, the evaluations that choose the checkpoint from the second, ``evaluate`` and
    ``benchmark`` from the last; no window crosses a boundary. Give the last day of the first two
    parts (``train_until``, ``validate_until``), or their shares of the file's days
    (``train_fraction``, ``validate_fraction``)."""

    train_until: date | None = None
    validate_until: date | None = None
    train_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    validate_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None

    @model_validator(mode="after")
    def _one_style(self):
        dates = (self.train_until, self.validate_until)
        shares = (self.train_fraction, self.validate_fraction)
        if any(d is not None for d in dates) and any(x is not None for x in shares):
            raise ValueError("give either train_until and validate_until (dates) or train_fraction and validate_fraction,"
                             " not both")
        if all(d is not None for d in dates):
            if self.validate_until <= self.train_until:
                raise ValueError(f"validate_until ({self.validate_until}) must come after train_until ({self.train_until})")
        elif all(x is not None for x in shares):
            if self.train_fraction + self.validate_fraction >= 1.0:
                raise ValueError(f"train_fraction + validate_fraction = {self.train_fraction + self.validate_fraction:g}"
                                 " leaves no test part; keep it below 1")
        else:
            raise ValueError("give train_until and validate_until (dates, e.g. 2025-06-30), or train_fraction and"
                             " validate_fraction (shares of the file's days, e.g. 0.6 and 0.2)")
        return self


class Scenario(_Strict):
    name: str = "default"
    episode_length: Annotated[int, Field(ge=1, le=100_000)] = 30
    warmup_days: NonNegativeInt = 0
    # finite: the episode is the whole problem (it ends on its last day, and agents observe the
    # share of time left); infinite: the episode is a time limit on an endless problem (RLlib
    # bootstraps the value of the last day, and the share of time left is always observed as 1),
    # for policies judged on their long-run average cost per day
    horizon: Literal["finite", "infinite"] = "finite"
    seed: NonNegativeInt = 42
    start_weekday: Annotated[int, Field(ge=0, le=6)] = 0
    shortage: Literal["lost_sales", "backorder"] = "lost_sales"
    # unfilled internal orders (store orders the warehouse cannot fill, warehouse orders the
    # supplier cannot fill): ``cancel`` (dropped) or ``backorder`` (they wait and ship first as
    # soon as stock allows); see hmarl_rllib/sim/network.py
    internal_shortage: Literal["cancel", "backorder"] = "cancel"
    skus: Annotated[list[SKU], Field(min_length=1)] = [SKU()]
    stores: StoreGroup | Annotated[list[Store], Field(min_length=1)] = StoreGroup()
    warehouse: Warehouse = Warehouse()
    supplier: Supplier = Supplier()
    demand_file: str | None = None
    demand_split: DemandSplit | None = None  # needs demand_file (see DemandSplit)
    # the M5 layout's calendar (columns d, date); default: calendar.csv beside the demand file
    demand_calendar: str | None = None
    random_lead_times: RandomLeadTimes = RandomLeadTimes()
    reward: Reward = Reward()
    actions: Actions = Actions()
    observations: Observations = Observations()
    rule_based: RuleBased = RuleBased()
    # Sections read by other layers (training, tuning); kept as plain mappings here.
    training: dict[str, Any] | None = None
    baseline_params: str | None = None
    source_path: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _check(self):
        names = [s.name for s in self.skus]
        if len(set(names)) != len(names):
            raise ValueError(f"skus: names must be unique, got {names}")
        if self.demand_split is not None and not self.demand_file:
            raise ValueError("demand_split: splits a demand file; set demand_file or drop demand_split")
        stores = self.store_list
        snames = [s.name for s in stores]
        if len(set(snames)) != len(snames):
            raise ValueError(f"stores: names must be unique, got {snames}")
        for i, st in enumerate(stores):
            for field in ("demand", "initial_inventory"):
                v = getattr(st, field)
                if isinstance(v, dict):
                    unknown = sorted(set(v) - set(names))
                    missing = sorted(set(names) - set(v))
                    if unknown or missing:
                        raise ValueError(
                            f"stores[{i}].{field}: per-SKU keys must be exactly {names}"
                            f" (unknown {unknown}, missing {missing})")
            if st.capacity is not None:
                for k in range(len(names)):
                    if self.per_sku(st.initial_inventory, k) > st.capacity:
                        raise ValueError(f"stores[{i}].initial_inventory = {self.per_sku(st.initial_inventory, k)}"
                                         f" exceeds its capacity {st.capacity}")
        for node in ("warehouse", "supplier"):
            v = getattr(self, node).initial_inventory
            if isinstance(v, dict):
                unknown, missing = sorted(set(v) - set(names)), sorted(set(names) - set(v))
                if unknown or missing:
                    raise ValueError(f"{node}.initial_inventory: per-SKU keys must be exactly {names}"
                                     f" (unknown {unknown}, missing {missing})")
        cap = self.warehouse.capacity
        if cap is not None and any(self.per_sku(self.warehouse.initial_inventory, k) > cap
                                   for k in range(len(names))):
            raise ValueError(f"warehouse.initial_inventory exceeds its capacity {cap}")
        return self

    @model_serializer(mode="wrap")
    def _drop_default_internal_shortage(self, handler):
        # ``internal_shortage: cancel`` (the default) is left out of dumps, so that fingerprints
        # of scenarios written before the field existed (cached tuned baselines) stay the same
        # (the same for ``horizon: finite``)
        out = handler(self)
        if isinstance(out, dict):
            for key, default in (("internal_shortage", "cancel"), ("horizon", "finite")):
                if out.get(key) == default:
                    out.pop(key)
        return out

    def model_copy(self, *, update=None, deep=False):
        new = super().model_copy(update=update, deep=deep)
        new.__dict__.pop("store_list", None)  # derived from `stores`: recompute on the copy
        return new

    # ---- derived views used by the twin
    @cached_property
    def store_list(self) -> list[Store]:
        return self.stores.expand() if isinstance(self.stores, StoreGroup) else list(self.stores)

    @property
    def sku_names(self) -> list[str]:
        return [s.name for s in self.skus]

    @property
    def store_names(self) -> list[str]:
        return [s.name for s in self.store_list]

    def per_sku(self, value, k: int):
        return value[self.skus[k].name] if isinstance(value, dict) else value

    def store_demand(self, i: int, k: int) -> DemandModel:
        return self.per_sku(self.store_list[i].demand, k)

    def mean_demand(self) -> np.ndarray:
        """Mean daily demand per store and SKU over the episode's mean path, shape (N, K)."""
        from hmarl_rllib.sim.demand import mean_path

        return mean_path(self, self.warmup_days + self.episode_length).mean(axis=0)


_UNION_BRANCHES = {"StoreGroup", "list[Store]", "DemandModel", "int", "float", "str", "bool", "none"}


def _is_branch(part) -> bool:
    """A location segment that names a union branch (a type), not a field or key."""
    p = str(part)
    return p in _UNION_BRANCHES or any(c in p for c in "[(") or p.startswith(("function-", "tagged", "constrained-"))


def _location(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _is_branch(part):
            out += f".{part}" if out else str(part)
    return out


def _most_specific(err: ValidationError) -> dict:
    """The error worth reporting. For a union (e.g. ``stores``: a group or a list) pydantic
    reports every branch; the branch that failed on a type or an unknown key is the wrong
    branch, so prefer a value error, then the deepest location."""
    def mismatch(e):
        return e["type"].endswith("_type") or e["type"] == "extra_forbidden"

    return min(err.errors(), key=lambda e: (mismatch(e), -len(e["loc"])))


def format_validation_error(err: ValidationError, source: str, section: str = "") -> str:
    """The one line a pydantic error becomes, for every model the YAML is validated by:
    ``<source>: <section><field> = <value>: <what is wrong>`` (the most specific error, see
    :func:`_most_specific`; ``section``: where the model sits in the file, e.g. ``"training."``)."""
    e = _most_specific(err)
    loc = _location(e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; see configs/default.yaml for every field)"
    value = e.get("input")
    shown = repr(value) if not isinstance(value, dict) else "{...}"
    if not loc:  # a check across fields: its message names the fields and values
        return f"{source}: {section.rstrip('.') + ': ' if section else ''}{msg}"
    return f"{source}: {section}{loc} = {shown}: {msg}"


def parse_config(data: dict, source: str = "config") -> Scenario:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must hold a YAML mapping of scenario fields")
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_config(path: str | Path) -> Scenario:
    """Read and validate a YAML scenario; raise :class:`ConfigError` with one clear line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file (pass a YAML file, e.g. configs/default.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    scenario = parse_config(data if data is not None else {}, str(path))
    updates: dict[str, Any] = {"source_path": str(path.resolve())}
    if scenario.demand_file and not Path(scenario.demand_file).is_absolute():
        updates["demand_file"] = str((path.parent / scenario.demand_file).resolve())
    if scenario.demand_calendar and not Path(scenario.demand_calendar).is_absolute():
        updates["demand_calendar"] = str((path.parent / scenario.demand_calendar).resolve())
    if scenario.baseline_params and not Path(scenario.baseline_params).is_absolute():
        updates["baseline_params"] = str((path.parent / scenario.baseline_params).resolve())
    return scenario.model_copy(update=updates)
