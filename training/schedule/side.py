"""Stages that run in a second process, beside the teacher, on a machine with a core to spare.

With `threads = 1` (configs/shop.toml: two OpenMP threads on a small machine mostly wait for each
other) the job used one core of two from start to end. Two stages need nothing the teacher makes:
the scratch student (hard labels only) and the ALS peer (the split only). `SideStages` hands them to
one spawned worker process as soon as the data is loaded, in that order, so they train and tune
while the teacher trains. Then the worker computes every other chunk of the soft labels (each chunk
is seeded by its position: the same labels) and, while the student distils, ranks the teacher, the
scratch student and their ensemble on the test users. The pipeline collects each result where it
used to compute it. The models are the same as in one process: `fit_student` seeds torch itself,
and ALS is seeded. Only the wall time changes (docs/pipeline.md, "Both cores").

The worker is spawned (never forked: torch's thread pools do not survive a fork), dies with its
parent (PR_SET_PDEATHSIG), logs through the parent's format and shows no progress bars (the
teacher's own are on screen). Its errors are raised where the pipeline collects its result.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from training import distributed
from training.config import PipelineConfig
from training.evaluate.models import Ranked, rank_references, tune_als
from training.evaluate.peers import implicit_missing
from training.student.labels import distillation_labels
from training.student.stage import train_scratch
from training.teacher.two_tower import TwoTowerTeacher

if TYPE_CHECKING:
    from training.data.types import Interactions, Split
    from training.evaluate.peers import TunedPeer
    from training.fit.loop import FitResult
    from training.student.model import MLPStudent
    from training.teacher.protocol import Teacher
    from training.warm.start import WarmStart

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [side]: %(message)s"


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def side_process_allowed(cfg: PipelineConfig, cores: int | None = None) -> bool:
    """A side process only when it takes a core nobody uses: `side_process` on, a fixed `threads`
    whose double fits the cores, the CPU, one rank (torchrun's ranks already fill the cores)."""
    if not cfg.side_process or cfg.threads is None or distributed.world_size() > 1:
        return False
    if distributed.resolve_device(cfg.device).type != "cpu":
        return False
    return (available_cores() if cores is None else cores) >= 2 * cfg.threads


def travels(teacher: Teacher) -> bool:
    """Whether the teacher can be sent to the side process: ours (a torch module) pickles; an imported
    one may hold an onnxruntime session or the user's own objects, which need not."""
    return isinstance(teacher, TwoTowerTeacher)


def _worker_init(level: int, cfg: PipelineConfig) -> None:
    """In the worker: die with the parent (Linux), log as the parent does, use `threads` as it does."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S")
    distributed.set_threads(cfg)


def _call_pickled(threads: int, call: bytes) -> Any:
    """The (fn, args) `SideStages.submit` pickled in the caller's thread, called with every native
    thread pool (numpy's BLAS included) at `threads`: left to OpenBLAS's default, the ALS peer's
    scoring took both cores and slowed the teacher's epochs beside it by a third on Beauty. Unpickled
    first: what unpickling imports loads its thread pools before the limits apply."""
    fn, args = pickle.loads(call)
    with threadpool_limits(limits=threads):
        return fn(*args)


def _soft_labels_share(
    cfg: PipelineConfig, full: Split, teacher: Teacher, scratch: MLPStudent | None
) -> None:
    distillation_labels(cfg, teacher, scratch, full, progress=False, share=(1, 2))


class SideStages:
    """The side process's work (started by `start`: the scratch student, the ALS peer; then a share of
    the soft labels and the reference models' ranking as the pipeline hands them over), or nothing.

    Use as a context manager: leaving it shuts the worker down, cancelling what has not started.
    """

    def __init__(self, executor: ProcessPoolExecutor | None = None, threads: int = 1) -> None:
        self._executor = executor
        self._threads = threads
        # While the side process runs, the main process's numpy BLAS keeps to `threads` as well.
        self._blas = threadpool_limits(limits=threads) if executor is not None else None
        self.scratch: Future[FitResult] | None = None
        self.als: Future[TunedPeer] | None = None
        self.ranked: Future[Ranked] | None = None
        self.labels: Future[None] | None = None

    @classmethod
    def start(
        cls,
        cfg: PipelineConfig,
        data: Interactions,
        split: Split,
        warm: WarmStart | None,
        scratch_seconds: float | None,
    ) -> SideStages:
        """Submit the scratch student (when trained) and the ALS peer (when reported and installed),
        in that order; nothing when `side_process_allowed` says no or neither applies."""
        scratch = cfg.distill.train_scratch
        als = "als" in cfg.eval.peers and implicit_missing() is None
        if not (scratch or als) or not side_process_allowed(cfg):
            return cls()
        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(logging.getLogger().getEffectiveLevel(), cfg),
        )
        side = cls(executor, cfg.threads or 1)
        if scratch:
            side.scratch = side.submit(train_scratch, cfg, data, split, False, warm, scratch_seconds)
        if als:
            side.als = side.submit(tune_als, cfg, split)
        log.info(
            "side process: %s beside the teacher (threads %d each)",
            " then ".join(n for n, f in (("scratch student", side.scratch), ("ALS peer", side.als)) if f),
            cfg.threads,
        )
        return side

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue `fn(*args)` in the side process, its native thread pools at `threads`.

        The call is pickled here, before this returns, not by the executor's feeder thread: pickling
        a torch tensor for another process moves its storage into shared memory (torch's
        multiprocessing reductions swap the data pointer), and done in the background that swap
        raced with this process still reading the tensor. The teacher sent for its share of the
        soft labels was being moved while this process scored its own chunks with it: on the tiny
        shop a third of a chunk's rows came out with other candidates, depending on timing."""
        assert self._executor is not None, "no side process"
        call = bytes(ForkingPickler.dumps((fn, args)))
        return self._executor.submit(_call_pickled, self._threads, call)

    @property
    def running(self) -> bool:
        return self._executor is not None

    def scratch_fit(self) -> FitResult | None:
        """The scratch student's fit, waiting for it (None: it was not handed to the side process)."""
        return None if self.scratch is None else self.scratch.result()

    def als_peer(self) -> TunedPeer | None:
        """The tuned ALS peer, waiting for it (None: it was not handed to the side process)."""
        return None if self.als is None else self.als.result()

    def soft_labels_share(
        self, cfg: PipelineConfig, full: Split, teacher: Teacher, scratch: MLPStudent | None
    ) -> bool:
        """Compute and cache every other chunk of the soft labels (share 1 of 2) in the side process
        while the main process computes the others. False (nothing handed over) when no side process
        runs or the teacher does not travel to it (`travels`)."""
        if self._executor is None or not travels(teacher):
            return False
        self.labels = self.submit(_soft_labels_share, cfg, full, teacher, scratch)
        return True

    def soft_labels_done(self) -> None:
        """Wait for the side's share of the soft labels (its errors are raised here)."""
        if self.labels is not None:
            self.labels.result()

    def rank_references(
        self, cfg: PipelineConfig, full: Split, teacher: Teacher, scratch: MLPStudent
    ) -> None:
        """Rank the teacher, the scratch student and the soft labels' source on the test users while
        the main process distils the student (nothing when no side process runs or the teacher does
        not travel to it: `evaluate_all` ranks them then)."""
        if self._executor is not None and travels(teacher):
            self.ranked = self.submit(rank_references, cfg, full, teacher, scratch)

    def references(self) -> Ranked | None:
        """What `rank_references` ranked, waiting for it (None: nothing was handed over)."""
        return None if self.ranked is None else self.ranked.result()

    def __enter__(self) -> SideStages:
        return self

    def __exit__(self, *exc: Any) -> None:
        """Done: the worker has finished what it was given. Left early (an error, a gate, Ctrl-C):
        stop it now rather than let it train on for minutes."""
        if self._blas is not None:
            self._blas.restore_original_limits()
        if self._executor is None:
            return
        if exc[0] is not None:
            for process in list(getattr(self._executor, "_processes", {}).values()):
                process.terminate()  # the executor has no public terminate before Python 3.14
        self._executor.shutdown(wait=True, cancel_futures=True)
