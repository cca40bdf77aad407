"""A real `redis-server` for tests: started on a free loopback port in a temp dir, stopped after.

No persistence (tests need none). Tests using it SKIP, with the reason, only when the
`redis-server` binary (Debian package redis-server) or the `redis` client is not installed;
any other start-up failure is an error, not a skip.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

STARTUP_SECONDS = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """A redis-server on one loopback port that a test may kill (SIGKILL) and start again on the
    same port: an outage and a recovery, as a replica sees them."""

    def __init__(self, binary: str, workdir: Path, port: int):
        self.binary, self.workdir, self.port = binary, workdir, port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        args += ["--logfile", str(self.workdir / "redis.log")]
        self._proc = proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _ping(self.port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = self.workdir / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server on port {self.port} did not start: {tail}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to the clients."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


@contextmanager
def redis_process(workdir: Path) -> Iterator[RedisProcess]:
    """A started `RedisProcess`; skip the test when redis-server or redis-py is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    pytest.importorskip("redis", reason="the redis client is not installed (pip install 'recdistill[redis]')")
    workdir.mkdir(parents=True, exist_ok=True)
    server = RedisProcess(binary, workdir, _free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """Yield the URL of a fresh redis-server; skip the test when redis-server or redis-py is missing."""
    with redis_process(workdir) as server:
        yield server.url
