"""Hold the served model version and hot-swap verified new ones.

Loading goes through `app.engine.loading.load_version`; one reference assignment swaps the new
immutable `LoadedModel` in, and requests already holding the old one finish on it. A version that
fails verification is logged and refused, and the old version keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from app.engine.loading import load_version
from app.engine.model import LoadedModel
from core.manifest import MANIFEST_FILE, ManifestError, load_manifest, read_latest

log = logging.getLogger(__name__)


class ReloadRefused(RuntimeError):
    """A version that was asked for but failed verification; the old one keeps serving."""


# A version is one folder name under models_dir (same pattern as ReloadRequest.version).
_VERSION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def latest_version(models_dir: Path) -> str | None:
    """The version models/LATEST names; None when nothing is published. Raises ReloadRefused, naming
    the file, when LATEST cannot be read or does not hold one plain version name (a path, a binary
    blob, several lines): start-up then falls back to the newest good version instead of crashing."""
    path = Path(models_dir) / "LATEST"
    try:
        name = read_latest(models_dir)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReloadRefused(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    if name is not None and not _VERSION_NAME.fullmatch(name):
        raise ReloadRefused(f"{path}: {name[:80]!r} is not a version folder name")
    return name


# Called with the verified model before the swap (e.g. seeding the history store).
BeforeSwap = Callable[[LoadedModel], None]


class ModelStore:
    """Holds the current `LoadedModel` and swaps in verified new ones, one reload at a time."""

    def __init__(
        self,
        models_dir: Path,
        intra_op_threads: int = 1,
        before_swap: BeforeSwap | None = None,
        retrieval: Literal["manifest", "exact"] = "manifest",
    ):
        self.models_dir = Path(models_dir)
        self.intra_op_threads = intra_op_threads
        self.retrieval = retrieval
        self._before_swap = before_swap
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()  # one load at a time; readers never take it
        self.last_error: str | None = None
        self.listeners: list[Callable[[LoadedModel], None]] = []  # called after each swap
        self.refusal_listeners: list[Callable[[str, str], None]] = []  # (version, reason) on refusal

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def _swap(self, model: LoadedModel) -> None:
        if self._before_swap is not None:
            self._before_swap(model)
        self._current = model  # the one atomic reference swap
        self.last_error = None
        for listener in self.listeners:
            listener(model)
        log.info("serving model version %s from %s", model.version, model.path)

    def load(self, version: str) -> LoadedModel:
        """Verify and swap in `version`; raise ReloadRefused (old one keeps serving) when it fails."""
        with self._lock:
            path = self.models_dir / version
            try:
                model = load_version(path, self.intra_op_threads, retrieval=self.retrieval)
            except ManifestError as exc:
                self.last_error = str(exc)
                log.error("refused model version %s: %s", version, exc)
                for listener in self.refusal_listeners:
                    listener(version, str(exc))
                raise ReloadRefused(str(exc)) from exc
            self._swap(model)
            return model

    def reload_latest(self) -> tuple[LoadedModel, bool]:
        """Load the version LATEST names unless already served. Returns (model, changed)."""
        try:
            latest = latest_version(self.models_dir)
        except ReloadRefused as exc:
            self.last_error = str(exc)
            raise
        if latest is None:
            raise ReloadRefused(f"{self.models_dir / 'LATEST'}: nothing published")
        current = self._current
        if current is not None and current.path == self.models_dir / latest:
            return current, False
        return self.load(latest), True

    def load_initial(self) -> LoadedModel | None:
        """At start-up: LATEST if it verifies, else the newest other version that does (by created_at)."""
        candidates: list[str] = []
        try:
            latest = latest_version(self.models_dir)
        except ReloadRefused as exc:  # a garbage LATEST: refuse it clearly, try the other versions
            self.last_error = str(exc)
            log.error("ignoring %s; trying the newest other version", exc)
            latest = None
        if latest:
            candidates.append(latest)
        others = []
        try:
            children = sorted(self.models_dir.iterdir()) if self.models_dir.is_dir() else []
        except OSError as exc:
            log.error("cannot list %s: %s", self.models_dir, exc)
            children = []
        if children:
            for child in children:
                if child.name != latest and (child / MANIFEST_FILE).is_file():
                    try:
                        others.append((load_manifest(child).created_at, child.name))
                    except ManifestError as exc:
                        log.warning("skipping %s: %s", child, exc)
        candidates += [name for _, name in sorted(others, reverse=True)]
        for name in candidates:
            try:
                return self.load(name)
            except ReloadRefused:
                continue
        if not candidates:
            if self.last_error is None:
                self.last_error = f"{self.models_dir}: no published model version"
            log.warning("no model version under %s: not ready until one is published", self.models_dir)
        return None


async def watch_latest(store: ModelStore, interval_s: float) -> None:
    """Poll models/LATEST and load what it names; a refused version is retried only once it changes."""
    loop = asyncio.get_running_loop()
    refused: tuple[str, float] | None = None
    while True:
        await asyncio.sleep(interval_s)
        try:
            try:
                latest = latest_version(store.models_dir)
            except ReloadRefused as exc:
                if refused != (str(exc), 0.0):
                    log.error("LATEST watcher: %s; still serving the current version", exc)
                    refused = (str(exc), 0.0)
                continue
            current = store.current
            if latest is None or (current is not None and current.path == store.models_dir / latest):
                continue
            manifest = store.models_dir / latest / MANIFEST_FILE
            stamp = (latest, manifest.stat().st_mtime if manifest.exists() else 0.0)
            if stamp == refused:
                continue
            try:
                await loop.run_in_executor(None, store.load, latest)
                refused = None
            except ReloadRefused:
                refused = stamp
        except asyncio.CancelledError:
            raise
        except Exception:  # the watcher must outlive any surprise; it is logged, not swallowed
            log.exception("LATEST watcher iteration failed")
