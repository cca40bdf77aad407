"""Atomic publication of a model version under models/.

Everything is written into `models/.staging-<version>/`, fsynced, checked against its own manifest,
and only then renamed to `models/<version>/` (one rename: readers see all of it or nothing) before
`LATEST` is switched. Any failure removes the staging folder and leaves LATEST and every published
version exactly as they were.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from core.errors import NotPublished
from core.manifest import (
    MANIFEST_FILE,
    FileEntry,
    Manifest,
    file_entry,
    fsync_dir,
    load_manifest,
    verify_files,
    write_json_atomic,
    write_latest,
)

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"


class PublishError(NotPublished, RuntimeError):
    """The version could not be published; nothing was changed under models/."""


def new_version(fingerprint: str, config_json: str, now: datetime | None = None) -> str:
    """`YYYYmmddTHHMMSSZ-<8 hex>`: sorts by time; the hash tells runs of the same second apart."""
    now = now or datetime.now(UTC)
    digest = hashlib.sha256(f"{fingerprint}\n{config_json}\n{now.isoformat()}".encode()).hexdigest()[:8]
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{digest}"


def list_files(folder: Path) -> dict[str, FileEntry]:
    """sha256 and size of every regular file below `folder` (posix relative names), manifest excluded."""
    folder = Path(folder)
    entries = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST_FILE:
            entries[path.relative_to(folder).as_posix()] = file_entry(path)
    return entries


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        fsync_dir(path)
    fsync_dir(folder)


def publish(
    models_dir: Path,
    version: str,
    build: Callable[[Path], Manifest],
    set_latest: bool = True,
) -> Path:
    """Stage, verify and atomically publish one version; return `models/<version>`.

    `build(stage_dir)` writes every artifact into stage_dir and returns the manifest; its `files`
    are (re)computed here from what is on disk, so the manifest always matches the bytes. Any
    exception from `build` (a failed parity check, say) propagates after the staging folder is
    removed: nothing is published and LATEST is untouched.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / version
    if final.exists():
        raise PublishError(f"{final}: version already exists")
    stage = models_dir / f"{STAGING_PREFIX}{version}"
    if stage.exists():
        shutil.rmtree(stage)  # a leftover from a crashed run of this very version
    stage.mkdir()
    try:
        manifest = build(stage)
        manifest = manifest.model_copy(update={"version": version, "files": list_files(stage)})
        write_json_atomic(stage / MANIFEST_FILE, manifest.model_dump(mode="json"))
        _fsync_tree(stage)
        verify_files(stage, load_manifest(stage))  # the staged version must load as the service will
        os.rename(stage, final)
        fsync_dir(models_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if set_latest:
        write_latest(models_dir, version)
    log.info("published %s", final)
    return final


def remove_stale_staging(models_dir: Path) -> list[str]:
    """Delete `.staging-*` folders left by killed runs; returns their names."""
    removed = []
    for path in sorted(Path(models_dir).glob(f"{STAGING_PREFIX}*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed
