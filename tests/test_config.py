"""Scenario configuration: the default file loads as documented, and every bad value is refused
with one line naming the field (and the value)."""
from __future__ import annotations

import pytest
import yaml

from hmarl_rllib.errors import ConfigError
from hmarl_rllib.sim.config import load_config, parse_config

from conftest import DEFAULT_YAML, WALKTHROUGH_YAML, deep_update


def test_default_yaml_is_the_walkthrough_scenario(default_scenario):
    sc = default_scenario
    assert sc.episode_length == 30 and sc.warmup_days == 0 and sc.seed == 42
    assert sc.store_names == ["store_1", "store_2", "store_3"]
    assert sc.supplier.production_capacity == 10_000 and sc.supplier.lead_time == 7
    assert (sc.rule_based.store.reorder_point, sc.rule_based.store.order_up_to) == (300, 700)
    assert (sc.rule_based.warehouse.reorder_point, sc.rule_based.warehouse.order_up_to) == (2000, 4000)



def test_walkthrough_yaml_is_default_yaml_with_the_original_agent_design():
    default, walk = load_config(DEFAULT_YAML), load_config(WALKTHROUGH_YAML)
    design = {"name", "reward", "actions", "observations", "training", "source_path"}
    assert walk.model_dump(exclude=design) == default.model_dump(exclude=design)
    assert walk.actions.store.mode == "quantities" and walk.actions.store.values == [0, 150, 300, 450]
    assert len(walk.actions.warehouse.values) == 4 and len(walk.actions.supplier.values) == 3
    assert walk.observations.mode == "walkthrough" and walk.reward.team_weight == 0.0


def test_every_field_in_default_yaml_is_a_schema_field():
    """Loading refuses unknown keys, so the walkthrough file must use exactly the schema's names."""
    data = yaml.safe_load(DEFAULT_YAML.read_text())
    assert parse_config(data).model_dump(exclude={"source_path"})["stores"]["count"] == 3


def test_per_sku_values_and_store_lists_are_accepted():
    sc = parse_config({
        "skus": [{"name": "A"}, {"name": "B"}],
        "stores": [{"name": "north", "lead_time": 0, "initial_inventory": {"A": 5, "B": 7},
                    "demand": {"A": {"mean": 3}, "B": {"model": "normal", "mean": 4, "std": 1}}},
                   {"name": "south", "capacity": 50, "initial_inventory": 50}],
        "warehouse": {"initial_inventory": {"A": 100, "B": 200}},
    })
    assert sc.store_names == ["north", "south"]
    assert sc.store_demand(0, 1).model == "normal" and sc.per_sku(sc.store_list[0].initial_inventory, 1) == 7
    assert sc.mean_demand().shape == (2, 2)


