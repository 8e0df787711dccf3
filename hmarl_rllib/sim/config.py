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


# Field descriptions are the reference of the YAML (docs/config_reference.md, generated from
# them by `hmarl config-reference`): the meaning of a key lives here, once.

# --------------------------------------------------------------------------------------- SKUs
class EchelonCosts(_Strict):
    """A cost per unit-day at each echelon."""

    store: NonNegativeFloat = Field(0.10, description="at each store: per unit on hand at the end of a day"
                                                      " (stock in transit is free)")
    warehouse: NonNegativeFloat = Field(0.05, description="at the warehouse: per unit on hand at the end of a day"
                                                          " (stock in transit is free)")
    supplier: NonNegativeFloat = Field(0.02, description="at the supplier: per finished unit on hand at the end of a"
                                                         " day (production in progress is free)")


class OrderCost(_Strict):
    """Cost of one order: ``fixed`` if the order is positive [K], plus ``per_unit`` × units [c]."""

    fixed: NonNegativeFloat = Field(0.0, description="[K] per positive order as placed (after rounding and the"
                                                     " capacity clip), whether or not it is then filled")
    per_unit: NonNegativeFloat = Field(0.0, description="[c] per unit delivered into the pipeline (for the supplier:"
                                                        " put into production); a cancelled part pays none")


class OrderingCosts(_Strict):
    store: OrderCost = Field(OrderCost(fixed=80.0), description="a store's order to the warehouse")
    warehouse: OrderCost = Field(OrderCost(fixed=500.0), description="the warehouse's order to the supplier")
    supplier: OrderCost = Field(OrderCost(), description="the supplier's production order")


class SKU(_Strict):
    name: str = Field("A", description="unique; letters, digits, '_', '-' and inner '.' (it names the agents"
                                       " '<store>:<sku>' and checkpoint folders)")
    unit_cost: NonNegativeFloat = Field(10.0, description="money per unit; recorded only: no cost, reward or KPI"
                                                          " reads it (ordering cost per unit:"
                                                          " ordering_cost.*.per_unit)")
    price: NonNegativeFloat = Field(20.0, description="selling price, money per unit; recorded only: no cost,"
                                                      " reward or KPI reads it")
    holding_cost: EchelonCosts = Field(EchelonCosts(), description="[h] holding cost per unit-day at each echelon")
    stockout_penalty: NonNegativeFloat = Field(5.0, description="[p] per unit of a day's customer demand not"
                                                                " served that day")
    backorder_cost: NonNegativeFloat = Field(1.0, description="[b] per unit-day in a store's customer backlog"
                                                              " (shortage: backorder)")
    ordering_cost: OrderingCosts = Field(OrderingCosts(), description="fixed [K] and per-unit [c] cost of an"
                                                                      " order, per echelon")

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

    probability: Annotated[float, Field(ge=0.0, le=1.0, description=(
        "chance that a random promotion starts on a day (per store and SKU)"))] = 0.0
    multiplier: PositiveFloat = Field(2.0, description="the mean demand is multiplied by this during a promotion")
    duration_days: PositiveInt = Field(1, description="days a promotion lasts, its first day included")
    days: list[NonNegativeInt] = Field([], description="fixed promotion days (0-based episode days, warm-up"
                                                       " included), on top of the random ones")


class DemandModel(_Strict):
    """Daily customer demand at one store for one SKU.

    mean path: ``mean × weekly[dow] × (1 + yearly_amplitude·cos(2π(day − yearly_peak_day)/365))
    × (1 + trend_per_day·day) × promotion multiplier``; the count is drawn from ``model``:
    ``poisson``; ``normal`` (``std``, rounded, floored at 0); ``negative_binomial``
    (variance = mean + mean²/``dispersion``).
    """

    model: Literal["poisson", "normal", "negative_binomial"] = Field(
        "poisson", description="distribution of the daily count around the mean path: poisson; normal (std,"
                               " rounded, floored at 0); negative_binomial (variance = mean + mean²/dispersion)")
    mean: NonNegativeFloat = Field(60.0, description="base mean demand, units/day (before the weekly, yearly, trend"
                                                     " and promotion factors)")
    std: NonNegativeFloat | None = Field(None, description="standard deviation, units/day (model normal: required)")
    dispersion: PositiveFloat | None = Field(None, description="variance = mean + mean²/dispersion (model"
                                                               " negative_binomial: required)")
    weekly: list[NonNegativeFloat] | None = Field(None, description="7 multiplicative factors, Monday to Sunday"
                                                                    " (day 0 is start_weekday); null: flat")
    yearly_amplitude: Annotated[float, Field(ge=0.0, lt=1.0, description=(
        "yearly swing: mean × (1 + amplitude·cos(2π(day − yearly_peak_day)/365))"))] = 0.0
    yearly_peak_day: NonNegativeInt = Field(0, description="episode day (0-based) on which the yearly swing peaks")
    trend_per_day: float = Field(0.0, description="linear trend: mean × max(0, 1 + trend_per_day·day), per day")
    promotions: Promotions = Field(Promotions(), description="random and fixed promotion days")

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
# the fields a store group and a listed store share: one text each
_STORE_DEMAND = ("the store's daily demand model, one for every SKU, or a mapping SKU name → model (exactly the"
                 " SKUs of skus)")
