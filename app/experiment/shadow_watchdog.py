"""Cancelling teacher runs that overstay their timeout: one watchdog thread sets `RunOptions.terminate`
on runs past their deadline, and a session wrapper passes each worker's RunOptions to onnxruntime."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import onnxruntime as ort


class CancellableSession:
    """Duck-types InferenceSession.run for recommender.py, adding the worker's RunOptions so a
    watchdog can terminate a run that overstays its timeout."""

    def __init__(self, session: ort.InferenceSession, local: threading.local):
        self._session = session
        self._local = local

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[Any]:
        return self._session.run(output_names, feeds, getattr(self._local, "run_options", None))


class Watchdog:
    """One thread that sets `terminate` on runs past their deadline (instead of a Timer per job)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, ort.RunOptions]] = {}
        self._next = 0
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="recdistill-shadow-watchdog", daemon=True)
        self._thread.start()

    def arm(self, deadline: float, run_options: ort.RunOptions) -> int:
        with self._cond:
            self._next += 1
            self._armed[self._next] = (deadline, run_options)
            self._cond.notify()
            return self._next

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                for token, (deadline, run_options) in list(self._armed.items()):
                    if deadline <= now:
                        run_options.terminate = True
                        del self._armed[token]
                nearest = min((d for d, _ in self._armed.values()), default=now + 1.0)
                self._cond.wait(max(nearest - now, 0.0005))

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=2.0)
