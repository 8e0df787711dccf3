"""The layers are the folders of ``hmarl_rllib``, and each imports only the layers below it.

Bottom to top: ``errors`` / ``quiet`` (a base everyone may import) < ``sim/`` < ``policies/`` <
``rl/`` < ``experiments/`` < ``serving/`` < ``cli``. Every module is read with ``ast``: module-level
and function-local imports, ``from hmarl_rllib import x`` and ``importlib.import_module("...")``
alike. An import of a higher layer fails the test with the file, the line and the import.
The README's layer table lists the same folders in the same order.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hmarl_rllib"

# bottom to top: (layer, what belongs to it, relative to hmarl_rllib/)
LAYERS = (
    ("base", ("__init__.py", "errors.py", "quiet.py")),
    ("sim", ("sim/",)),
    ("policies", ("policies/",)),
    ("rl", ("rl/",)),
    ("experiments", ("experiments/",)),
    ("serving", ("serving/",)),
    ("cli", ("cli.py", "__main__.py")),
)
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
LIGHT = ("hmarl_rllib.serving.deploy", "hmarl_rllib.rl.observe", "hmarl_rllib.rl.actions",
         "hmarl_rllib.rl.scripted")  # used by deploy: must import neither torch nor Ray


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path | None:
    """The file of module ``name`` inside the package, or None when it is not a module (e.g. a
    name imported from a package's ``__init__``)."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def layer_of(path: Path) -> str | None:
    rel = path.relative_to(PACKAGE).as_posix()
    for name, members in LAYERS:
        if any(rel == m or (m.endswith("/") and rel.startswith(m)) for m in members):
            return name
    return None


def package_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def imports(path: Path):
    """(line, imported module) for every import of an ``hmarl_rllib`` module in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            # `from pkg import x`: x is a module (pkg.x) or a name defined in pkg
            targets = [f"{base}.{a.name}" if module_path(f"{base}.{a.name}") else base for a in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            targets = [node.args[0].value]
        for t in targets:
            if t == "hmarl_rllib" or t.startswith("hmarl_rllib."):
                yield node.lineno, t


def wrong_way_imports() -> list[str]:
    """One line per import of a higher layer: ``file:line: layer imports module (layer)``."""
    out = []
    for path in package_modules():
        src = layer_of(path)
        for line, target in imports(path):
            target_path = module_path(target)
            while target_path is None and "." in target:  # e.g. `import hmarl_rllib.sim.x.y`
                target = target.rpartition(".")[0]
                target_path = module_path(target)
            dst = layer_of(target_path)
            if RANK[dst] > RANK[src]:
                out.append(f"{path.relative_to(ROOT)}:{line}: {src} imports {target} ({dst}, a higher layer)")
    return out


def test_every_module_is_in_a_layer():
    """A new module goes into a layer folder (or, if everyone may import it, into LAYERS' base)."""
    stray = [str(p.relative_to(ROOT)) for p in package_modules() if layer_of(p) is None]
    assert not stray, f"modules in no layer (put them in a layer folder): {stray}"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {m.rstrip("/") for _, ms in LAYERS for m in ms if m.endswith("/")}


def test_no_module_imports_a_higher_layer():
    bad = wrong_way_imports()
    assert not bad, "imports that go up a layer:\n" + "\n".join(bad)


def test_the_check_sees_a_wrong_way_import(tmp_path, monkeypatch):
    """The walk finds a function-local ``from hmarl_rllib import x`` going up (sim -> rl)."""
    fake = tmp_path / "hmarl_rllib"
    for name in ("sim", "rl"):
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "rl" / "actions.py").write_text("X = 1\n")
    (fake / "sim" / "simulate.py").write_text("def f():\n    from hmarl_rllib.rl import actions\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert wrong_way_imports() == [
        "hmarl_rllib/sim/simulate.py:2: sim imports hmarl_rllib.rl.actions (rl, a higher layer)"]


def _layer_modules(*folders: str) -> tuple[str, ...]:
    return tuple(module_name(p) for f in folders for p in sorted((PACKAGE / f).glob("*.py")))


@pytest.mark.parametrize("modules", [LIGHT, _layer_modules("sim", "policies")], ids=["deploy", "sim+policies"])
def test_deploy_and_the_numpy_layers_import_neither_torch_nor_ray(modules):
    """In a fresh process: ``serving.deploy`` and the numpy parts of ``rl`` it uses; the ``sim``
    and ``policies`` layers (numpy, scipy, pandas and pydantic only)."""
    code = (f"import sys; import {', '.join(modules)};"
            " print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", f"{modules} imported {proc.stdout.strip()}"


def test_readme_layer_table_lists_the_folders():
    """README "What is in the box": one row per layer, bottom to top, naming its folder or files."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## What is in the box", 1)[1].split("\n#", 1)[0]
    rows = [r for r in section.splitlines() if re.match(r"\|\s*\d+\s*\|", r)]
    named = [re.findall(r"`hmarl_rllib/([^`]+)`", r.split("|")[2]) for r in rows]
    assert named == [[m for m in members if m != "__init__.py" and m != "__main__.py"] for _, members in LAYERS]
