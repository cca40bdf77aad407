"""What the service benchmarks share: the server under test, the requests sent to it, wrk with the
server's CPU per request, and the machine a result was measured on.

The server is a subprocess (`app.server.serve`: uvicorn, uvloop, httptools, no access log) on a free
127.0.0.1 port, started and stopped by `running_server`; bench/service.py and bench/scale.py drive it.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from bench.loadgen import (
    WrkResult,
    cpu_seconds,
    run_wrk,
    wrk_available,
)

K = 10  # the top-k every request asks for
HISTORY_ITEMS = 10  # ids per request history (the student reads its last history_len)


# --- the server under test -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a GET; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Server:
    pid: int
    port: int
    ready_seconds: float

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def running_server(
    models_dir: Path,
    state_dir: Path,
    env_extra: dict[str, str],
    ready_timeout: float,
    server_module: str = "app.server",
) -> Iterator[Server]:
    """Start `<server_module>.serve` (the service; bench.floor: the floor) in a subprocess on a free
    loopback port; stop it on exit."""
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "RECDISTILL_HISTORY_DB": str(state_dir / "history.sqlite3"),
        "RECDISTILL_LOG_LEVEL": "warning",
        **env_extra,
    }
    code = f"import sys; from pathlib import Path; from {server_module} import serve; serve(Path(sys.argv[1]), '127.0.0.1', int(sys.argv[2]))"
    log_path = state_dir / "server.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(models_dir), str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1],
        )
    start = time.perf_counter()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log_path}")
            try:
                status, _ = http_get(f"http://127.0.0.1:{port}/health/ready")
                if status == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() - start > ready_timeout:
                raise TimeoutError(f"server not ready within {ready_timeout:.0f} s; see {log_path}")
            time.sleep(0.25)
        yield Server(proc.pid, port, time.perf_counter() - start)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def torch_loaded(pid: int) -> bool:
    """Whether the server process has libtorch mapped (it must not: app/ never imports torch)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def request_bodies(version_dir: Path, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` /v1/recommend bodies: anonymous histories of popular-biased items, k = 10."""
    items = np.load(version_dir / "items.npy", allow_pickle=False)
    popularity = np.load(version_dir / "popularity.npy", allow_pickle=False) + 1.0
    rng = np.random.default_rng(seed)
    p = popularity / popularity.sum()
    return [
        {"history": [str(x) for x in items[rng.choice(len(items), HISTORY_ITEMS, p=p)]], "k": K}
        for _ in range(n)
    ]


def wrk_dict(result: WrkResult) -> dict[str, Any]:
    """A wrk result as the benchmarks' JSON stores it (every field plus the `errors` total)."""
    return {**asdict(result), "errors": result.errors}


INFERENCE_WALL = "recdistill_inference_batch_seconds_sum"
INFERENCE_CPU = "recdistill_inference_cpu_seconds_total"


def inference_seconds(base: str) -> tuple[float, float] | None:
    """(wall, CPU) seconds the server's inference thread has spent in batches so far, from its
    /metrics; None where the server has no such series (the floor)."""
    try:
        status, body = http_get(f"{base}/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name in (INFERENCE_WALL, INFERENCE_CPU)
    }
    if len(values) != 2:
        return None
    return values[INFERENCE_WALL], values[INFERENCE_CPU]


def inference_load(
    before: tuple[float, float] | None, after: tuple[float, float] | None, seconds: float
) -> dict[str, float | None]:
    """The inference thread over a run: `inference_busy`, the share of the run's wall time it spent in
    batches (near 1: it is the ceiling), and `inference_on_cpu`, the share of that time it was on a
    CPU (the rest it waited for the GIL or a core)."""
    if before is None or after is None or seconds <= 0:
        return {"inference_busy": None, "inference_on_cpu": None}
    wall, cpu = after[0] - before[0], after[1] - before[1]
    return {"inference_busy": wall / seconds, "inference_on_cpu": cpu / wall if wall > 0 else None}


def inference_cell(run: dict[str, Any], missing: str = "—") -> str:
    """`inference_load`'s two shares for a table: "busy / on CPU" in percent, `missing` where not
    measured."""
    busy, on_cpu = run.get("inference_busy"), run.get("inference_on_cpu")
    if busy is None or on_cpu is None:
        return missing
    return f"{100 * busy:.0f}% / {100 * on_cpu:.0f}%"


def wrk_with_cpu(server: Server, script: Path, args: argparse.Namespace) -> tuple[WrkResult, dict[str, Any]]:
    """wrk against /v1/recommend plus the server's CPU per request (whole process and event-loop
    thread) and its inference thread's load (`inference_load`)."""
    inference_before = inference_seconds(server.base)
    before, loop_before = cpu_seconds(server.pid), cpu_seconds(server.pid, server.pid)
    result = run_wrk(f"{server.base}/v1/recommend", script, args.duration, args.connections, args.threads)
    used, loop_used = cpu_seconds(server.pid) - before, cpu_seconds(server.pid, server.pid) - loop_before
    inference_after = inference_seconds(server.base)
    n = max(result.requests, 1)
    out = {
        **wrk_dict(result),
        "server_cpu_ms_per_request": 1000.0 * used / n,
        "event_loop_cpu_ms_per_request": 1000.0 * loop_used / n,
        "server_cpu_utilisation": used / result.seconds if result.seconds else None,  # cores busy
        **inference_load(inference_before, inference_after, result.seconds),
    }
    return result, out


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for pkg in (
        "numpy",
        "onnxruntime",
        "fastapi",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "pydantic",
        "torch",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    wrk = wrk_available()
    wrk_version = None
    if wrk:
        proc = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
        wrk_version = (
            (proc.stdout + proc.stderr).strip().splitlines()[0] if (proc.stdout + proc.stderr) else None
        )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": wrk_version,
        "versions": versions,
    }
