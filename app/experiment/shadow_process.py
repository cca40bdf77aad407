"""The shadow teacher in its own process, at idle CPU priority, so the primary never pays for it.

Why a process: the teacher costs ~4-11 ms of CPU per request at 100k items (by machine load) against
~0.3 ms for the student. A teacher thread inside the server competes with the event loop and the inference thread
for two cores, and a niced thread that holds the GIL (pre/post-processing) stalls the loop behind a
thread the kernel rarely schedules (priority inversion). The child has its own GIL and runs under
SCHED_IDLE (nice 19 where that is refused), so the kernel gives it only CPU nobody else wants: under
full load its jobs wait, time out and are counted; when the service has idle CPU, they complete.

The child is a fresh interpreter (`subprocess`, not `multiprocessing`): no fork of a threaded server,
and unlike multiprocessing's spawn it never re-imports the parent's `__main__` (a server script
without a main guard would start a second server). It talks over an inherited socketpair wrapped in a
`multiprocessing.connection.Connection` (pickled messages). Linux/Unix only (fd passing).

Protocol:
- parent -> child `("load", path)`: load that version (ModelStore's own `load_version`, every check
  but the sha256 pass, which the server has just done);
- parent -> child `("run", seq, path, history, k, exclude, eligible, user, unavailable)`: one teacher query;
- parent -> child `("loaded?", path)` (load if needed, then answer) and `("versions?",)` (for tests);
- child -> parent `("result", seq, indices, scores, fallback)`, `("error", seq, message)`, or
  `("shed", seq, resume_at)` when the child has spent its CPU budget (the job counts as dropped, and
  the parent drops the next jobs itself until `resume_at`).
One query is outstanding per child at a time, so when the child finds several queued it answers only
the newest: the older ones were abandoned by a parent that timed out. The child keeps the two newest
versions, like the in-process shadow, so jobs queued across a reload finish on their version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import onnxruntime as ort

from app.engine.recommender import Query, Result

log = logging.getLogger(__name__)

POLL_S = 0.005  # how often a waiting parent thread checks its RunOptions.terminate (the timeout)
LOAD_TIMEOUT_S = 300.0  # loading a version at idle priority on a busy machine may take long


class TeacherProcessError(RuntimeError):
    """The child failed to answer (an exception in the child, or the child is gone)."""


class TeacherShed(RuntimeError):
    """The child refused a job because it has spent its CPU budget: counted as a drop, not an error.
    `resume_at` (time.monotonic(), the same clock in every process on Linux) is when it has budget
    again, so the caller can drop jobs until then without sending them."""

    def __init__(self, resume_at: float):
        super().__init__("teacher process over its CPU budget")
        self.resume_at = resume_at


BURST_CPU_S = 0.05  # CPU seconds a child may spend at once after a quiet spell


class TeacherProcess:
    """One child process and its pipe; `run` is called by one shadow worker thread at a time."""

    def __init__(
        self,
        name: str = "recdistill-shadow-teacher",
        cpu_budget: float | None = None,
        burst_cpu_s: float = BURST_CPU_S,
    ) -> None:
        """`cpu_budget`: cores (CPU seconds per second) the child may spend on teacher runs; past it,
        jobs are shed at once (a token bucket in the child, `burst_cpu_s` deep). None: no limit."""
        ours, theirs = socket.socketpair()
        # `name` is only there so that `ps` shows what the child is.
        args = [json.dumps(sys.path), str(theirs.fileno()), json.dumps([cpu_budget, burst_cpu_s]), name]
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD_BOOT, *args], pass_fds=[theirs.fileno()], close_fds=True
            )
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._seq = 0
        self._loaded: set[str] = set()  # versions the child was told to load and confirmed
        self._send_lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def preload(self, path: Path) -> None:
        """Ask the child to load a version now (a ModelStore listener: returns at once)."""
        self._send(("load", str(path)))

    def ensure_loaded(self, path: Path) -> None:
        """Block until the child has this version loaded (a version's first job; not timed)."""
        key = str(path)
        if key not in self._loaded:
            self._request(("loaded?", key), None, LOAD_TIMEOUT_S)
            self._loaded = {*list(self._loaded)[-1:], key}

    def run(self, query: Query, run_options: ort.RunOptions, deadline: float | None = None) -> Result:
        """The teacher's answer to `query`. Raises TimeoutError at `deadline` (time.monotonic()) or once
        the shadow's watchdog sets `run_options.terminate` (the child's late answer is then discarded),
        TeacherShed when the child is over its CPU budget, TeacherProcessError on any other failure."""
        self.ensure_loaded(query.model.path)
        return self._request(
            (
                "run",
                str(query.model.path),
                query.history,
                query.k,
                query.exclude,
                query.eligible,
                query.user,
                query.unavailable,
            ),
            run_options,
            None,
            deadline,
        )

    def versions(self, timeout_s: float = LOAD_TIMEOUT_S) -> list[str]:
        """The version folders the child holds, after every load asked for before this call."""
        return list(self._request(("versions?",), None, timeout_s))

    def _send(self, message: tuple[Any, ...]) -> int:
        with self._send_lock:
            self._seq += 1
            try:
                self._conn.send((message[0], self._seq, *message[1:]))
            except OSError as exc:  # BrokenPipeError: the child is gone
                raise self._gone() from exc
            return self._seq

    def _gone(self) -> TeacherProcessError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(0.5)
        return TeacherProcessError(f"the teacher process exited with {self._proc.returncode}")

    def _request(
        self,
        message: tuple[Any, ...],
        run_options: ort.RunOptions | None,
        timeout_s: float | None,
        deadline: float | None = None,
    ) -> Any:
        seq = self._send(message)
        waited = 0.0
        while True:
            if run_options is not None and run_options.terminate:
                raise TimeoutError("shadow teacher terminated: past its timeout")
            if timeout_s is not None and waited > timeout_s:
                raise TeacherProcessError(f"no answer from the teacher process within {timeout_s:.0f} s")
            # With a deadline, sleep until it (one wake-up per job); without, check the flag every POLL_S.
            wait_s = POLL_S if deadline is None else deadline - time.monotonic()
            if wait_s <= 0:
                raise TimeoutError("shadow teacher past its timeout")
            try:
                if not self._conn.poll(wait_s):
                    if self._proc.poll() is not None:
                        raise self._gone()
                    waited += wait_s
                    continue
                reply = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise self._gone() from exc
            if reply[1] != seq:
                continue  # the late answer to a job we gave up on
            if reply[0] == "error":
                raise TeacherProcessError(reply[2])
            if reply[0] == "shed":
                raise TeacherShed(reply[2])
            if reply[0] == "loaded":
                return None
            if reply[0] == "versions":
                return reply[2]
            _, _, indices, scores, fallback = reply
            return Result(indices, scores, fallback)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the child; one busy at idle priority is terminated (it holds nothing durable)."""
        try:
            with self._send_lock:
                self._conn.send(("stop", 0))
        except (OSError, ValueError):
            pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                # SIGKILL always ends it; an idle-priority child on a busy machine may need more
                # than `timeout` to be scheduled and die, so reap it without a bound (close never raises).
                self._proc.wait()
        self._conn.close()


class TeacherPool:
    """`n` children, one per shadow worker thread: a thread keeps the child it first got, so the
    version it waited for (`ensure_loaded`) is loaded in the child that then runs its job."""

    def __init__(self, n: int, cpu_budget: float | None = None) -> None:
        """`cpu_budget`: cores for all `n` children together (each gets an equal share)."""
        share = None if cpu_budget is None else cpu_budget / n
        self.processes = [TeacherProcess(f"recdistill-shadow-teacher-{i}", share) for i in range(n)]
        self._unclaimed = list(self.processes)
        self._claim_lock = threading.Lock()
        self._local = threading.local()

    def _mine(self) -> TeacherProcess:
        proc: TeacherProcess | None = getattr(self._local, "proc", None)
        if proc is None:
            with self._claim_lock:
                if not self._unclaimed:
                    raise RuntimeError("more shadow worker threads than teacher processes")
                proc = self._local.proc = self._unclaimed.pop(0)
        return proc

    def preload(self, path: Path) -> None:
        for proc in self.processes:
            proc.preload(path)

    def ensure_loaded(self, path: Path) -> None:
        self._mine().ensure_loaded(path)

    def __call__(self, query: Query, run_options: ort.RunOptions, deadline: float | None = None) -> Result:
        return self._mine().run(query, run_options, deadline)

    def close(self) -> None:
        for proc in self.processes:
            proc.close()


# The child's `python -c` program: the parent's sys.path, then serve on the inherited socket.
_CHILD_BOOT = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "from app.experiment.shadow_child import child_entry; child_entry(int(sys.argv[2]), *json.loads(sys.argv[3]))"
)
