"""Hold the served model version and hot-swap verified new ones.

Loading goes through `app.engine.loading.load_version`; one reference assignment swaps the new
immutable `LoadedModel` in, and requests already holding the old one finish on it. A version that
fails verification is logged and refused, and the old version keeps serving.

What the store follows (its target) is the pin when one is set (`app.stores.pins`), else LATEST: the
watcher and a reload without a version both move to the target and never away from a pin. A pin
that cannot be read stops the following (the current version keeps serving) rather than counting as
"no pin". Reading the target and loading it happen under one lock, so a pin set meanwhile cannot be
overtaken by a poll that read LATEST just before.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from app.engine.loading import load_version
from app.engine.model import LoadedModel
from app.stores.pins import Pin, PinStore, PinUnreadable
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


def manifest_stamp(models_dir: Path, version: str) -> tuple[str, float]:
    """(version, its manifest's mtime): a poller retries a refused version only once this changes."""
    manifest = Path(models_dir) / version / MANIFEST_FILE
    return version, manifest.stat().st_mtime if manifest.exists() else 0.0


# Called with the verified model before the swap (e.g. seeding the history store).
BeforeSwap = Callable[[LoadedModel], None]
# Why the served version was loaded: the pin, LATEST, an explicit `POST /admin/reload {"version"}`,
# or start-up's fallback to the newest good version when neither the pin nor LATEST loads.
Because = Literal["pinned", "latest", "requested", "fallback"]


class ModelStore:
    """Holds the current `LoadedModel` and swaps in verified new ones, one reload at a time."""

    def __init__(
        self,
        models_dir: Path,
        intra_op_threads: int = 1,
        before_swap: BeforeSwap | None = None,
        retrieval: Literal["manifest", "exact"] = "manifest",
        pins: PinStore | None = None,
    ):
        self.models_dir = Path(models_dir)
        self.intra_op_threads = intra_op_threads
        self.retrieval = retrieval
        self.pins = pins
        self._before_swap = before_swap
        self._current: LoadedModel | None = None
        self._because: Because = "latest"
        self._lock = threading.Lock()  # one load at a time; readers never take it
        self._follow = threading.RLock()  # reading the target and loading it, as one step
        self.last_error: str | None = None
        self.pin_error: str | None = None  # why the pinned version is not served (refused, unreadable)
        self._refused: tuple[str, float] | None = None  # the watcher's last refused (version, mtime)
        self._poll_error: str | None = None  # logged once until it changes
        self.listeners: list[Callable[[LoadedModel], None]] = []  # called after each swap
        self.refusal_listeners: list[Callable[[str, str], None]] = []  # (version, reason) on refusal

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def _swap(self, model: LoadedModel, because: Because) -> None:
        if self._before_swap is not None:
            self._before_swap(model)
        self._current = model  # the one atomic reference swap
        self._because = because
        self.last_error = None
        for listener in self.listeners:
            listener(model)
        log.info("serving model version %s from %s (%s)", model.version, model.path, because)

    def load(self, version: str, because: Because = "requested") -> LoadedModel:
        """Verify and swap in `version`; raise ReloadRefused (old one keeps serving) when it fails."""
        with self._lock:
            path = self.models_dir / version
            try:
                model = load_version(path, self.intra_op_threads, retrieval=self.retrieval)
            except ManifestError as exc:
                self.last_error = str(exc)
                if because == "pinned":
                    self.pin_error = f"pinned version {version} refused: {exc}"
                log.error("refused model version %s: %s", version, exc)
                for listener in self.refusal_listeners:
                    listener(version, str(exc))
                raise ReloadRefused(str(exc)) from exc
            if because == "pinned":
                self.pin_error = None
            self._swap(model, because)
            return model

    def pinned(self) -> Pin | None:
        """The pin, None when none is set (or no pin store); ReloadRefused when it cannot be read."""
        if self.pins is None:
            return None
        try:
            return self.pins.get()
        except PinUnreadable as exc:
            self.pin_error = f"pin unreadable, not following LATEST: {exc}"
            raise ReloadRefused(str(exc)) from exc

    def target(self) -> tuple[str, Because]:
        """What to serve: the pin, else LATEST. ReloadRefused when unreadable or nothing is published."""
        pin = self.pinned()
        if pin is not None:
            return pin.version, "pinned"
        try:
            latest = latest_version(self.models_dir)
        except ReloadRefused as exc:
            self.last_error = str(exc)
            raise
        if latest is None:
            raise ReloadRefused(f"{self.models_dir / 'LATEST'}: nothing published")
        return latest, "latest"

    def _serves(self, version: str) -> bool:
        current = self._current
        return current is not None and current.path == self.models_dir / version

    def reload_target(self) -> tuple[LoadedModel, bool]:
        """Load the target (pin, else LATEST) unless already served. Returns (model, changed)."""
        with self._follow:
            version, because = self.target()
            if self._serves(version):
                assert self._current is not None
                if because == "pinned":
                    self.pin_error = None
                self._because = because
                return self._current, False
            return self.load(version, because), True

    def pin(self, version: str, source: str) -> LoadedModel:
        """Verify and serve `version`, then pin it; ReloadRefused (nothing pinned) when refused."""
        if self.pins is None:
            raise ReloadRefused("no pin store configured")
        with self._follow:
            model = self._current if self._serves(version) else None
            if model is None:
                model = self.load(version, "requested")  # refused: nothing pinned, no pin_error
            self.pins.set(Pin.now(version, source))
            self._because, self.pin_error, self._refused = "pinned", None, None
            return model

    def unpin(self) -> tuple[LoadedModel | None, bool]:
        """Clear the pin and follow LATEST again; returns (served model, changed)."""
        with self._follow:
            if self.pins is not None:
                self.pins.clear()
            self.pin_error = None
            try:
                return self.reload_target()
            except ReloadRefused:
                return self._current, False

    def poll(self) -> None:
        """One watcher step: load the target if it is not served; a refused version is retried only
        once its manifest changes. Errors are logged once each, and the current version keeps serving."""
        with self._follow:
            try:
                version, because = self.target()
            except ReloadRefused as exc:
                if "nothing published" not in str(exc) and self._poll_error != str(exc):
                    log.error("watcher: %s; still serving the current version", exc)
                self._poll_error = str(exc)
                return
            self._poll_error = None
            if self._serves(version):
                if because == "pinned":
                    self.pin_error = None
                self._because = because
                return
            stamp = manifest_stamp(self.models_dir, version)
            if stamp == self._refused:
                return
            try:
                self.load(version, because)
                self._refused = None
            except ReloadRefused:
                self._refused = stamp

    def status(self) -> dict[str, Any]:
        """What is served and why, for /v1/models: reads the pin and LATEST now (blocking)."""
        unreadable = False
        try:
            pin = self.pinned()
        except ReloadRefused:
            pin, unreadable = None, True  # pin_error says why
        try:
            latest = latest_version(self.models_dir)
        except ReloadRefused:
            latest = None
        current = self._current
        served = current.version if current is not None else None
        because: Because = self._because
        if pin is not None and served == pin.version:
            because = "pinned"
        elif pin is None and served is not None and served == latest:
            because = "latest"
        if unreadable:
            pin_error = self.pin_error
        elif pin is None or served == pin.version:
            pin_error = None
        else:
            pin_error = self.pin_error or f"pinned version {pin.version} is not loaded yet"
        pinned = (
            None
            if pin is None
            else {"version": pin.version, "pinned_at": pin.pinned_at, "source": pin.source}
        )
        return {
            "served_version": served,
            "served_because": because,
            "pinned": pinned,
            "latest": latest,
            "pin_error": pin_error,
        }

    def load_initial(self) -> LoadedModel | None:
        """At start-up: the pin if set and it verifies, else LATEST, else the newest other version
        that does (by created_at)."""
        candidates: list[tuple[str, Because]] = []
        try:
            pin = self.pinned()
        except ReloadRefused as exc:
            log.error("ignoring the pin at start-up: %s", exc)
            pin = None
        if pin is not None:
            candidates.append((pin.version, "pinned"))
        try:
            latest = latest_version(self.models_dir)
        except ReloadRefused as exc:  # a garbage LATEST: refuse it clearly, try the other versions
            self.last_error = str(exc)
            log.error("ignoring %s; trying the newest other version", exc)
            latest = None
        if latest and (pin is None or latest != pin.version):
            candidates.append((latest, "latest"))
        named = {name for name, _ in candidates}
        others = []
        try:
            children = sorted(self.models_dir.iterdir()) if self.models_dir.is_dir() else []
        except OSError as exc:
            log.error("cannot list %s: %s", self.models_dir, exc)
            children = []
        for child in children:
            if child.name not in named and (child / MANIFEST_FILE).is_file():
                try:
                    others.append((load_manifest(child).created_at, child.name))
                except ManifestError as exc:
                    log.warning("skipping %s: %s", child, exc)
        candidates += [(name, "fallback") for _, name in sorted(others, reverse=True)]
        for name, because in candidates:
            try:
                return self.load(name, because)
            except ReloadRefused:
                continue
        if not candidates:
            if self.last_error is None:
                self.last_error = f"{self.models_dir}: no published model version"
            log.warning("no model version under %s: not ready until one is published", self.models_dir)
        return None


async def watch_latest(store: ModelStore, interval_s: float, also: Sequence[Callable[[], None]] = ()) -> None:
    """Poll the target (the pin, else models/LATEST) and load it; see `ModelStore.poll`. `also`: more
    blocking steps run on each tick after it (the candidate's `CandidateSlot.poll`), each on its own."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval_s)
        for step in (store.poll, *also):  # looked up each tick (tests wrap store.poll to count)
            try:
                await loop.run_in_executor(None, step)  # reads Redis or files, may load: off the loop
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher must outlive any surprise; it is logged, not swallowed
                log.exception("watcher step %s failed", getattr(step, "__qualname__", step))
