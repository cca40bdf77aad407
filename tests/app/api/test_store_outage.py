"""Killing the shared Redis of a serving replica under traffic, then starting it again: a real
uvicorn server (keep-alive connections, as a load balancer holds them) and a real redis-server.

While Redis is down: no read answers 5xx and no connection is dropped; a `user_id` request is
answered from the popular order and says so (`fallback: "history_unavailable"`, and the metric);
every write (events, feedback, admin catalogue change) and the history read answer 503 with
`Retry-After`; readiness stays 200 and says "degraded". Once Redis is back: full service again."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.app.conftest import ADMIN_TOKEN, make_settings
from tests.app.ui.live import live_server
from tests.fixtures.prometheus import metric_value
from tests.redis_server import redis_process

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READS = ("user", "history", "batch", "compare", "ready", "models", "catalogue")
WRITES = ("event", "feedback", "admin")
DEADLINE_S = 60.0  # a bound on waiting for an outcome, never a timing assertion


@dataclass
class Outcome:
    phase: str
    kind: str
    status: int | None  # None: the connection failed (dropped, refused, timed out)
    detail: str = ""
    retry_after: str | None = None
    fallback: str | None = None
    ready: str | None = None


def _call(client: httpx.Client, kind: str, served: tuple[str, str]) -> httpx.Response:
    """One request of `kind`; `served`: (request id, item id) of an answer served before the outage."""
    if kind == "user":
        return client.post("/v1/recommend", json={"user_id": "u1", "k": 3})
    if kind == "history":
        return client.post("/v1/recommend", json={"history": ["i01"], "k": 3})
    if kind == "batch":
        return client.post(
            "/v1/recommend/batch", json={"requests": [{"user_id": "u2"}, {"history": ["i00"]}]}
        )
    if kind == "compare":
        return client.post("/v1/compare", json={"user_id": "u3", "k": 3})
    if kind == "ready":
        return client.get("/health/ready")
    if kind == "models":
        return client.get("/v1/models")
    if kind == "catalogue":
        return client.get("/v1/catalogue/items/i01")
    if kind == "event":
        return client.post("/v1/events", json={"user_id": "u9", "item_id": "i02", "event": "view"})
    if kind == "feedback":
        return client.post(
            "/v1/feedback", json={"request_id": served[0], "item_id": served[1], "event": "click"}
        )
    if kind == "admin":
        return client.patch("/admin/catalogue/items/i04", json={"price": 7.5}, headers=ADMIN)
    assert kind == "user_history"
    return client.get("/v1/users/u1/history")


@dataclass
class Traffic:
    """Threads that each hold one keep-alive connection and cycle through every kind of request,
    recording each outcome under the phase it started in."""

    base: str
    served: tuple[str, str]  # (request id, item id) for feedback
    threads: int = 4
    phase: str = "up"
    outcomes: list[Outcome] = field(default_factory=list)
    _in_flight: dict[int, str | None] = field(default_factory=dict)  # worker -> phase of its request
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self, offset: int) -> None:
        kinds = (*READS, *WRITES, "user_history")
        with httpx.Client(base_url=self.base, timeout=10.0) as client:
            n = offset
            while not self._stop.is_set():
                kind, phase = kinds[n % len(kinds)], self.phase
                self._in_flight[offset] = phase
                n += 1
                try:
                    r = _call(client, kind, self.served)
                except httpx.HTTPError as exc:
                    self.outcomes.append(Outcome(phase, kind, None, f"{type(exc).__name__}: {exc}"))
                    continue
                finally:
                    self._in_flight[offset] = None
                body = r.json() if r.headers.get("content-type") == "application/json" else {}
                self.outcomes.append(
                    Outcome(
                        phase, kind, r.status_code, str(body.get("detail", "")), r.headers.get("retry-after"),
                        body.get("fallback") if kind == "user" else None, body.get("status"),
                    )
                )  # fmt: skip

    def start(self) -> None:
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, args=(i * 3,), daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def enter(self, phase: str) -> None:
        """Label the requests started from now `phase`, once no request of the old phase is in flight."""
        old, self.phase = self.phase, phase
        deadline = time.monotonic() + DEADLINE_S
        while old in self._in_flight.values():
            assert time.monotonic() < deadline, "a request never returned"
            time.sleep(0.001)

    def wait_for(self, phase: str, each: int) -> None:
        """Until every kind has `each` outcomes in `phase`."""
        deadline = time.monotonic() + DEADLINE_S
        while (
            min(
                Counter(o.kind for o in self.outcomes if o.phase == phase).get(k, 0)
                for k in (*READS, *WRITES)
            )
            < each
        ):
            assert time.monotonic() < deadline, f"traffic stalled in phase {phase}"
            time.sleep(0.02)

    def of(self, phase: str, *kinds: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.phase == phase and o.kind in kinds]


def wait_until(check: Callable[[], bool]) -> float:
    """Seconds until `check()` holds (bounded by DEADLINE_S)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < DEADLINE_S, "the service did not recover"
        time.sleep(0.02)
    return time.monotonic() - started


