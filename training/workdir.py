"""The work_dir: what each stage leaves for the next, written atomically by rank 0 and read back checked.

Each stage can run on its own (the CLI's subcommands) because everything a later stage needs is on
disk in `cfg.work_dir`: checkpoints (`teacher.pt`, `student.pt`, `scratch.pt`,
`sweep/T=<t>/student.pt`), the soft-label cache (training/student/soft_labels.py), one small JSON
record per trained model (`<name>.json`: checkpoint, data fingerprint, valid metrics, curve,
seconds) and, when a publish gate refused a version, `refused.json`. A record names the data it was
trained on, so a later stage refuses a checkpoint trained on other data (StageError) rather than
publish it. Every file goes through core.files.open_atomic: a crash leaves the old file or the new
one, never half of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from core.errors import UserError
from core.files import open_atomic
from training import distributed
from training.config import PipelineConfig

REFUSED_FILE = "refused.json"


class StageError(UserError, ValueError):
    """A stage's inputs are missing or stale (e.g. no teacher checkpoint, or one trained on other data)."""


def record_path(cfg: PipelineConfig, name: str) -> Path:
    """Where the record of the model `name` is kept ("teacher", "student", "sweep/T=2", ...)."""
    return Path(cfg.work_dir) / f"{name}.json"


def _write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_atomic(path, "w") as fh:
        fh.write(json.dumps(record, indent=2, default=float) + "\n")


def save_record(cfg: PipelineConfig, name: str, fit: Any, fingerprint: str) -> dict[str, Any]:
    """The record of a trained model (a FitResult), written by rank 0; returned on every rank."""
    record = {"checkpoint": str(fit.checkpoint), "fingerprint": fingerprint, **fit_record(fit)}
    path = record_path(cfg, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():  # torchrun: rank 0 writes the records, as it writes the checkpoints
        _write_json(path, record)
    return record


def load_record(cfg: PipelineConfig, name: str, fingerprint: str) -> dict[str, Any]:
    """The record of `name`; StageError when missing, trained on other data, or its checkpoint is gone."""
    path = record_path(cfg, name)
    if not path.is_file():
        raise StageError(f"{path}: not found; run the stage that trains '{name}' first")
    record = json.loads(path.read_text())
    if record.get("fingerprint") != fingerprint:
        raise StageError(f"{path}: trained on other data (fingerprint differs); retrain '{name}'")
    if not Path(record["checkpoint"]).is_file():
        raise StageError(f"{record['checkpoint']}: checkpoint missing; retrain '{name}'")
    return record


def fit_record(fit: Any) -> dict[str, Any]:
    """What a publish keeps of a fit just made (the record without checkpoint and fingerprint)."""
    record = {"valid_metrics": fit.valid_metrics, "curve": fit.curve, "seconds": fit.seconds}
    if getattr(fit, "calibration", None) is not None:
        record["calibration"] = fit.calibration
    return record


def save_checkpoint(payload: dict, path: Path) -> None:
    """torch.save through open_atomic: a crash never leaves a half-written checkpoint."""
    if not distributed.is_main():  # torchrun: rank 0 writes; the others wait until the file is there
        distributed.barrier()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_atomic(path, "wb") as fh:
        torch.save(payload, fh)
    distributed.barrier()  # no-op in a single process


def save_refused(cfg: PipelineConfig, record: dict[str, Any]) -> Path:
    """`work_dir/refused.json`: what a refused version measured, so a refused run can be compared."""
    path = Path(cfg.work_dir) / REFUSED_FILE
    _write_json(path, record)
    return path
