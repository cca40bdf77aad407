"""The house rules a reader relies on: small modules, and an offline job grouped by stage.

Every module of the two wings and of the command is under 400 lines, so one concern fits in a
sitting; training/ keeps at most eight modules at its top level (the stages live in subpackages).
"""

from __future__ import annotations

from tests.blocked_imports import ROOT

MAX_LINES = 400
PACKAGES = ("app", "core", "recdistill", "training")


def test_no_module_of_the_wings_or_the_command_is_over_400_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    assert len(sizes) > 100  # the walk found the packages
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_training_keeps_at_most_eight_modules_at_its_top_level() -> None:
    top = sorted(p.name for p in (ROOT / "training").glob("*.py"))
    assert len(top) <= 8, top
    assert {"config.py", "pipeline.py"} <= set(top)
