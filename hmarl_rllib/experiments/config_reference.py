"""The config reference (``docs/config_reference.md``), generated from the pydantic models.

The meaning of every YAML key lives once, in its model's ``Field(description=...)``:
:class:`~hmarl_rllib.sim.config.Scenario` and its nested models, and for the ``training:``
section :class:`~hmarl_rllib.experiments.training.TrainingSettings` (``training.baseline``:
:class:`~hmarl_rllib.policies.spec.RuleSpec`; ``training.search``:
:class:`~hmarl_rllib.experiments.search.SearchSettings`). :func:`reference` walks their JSON
schemas (``model_json_schema()``: ``$ref``/``$defs``, unions, enums and literals, bounds,
defaults) and writes one Markdown table per section, keys as dotted YAML paths
(``stores.demand.mean``; a list of mappings lists the keys of one item). ``hmarl
config-reference --out docs/config_reference.md`` writes the committed file;
``tests/test_config_reference.py`` fails when it is stale.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from hmarl_rllib.experiments.search import SearchSettings
from hmarl_rllib.experiments.training import TrainingSettings
from hmarl_rllib.sim.config import Scenario

OUT = "docs/config_reference.md"
COMMAND = f"hmarl config-reference --out {OUT}"
# sections the scenario keeps as plain mappings, validated by their own model in a higher layer
SECTIONS: dict[str, type[BaseModel]] = {"training": TrainingSettings, "training.search": SearchSettings}
ROOTS: tuple[type[BaseModel], ...] = (Scenario, *SECTIONS.values())

_REQUIRED = object()  # a field without a default
_NONE = object()  # no default inherited from the enclosing mapping's default
_BELOW = "keys below"


@dataclass(frozen=True)
class Row:
    key: str  # dotted YAML path
    type: str
    default: str
    meaning: str


def _num(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _flow(v) -> str:
    """A value in YAML flow style: ``null``, ``true``, ``[64, 64]``, ``{fixed: 80.0}``."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_flow(x)}" for k, x in v.items()) + "}"
    return str(v)


def _bounds(s: dict) -> str:
    lo = ("[", s["minimum"]) if "minimum" in s else ("(", s["exclusiveMinimum"]) if "exclusiveMinimum" in s else None
    hi = ("]", s["maximum"]) if "maximum" in s else (")", s["exclusiveMaximum"]) if "exclusiveMaximum" in s else None
    if lo and hi:
        return f" in {lo[0]}{_num(lo[1])}, {_num(hi[1])}{hi[0]}"
    if lo:
        return f" {'≥' if lo[0] == '[' else '>'} {_num(lo[1])}"
    if hi:
        return f" {'≤' if hi[0] == ']' else '<'} {_num(hi[1])}"
    return ""


def _length(s: dict) -> str:
    lo, hi = s.get("minItems"), s.get("maxItems")
    if lo is not None and hi is not None:
        return f" (exactly {lo})" if lo == hi else f" ({lo} to {hi})"
    if lo is not None:
        return f" ({lo} or more)"
    return f" (at most {hi})" if hi is not None else ""


class _Walker:
    """Depth first through a schema: a row per key, then the keys of the mappings it takes."""

    def __init__(self):
        self.rows: list[Row] = []

    @staticmethod
    def _resolve(s: dict, defs: dict) -> dict:
        while "$ref" in s or (set(s) >= {"allOf"} and len(s["allOf"]) == 1):
            s = defs[s["$ref"].rsplit("/", 1)[-1]] if "$ref" in s else s["allOf"][0]
        return s

    def _branches(self, s: dict, defs: dict) -> list[tuple[dict, dict]]:
        """The alternatives of a union (flattened, references resolved), each with its ``$defs``."""
        s = self._resolve(s, defs)
        alts = s.get("anyOf") or s.get("oneOf")
        if alts:
            return [b for alt in alts for b in self._branches(alt, defs)]
        return [(s, defs)]

    def _type(self, s: dict, defs: dict) -> str:
        s = self._resolve(s, defs)
        if "anyOf" in s or "oneOf" in s:
            return " or ".join(self._type(b, d) for b, d in self._branches(s, defs))
        if "const" in s:
            return f"`{_flow(s['const'])}`"
        if "enum" in s:
            return "one of " + ", ".join(f"`{_flow(v)}`" for v in s["enum"])
        t = s.get("type")
        if t == "null":
            return "`null`"
        if t in ("integer", "number"):
            return t + _bounds(s)
        if t == "boolean":
            return "`true` or `false`"
        if t == "string":
            return "date (YYYY-MM-DD)" if s.get("format") == "date" else "string"
        if t == "array":
            items = self._resolve(s.get("items", {}), defs)
            if not items:
                return "list" + _length(s)
            if "enum" in items:
                return "list of " + ", ".join(f"`{_flow(v)}`" for v in items["enum"]) + _length(s)
            inner = self._type(items, defs)
            return "list of " + (inner + "s" if inner == "mapping" else inner) + _length(s)
        if t == "object":
            if "properties" in s:
                return "mapping"
            values = s.get("additionalProperties")
            if isinstance(values, dict) and values:
                return "{name: " + self._type(values, defs) + "}"
            return "mapping"
        return "any"

    def _models(self, s: dict, defs: dict):
        """The mappings with known keys a value of schema ``s`` holds: itself, a list's items, a
        mapping's values; each with its ``$defs`` and whether it is the value itself."""
        for b, d in self._branches(s, defs):
            if "properties" in b:
                yield b, d, True
            elif b.get("type") == "array" and b.get("items"):
                yield from ((m, md, False) for m, md, _ in self._models(b["items"], d))
            elif b.get("type") == "object" and isinstance(b.get("additionalProperties"), dict):
                yield from ((m, md, False) for m, md, _ in self._models(b["additionalProperties"], d))

    def model(self, schema: dict, defs: dict, prefix: str, inherited) -> None:
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            path = f"{prefix}.{name}" if prefix else name
            own = prop.get("default", _REQUIRED if name in required else None)
            inh = inherited.get(name, _NONE) if isinstance(inherited, dict) else _NONE
            self.field(prop, defs, path, prefix, own, inh)

    def field(self, prop: dict, defs: dict, path: str, parent: str, own, inh) -> None:
        meaning = prop.get("description", "")  # the field's own (never its model's docstring)
        if path in SECTIONS:  # a plain mapping here, a model of its own in a higher layer
            section = SECTIONS[path].model_json_schema()
            nullable = any(b.get("type") == "null" for b, _ in self._branches(prop, defs))
            prop = {"anyOf": [section, {"type": "null"}]} if nullable else section
            defs = section.get("$defs", {})
        models = list(self._models(prop, defs))
        kind = self._type(prop, defs) + (f"; {_BELOW}" if models else "")
        value = own if inh is _NONE else inh
        self.rows.append(Row(path, kind, self._default(value, own, inh, parent, bool(models)), meaning))
        done = set()
        for schema, mdefs, itself in models:
            if schema.get("title") in done:
                continue
            done.add(schema.get("title"))
            # the default of this key fills the mapping's keys only if it is that mapping
            fits = itself and isinstance(value, dict) and set(value) <= set(schema["properties"])
            self.model(schema, mdefs, path, value if fits else None)

    @staticmethod
    def _default(value, own, inh, parent: str, mapping: bool) -> str:
        def text(v):
            if v is _REQUIRED:
                return "required"
            if mapping and isinstance(v, dict):
                return "see below"
            if mapping and isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                return f"{len(v)} item{'s' if len(v) > 1 else ''}, see below"
            return f"`{_flow(v)}`"
        shown = text(value)
        if inh is not _NONE and inh != own:  # the enclosing mapping's default differs from the model's
            shown += (f" (required when `{parent}` is given)" if own is _REQUIRED
                      else f" ({text(own)} when `{parent}` is given without it)")
        return shown


