"""The shadow teacher's child process: load versions, answer teacher queries at idle CPU priority,
within a CPU budget. The parent side and the protocol are described in app/experiment/shadow_process.py."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from app.engine.recommender import Query
from app.experiment.shadow_process import BURST_CPU_S

log = logging.getLogger(__name__)


def child_entry(fd: int, cpu_budget: float | None, burst_cpu_s: float) -> None:
    """The child process's entry point (see _CHILD_BOOT)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s shadow-teacher %(levelname)s %(message)s")
    _child_main(Connection(fd), cpu_budget, burst_cpu_s)


def idle_priority() -> str:
    """Lower this process to SCHED_IDLE (Linux), else to nice 19; returns which one applied."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined]
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        pass
    try:
        os.nice(19 - os.nice(0))
        return "nice 19"
    except OSError:
        return "normal"


def _child_main(conn: Connection, cpu_budget: float | None = None, burst_cpu_s: float = BURST_CPU_S) -> None:
    """Serve loads and teacher queries until "stop" or the parent goes away.

    The first version loads at nice 10 (start-up: ~1-3 s of CPU, once; it progresses on a busy
    machine at ~1/10 of a core's share instead of stalling, as it would at SCHED_IDLE), then the
    process drops to idle priority for good (an unprivileged process cannot raise it again), so a
    version loaded later, on a reload, loads only on idle CPU: on a saturated machine the shadow
    pauses until it has (its jobs are dropped or time out, counted), and the primary never waits.
    """
    with contextlib.suppress(OSError):
        os.nice(10)
    from app.engine.loading import load_version
    from app.engine.model import LoadedModel
    from app.engine.recommender import limit_blas_threads, recommend_batch

    limit_blas_threads()
    policy: str | None = None
    models: dict[str, LoadedModel] = {}  # path -> model, the two newest
    # Token bucket on CPU seconds: SCHED_IDLE keeps the teacher off busy cores, but on SMT siblings
    # and shared caches "idle" CPU is not free, so the teacher's total share is capped as well.
    tokens, refilled = burst_cpu_s, time.monotonic()

    def model_for(path: str) -> LoadedModel:
        model = models.get(path)
        if model is None:
            model = load_version(  # the server verified it; the teacher never needs the student's index
                Path(path), intra_op_threads=1, verify_hashes=False, retrieval="exact"
            )
            models[path] = model
            while len(models) > 2:
                del models[next(iter(models))]
        return model

    while True:
        try:
            batch = [conn.recv()]
            while conn.poll():
                batch.append(conn.recv())
        except (EOFError, OSError):
            return
        runs = [m for m in batch if m[0] == "run"]
        newest_run = runs[-1][1] if runs else None
        for message in batch:
            kind, seq = message[0], message[1]
            if kind == "stop":
                return
            if policy is None and (models or kind == "run"):  # after the first load, before any run
                policy = idle_priority()
                log.debug("shadow teacher process %d now runs at %s", os.getpid(), policy)
            if kind == "run" and seq != newest_run:
                continue  # abandoned by the parent (it only sends the next job after giving up)
            try:
                if kind == "versions?":
                    conn.send(("versions", seq, list(models)))
                    continue
                if kind in ("load", "loaded?"):
                    model_for(message[2])
                    if kind == "loaded?":
                        conn.send(("loaded", seq))
                    continue
                if cpu_budget is not None:
                    now = time.monotonic()
                    tokens = min(burst_cpu_s, tokens + cpu_budget * (now - refilled))
                    refilled = now
                    if tokens <= 0:
                        conn.send(("shed", seq, now - tokens / cpu_budget))
                        continue
                _, _, path, history, k, exclude, eligible, user, unavailable = message
                model = model_for(path)
                spent = time.process_time()
                query = Query(
                    model=model,
                    history=np.asarray(history, np.int64),
                    k=k,
                    exclude=np.asarray(exclude, np.int64),
                    eligible=eligible,
                    user=user,
                    side="teacher",
                    unavailable=np.asarray(unavailable, np.int64),
                )
                (result,) = recommend_batch([query])
                tokens -= time.process_time() - spent
                conn.send(("result", seq, result.indices, result.scores, result.fallback))
            except (EOFError, OSError, BrokenPipeError):
                return
            except Exception as exc:  # reported to the parent, which counts it as an error
                try:
                    conn.send(("error", seq, f"{type(exc).__name__}: {exc}"))
                except (OSError, BrokenPipeError):
                    return