BAD = [
    # (case, override, field that must be named, value that must be shown)
    ("negative store lead time", {"stores": {"lead_time": -1}}, "stores.lead_time", "-1"),
    ("negative listed store lead time", {"stores": [{"name": "a", "lead_time": -2}]}, "stores[0].lead_time", "-2"),
    ("negative warehouse lead time", {"warehouse": {"lead_time": -1}}, "warehouse.lead_time", "-1"),
    ("negative supplier lead time", {"supplier": {"lead_time": -3}}, "supplier.lead_time", "-3"),
    ("unknown shortage mode", {"shortage": "lost"}, "shortage", "'lost'"),
    ("bad allocation", {"warehouse": {"allocation": "fifo"}}, "warehouse.allocation", "'fifo'"),
    ("weekly with 6 factors", {"stores": {"demand": {"weekly": [1, 1, 1, 1, 1, 1]}}}, "stores.demand.weekly", "[1, 1, 1, 1, 1, 1]"),
    ("normal without std", {"stores": {"demand": {"model": "normal", "mean": 5}}}, "stores.demand", "std"),
    ("listed store normal without std", {"stores": [{"name": "a", "demand": {"model": "normal"}}]}, "stores[0].demand", "std"),
    ("negbin without dispersion", {"stores": {"demand": {"model": "negative_binomial"}}}, "stores.demand", "dispersion"),
    ("unknown demand model", {"stores": {"demand": {"model": "gamma"}}}, "stores.demand.model", "'gamma'"),
    ("negative mean", {"stores": {"demand": {"mean": -5}}}, "stores.demand.mean", "-5"),
    ("yearly amplitude 1", {"stores": {"demand": {"yearly_amplitude": 1.0}}}, "stores.demand.yearly_amplitude", "1.0"),
    ("promotion probability > 1", {"stores": {"demand": {"promotions": {"probability": 2}}}},
     "stores.demand.promotions.probability", "2"),
    ("unknown top-level key typo", {"episode_lenght": 30}, "episode_lenght", "30"),
    ("unknown nested key typo", {"warehouse": {"capacty": 10}}, "warehouse.capacty", "10"),
    ("unknown key in a listed store", {"stores": [{"name": "a", "leadtime": 2}]}, "stores[0].leadtime", "2"),
    ("order_up_to < reorder_point", {"rule_based": {"store": {"reorder_point": 700, "order_up_to": 300}}},
     "rule_based.store", "700"),
    ("duplicate SKU names", {"skus": [{"name": "A"}, {"name": "A"}]}, "skus", "'A', 'A'"),
    ("SKU name with a colon", {"skus": [{"name": "A:1"}]}, "skus[0].name", "A:1"),
    ("SKU name with a slash", {"skus": [{"name": "a/b"}]}, "skus[0].name", "a/b"),
    ("duplicate store names", {"stores": [{"name": "x"}, {"name": "x"}]}, "stores", "'x', 'x'"),
    ("per-SKU demand with unknown SKU", {"stores": {"demand": {"Z": {"mean": 3}}}}, "stores", "Z"),
    ("per-SKU inventory with unknown SKU", {"stores": {"initial_inventory": {"Z": 3}}}, "stores[0].initial_inventory", "'Z'"),
    ("per-SKU warehouse inventory with unknown SKU", {"warehouse": {"initial_inventory": {"Z": 3}}},
     "warehouse.initial_inventory", "'Z'"),
    ("per-SKU supplier inventory with unknown SKU", {"supplier": {"initial_inventory": {"Z": 3}}},
     "supplier.initial_inventory", "'Z'"),
    ("per-SKU demand with a bad value", {"skus": [{"name": "A"}, {"name": "B"}],
                                         "stores": {"demand": {"A": {"mean": 3}, "B": {"mean": -4}}}},
     "stores.demand.B.mean", "-4"),
    ("negative per-SKU inventory", {"stores": {"initial_inventory": {"A": -1}}}, "stores.initial_inventory.A", "-1"),
    ("initial inventory above store capacity", {"stores": {"capacity": 100, "initial_inventory": 400}},
     "stores[0].initial_inventory", "400"),
    ("initial inventory above warehouse capacity", {"warehouse": {"capacity": 100, "initial_inventory": 400}},
     "warehouse.initial_inventory", "100"),
    ("zero capacity", {"warehouse": {"capacity": 0}}, "warehouse.capacity", "0"),
    ("zero production capacity", {"supplier": {"production_capacity": 0}}, "supplier.production_capacity", "0"),
    ("zero episode length", {"episode_length": 0}, "episode_length", "0"),
    ("negative warm-up", {"warmup_days": -1}, "warmup_days", "-1"),
    ("negative seed", {"seed": -1}, "seed", "-1"),
    ("start weekday 7", {"start_weekday": 7}, "start_weekday", "7"),
    ("store count 0", {"stores": {"count": 0}}, "stores.count", "0"),
    ("no stores", {"stores": []}, "stores", "[]"),
    ("no SKUs", {"skus": []}, "skus", "[]"),
    ("negative holding cost", {"skus": [{"name": "A", "holding_cost": {"store": -0.1}}]},
     "skus[0].holding_cost.store", "-0.1"),
    ("negative fixed ordering cost", {"skus": [{"name": "A", "ordering_cost": {"warehouse": {"fixed": -1}}}]},
     "skus[0].ordering_cost.warehouse.fixed", "-1"),
    ("team weight above 1", {"reward": {"team_weight": 1.5}}, "reward.team_weight", "1.5"),
    ("cost scale 0", {"reward": {"cost_scale": 0}}, "reward.cost_scale", "0"),
    ("random lead-time probability", {"random_lead_times": {"probability": -0.1}}, "random_lead_times.probability", "-0.1"),
    ("random lead-time extra days 0", {"random_lead_times": {"max_extra_days": 0}}, "random_lead_times.max_extra_days", "0"),
    ("one action value", {"actions": {"store": {"mode": "quantities", "values": [5]}}}, "actions.store.values", "[5]"),
    ("unknown action mode", {"actions": {"warehouse": {"mode": "bang_bang", "values": [0, 1]}}},
     "actions.warehouse.mode", "'bang_bang'"),
    ("negative order quantity", {"actions": {"store": {"mode": "quantities", "values": [-10, 10]}}},
     "actions.store", "quantities"),
    ("unknown observation mode", {"observations": {"mode": "full"}}, "observations.mode", "'full'"),
    ("episode length not a number", {"episode_length": "thirty"}, "episode_length", "'thirty'"),
]


@pytest.mark.parametrize("case, override, field, value", BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_refused_with_its_field_named(case, override, field, value):
    base = yaml.safe_load(DEFAULT_YAML.read_text())
    data = {k: v for k, v in deep_update(base, override).items()}
    if isinstance(override.get("stores"), list):
        data["stores"] = override["stores"]
    with pytest.raises(ConfigError) as info:
        parse_config(data, "bad.yaml")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("bad.yaml: ")
    assert field in msg, msg
    assert value in msg, msg
    assert "Traceback" not in msg


def test_negative_corrections_are_allowed_for_base_stock_correction():
    sc = parse_config({"actions": {"store": {"mode": "base_stock_correction", "values": [-2, 0, 2]}}})
    assert sc.actions.store.values == [-2, 0, 2]


@pytest.mark.parametrize("text, expect", [
    ("episode_length: [30\n", "not valid YAML"),
    ("- 1\n- 2\n", "YAML mapping"),
])
def test_unreadable_files_are_refused(tmp_path, text, expect):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=expect):
        load_config(p)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")