def rows() -> list[Row]:
    """Every key of a scenario YAML, depth first in the models' field order (duplicates, e.g. the
    keys a group of stores and a listed store share, once)."""
    walker = _Walker()
    schema = Scenario.model_json_schema()
    walker.model(schema, schema.get("$defs", {}), "", None)
    out, seen = [], set()
    for row in walker.rows:
        if row not in seen:
            seen.add(row)
            out.append(row)
    return out


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell: one line; outside `code` spans, characters that would
    start emphasis or an HTML tag escaped; ``|`` escaped everywhere (it ends a cell)."""
    parts = " ".join(str(text).split()).split("`")
    for i in range(0, len(parts), 2):
        for ch in ("\\", "*", "<"):
            parts[i] = parts[i].replace(ch, "\\" + ch)
    return "`".join(parts).replace("|", "\\|")


def _table(rows: list[Row]) -> list[str]:
    out = ["| key | type / allowed values | default | meaning |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r.key}` | {_cell(r.type)} | {_cell(r.default)} | {_cell(r.meaning)} |")
    return out


def reference() -> str:
    """``docs/config_reference.md``: an introduction, the top-level keys, then one table per
    section (a top-level key that holds a mapping or a list of mappings)."""
    all_rows = rows()
    top = [r for r in all_rows if "." not in r.key]
    sections = [r.key for r in top if any(x.key.startswith(r.key + ".") for x in all_rows)]
    lines = [
        "# Config reference",
        "",
        f"<!-- Generated by `{COMMAND}` from the pydantic models' field descriptions"
        " (hmarl_rllib/experiments/config_reference.py); edit the descriptions, not this file."
        " tests/test_config_reference.py fails when it is stale. -->",
        "",
        "Every key of a scenario YAML (`configs/*.yaml`): the model `Scenario` in `hmarl_rllib/sim/config.py`,"
        " and for the `training:` section `TrainingSettings` in `hmarl_rllib/experiments/training.py`"
        " (`training.baseline`: `RuleSpec`, `hmarl_rllib/policies/spec.py`; `training.search`: `SearchSettings`,"
        " `hmarl_rllib/experiments/search.py`).",
        "",
        "- Keys are dotted YAML paths: `stores.demand.mean` is `mean` under `demand` under `stores`. A list of"
        " mappings (`skus`, a list of `stores`) shows the keys of one item; `{name: X}` is a mapping from names"
        " (e.g. SKU names) to X.",
        "- Every key may be left out, except where the default says *required*. A default holds when the"
        " enclosing mapping is left out too; where a mapping you write starts from other defaults, they are given"
        " in brackets.",
        "- Unknown keys are refused, and every bad value is refused with one line naming the key.",
        "- Letters in square brackets ([h], [K], [c], [p], [b], [s], [S]) are the symbols of the daily timing"
        " convention in `hmarl_rllib/sim/network.py`.",
        "",
        "Sections: [top level](#top-level), " + ", ".join(f"[`{s}`](#{s})" for s in sections) + ".",
        "",
        "## Top level",
        "",
    ]
    linked = [Row(r.key, r.type.replace(_BELOW, f"keys: [`{r.key}`](#{r.key})"), r.default, r.meaning)
              if r.key in sections else r for r in top]
    lines += _table(linked)
    for s in sections:
        lines += ["", f"## `{s}`", ""]
        lines += _table([r for r in all_rows if r.key.startswith(s + ".")])
    return "\n".join(lines) + "\n"


def write(out: str | Path = OUT) -> Path:
    out = Path(out)
    out.write_text(reference(), encoding="utf-8")
    return out
