"""The teacher in shadow: a sampled share of student answers is re-answered by the teacher off the
request path and the two lists are compared.

Design for the p99 budget (shadow on must cost the primary at most ~1.2x p99):
- `submit` is O(1) on the request path: a crc32 sample test and a `put_nowait` on a bounded queue.
  A full queue drops the job (counted); the primary never waits for the shadow.
- By default (isolation "process") the teacher runs in child processes at SCHED_IDLE
  (app/experiment/shadow_process.py): it only gets CPU the primary leaves idle, and it has its own GIL. At rate
  1.0 on a saturated machine most jobs are therefore dropped or time out, by design, and counted.
  A CPU budget (RECDISTILL_SHADOW_CPU_BUDGET cores, a token bucket in the child) caps it as well:
  "idle" CPU is not free on SMT siblings and shared caches. While the child is over budget, jobs
  are dropped in `submit`, on the request path, before they are queued.
  The worker threads here only wait on the child's pipe and compute the agreement (O(k log k)).
  They are not niced: a niced thread that holds the GIL would stall the event loop.
- Isolation "thread" (or an injected `teacher_fn`) runs the teacher in the worker threads on their
  OWN onnxruntime sessions (intra_op_num_threads=1, spinning off); it competes with the primary for
  CPU and is kept for platforms without process spawning and for tests.
- A teacher run past its timeout is cancelled through `RunOptions.terminate` (set by one watchdog
  thread, not a timer thread per job; the process teacher polls the same flag) and counted; errors
  are logged and counted, never surfaced.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections import Counter as TallyCounter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, cast

import onnxruntime as ort

from app.engine.loading import ranking_sessions, session_options
from app.engine.model import LoadedModel
from app.engine.recommender import Query, Result, recommend_batch
from app.experiment.shadow_metrics import METRIC_LABELS, ShadowMetrics
from app.experiment.shadow_process import TeacherPool, TeacherShed
from app.experiment.shadow_watchdog import CancellableSession, Watchdog
from app.stores.protocols import ComparisonStore
from app.stores.records import (
    CANDIDATE_PAIR,
    TEACHER_PAIR,
    Comparison,
    FailureKind,
    failure_key,
)
from core.agreement import agreement

log = logging.getLogger(__name__)

FLUSH_EVERY = 64  # comparisons per SQLite commit under load; an idle queue flushes at once


@dataclass(frozen=True, eq=False)
class ShadowJob:
    """What the teacher needs to answer the same request: the student's query (same model version,
    history, filters, k) and the student's answer to compare against.

    With `candidate` set, the other side is the candidate version's student instead of the teacher:
    `replay` prepares the same request (raw history, filters, k) against the candidate's catalogue,
    in the worker thread, never on the request path."""

    request_id: str
    query: Query  # the student's query; the worker swaps in the teacher side
    student_items: tuple[str, ...]  # item ids as served
    student_latency_ms: float
    enqueued_at: float = 0.0  # time.monotonic() at submit
    candidate: LoadedModel | None = None
    replay: Callable[[LoadedModel], Query] | None = None

    @property
    def pair(self) -> str:
        return TEACHER_PAIR if self.candidate is None else CANDIDATE_PAIR

    @property
    def failure_key(self) -> str:
        serving = self.query.model.version
        return failure_key(self.pair, serving, serving if self.candidate is None else self.candidate.version)


# Runs the teacher on one query; the default uses recommend_batch on the shadow's own sessions.
TeacherFn = Callable[[Query, ort.RunOptions], Result]


class ShadowRunner:
    """Bounded queue + worker threads that answer sampled requests with the teacher and store the comparison."""

    def __init__(
        self,
        store: ComparisonStore,
        *,
        rate: float,
        queue_size: int = 32,
        timeout_ms: float = 200.0,
        threads: int = 1,
        metrics: ShadowMetrics | None = None,
        teacher_fn: TeacherFn | None = None,
        clock: Callable[[], float] = time.time,
        isolation: Literal["process", "thread"] = "process",
        cpu_budget: float | None = None,
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"shadow rate must lie in [0, 1], got {rate}")
        if isolation not in ("process", "thread"):
            raise ValueError(f"shadow isolation must be 'process' or 'thread', got {isolation!r}")
        self.store = store
        self.rate = rate
        self.timeout_s = timeout_ms / 1000.0
        self.metrics = metrics
        self._clock = clock
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=queue_size)
        self._n_threads = threads
        self._threads: list[threading.Thread] = []
        self._pool: TeacherPool | None = None  # the child processes, started by start()
        self._cpu_budget = cpu_budget  # cores for the teacher processes together; None: no cap
        self._paused_until = 0.0  # time.monotonic() before which the teacher is over its CPU budget
        if teacher_fn is not None:
            self._teacher_fn: TeacherFn = teacher_fn
        elif isolation == "process":
            self._teacher_fn = self._run_in_process
        else:
            self._teacher_fn = self._run_teacher
        self._local = threading.local()
        # (served model, its copy on our sessions), newest last; two so that jobs queued before a
        # reload finish on the old version without rebuilding its sessions.
        self._shadows: list[tuple[LoadedModel, LoadedModel]] = []
        self._sessions_lock = threading.Lock()
        self._lock = threading.Lock()
        self._watchdog: Watchdog | None = None
        self.counts: TallyCounter[str] = TallyCounter()  # submitted, compared, dropped, error, timeout
        self._unsaved_failures: TallyCounter[tuple[str, FailureKind]] = TallyCounter()
        self._unsaved: list[Comparison] = []  # written in batches: one SQLite commit per job cost ~0.15 ms

    # -- request path -------------------------------------------------------------------------------
    def sampled(self, request_id: str) -> bool:
        """Deterministic per request id (crc32), so replicas and retries make the same choice."""
        if self.rate <= 0.0:
            return False
        return self.rate >= 1.0 or zlib.crc32(request_id.encode()) / 0x1_0000_0000 < self.rate

    @property
    def active(self) -> bool:
        """Whether `submit` may queue anything: lets the request path skip building a job."""
        return bool(self._threads)

    def submit(self, job: ShadowJob) -> bool:
        """Never blocks. Returns True when queued; a full queue drops the job and counts it."""
        if not self._threads or not self.sampled(job.request_id):
            return False
        if job.candidate is None and not job.query.model.teacher.can_score(job.query.user):
            # a lookup teacher (embedding tables) without this user's vector: counted, never guessed
            self._fail(job, "unknown_user")
            return False
        # The common cases at rate 1.0 under load: the teacher is over its CPU budget or busy. Both
        # drop here, on the request path, in a few microseconds and without building the job's copy.
        if self._queue.full() or time.monotonic() < self._paused_until:
            self._fail(job, "dropped")
            return False
        try:
            self._queue.put_nowait(replace(job, enqueued_at=time.monotonic()))
        except queue.Full:
            self._fail(job, "dropped")
            return False
        with self._lock:
            self.counts["submitted"] += 1
        return True

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self.rate <= 0.0 or self._threads:
            return
        self._watchdog = Watchdog()
        if self._teacher_fn == self._run_in_process:
            self._pool = TeacherPool(self._n_threads, self._cpu_budget)
        for i in range(self._n_threads):
            thread = threading.Thread(target=self._work, name=f"recdistill-shadow-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish queued jobs (each bounded by its timeout), then persist the failure tallies."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.flush()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests and shutdown: True once every queued job has been processed."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        self.flush()
        return not self._queue.unfinished_tasks

    # -- worker -------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=1.0)
            except queue.Empty:
                self.flush()
                continue
            try:
                if job is None:
                    return
                self._process(job)
                if self._queue.empty() or len(self._unsaved) >= FLUSH_EVERY:
                    self.flush()
            except Exception:  # the worker must survive anything; the job is counted as an error
                log.exception("shadow worker: unexpected failure")
                if job is not None:
                    self._fail(job, "error")
            finally:
                self._queue.task_done()

    def _process(self, job: ShadowJob) -> None:
        waited = time.monotonic() - job.enqueued_at
        remaining = self.timeout_s - waited
        if remaining <= 0:  # stale before it started: the teacher would only add load
            self._fail(job, "timeout")
            return
        if job.candidate is not None:
            self._process_candidate(job, remaining)
            return
        if self._teacher_fn == self._run_teacher:
            self._shadow_model(job.query.model)  # a version's first job loads sessions: not timed
        elif self._teacher_fn == self._run_in_process and self._pool is not None:
            self._pool.ensure_loaded(job.query.model.path)  # likewise in the child: not timed
        run_options = ort.RunOptions()
        start = time.perf_counter()
        self._local.deadline = time.monotonic() + remaining  # the process teacher sleeps until it
        token = self._watchdog.arm(time.monotonic() + remaining, run_options) if self._watchdog else None
        try:
            result = self._teacher_fn(job.query, run_options)
        except TeacherShed as shed:  # over its CPU budget: not run, like a full queue
            self._paused_until = shed.resume_at
            self._fail(job, "dropped")
            return
        except Exception as exc:
            timed_out = run_options.terminate or time.perf_counter() - start > remaining
            if not timed_out:
                log.warning("shadow teacher failed on request %s: %s", job.request_id, exc)
            self._fail(job, "timeout" if timed_out else "error")
            return
        finally:
            if token is not None and self._watchdog is not None:
                self._watchdog.disarm(token)
        teacher_s = time.perf_counter() - start
        if teacher_s > remaining:  # finished, but too late to count as a fair sample
            self._fail(job, "timeout")
            return
        self._compare(job, result, teacher_s)

    def _process_candidate(self, job: ShadowJob, remaining: float) -> None:
        """The candidate's student on the same request, in this worker thread: it is as cheap as the
        served student, so it needs neither the teacher's process nor its watchdog.

        Both sides are timed here on the same prepared request: the served answer's own latency
        includes the micro-batcher's queueing and the event loop's hand-offs, so against it an
        identical candidate timed alone looked twice as fast (a ratio near 0.45). Whichever runs
        second finds the caches warm, so the order alternates from one job to the next (the request
        id's last character): the median ratio of an identical candidate is then about 1."""
        assert job.candidate is not None and job.replay is not None
        try:
            replay = job.replay(job.candidate)  # preparing the candidate's query is not timed
            order = [job.query, replay] if ord(job.request_id[-1:] or "0") % 2 else [replay, job.query]
            seconds = {}
            for query in order:
                start = time.perf_counter()
                (result,) = recommend_batch([query])
                seconds[id(query)] = time.perf_counter() - start
                if query is replay:
                    candidate_result = result
        except Exception as exc:  # e.g. a category filter the candidate's catalogue lacks
            log.warning("shadow candidate failed on request %s: %s", job.request_id, exc)
            self._fail(job, "error")
            return
        serving_s, candidate_s = seconds[id(job.query)], seconds[id(replay)]
        if serving_s + candidate_s > remaining:
            self._fail(job, "timeout")
            return
        self._compare(job, candidate_result, candidate_s, serving_s * 1000.0)

    def _compare(
        self, job: ShadowJob, result: Result, teacher_s: float, student_ms: float | None = None
    ) -> None:
        """Record the comparison; `student_ms` is the serving side's latency when the shadow timed it
        (a candidate pair), else the served answer's."""
        k = job.query.k
        student_ms = job.student_latency_ms if student_ms is None else student_ms
        model = job.query.model
        other = job.candidate or model  # the model whose catalogue the other side's indices index
        teacher_items = other.item_ids[result.indices].tolist()
        scores = agreement(list(job.student_items), teacher_items, k)
        comparison = Comparison(
            request_id=job.request_id,
            ts=self._clock(),
            student_version=model.version,
            teacher_version=other.version,  # the serving version itself for teacher vs student
            k=k,
            overlap=cast(float, scores["overlap@k"]),
            rbo=cast(float, scores["rbo"]),
            kendall_tau=scores["kendall_tau"],
            ndcg=cast(float, scores["ndcg_vs_teacher"]),
            student_latency_ms=student_ms,
            teacher_latency_ms=teacher_s * 1000.0,
            pair=job.pair,
        )
        with self._lock:
            self._unsaved.append(comparison)
            self.counts["compared"] += 1
        if self.metrics is not None:
            self.metrics.job("compared")
            for name, value in scores.items():
                if value is not None:
                    self.metrics.series(self.metrics.agreement, METRIC_LABELS[name]).observe(value)
            self.metrics.series(self.metrics.latency, "student").observe(student_ms / 1000.0)
            self.metrics.series(self.metrics.latency, "teacher").observe(teacher_s)

    def _fail(self, job: ShadowJob, kind: FailureKind) -> None:
        with self._lock:
            self.counts[kind] += 1
            self._unsaved_failures[(job.failure_key, kind)] += 1
        if self.metrics is not None:
            self.metrics.job(kind)

    def flush(self) -> None:
        """Persist buffered comparisons and failure tallies (drops happen on the request path: no I/O there)."""
        with self._lock:
            pending = dict(self._unsaved_failures)
            self._unsaved_failures.clear()
            comparisons, self._unsaved = self._unsaved, []
        if comparisons:
            self.store.add(comparisons)
        if pending:
            self.store.add_failures(pending, ts=self._clock())

    # -- the default teacher: the shadow's own sessions, the primary's filter code ------------------
    def prepare(self, model: LoadedModel) -> None:
        """Build the shadow's teacher sessions for a newly loaded version (a ModelStore listener);
        the process teacher is only told to load it (returns at once: the child loads at idle priority)."""
        if self.rate > 0.0 and self._teacher_fn == self._run_teacher:
            self._shadow_model(model)
        elif self.rate > 0.0 and self._teacher_fn == self._run_in_process and self._pool is not None:
            self._pool.preload(model.path)

    def _run_in_process(self, query: Query, run_options: ort.RunOptions) -> Result:
        if self._pool is None:
            raise RuntimeError("the shadow's teacher processes are not running")
        return self._pool(query, run_options, getattr(self._local, "deadline", None))

    def _shadow_model(self, model: LoadedModel) -> LoadedModel:
        """`model` with teacher sessions of our own (intra_op 1, no spinning), built once per version."""
        with self._sessions_lock:
            for served, shadow in self._shadows:
                if served is model:
                    return shadow
            card = model.manifest.teacher
            opts = session_options(1)
            user = ort.InferenceSession(
                str(model.path / card.user.file), sess_options=opts, providers=["CPUExecutionProvider"]
            )
            topk, scores = ranking_sessions(model.path, card, model.teacher.item_vectors, opts)
            teacher = replace(
                model.teacher,
                topk=self._cancellable(topk),
                scores=self._cancellable(scores),
                user=cast(ort.InferenceSession, CancellableSession(user, self._local)),
            )
            shadow = replace(model, teacher=teacher)
            self._shadows = [*self._shadows[-1:], (model, shadow)]
            return shadow

    def _cancellable(self, session: ort.InferenceSession | None) -> ort.InferenceSession | None:
        return (
            None if session is None else cast(ort.InferenceSession, CancellableSession(session, self._local))
        )

    def _run_teacher(self, query: Query, run_options: ort.RunOptions) -> Result:
        shadow = self._shadow_model(query.model)
        self._local.run_options = run_options
        try:
            (result,) = recommend_batch([replace(query, model=shadow, side="teacher")])
        finally:
            self._local.run_options = None
        return result
