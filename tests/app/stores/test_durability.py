"""An event acknowledged with 2xx is on disk: SIGKILL the real server right after the answer and
read the events back from the database (WAL + synchronous=FULL, see app/stores/history_sqlite.py)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.tiny_model import build_tiny_version

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_acknowledged_events_survive_sigkill(tmp_path: Path, synchronous: str) -> None:
    models = tmp_path / "models"
    build_tiny_version(models, "v1")
    db = tmp_path / "state" / "history.sqlite3"
    port = free_port()
    env = {
        **os.environ,
        "RECDISTILL_HISTORY_DB": str(db),
        "RECDISTILL_HISTORY_SYNCHRONOUS": synchronous,
        "RECDISTILL_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
    }
    code = f"from pathlib import Path; from app.server import serve; serve(Path({str(models)!r}), '127.0.0.1', {port})"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as http:
            for _ in range(600):  # bounded wait for start-up; nothing about its duration is asserted
                try:
                    if http.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, "server exited during start-up"
                time.sleep(0.05)
            else:
                raise AssertionError("server never became ready")
            for n in range(20):
                r = http.post(
                    "/v1/events",
                    json={"user_id": "durable", "item_id": f"i{n % 12:02d}", "timestamp": 1000 + n},
                )
                assert r.status_code == 201
        proc.send_signal(signal.SIGKILL)  # right after the last 2xx: no shutdown, no checkpoint
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    conn = sqlite3.connect(db)  # recovers from the WAL the killed process left behind
    try:
        rows = conn.execute(
            "SELECT item_id, ts FROM interactions WHERE user_id = 'durable' AND source = 'event' ORDER BY ts"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [(f"i{n % 12:02d}", 1000 + n) for n in range(20)]
