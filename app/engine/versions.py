"""The published versions as an operator sees them: list, show, diff, the previous one, promote.

Shared by `recdistill models ...` and the admin API (`app.api.version_routes`), so both say the same.
Everything here reads manifests only, except `verify`, which loads a version exactly as the service
does (every sha256, every ONNX graph, a probe) and drops it.

The version "before" another is the one published just before it: versions ordered by their
manifest's `created_at` (ties by folder name). `rollback` pins that one; run it again to step back
further. No extra history file is kept: the order is in the manifests already, it survives a volume
mounted read-only, and versions published by the pipeline (which writes LATEST itself) count too.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.manifest import MANIFEST_FILE, Manifest, ManifestError, load_manifest, write_latest

_VERSION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class VersionError(UserError, ValueError):
    """An unreadable version, or no version to step back to; the message names the file or version."""


class UnknownVersion(VersionError):
    """No published version of that name (or not a version folder name at all)."""


def one_line(exc: BaseException) -> str:
    """An error's message on one line (pydantic's spread over several)."""
    return " ".join(str(exc).split())


def version_dir(models_dir: Path, version: str) -> Path:
    """models_dir/version, or VersionError when that is not a published version's folder."""
    path = Path(models_dir) / version
    if not _VERSION_NAME.fullmatch(version):
        raise UnknownVersion(f"{version[:80]!r} is not a version folder name")
    if not (path / MANIFEST_FILE).is_file():
        raise UnknownVersion(f"{path}: no such version (no {MANIFEST_FILE})")
    return path


def manifest_of(models_dir: Path, version: str) -> Manifest:
    """The version's manifest; VersionError (naming the file) when unknown or invalid."""
    try:
        return load_manifest(version_dir(models_dir, version))
    except ManifestError as exc:
        raise VersionError(one_line(exc)) from exc


def verify(models_dir: Path, version: str) -> None:
    """Load `version` as the service would (hashes, ONNX sessions, a probe); VersionError if refused."""
    from app.engine.loading import load_version

    path = version_dir(models_dir, version)
    try:
        load_version(path, 1)
    except ManifestError as exc:
        raise VersionError(one_line(exc)) from exc


def _readable(models_dir: Path) -> tuple[list[tuple[datetime, str, Manifest]], dict[str, str]]:
    """Every version folder's manifest, oldest first; and {version: error} for the unreadable ones."""
    good: list[tuple[datetime, str, Manifest]] = []
    bad: dict[str, str] = {}
    root = Path(models_dir)
    children = sorted(root.iterdir()) if root.is_dir() else []
    for child in children:
        if child.is_dir() and (child / MANIFEST_FILE).is_file():
            try:
                manifest = load_manifest(child)
            except ManifestError as exc:
                bad[child.name] = one_line(exc)
                continue
            good.append((manifest.created_at, child.name, manifest))
    return sorted(good, key=lambda row: (row[0], row[1])), bad


def previous_version(models_dir: Path, current: str) -> str:
    """The version published just before `current` (created_at, then name); VersionError if none."""
    ordered, _ = _readable(models_dir)
    names = [name for _, name, _ in ordered]
    if current not in names:
        manifest_of(models_dir, current)  # raises naming the version or its manifest
    index = names.index(current)
    if index == 0:
        raise VersionError(f"{Path(models_dir) / current}: no version was published before it")
    return names[index - 1]


def _ndcg(manifest: Manifest, side: str) -> float | None:
    value = manifest.metrics.get("test", {}).get(side, {}).get("ndcg@10")
    return None if value is None else float(value)


def _parameters(manifest: Manifest) -> dict[str, int]:
    recorded = manifest.metrics.get("parameters", {})
    return {
        side: int(recorded.get(side) or getattr(manifest, side).parameters) for side in ("teacher", "student")
    }


