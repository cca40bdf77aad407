"""The candidate version: a second verified version loaded beside the serving one, to be compared with it.

A rollout asks "is version N+1 at least as good as the N serving now?". The candidate is loaded with
the same checks as a served version; the shadow then runs the candidate's student on sampled traffic
and compares it with the serving answer, and an experiment with `arms = "serving_vs_candidate"` serves
it to its share of users. It never becomes the served version by itself: promote or pin it for that.

Which version is the candidate follows the pin's rules (app.stores.pins, app.engine.model_store):
- `POST /admin/candidate` verifies the version, then stores it in the shared state (the file
  `CANDIDATE` beside LATEST, or the Redis key `<prefix>models:candidate`), so it survives restarts
  and every replica holds the same candidate: the reload poller (RECDISTILL_RELOAD_POLL_SECONDS)
  picks up a candidate set through another replica. Source: "shared".
- With nothing stored, `RECDISTILL_CANDIDATE_VERSION` is the default (none when unset). Source:
  "setting". `DELETE /admin/candidate` clears the stored one, so the default applies again, as an
  unpin goes back to LATEST.
A stored candidate that cannot be read keeps the current one (never "no candidate" by accident); a
refused version is logged, named by `last_error`, and retried only once its manifest changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from app.engine.loading import load_version
from app.engine.model import LoadedModel
from app.engine.model_store import ReloadRefused, manifest_stamp
from app.stores.pins import Pin, PinStore, PinUnreadable
from core.manifest import ManifestError

log = logging.getLogger(__name__)

CandidateSource = Literal["setting", "shared"]


class CandidateSlot:
    """Holds the candidate `LoadedModel` (or None); swapped by one reference assignment, like ModelStore."""

    def __init__(
        self,
        models_dir: Path,
        intra_op_threads: int = 1,
        retrieval: Literal["manifest", "exact"] = "manifest",
        marks: PinStore | None = None,
        default: str | None = None,
    ):
        self.models_dir = Path(models_dir)
        self.intra_op_threads = intra_op_threads
        self.retrieval = retrieval
        self.marks = marks  # the shared candidate (app.stores.pins.open_candidate_marks)
        self.default = default  # RECDISTILL_CANDIDATE_VERSION: used while nothing is stored
        self._current: LoadedModel | None = None
        self.source: CandidateSource | None = None  # where the held candidate came from
        self._lock = threading.RLock()  # one change at a time (read the target, load); readers never take it
        self.last_error: str | None = None  # why the last candidate asked for was refused
        self._refused: tuple[str, float] | None = None  # the last refused (version, manifest mtime)
        self._unreadable = False  # the stored candidate could not be read at the last poll
        self.listeners: list[Callable[[LoadedModel | None], None]] = []  # after each set/clear

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def _verify(self, version: str) -> LoadedModel:
        try:
            return load_version(self.models_dir / version, self.intra_op_threads, retrieval=self.retrieval)
        except ManifestError as exc:
            self.last_error = f"candidate {version} refused: {exc}"
            log.error("%s", self.last_error)
            raise ReloadRefused(str(exc)) from exc

    def _hold(self, model: LoadedModel | None, source: CandidateSource | None) -> LoadedModel | None:
        """Swap the held candidate; returns the one it replaced."""
        held, self._current = self._current, model
        self.source = None if model is None else source
        if model is not None:
            self.last_error, self._refused = None, None
            log.info("candidate version %s loaded from %s (%s)", model.version, model.path, source)
        for listener in self.listeners:
            listener(model)
        return held

    def load(self, version: str, source: CandidateSource = "setting") -> LoadedModel:
        """Verify and hold `version` here only (the shared state is unchanged); ReloadRefused (the old
        candidate stays) if it fails."""
        with self._lock:
            model = self._verify(version)
            self._hold(model, source)
        return model

    def clear(self) -> LoadedModel | None:
        """Drop the candidate here only; returns the one dropped (None when there was none)."""
        with self._lock:
            return self._hold(None, None)

    def set(self, version: str, source: str = "admin") -> LoadedModel:
        """Verify `version`, store it as every replica's candidate, hold it. ReloadRefused when it fails
        verification, PinError when the shared state refuses the write: nothing changes then."""
        if self.marks is None:
            raise ReloadRefused("no candidate store configured")
        with self._lock:
            model = self._verify(version)
            self.marks.set(Pin.now(version, source))
            self._hold(model, "shared")
        return model

    def unset(self) -> LoadedModel | None:
        """Clear the stored candidate and follow the default again; returns the candidate dropped
        (None when the held one stays, or there was none). PinError when the shared state refuses."""
        if self.marks is None:
            raise ReloadRefused("no candidate store configured")
        with self._lock:
            before = self._current
            self.marks.clear()
            self.poll()
            return before if self._current is not before else None

    def target(self) -> tuple[str | None, CandidateSource]:
        """The candidate to hold: the stored one, else the default. ReloadRefused when unreadable."""
        try:
            mark = self.marks.get() if self.marks is not None else None
        except PinUnreadable as exc:
            self.last_error = f"candidate unreadable, keeping the current one: {exc}"
            raise ReloadRefused(str(exc)) from exc
        if mark is not None:
            return mark.version, "shared"
        return self.default, "setting"

    def poll(self) -> None:
        """Hold the target (start-up, each reload poll, after an unset). Never raises: a refusal or an
        unreadable store is logged once and named by `last_error`; the current candidate stays."""
        with self._lock:
            try:
                version, source = self.target()
            except ReloadRefused:
                if not self._unreadable:  # logged once until it reads again
                    log.error("%s", self.last_error)
                self._unreadable = True
                return
            if self._unreadable:
                self._unreadable, self.last_error = False, None
            current = self._current
            if version is None:
                if current is not None:
                    self._hold(None, None)
                return
            if current is not None and current.path == self.models_dir / version:
                self.source = source
                return
            if (stamp := manifest_stamp(self.models_dir, version)) != self._refused:
                try:
                    self.load(version, source)
                except ReloadRefused:
                    self._refused = stamp

    def summary(self) -> dict[str, Any] | None:
        """The candidate's manifest summary, as `/v1/models` shows a version; None without one."""
        model = self._current
        return None if model is None else model.summary()
