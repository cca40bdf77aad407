"""The shared-store outage drill: a served replica (`recdistill serve`, RECDISTILL_HISTORY_BACKEND=redis,
default store settings, the tiny fixture version) under one keep-alive client per kind of request,
while its redis-server is killed (SIGKILL, then started again on the same port: an empty Redis, as
after a crash without persistence) or frozen (SIGSTOP, then SIGCONT: a Redis or network that stops
answering without refusing). Prints, per phase and kind: the status codes, dropped connections and
the slowest answer; then how long after Redis returned the first event was stored and the first
`user_id` answer was not degraded, and whether the log holds a traceback.

    PYTHONPATH=. .venv/bin/python scripts/outage_drill.py --scenario kill|freeze [--down-seconds 5]

Needs redis-server on PATH. Timings are wall-clock on whatever machine runs it: one run, not a benchmark.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.tiny_model import build_tiny_version

TOKEN = "drill-admin-token-0123456789"
KINDS = (
    "user",
    "history",
    "batch",
    "compare",
    "ready",
    "models",
    "catalogue",
    "event",
    "feedback",
    "admin",
    "user_history",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([*args, "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.01)


def start_replica(
    work: Path, redis_port: int, log: Path, **settings: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`recdistill serve` on a free port with the redis backend and its own local files under `work`
    (named after `log`), once ready; (process, base URL). `settings`: more RECDISTILL_* variables."""
    port = free_port()
    env = {
        **os.environ, "RECDISTILL_HISTORY_BACKEND": "redis", "RECDISTILL_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "RECDISTILL_HISTORY_DB": str(work / log.stem / "history.sqlite3"), "RECDISTILL_ADMIN_TOKEN": TOKEN, **settings,
    }  # fmt: skip
    serve = [
        sys.executable,
        "-m",
        "recdistill.cli",
        "serve",
        "--models",
        str(work / "models"),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(serve, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(base + "/health/ready").status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the replica exited: see {log}")
        time.sleep(0.1)


def call(client: httpx.Client, kind: str, served: dict[str, Any]) -> httpx.Response:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    requests: dict[str, tuple[str, str, Any]] = {
        "user": ("POST", "/v1/recommend", {"user_id": "u1", "k": 3}),
        "history": ("POST", "/v1/recommend", {"history": ["i01"], "k": 3}),
        "batch": ("POST", "/v1/recommend/batch", {"requests": [{"user_id": "u2"}, {"history": ["i00"]}]}),
        "compare": ("POST", "/v1/compare", {"user_id": "u3", "k": 3}),
        "ready": ("GET", "/health/ready", None),
        "models": ("GET", "/v1/models", None),
        "catalogue": ("GET", "/v1/catalogue/items/i01", None),
        "event": ("POST", "/v1/events", {"user_id": "u9", "item_id": "i02"}),
        "feedback": (
            "POST",
            "/v1/feedback",
            {"request_id": served["request_id"], "item_id": "i09", "event": "click"},
        ),
        "admin": ("PATCH", "/admin/catalogue/items/i04", {"price": 7.5}),
        "user_history": ("GET", "/v1/users/u1/history", None),
    }
    method, path, body = requests[kind]
    return client.request(method, path, json=body, headers=admin if kind == "admin" else None)


def outcome(kind: str, r: httpx.Response) -> str:
    key = str(r.status_code)
    if kind == "user" and r.status_code == 200:
        key += f" fallback={r.json()['fallback']}"
    if kind == "ready":
        key += f" {r.json()['status']}"
    if r.status_code == 503:
        key += f" Retry-After={r.headers.get('retry-after')}"
    return key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("kill", "freeze"), required=True)
    parser.add_argument("--down-seconds", type=float, default=5.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="recdistill-drill-"))
    build_tiny_version(work / "models", "v1")
    rport = free_port()
    redis = start_redis(rport, work)
    log_path = work / "service.log"
    app, base = start_replica(work, rport, log_path)
    served = httpx.post(base + "/v1/recommend", json={"history": ["i00"], "k": 3}).json()
    phase = ["up"]
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    slowest: dict[tuple[str, str], float] = defaultdict(float)
    stop = threading.Event()

    def worker(kind: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                ph, started = phase[0], time.perf_counter()
                try:
                    key = outcome(kind, call(client, kind, served))
                except httpx.HTTPError as exc:
                    key = f"DROPPED ({type(exc).__name__})"
                counts[(ph, kind)][key] += 1
                slowest[(ph, kind)] = max(slowest[(ph, kind)], time.perf_counter() - started)

    threads = [threading.Thread(target=worker, args=(kind,)) for kind in KINDS]
    for t in threads:
        t.start()
    time.sleep(2)
    phase[0] = "down"
    if args.scenario == "kill":
        redis.kill()
        redis.wait()
    else:
        redis.send_signal(signal.SIGSTOP)
    time.sleep(args.down_seconds)
    phase[0] = "back"
    if args.scenario == "kill":
        redis = start_redis(rport, work)
    else:
        redis.send_signal(signal.SIGCONT)
    returned = time.monotonic()
    first_event = first_user = None
    with httpx.Client(base_url=base, timeout=30) as client:
        while first_event is None or first_user is None:
            if (
                first_event is None
                and client.post("/v1/events", json={"user_id": "u8", "item_id": "i02"}).status_code == 201
            ):
                first_event = time.monotonic() - returned
            if (
                first_user is None
                and client.post("/v1/recommend", json={"user_id": "u8"}).json()["fallback"]
                != "history_unavailable"
            ):
                first_user = time.monotonic() - returned
            time.sleep(0.005)
    time.sleep(2)
    phase[0] = "after"
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    app.send_signal(signal.SIGINT)
    app.wait(timeout=30)
    redis.kill()
    redis.wait()
    log = log_path.read_text()
    lines = [f"scenario {args.scenario}, Redis down {args.down_seconds:g} s", ""]
    lines += ["| phase | kind | answers | slowest ms |", "| --- | --- | --- | --- |"]
    for ph in ("up", "down", "back", "after"):
        for kind in KINDS:
            got = ", ".join(f"{k}: {n}" for k, n in sorted(counts[(ph, kind)].items()))
            lines.append(f"| {ph} | {kind} | {got} | {slowest[(ph, kind)] * 1000:.0f} |")
    lines += [
        "",
        f"after Redis returned: first event stored in {first_event:.2f} s, "
        f"first user_id answer not degraded in {first_user:.2f} s",
        f"service log: {log.count('Traceback')} tracebacks, "
        f"{log.count('Exception in ASGI')} 'Exception in ASGI application'",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
