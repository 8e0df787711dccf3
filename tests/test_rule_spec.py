"""Rules as data (:class:`hmarl_rllib.policies.spec.RuleSpec`): every old name is an alias of one
spec and comes back from it; a bad rule is refused in one line naming the field (exit 2 on the
command line); the mapping form of ``training.baseline`` picks the very tuned rule (the same
cached file) its old name did; a schedule's number of periods is part of the rule."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from hmarl_rllib.cli import main
from hmarl_rllib.errors import ConfigError
from hmarl_rllib.experiments.training import baseline_policy, training_settings
from hmarl_rllib.policies.heuristics import initial_guess
from hmarl_rllib.policies.spec import RuleSpec, Schedule, every_spec
from hmarl_rllib.policies.tuning import (load_policy, params_path, policy_to_dict, read_cached, save_policy,
                                         scenario_fingerprint)
from hmarl_rllib.sim.config import load_config

from conftest import DEFAULT_YAML, ROOT

# the 32 names rules had before they were data, written out as they were built then
KINDS = ("base_stock", "s_S", "echelon_base_stock", "echelon_s_S")
OLD_NAMES = [k + sea + end + sch for sch in ("", "_schedule") for sea in ("", "_seasonal")
             for end in ("", "_endgame") for k in KINDS]


@pytest.mark.parametrize("name", OLD_NAMES)
def test_every_old_name_round_trips_through_its_spec(name):
    spec = RuleSpec.from_name(name)
    assert spec.name == name
    assert RuleSpec.from_name(spec.name) == spec
    assert spec.kind == name.split("_seasonal")[0].split("_endgame")[0].split("_schedule")[0]
    assert spec.seasonal == ("_seasonal" in name) and spec.endgame == ("_endgame" in name)
    assert (spec.schedule is not None) == name.endswith("_schedule")
    assert spec.schedule is None or spec.schedule.periods == 15  # the schedule the cached files were tuned with
    assert RuleSpec.model_validate(spec.model_dump()) == spec  # the mapping form says the same


def test_the_aliases_are_the_names_of_every_spec_one_spec_each():
    specs = [RuleSpec.from_name(n) for n in OLD_NAMES]
    assert len(set(specs)) == len(OLD_NAMES) == 32
    assert [s.name for s in every_spec()] == OLD_NAMES
    full = RuleSpec.from_name("echelon_s_S_seasonal_endgame_schedule")
    assert full == RuleSpec(rule="s_S", positions="echelon", seasonal=True, endgame=True, schedule=Schedule())
    other = RuleSpec(rule="s_S", schedule={"periods": 5})
    assert other.name == "s_S_schedule5" and RuleSpec.from_name(other.name) == other
    assert RuleSpec(rule="s_S", schedule=True) == RuleSpec.from_name("s_S_schedule")


@pytest.mark.parametrize("name", ["sS", "s_S_endgame_seasonal", "echelon_s_S_schedule0", "s_S_", "random", ""])
def test_an_unknown_name_is_refused_in_one_line_with_the_valid_form(name):
    with pytest.raises(ConfigError) as err:
        RuleSpec.from_name(name, "--policy")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"--policy {name}: unknown rule")
    assert "<policy>[_seasonal][_endgame][_schedule]" in msg and "echelon_s_S" in msg


def _with_baseline(tmp_path, baseline):
    data = yaml.safe_load(DEFAULT_YAML.read_text())
    data["training"]["baseline"] = baseline
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


@pytest.mark.parametrize("baseline, needles", [
    ({"rule": "sS"}, ["training.baseline.rule = 'sS'", "'base_stock' or 's_S'"]),
    ({"rule": "s_S", "endgame": True, "stop": 3}, ["training.baseline.stop = 3", "unknown field"]),
    ({"rule": "s_S", "schedule": {"periods": 0}}, ["training.baseline.schedule.periods = 0", "greater than or equal to 1"]),
    ({"rule": "s_S", "positions": "echelons"}, ["training.baseline.positions = 'echelons'", "'echelon'"]),
    ({"rule": "s_S", "seasonal": "yes"}, ["training.baseline.seasonal = 'yes'", "boolean"]),
    ({"positions": "echelon"}, ["training.baseline.rule", "required"]),
    ("s_S_endgame_shedule", ["training.baseline = 's_S_endgame_shedule'", "unknown rule", "or auto"]),
    (7, ["training.baseline = 7", "s_S_endgame_schedule"]),
])
def test_a_bad_baseline_is_refused_in_one_line_naming_the_field(tmp_path, baseline, needles):
    sc = _with_baseline(tmp_path, baseline)
    with pytest.raises(ConfigError) as err:
        training_settings(sc)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "cfg.yaml")), msg
    for n in needles:
        assert n in msg, msg


@pytest.mark.parametrize("policy, needles", [
    ("{rule: s_S, schedule: {periods: 0}}", ["--policy", "schedule.periods = 0"]),
    ("{rule: s_S, endgames: true}", ["--policy", "endgames", "unknown field"]),
    ("{rule: sS}", ["--policy", "rule = 'sS'"]),
    ("s_S_endgam", ["--policy", "s_S_endgam: unknown rule"]),
])
def test_a_bad_policy_flag_exits_2_with_one_line(capsys, policy, needles):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--config", str(DEFAULT_YAML), "--policy", policy, "--rule-based", "--episodes", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for n in needles:
        assert n in err[0], err[0]


def test_the_policy_flag_takes_a_mapping_or_its_old_name_alike(capsys):
    runs = []
    for policy in ("echelon_s_S_seasonal", "{rule: s_S, positions: echelon, seasonal: true}"):
        assert main(["simulate", "--config", str(DEFAULT_YAML), "--policy", policy, "--rule-based",
                     "--episodes", "2", "--json"]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0] == runs[1] and runs[0]["policy"] == "echelon_s_S_seasonal"
    assert main(["simulate", "--config", str(DEFAULT_YAML), "--policy", "{rule: s_S, endgame: true}",
                 "--rule-based"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no stop days for s_S_endgame" in err[0] and "--policy s_S" in err[0], err


@pytest.mark.parametrize("config, alias", [("default", "s_S_endgame_schedule"),
                                           ("seasonal", "echelon_s_S_seasonal_endgame_schedule"),
                                           ("tune_ppo", "s_S_endgame_schedule")])
def test_the_mapping_form_trains_the_same_baseline_as_its_alias(monkeypatch, config, alias):
    """The shipped configs' training.baseline (a mapping, tune_ppo.yaml: still the old name) is
    the rule of that name: same spec, same cached file (which is there and valid: nothing is
    tuned), the same tuned levels; ``auto`` still means the cheaper of s_S and base_stock."""
    from hmarl_rllib.policies import tuning

    def no_tuning(*args, **kwargs):
        raise AssertionError("a cached baseline was tuned again")

    monkeypatch.setattr(tuning, "tune_policy", no_tuning)
    sc = load_config(ROOT / "configs" / f"{config}.yaml")
    mapped = training_settings(sc)
    aliased = training_settings(sc, baseline=alias)
    assert isinstance(mapped.baseline, RuleSpec) and mapped.baseline == aliased.baseline
    path = params_path(sc, mapped.baseline)
    assert path == params_path(sc, alias) == ROOT / "configs" / "baselines" / f"{sc.name}_{alias}.yaml"
    assert read_cached(path, sc, mapped.baseline)[1] == "ok"
    a, b = baseline_policy(sc, mapped), baseline_policy(sc, aliased)
    assert a.name == b.name == alias and a.spec == mapped.baseline
    assert policy_to_dict(a, sc) == policy_to_dict(b, sc)
    assert training_settings(sc, baseline="auto").baseline == "auto"


def test_a_schedule_of_other_periods_is_saved_apart_and_read_back(default_scenario, tmp_path):
    """The number of periods is part of the rule: written in the parameters file only when it is
    not the default (files tuned before stay byte for byte), read back, and a file of 15 periods
    is stale for a rule of 5."""
    sc = default_scenario.model_copy(update={"source_path": str(tmp_path / "cfg.yaml")})
    base = initial_guess(sc, "s_S")
    five = base.with_(schedule=np.ones((5, 3, 2)), period_days=6, schedule_periods=5,
                      meta={"fingerprint": scenario_fingerprint(sc)})
    fifteen = base.with_(schedule=np.ones((15, 3, 2)), period_days=2, meta={"fingerprint": scenario_fingerprint(sc)})
    assert policy_to_dict(five, sc)["schedule"]["periods"] == 5
    assert "periods" not in policy_to_dict(fifteen, sc)["schedule"]
    spec5 = RuleSpec(rule="s_S", schedule={"periods": 5})
    p5, p15 = params_path(sc, spec5), params_path(sc, "s_S_schedule")
    assert p5.name == "default_s_S_schedule5.yaml" and p15.name == "default_s_S_schedule.yaml"
    save_policy(five, sc, p5)
    save_policy(fifteen, sc, p15)
    assert load_policy(p5, sc).spec == spec5
    assert read_cached(p5, sc, spec5)[1] == "ok" and read_cached(p15, sc, "s_S_schedule")[1] == "ok"
    assert read_cached(p15, sc, spec5)[1] == "stale"