def test_relative_demand_file_resolves_next_to_the_config(tmp_path):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "s.yaml"
    p.write_text("demand_file: demand.csv\n")
    assert load_config(p).demand_file == str((tmp_path / "sub" / "demand.csv").resolve())


@pytest.mark.parametrize("override, field, value", [
    ({"num_env_runners": -1}, "training.num_env_runners", "-1"),
    ({"lr": "x"}, "training.lr", "'x'"),
    ({"lambda_": 2.0}, "training.lambda", "2.0"),
    ({"num_env_runner": 2}, "training.num_env_runner", "unknown field"),
    ({"evaluation_interval": 3}, "training.checkpoint_frequency", "evaluation_interval = 3"),  # a cross-field check
])
def test_training_overrides_are_validated_like_the_yaml(default_scenario, override, field, value):
    """An override of validated settings (``build_algo_config(scenario, settings, **overrides)``,
    as the CLI flags and code pass them) is refused with the YAML's one-line error."""
    from hmarl_rllib.experiments import training

    settings = training.training_settings(default_scenario)
    for build in (lambda: training.build_algo_config(default_scenario, settings, **override),
                  lambda: training.with_overrides(settings, **override)):
        with pytest.raises(ConfigError) as err:
            build()
        msg = str(err.value)
        assert field in msg and value in msg and "\n" not in msg, msg
    # a good override still applies, validated into a new settings object
    assert training.with_overrides(settings, num_env_runners=0, lr=None).num_env_runners == 0


@pytest.mark.parametrize("value, expect", [
    ([[5, 1e-3], [100, 1e-4]], "from 0"),
    ([[0, 1e-3]], "at least two"),
    ([[0, 1e-3], [0, 1e-4]], "must increase"),
    ([[0, -1.0], [3, 1e-4]], "values must be numbers > 0"),
    ("fast", "a number > 0 or a schedule"),
    (0, "a number > 0 or a schedule"),
])
def test_a_bad_learning_rate_schedule_is_refused_in_one_line(default_scenario, value, expect):
    from hmarl_rllib.experiments import training

    data = default_scenario.model_dump(mode="json", by_alias=True)
    data["training"] = {**(data.get("training") or {}), "lr": value}
    with pytest.raises(ConfigError) as err:
        training.training_settings(parse_config(data, "bad.yaml"))
    msg = str(err.value)
    assert "training.lr" in msg and expect in msg and "\n" not in msg, msg


def test_lr_and_entropy_schedules_reach_ppo(default_scenario):
    """A schedule [[env steps, value], ...] is handed to RLlib as its schedule; a number as a number."""
    from hmarl_rllib.experiments import training

    settings = training.with_overrides(training.training_settings(default_scenario),
                                       lr=[[0, "1e-3"], [1000, 1e-4]], entropy=[[0, 0.01], [500, 0.0]])
    assert settings.lr == [[0, 1e-3], [1000, 1e-4]] and settings.entropy == [[0, 0.01], [500, 0.0]]
    cfg = training.build_algo_config(default_scenario, settings, num_env_runners=0)
    assert cfg.lr == [[0, 1e-3], [1000, 1e-4]] and cfg.entropy_coeff == [[0, 0.01], [500, 0.0]]
    assert training.with_overrides(settings, lr="2e-4").lr == 2e-4


@pytest.mark.parametrize("value", [1.5, -0.1, "half"])
def test_a_random_starts_share_outside_0_1_is_refused_in_one_line(default_scenario, value):
    from hmarl_rllib.experiments import training

    data = default_scenario.model_dump(mode="json", by_alias=True)
    data["training"] = {**(data.get("training") or {}), "random_starts": value}
    with pytest.raises(ConfigError) as err:
        training.training_settings(parse_config(data, "bad.yaml"))
    msg = str(err.value)
    assert "training.random_starts" in msg and "\n" not in msg, msg


def test_random_starts_reach_the_training_envs_but_not_validation(default_scenario):
    from hmarl_rllib.experiments import training

    cfg = training.build_algo_config(default_scenario, num_env_runners=0, random_starts=0.25)
    assert cfg.env_config["random_starts"] == 0.25
    assert cfg.evaluation_config["env_config"]["random_starts"] == 0.0


def test_horizon_is_finite_or_infinite_and_leaves_cached_baselines_valid(default_scenario):
    from hmarl_rllib.policies.tuning import scenario_fingerprint

    data = default_scenario.model_dump(mode="json", by_alias=True)
    assert "horizon" not in data  # the default is left out of dumps: fingerprints written before it stay
    with pytest.raises(ConfigError) as err:
        parse_config({**data, "horizon": "forever"}, "bad.yaml")
    assert "horizon" in str(err.value) and "\n" not in str(err.value)
    endless = parse_config({**data, "horizon": "infinite"}, "ok.yaml")
    assert endless.model_dump(mode="json")["horizon"] == "infinite"
    # the twin's costs do not depend on the horizon: the same tuned rule serves both
    assert scenario_fingerprint(endless) == scenario_fingerprint(default_scenario)
