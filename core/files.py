"""Files written and checked the one way both wings do: a file's sha256, and an atomic, durable write.

An atomic write goes to a temp file beside the target, is fsynced, renamed over the target, and the
folder is fsynced: readers see the old file or the whole new one, never half of it, and what was
acknowledged survives a power loss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks (a 1M-item matrix never sits in memory twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def open_atomic(path: Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on a clean exit fsync it, rename it over `path`, fsync the folder.

    On an exception the temp file is removed and `path` is left alone. Used for published models,
    LATEST, exported event logs and downloaded datasets.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; published files must be readable by the serving image's own user.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with open_atomic(path, "wb") as fh:
        fh.write(data)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON durably (see `open_atomic`)."""
    write_bytes_atomic(path, (json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n").encode())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
