"""The commands one seed of the retrain benchmark runs, each a subprocess a shop would type, resumable.

Per seed, under `<root>/<dataset>/seed<N>/`:
  day0      `recdistill pipeline` on day 0 (cold): the version that serves on day 1 (models/LATEST)
  warm1     `recdistill retrain --events <day 1 events>`: warm from the served day-0 version
  cold1     the same retrain with `--set warm_start=none`: trained from fresh weights
  warm2..N  warm retrains in a row on day 1, each from the one before (`--set warm_start=<previous>`)
  refit     `recdistill export --set publish.refit=true` of day 0's work_dir into its own models
            folder: day 0's models with the whole-log fine-tune (measured on day 1's newest items)
Each step's outcome is `<step>.json` (command, exit status, wall and CPU seconds, the version it
published); a step with one is not run again, so an interrupted benchmark resumes where it stopped.
CPU seconds (the child's user + system time) are reported beside wall seconds: on a shared machine
wall time also counts other people's work.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.retrain.days import Days
from core.manifest import read_latest

SHOP_CONFIG = Path("configs/shop.toml")


@dataclass(frozen=True)
class SeedPlan:
    """One seed's folders and the --set overrides every step shares."""

    folder: Path
    days: Days
    seed: int
    user_sets: tuple[str, ...] = ()
    config: Path = SHOP_CONFIG

    @property
    def models(self) -> Path:
        return self.folder / "models"

    def sets(self, *extra: str) -> list[str]:
        out = [f"seed={self.seed}", f"models_dir={self.models}", "data.source=file", *self.user_sets, *extra]
        return [arg for item in out for arg in ("--set", item)]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "recdistill.cli", *args]


def day0_argv(p: SeedPlan) -> list[str]:
    d = p.days
    sets = p.sets(
        f"data.path={d.day0_log}", f"data.items_path={d.day0_items}", f"work_dir={p.folder / 'work-day0'}"
    )
    return _cli("pipeline", "--config", str(p.config), *sets, "--no-progress")


def retrain_argv(p: SeedPlan, work: str, warm_start: str | None = None) -> list[str]:
    """Day 1: day 0's log plus its events, the whole item file; warm from `warm_start` (None: the served)."""
    d = p.days
    sets = p.sets(f"data.path={d.day0_log}", f"data.items_path={d.items}", f"work_dir={p.folder / work}")
    if warm_start is not None:
        sets += ["--set", f"warm_start={warm_start}"]
    return _cli("retrain", "--config", str(p.config), *sets, "--events", str(d.events), "--no-progress")


def refit_argv(p: SeedPlan) -> list[str]:
    d = p.days
    sets = p.sets(
        f"data.path={d.day0_log}", f"data.items_path={d.day0_items}", f"work_dir={p.folder / 'work-day0'}",
        f"models_dir={p.folder / 'models-refit'}", "publish.refit=true",
    )  # fmt: skip
    return _cli("export", "--config", str(p.config), *sets, "--no-progress")


def _candidate(models: Path) -> str | None:
    path = models / "CANDIDATE"
    return json.loads(path.read_text())["version"] if path.is_file() else None


def run_step(p: SeedPlan, name: str, argv: Sequence[str], published: Path) -> dict[str, Any]:
    """Run (or read back) one step; `published`: the models folder whose new version it reports."""
    record_path = p.folder / f"{name}.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    p.folder.mkdir(parents=True, exist_ok=True)
    env_state = {
        "RECDISTILL_HISTORY_DB": str(p.folder / "no-service" / "history.sqlite3")
    }  # no store: --events
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(p.folder / f"{name}.log", "wb") as fh:
        rc = subprocess.run(
            list(argv), stdout=fh, stderr=subprocess.STDOUT, check=False, env=os.environ | env_state
        ).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    version = None
    if rc == 0:
        version = read_latest(published) if name in ("day0", "refit") else _candidate(published)
    record = {
        "step": name, "command": shlex.join(argv), "returncode": rc, "wall_seconds": wall,
        "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "version": version,
    }  # fmt: skip
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def run_seed(p: SeedPlan, chain: int, refit: bool) -> dict[str, dict[str, Any]]:
    """Every step of one seed, in order; a failed step stops the ones that need it."""
    steps = {"day0": run_step(p, "day0", day0_argv(p), p.models)}
    if steps["day0"]["returncode"] != 0:
        return steps
    steps["warm1"] = run_step(p, "warm1", retrain_argv(p, "work-warm"), p.models)
    steps["cold1"] = run_step(p, "cold1", retrain_argv(p, "work-cold", "none"), p.models)
    for i in range(2, chain + 1):
        previous = steps[f"warm{i - 1}"]
        if previous["returncode"] != 0 or not previous["version"]:
            break
        steps[f"warm{i}"] = run_step(
            p, f"warm{i}", retrain_argv(p, "work-warm", previous["version"]), p.models
        )
    if refit:
        steps["refit"] = run_step(p, "refit", refit_argv(p), p.folder / "models-refit")
    return steps
