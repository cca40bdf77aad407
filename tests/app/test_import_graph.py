"""The serving wing's import graph: nothing under app/ imports `training`, torch or the CLI.

The torch-free serving image ships neither; an import that slipped in would only fail there, at
start-up. Checked twice: statically (every import statement of every module, wherever it sits in the
file, lazy ones included) and by importing every module with those packages blocked.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.blocked_imports import ROOT, run_blocked

FORBIDDEN = {"training", "torch", "recdistill"}


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
            "import_module",
            "__import__",
        ):
            names |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return names


def test_no_module_under_app_or_core_imports_training_torch_or_the_cli() -> None:
    modules = sorted((ROOT / "app").rglob("*.py")) + sorted((ROOT / "core").rglob("*.py"))
    assert len(modules) > 30  # the walk found the package
    offenders = {
        str(path.relative_to(ROOT)): sorted(bad)
        for path in modules
        if (bad := {n for n in _imported_names(path) if n.partition(".")[0] in FORBIDDEN})
    }
    assert offenders == {}


def test_the_ast_walk_sees_lazy_and_dynamic_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "def f():\n    import torch.nn\n    from training.data.types import x\n    importlib.import_module('recdistill.cli')\n"
    )
    assert {"torch.nn", "training.data.types", "recdistill.cli"} <= _imported_names(source)


def test_every_app_module_imports_with_training_and_torch_blocked() -> None:
    code = (
        "import importlib, pkgutil, app, core\n"
        "mods = [m.name for pkg in (app, core) for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.')]\n"
        "for name in mods: importlib.import_module(name)\n"
        "from app.main import create_app; create_app()\n"
        "bad = {'torch', 'training'} & {m.partition('.')[0] for m in sys.modules}\n"
        "assert not bad, bad\n"
        "print(len(mods))\n"
    )
    proc = run_blocked(code, blocked=("torch", "training"))
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 30