_STORE_INVENTORY = "units on hand per SKU on day 0, or a mapping SKU name → units"
_STORE_CAPACITY = ("maximum inventory position per SKU (on hand + in transit, + owed with internal_shortage:"
                   " backorder), units: orders are cut to fit; null: unlimited")
_STORE_LEAD_TIME = "days from the warehouse's shipment to its arrival at the store (0: the same day)"


class Store(_Strict):
    name: str = Field(description="the store's name (a list of stores only; unique)")
    demand: DemandModel | dict[str, DemandModel] = Field(DemandModel(), description=_STORE_DEMAND)
    initial_inventory: NonNegativeInt | dict[str, NonNegativeInt] = Field(400, description=_STORE_INVENTORY)
    capacity: PositiveInt | None = Field(None, description=_STORE_CAPACITY)
    lead_time: NonNegativeInt = Field(3, description=_STORE_LEAD_TIME)


class StoreGroup(_Strict):
    """``count`` identical stores named ``store_1`` … ``store_<count>``."""

    count: Annotated[int, Field(ge=1, le=100_000, description=(
        "a group of this many identical stores, named store_1 … store_<count> (a group only)"))] = 3
    demand: DemandModel | dict[str, DemandModel] = Field(DemandModel(), description=_STORE_DEMAND)
    initial_inventory: NonNegativeInt | dict[str, NonNegativeInt] = Field(400, description=_STORE_INVENTORY)
    capacity: PositiveInt | None = Field(None, description=_STORE_CAPACITY)
    lead_time: NonNegativeInt = Field(3, description=_STORE_LEAD_TIME)

    def expand(self) -> list[Store]:
        body = self.model_dump(exclude={"count"})
        return [Store(name=f"store_{i + 1}", **body) for i in range(self.count)]


class Warehouse(_Strict):
    capacity: PositiveInt | None = Field(None, description="maximum inventory position per SKU (on hand + in"
                                                           " transit, + owed with internal_shortage: backorder),"
                                                           " units: orders are cut to fit; null: unlimited")
    initial_inventory: NonNegativeInt | dict[str, NonNegativeInt] = Field(
        2500, description="units on hand per SKU on day 0, or a mapping SKU name → units")
    lead_time: NonNegativeInt = Field(2, description="days from the supplier's shipment to its arrival at the"
                                                     " warehouse")
    allocation: Literal["proportional", "priority"] = Field(
        "proportional", description="when the warehouse cannot fill every store order: proportional (largest"
                                    " remainder) or priority (in the order the stores are listed)")


class Supplier(_Strict):
    production_capacity: PositiveInt = Field(10_000, description="units/day over all SKUs; production orders above"
                                                                 " it are cut pro rata")
    lead_time: NonNegativeInt = Field(7, description="production lead time, days from starting production to"
                                                     " finished stock")
    initial_inventory: NonNegativeInt | dict[str, NonNegativeInt] = Field(
        600, description="finished units on hand per SKU on day 0, or a mapping SKU name → units")


class RandomLeadTimes(_Strict):
    """Optional random delays: each shipment is late by ``1..max_extra_days`` days with
    ``probability`` (uniform over the extra days)."""

    enabled: bool = Field(False, description="false: every lead time is exact")
    probability: Annotated[float, Field(ge=0.0, le=1.0, description=(
        "chance that a shipment (warehouse → store, supplier → warehouse) is late"))] = 0.2
    max_extra_days: PositiveInt = Field(2, description="a late shipment arrives 1..max_extra_days days late"
                                                       " (uniform)")


