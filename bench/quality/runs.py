"""One seed's outcome read back from its folders (run.json, the published
version's report and manifest, or work_dir/refused.json) and the names the quality modules share.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --- names the quality modules share ----------------------------------------------------------------
ML100K = "ml-100k"
LOG_FILE, RUN_FILE = "pipeline.log", "run.json"
EXIT_GATES = 3  # `recdistill pipeline`'s exit status when a publish gate refused the version
MODELS = (
    "teacher",
    "teacher+scratch",
    "student",
    "scratch",
    "popularity",
    "als",
)  # teacher+scratch: the soft labels' source
METRICS = ("ndcg@10", "hr@10", "recall@50", "coverage@10")
NDCG, COVERAGE = "ndcg@10", "coverage@10"
STANDARD = "train+valid"
PUBLISHED, REFUSED, FAILED, MISSING = "published", "refused", "failed", "missing"


def seed_dir(root: Path, dataset: str, seed: int) -> Path:
    return Path(root) / dataset / f"seed{seed}"


# --- reading a seed back -------------------------------------------------------------------------


@dataclass
class SeedRun:
    """One seed's outcome and figures, as read from its folders."""

    seed: int
    status: str  # published | refused (exit 3) | failed | missing
    returncode: int | None = None
    wall_seconds: float | None = None
    command: str | None = None
    version: str | None = None
    test: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> metric -> value
    parameters: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # stage seconds from the report
    test_history: str | None = None
    gates: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    peers_skipped: dict[str, str] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    epochs: dict[str, tuple[int, int]] = field(default_factory=dict)  # model -> (epochs run, best epoch)
    penalties: dict[str, float] = field(default_factory=dict)  # student -> popularity penalty chosen

    @property
    def has_figures(self) -> bool:
        return self.status in (PUBLISHED, REFUSED) and bool(self.test)


def _numbers(test: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        model: {k: float(v) for k, v in row.items() if isinstance(v, int | float) and k != "users"}
        for model, row in test.items()
    }


def _log_tail(folder: Path, lines: int = 5) -> str:
    path = folder / LOG_FILE
    if not path.is_file():
        return "no log"
    return " / ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def work_records(work: Path) -> dict[str, dict[str, Any]]:
    """Each stage's record in work_dir (`<name>.json`, a JSON object), by name; unreadable ones skipped."""
    out = {}
    for record_path in sorted(work.glob("*.json")):
        try:
            record = json.loads(record_path.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out[record_path.stem] = record
    return out


def read_epochs(work: Path) -> dict[str, tuple[int, int]]:
    """(epochs run, best epoch) per trained model, from work_dir's records: a model whose run ends
    `patience` epochs after its best stopped early; one that ends at its best ran into its budget."""
    out = {}
    for name, record in work_records(work).items():
        curve = record.get("curve") or []
        if curve and all(NDCG in row for row in curve):
            best = max(curve, key=lambda row: row[NDCG])
            out[name] = (len(curve), int(best["epoch"]))
    return out


def read_penalties(work: Path) -> dict[str, float]:
    """The popularity penalty each calibrated student carries (training/student/calibrate.py), from work_dir's records."""
    out = {}
    for name, record in work_records(work).items():
        calibration = record.get("calibration")
        if isinstance(calibration, dict) and "chosen" in calibration:
            out[name] = float(calibration["chosen"])
    return out


def read_seed(folder: Path, seed: int) -> SeedRun:
    """The seed's published version (models/LATEST), or its refused.json on exit 3, or why there is none."""
    from core.manifest import ManifestError, load_manifest, read_latest

    run = json.loads((folder / RUN_FILE).read_text()) if (folder / RUN_FILE).is_file() else {}
    out = SeedRun(seed, MISSING, run.get("returncode"), run.get("wall_seconds"), run.get("command"))
    out.epochs = read_epochs(folder / "work")
    out.penalties = read_penalties(folder / "work")
    refused, models = folder / "work" / "refused.json", folder / "models"
    version = read_latest(models) if models.is_dir() else None
    if out.returncode == EXIT_GATES or (out.returncode is None and version is None and refused.is_file()):
        if not refused.is_file():
            out.status, out.error = FAILED, f"exit {EXIT_GATES} but no {refused}"
            return out
        record = json.loads(refused.read_text())
        out.status, out.test = REFUSED, _numbers(record.get("test", {}))
        out.test_history, out.gates = record.get("test_history"), record.get("gates", {})
        out.warnings = list(record.get("warnings", []))
        out.parameters = {k: int(v) for k, v in record.get("parameters", {}).items()}
        out.seconds = {k: float(v) for k, v in record.get("seconds", {}).items()}
        return out
    if out.returncode not in (0, None) or version is None:
        out.status = FAILED if out.returncode is not None else MISSING
        out.error = (
            f"exit {out.returncode}: {_log_tail(folder)}" if out.returncode else "no published version"
        )
        return out
    try:
        manifest = load_manifest(models / version)
    except ManifestError as exc:
        out.status, out.error = FAILED, str(exc)
        return out
    report_path = models / version / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    metrics = manifest.metrics
    out.status, out.version, out.dataset = PUBLISHED, version, manifest.dataset.model_dump()
    out.test = _numbers(report.get("metrics", {}).get("test") or metrics.get("test", {}))
    params = report.get("parameters") or metrics.get("parameters") or {}
    params = {"teacher": manifest.teacher.parameters, "student": manifest.student.parameters} | params
    out.parameters = {k: int(v) for k, v in params.items()}
    out.seconds = {k: float(v) for k, v in (report.get("seconds") or metrics.get("seconds") or {}).items()}
    out.test_history = report.get("test_history") or metrics.get("test_history")
    out.gates = report.get("gates") or metrics.get("gates") or {}
    out.warnings = list(report.get("warnings") or metrics.get("warnings") or [])
    out.peers_skipped = dict(report.get("peers_skipped") or metrics.get("peers_skipped") or {})
    return out


def read_seeds(root: Path, dataset: str, seeds: Sequence[int]) -> list[SeedRun]:
    return [read_seed(seed_dir(root, dataset, s), s) for s in seeds]


def seeds_on_disk(root: Path, dataset: str) -> list[int]:
    folder = Path(root) / dataset
    found = [p.name[4:] for p in folder.glob("seed*") if p.is_dir()] if folder.is_dir() else []
    return sorted(int(s) for s in found if s.isdigit())
