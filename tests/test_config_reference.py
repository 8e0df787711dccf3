"""docs/config_reference.md is generated from the pydantic models' field descriptions
(``hmarl_rllib.experiments.config_reference``): it is what the generator prints, every field of
every model a YAML is validated by has a description, and every key the shipped configs use is in
it with that description."""
from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from hmarl_rllib.cli import main
from hmarl_rllib.experiments import config_reference as ref

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / ref.OUT
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_the_committed_reference_is_the_generators_output():
    assert DOC.is_file(), f"{ref.OUT} is missing: run `{ref.COMMAND}`"
    assert DOC.read_text(encoding="utf-8") == ref.reference(), (
        f"{ref.OUT} is stale (a model's fields or descriptions changed): run `{ref.COMMAND}` and commit it")


def _models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds: itself, union members, list items, dict values."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _reachable() -> list[type[BaseModel]]:
    seen, todo = [], list(ref.ROOTS)
    while todo:
        model = todo.pop(0)
        if model in seen:
            continue
        seen.append(model)
        for field in model.model_fields.values():
            todo += _models_in(field.annotation)
    return seen


def test_every_field_of_every_model_has_a_description():
    models = _reachable()
    names = {m.__name__ for m in models}
    # the walk reaches the nested models, not only the roots
    assert {"Scenario", "SKU", "OrderCost", "StoreGroup", "Store", "DemandModel", "Promotions", "DemandSplit",
            "ActionSet", "RuleParams", "TrainingSettings", "RuleSpec", "Schedule", "SearchSettings"} <= names, names
    missing = [f"{m.__module__}.{m.__name__}.{name}" for m in models for name, f in m.model_fields.items()
               if not (f.description or "").strip()]
    assert not missing, f"fields without Field(description=...): {missing}"
    empty = [r.key for r in ref.rows() if not r.meaning.strip()]
    assert not empty, f"reference rows without a meaning: {empty}"


def _documented() -> dict[str, str]:
    """key -> type, read back from the committed reference's tables."""
    rows = re.findall(r"^\| `([^`]+)` \| (.*?) \| ", DOC.read_text(encoding="utf-8"), flags=re.M)
    return dict(rows)


def _yaml_keys(data: dict, documented: dict[str, str], prefix: str = ""):
    """Dotted paths of a YAML mapping; a list of mappings is its items' keys at the list's path; the
    names of a ``{name: X}`` mapping (per-SKU values, the search space) are not keys."""
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if path not in documented and "{name:" in documented.get(prefix, ""):
            if isinstance(value, dict) and "keys below" in documented[prefix]:
                yield from _yaml_keys(value, documented, prefix)  # e.g. stores.demand.<sku>.mean
            continue
        yield path
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                yield from _yaml_keys(item, documented, path)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_key_of_the_shipped_configs_is_in_the_reference(path):
    documented = _documented()
    keys = list(_yaml_keys(yaml.safe_load(path.read_text()), documented))
    assert len(keys) > 20, keys
    missing = [k for k in keys if k not in documented]
    assert not missing, f"{path.name}: keys not in {ref.OUT}: {missing} (run `{ref.COMMAND}`)"


def test_the_configs_named_by_the_brief_are_covered():
    assert {"default.yaml", "seasonal.yaml"} <= {p.name for p in CONFIGS}
    keys = set(_yaml_keys(yaml.safe_load((ROOT / "configs/seasonal.yaml").read_text()), _documented()))
    assert {"stores.demand.dispersion", "stores.demand.promotions.probability", "skus.ordering_cost.store.fixed",
            "training.baseline.schedule.periods", "training.learn"} <= keys
    # the names of a {name: X} mapping are not keys: per-SKU values, the search space
    per_sku = {"stores": {"demand": {"A": {"mean": 5}}, "initial_inventory": {"A": 3}},
               "training": {"search": {"space": {"lr": {"choice": [1]}}}}}
    assert list(_yaml_keys(per_sku, _documented())) == [
        "stores", "stores.demand", "stores.demand.mean", "stores.initial_inventory", "training", "training.search",
        "training.search.space"]


def test_rows_follow_the_schema():
    """Types, bounds, defaults and inherited defaults come from the models, not from prose."""
    rows = {r.key: r for r in ref.rows()}
    assert rows["episode_length"].type == "integer in [1, 100000]" and rows["episode_length"].default == "`30`"
    assert rows["stores.demand.model"].type == "one of `poisson`, `normal`, `negative_binomial`"
    assert rows["stores.demand.yearly_amplitude"].type == "number in [0, 1)"
    assert rows["training.rollout_fragment_length"].type == "integer > 0 or `auto`"
    assert rows["training.learn"].default == "`[stores]`"
    # a default of the enclosing mapping differs from the model's own
    assert rows["skus.ordering_cost.store.fixed"].default == (
        "`80.0` (`0.0` when `skus.ordering_cost.store` is given without it)")
    assert rows["actions.store.values"].default.endswith("(required when `actions.store` is given)")
    assert rows["training.baseline.rule"].default == "`s_S` (required when `training.baseline` is given)"
    # the group and the list of stores share their keys once; the ones of one form say so
    assert [r.key for r in ref.rows()].count("stores.lead_time") == 1
    assert "list of stores only" in rows["stores.name"].meaning and rows["stores.name"].default == "required"


def test_cli_writes_the_reference(tmp_path, capsys):
    out = tmp_path / "reference.md"
    assert main(["config-reference", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == ref.reference()
    assert main(["config-reference"]) == 0
    assert capsys.readouterr().out.endswith(ref.reference())
    assert main(["config-reference", "--out", str(tmp_path / "no" / "such" / "dir.md")]) == 2
    assert "--out" in capsys.readouterr().err