def test_killing_redis_under_traffic_degrades_honestly_and_recovers(tmp_path: Path, models_dir: Path) -> None:
    with redis_process(tmp_path / "redis") as redis:
        settings = make_settings(
            tmp_path, models_dir, history_backend="redis", redis_url=redis.url,
            catalogue_poll_seconds=0.1, store_retry_seconds=0.2,
        )  # fmt: skip
        with live_server(settings) as base, httpx.Client(base_url=base, timeout=10.0) as probe:
            served = probe.post("/v1/recommend", json={"history": ["i00"], "k": 3}).json()
            assert served["items"][0]["item_id"] == "i09"
            traffic = Traffic(base, (served["request_id"], "i09"))
            traffic.start()
            try:
                traffic.wait_for("up", 2)
                traffic.enter("killing")  # requests in flight across the kill: any write outcome
                redis.kill()
                traffic.enter("down")
                traffic.wait_for("down", 5)
                traffic.enter("starting")
                redis.start()
                traffic.enter("back")

                def recovered() -> bool:
                    event = probe.post("/v1/events", json={"user_id": "u8", "item_id": "i02"})
                    user = probe.post("/v1/recommend", json={"user_id": "u8", "k": 3}).json()
                    ready = probe.get("/health/ready").json()
                    return (
                        event.status_code == 201 and user["fallback"] is None and ready["status"] == "ready"
                    )

                wait_until(recovered)
                traffic.enter("after")
                traffic.wait_for("after", 2)
            finally:
                traffic.stop()
            metrics = probe.get("/metrics").text

    dropped = [o for o in traffic.outcomes if o.status is None]
    assert dropped == [], dropped[:3]
    failed_reads = [o for o in traffic.outcomes if o.kind in READS and o.status != 200]
    assert failed_reads == [], failed_reads[:3]
    bad_up = [o for o in traffic.of("up", *WRITES, "user_history") if o.status not in (200, 201)]
    assert bad_up == [], bad_up[:3]

    down_users = traffic.of("down", "user")
    assert {o.fallback for o in down_users} == {"history_unavailable"}
    for o in traffic.of("down", *WRITES, "user_history"):
        assert (o.status, o.retry_after) == (503, "1"), o
        assert "shared store" in o.detail and "retry after" in o.detail
    down_ready = {o.ready for o in traffic.of("down", "ready")}
    assert "degraded" in down_ready and down_ready <= {"ready", "degraded"}

    # The restarted Redis is empty (no persistence in this test): u1's history is gone, not unread.
    assert {o.fallback for o in traffic.of("after", "user")} == {"popular"}
    assert {o.status for o in traffic.of("after", "event", "admin")} == {200, 201}
    assert {o.ready for o in traffic.of("after", "ready")} == {"ready"}
    assert metric_value(
        metrics, 'recdistill_recommendations_total{arm="student",fallback="history_unavailable"}'
    ) >= len(down_users)
    assert metric_value(metrics, 'recdistill_store_errors_total{operation="read"}') >= 1
    assert metric_value(metrics, 'recdistill_store_errors_total{operation="write"}') >= 1
    assert metric_value(metrics, 'recdistill_store_up{operation="read"}') == 1.0