class Reward(_Strict):
    """reward_i = −cost_scale × [(1 − team_weight)·cost_i + team_weight·chain_cost / n_agents]."""

    cost_scale: PositiveFloat = Field(0.01, description="reward = −cost_scale × cost, per agent and day")
    team_weight: Annotated[float, Field(ge=0.0, le=1.0, description=(
        "0: an agent's own cost only; 1: the chain's cost shared equally (chain cost / number of agents)"))] = 0.0
    expected_costs: bool = Field(False, description=(
        "true: the stores' holding, stockout and backorder costs in the reward are their expectations over the"
        " day's demand distribution, given the stock after today's arrivals (the same expected return for every"
        " policy, without the demand's noise); needs demand models without random promotions. KPIs and"
        " evaluations always count realized costs"))


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

    mode: Literal["quantities", "order_up_to", "base_stock_correction", "baseline_correction"] = Field(
        "quantities", description="action a orders: quantities: values[a] units; order_up_to: up to values[a] ×"
                                  " mean daily demand (inventory position); base_stock_correction: the tuned"
                                  " base-stock order + values[a] × mean daily demand; baseline_correction: the"
                                  " tuned training.baseline rule's order + values[a] × mean daily demand (0"
                                  " reproduces the rule); corrections never order below 0")
    values: Annotated[list[float], Field(min_length=2, max_length=64, description=(
        "one number per discrete action: units (quantities) or days of mean demand (the other modes); negative"
        " only in the *_correction modes"))]

    @model_validator(mode="after")
    def _non_negative(self):
        if not self.mode.endswith("_correction") and min(self.values) < 0:
            raise ValueError(f"values must be >= 0 in mode {self.mode!r} (only the *_correction modes"
                             " take negative corrections)")
        return self


class Actions(_Strict):
    store: ActionSet = Field(ActionSet(mode="quantities", values=[0, 150, 300, 450]),
                             description="the actions of every store agent")
    warehouse: ActionSet = Field(ActionSet(mode="quantities", values=[0, 1000, 2000, 3000]),
                                 description="the actions of the warehouse agent")
    supplier: ActionSet = Field(ActionSet(mode="quantities", values=[0, 200, 400]),
                                description="the actions of the supplier agent (production orders)")


class RuleParams(_Strict):
    """A classic rule: reorder point [s] and order-up-to level [S] on inventory position."""

    reorder_point: NonNegativeFloat = Field(description="[s] order when the inventory position is at or below"
                                                        " this, units")
    order_up_to: NonNegativeFloat = Field(description="[S] order up to this inventory position, units (≥"
                                                      " reorder_point)")

    @model_validator(mode="after")
    def _order(self):
        if self.order_up_to < self.reorder_point:
            raise ValueError(f"order_up_to ({self.order_up_to:g}) must be >= reorder_point"
                             f" ({self.reorder_point:g})")
        return self


class RuleBased(_Strict):
    store: RuleParams = Field(RuleParams(reorder_point=300, order_up_to=700),
                              description="every store's (s, S), for each SKU")
    warehouse: RuleParams = Field(RuleParams(reorder_point=2000, order_up_to=4000),
                                  description="the warehouse's (s, S), for each SKU")
    supplier: RuleParams = Field(RuleParams(reorder_point=1500, order_up_to=3000),
                                 description="the supplier's (s, S) on its production orders, for each SKU")


class Observations(_Strict):
    """``walkthrough``: store 7, warehouse 6, supplier 3 floats. ``rich``: adds pipeline,
    recent-demand and calendar features (see :class:`hmarl_rllib.rl.env.HMARLEnv`)."""

    mode: Literal["walkthrough", "rich"] = Field(
        "walkthrough", description="walkthrough: store 7, warehouse 6, supplier 3 floats (the original system);"
                                   " rich: adds pipeline, recent-demand and calendar features"
                                   " (hmarl_rllib.rl.env.HMARLEnv)")
    # stock is observed in units of stock_days days of mean demand (before the squash into
    # [-10, 10]): 10 by default; smaller values resolve single units better on small problems
    stock_days: Annotated[float, Field(gt=0.0, le=1000.0, description=(
        "stock is observed in units of this many days of mean demand (before the squash into [−10, 10]);"
        " smaller values resolve single units better on small problems"))] = 10.0
    # rich mode: false observes the calendar features / the recent-demand features (yesterday,
    # the 7-day mean, the 7-day history) as 0, keeping the layout: inputs that carry nothing when
    # demand is stationary and independent from day to day, only noise for the network
    calendar: bool = Field(True, description="rich mode: false observes the calendar features as 0 (same layout)")
    demand_history: bool = Field(True, description="rich mode: false observes the recent-demand features"
                                                   " (yesterday, the 7-day mean, the 7-day history) as 0 (same"
                                                   " layout)")


