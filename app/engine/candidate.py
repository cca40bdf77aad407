"""The candidate version: a second verified version loaded beside the serving one, to be compared with it.

A rollout asks "is version N+1 at least as good as the N serving now?". The candidate is loaded
(`RECDISTILL_CANDIDATE_VERSION` at start-up, or `POST /admin/candidate`) with the same checks as a
served version; the shadow then runs the candidate's student on sampled traffic and compares it with
the serving answer, and an experiment with `arms = "serving_vs_candidate"` serves it to its share of
users. It never becomes the served version by itself: promote or pin it for that.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from app.engine.loading import load_version
from app.engine.model import LoadedModel
from app.engine.model_store import ReloadRefused
from core.manifest import ManifestError

log = logging.getLogger(__name__)


class CandidateSlot:
    """Holds the candidate `LoadedModel` (or None); swapped by one reference assignment, like ModelStore."""

    def __init__(
        self,
        models_dir: Path,
        intra_op_threads: int = 1,
        retrieval: Literal["manifest", "exact"] = "manifest",
    ):
        self.models_dir = Path(models_dir)
        self.intra_op_threads = intra_op_threads
        self.retrieval = retrieval
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()  # one load at a time; readers never take it
        self.last_error: str | None = None  # why the last candidate asked for was refused
        self.listeners: list[Callable[[LoadedModel | None], None]] = []  # after each set/clear

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def load(self, version: str) -> LoadedModel:
        """Verify and hold `version` as the candidate; ReloadRefused (the old candidate stays) if it fails."""
        with self._lock:
            try:
                model = load_version(
                    self.models_dir / version, self.intra_op_threads, retrieval=self.retrieval
                )
            except ManifestError as exc:
                self.last_error = f"candidate {version} refused: {exc}"
                log.error("%s", self.last_error)
                raise ReloadRefused(str(exc)) from exc
            self._current, self.last_error = model, None
        log.info("candidate version %s loaded from %s", model.version, model.path)
        for listener in self.listeners:
            listener(model)
        return model

    def clear(self) -> LoadedModel | None:
        """Drop the candidate; returns the one dropped (None when there was none)."""
        with self._lock:
            dropped, self._current = self._current, None
        for listener in self.listeners:
            listener(None)
        return dropped

    def summary(self) -> dict[str, Any] | None:
        """The candidate's manifest summary, as `/v1/models` shows a version; None without one."""
        model = self._current
        return None if model is None else model.summary()