def _bytes(manifest: Manifest) -> dict[str, int]:
    """Bytes on disk: the whole version, and each side's ONNX graphs plus item matrix."""
    sizes = {"total": sum(entry.bytes for entry in manifest.files.values())}
    for side in ("teacher", "student"):
        card = getattr(manifest, side)
        names = {card.topk.file, card.user.file, card.item_vectors}
        sizes[side] = sum(manifest.files[n].bytes for n in names if n in manifest.files)
    return sizes


def row(manifest: Manifest, name: str, latest: str | None, pinned: str | None) -> dict[str, Any]:
    """One line of `list`: when, on what, how good, how big, and whether LATEST or pinned."""
    return {
        "version": name,
        "created_at": manifest.created_at.isoformat(),
        "dataset": manifest.dataset.name,
        "ndcg@10": {"teacher": _ndcg(manifest, "teacher"), "student": _ndcg(manifest, "student")},
        "parameters": _parameters(manifest),
        "bytes": _bytes(manifest),
        "latest": name == latest,
        "pinned": name == pinned,
        "error": None,
    }


def list_versions(models_dir: Path, latest: str | None, pinned: str | None) -> list[dict[str, Any]]:
    """Every version, oldest first; an unreadable one is listed with its `error` (and nothing else)."""
    ordered, bad = _readable(models_dir)
    rows = [row(manifest, name, latest, pinned) for _, name, manifest in ordered]
    rows += [
        {"version": name, "latest": name == latest, "pinned": name == pinned, "error": error}
        for name, error in sorted(bad.items())
    ]
    return rows


def show(models_dir: Path, version: str) -> dict[str, Any]:
    """The manifest summary of one version (the file list reduced to its size)."""
    m = manifest_of(models_dir, version)
    return {
        "version": version,
        "created_at": m.created_at.isoformat(),
        "dataset": m.dataset.model_dump(mode="json"),
        "student": {"dim": m.student.dim, "history_len": m.student.history_len},
        "teacher": {"dim": m.teacher.dim, "history_len": m.teacher.history_len},
        "parameters": _parameters(m),
        "bytes": _bytes(m),
        "files": len(m.files),
        "retrieval": m.retrieval.model_dump(mode="json"),
        "metrics": m.metrics,
        "parity": m.parity,
        "teacher_source": m.teacher_source.model_dump(mode="json") if m.teacher_source else None,
        "report": m.report,
    }


def _flat(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested numeric metrics as {"test.student.ndcg@10": 0.31, ...}."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flat(value, name + ".")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def diff(models_dir: Path, a: str, b: str) -> dict[str, Any]:
    """Two versions side by side: offline test metrics, agreement, parameters and sizes, b - a."""
    ma, mb = manifest_of(models_dir, a), manifest_of(models_dir, b)

    def section(values_a: dict[str, float], values_b: dict[str, float]) -> dict[str, dict[str, Any]]:
        rows = {}
        for key in [*values_a, *(k for k in values_b if k not in values_a)]:
            va, vb = values_a.get(key), values_b.get(key)
            rows[key] = {a: va, b: vb, "delta": None if va is None or vb is None else vb - va}
        return rows

    return {
        "a": a,
        "b": b,
        "created_at": {a: ma.created_at.isoformat(), b: mb.created_at.isoformat()},
        "dataset": {a: ma.dataset.fingerprint, b: mb.dataset.fingerprint},
        "same_dataset": ma.dataset.fingerprint == mb.dataset.fingerprint,
        "test": section(_flat(ma.metrics.get("test", {})), _flat(mb.metrics.get("test", {}))),
        "agreement": section(_flat(ma.metrics.get("agreement", {})), _flat(mb.metrics.get("agreement", {}))),
        "parameters": section(
            {k: float(v) for k, v in _parameters(ma).items()},
            {k: float(v) for k, v in _parameters(mb).items()},
        ),
        "bytes": section(
            {k: float(v) for k, v in _bytes(ma).items()}, {k: float(v) for k, v in _bytes(mb).items()}
        ),
    }


def promote(models_dir: Path, version: str) -> None:
    """Verify `version`, then switch LATEST to it atomically; VersionError (LATEST untouched) if refused."""
    verify(models_dir, version)
    write_latest(Path(models_dir), version)