class DemandSplit(_Strict):
    """A demand file split by date: RL training and baseline tuning draw their windows from the
    first part, the evaluations that choose the checkpoint from the second, ``evaluate`` and
    ``benchmark`` from the last; no window crosses a boundary. Give the last day of the first two
    parts (``train_until``, ``validate_until``), or their shares of the file's days
    (``train_fraction``, ``validate_fraction``)."""

    train_until: date | None = Field(None, description="last day of the training part (RL training and"
                                                       " baseline tuning), e.g. 2025-06-30")
    validate_until: date | None = Field(None, description="last day of the validation part (the evaluations"
                                                          " that choose the checkpoint); the rest is the test"
                                                          " part (evaluate, benchmark)")
    train_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] | None = Field(
        None, description="the training part as a share of the file's days (instead of train_until)")
    validate_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] | None = Field(
        None, description="the validation part as a share of the file's days (instead of validate_until);"
                          " train_fraction + validate_fraction < 1")

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
    name: str = Field("default", description="the scenario's name: it names tuned baselines"
                                             " (configs/baselines/<name>_<rule>.yaml) and runs")
    episode_length: Annotated[int, Field(ge=1, le=100_000, description="scored days per episode")] = 30
    warmup_days: NonNegativeInt = Field(0, description="days played before the scored episode (by the warm-up"
                                                       " policy), not scored")
    # finite: the episode is the whole problem (it ends on its last day, and agents observe the
    # share of time left); infinite: the episode is a time limit on an endless problem (RLlib
    # bootstraps the value of the last day, and the share of time left is always observed as 1),
    # for policies judged on their long-run average cost per day
    horizon: Literal["finite", "infinite"] = Field(
        "finite", description="finite: the episode is the whole problem (agents observe the share of time left);"
                              " infinite: a time limit on an endless problem (RLlib bootstraps the last day's"
                              " value; time left is observed as 1), for the long-run cost per day")
    seed: NonNegativeInt = Field(42, description="recorded only: every episode's demand and delays come from its"
                                                 " own seed in the fixed ranges of hmarl_rllib/sim/simulate.py")
    start_weekday: Annotated[int, Field(ge=0, le=6, description=(
        "weekday of day 0: 0 = Monday … 6 = Sunday (weekly factors and calendar features)"))] = 0
    shortage: Literal["lost_sales", "backorder"] = Field(
        "lost_sales", description="customer demand a store cannot serve: lost (lost_sales) or kept in a backlog"
                                  " served first (backorder)")
    # unfilled internal orders (store orders the warehouse cannot fill, warehouse orders the
    # supplier cannot fill): ``cancel`` (dropped) or ``backorder`` (they wait and ship first as
    # soon as stock allows); see hmarl_rllib/sim/network.py
    internal_shortage: Literal["cancel", "backorder"] = Field(
        "cancel", description="store orders the warehouse cannot fill and warehouse orders the supplier cannot"
                              " fill: dropped (cancel) or wait and ship first as soon as stock allows (backorder)")
    skus: Annotated[list[SKU], Field(min_length=1)] = Field([SKU()], description="the products (at least one);"
                                                                                 " costs per SKU")
    stores: StoreGroup | Annotated[list[Store], Field(min_length=1)] = Field(
        StoreGroup(), description="a group of count identical stores, or a list of stores (each with a name)")
    warehouse: Warehouse = Field(Warehouse(), description="the one warehouse between the supplier and the stores")
    supplier: Supplier = Field(Supplier(), description="the supplier: produces and ships to the warehouse")
    demand_file: str | None = Field(None, description="demand from a file instead of the models: CSV or Parquet"
                                                      " (date, store, sku, demand) or the M5 sales file; a path"
                                                      " relative to the scenario file")
    demand_split: DemandSplit | None = Field(None, description="split demand_file by date into training,"
                                                               " validation and test parts (needs demand_file)")
    # the M5 layout's calendar (columns d, date); default: calendar.csv beside the demand file
    demand_calendar: str | None = Field(None, description="the M5 layout's calendar (columns d, date), relative to"
                                                          " the scenario file; null: calendar.csv beside"
                                                          " demand_file")
    random_lead_times: RandomLeadTimes = Field(RandomLeadTimes(), description="optional random shipment delays")
    reward: Reward = Field(Reward(), description="how costs become each agent's reward")
    actions: Actions = Field(Actions(), description="what each agent type's discrete actions mean")
    observations: Observations = Field(Observations(), description="what the agents observe")
    rule_based: RuleBased = Field(RuleBased(), description="fixed (s, S) levels on inventory positions: hmarl"
                                                           " simulate / baseline --rule-based, and the env's rule"
                                                           " when it is given no tuned baseline")
    # Sections read by other layers (training, tuning); kept as plain mappings here.
    training: dict[str, Any] | None = Field(None, description="the training: section read by hmarl train and hmarl"
                                                              " tune (hmarl_rllib.experiments.training"
                                                              ".TrainingSettings)")
    baseline_params: str | None = Field(None, description="a tuned-parameters YAML, relative to the scenario file;"
                                                          " not read by any command today (simulate takes --params)")
    source_path: str | None = Field(default=None, exclude=True, description=(
        "set by the loader to the scenario file's absolute path; not written in a YAML"))

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
        if self.reward.expected_costs:
            from hmarl_rllib.sim.demand import expected_cost_refusal

            why = expected_cost_refusal(self)
            if why:
                raise ValueError(why)
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
