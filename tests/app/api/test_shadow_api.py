"""The shadow through the real app: a failing or slow teacher never touches the primary answers, a
full queue drops and counts, and the report (JSON, HTML, Prometheus) shows what was measured."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.engine.recommender import Query, Result, recommend_batch
from app.experiment.shadow import ShadowRunner
from app.main import create_app

REQUEST = {"history": ["i00"], "k": 4, "exclude_seen": False}
EXPECTED = ["i09", "i06", "i03", "i00"]  # the tiny model's answer (see tests/fixtures/tiny_model.py)


@pytest.fixture
def shadow_client(clients_for: Callable[..., TestClient], models_dir: Path) -> Callable[..., TestClient]:
    return lambda **overrides: clients_for(models_dir, **overrides)


def _runner(client: TestClient) -> ShadowRunner:
    return client.app.state.experiment.shadow  # type: ignore[attr-defined]


def _ask(client: TestClient, n: int) -> list[list[str]]:
    answers = []
    for _ in range(n):
        r = client.post("/v1/recommend", json=REQUEST)
        assert r.status_code == 200
        answers.append([i["item_id"] for i in r.json()["items"]])
    return answers


def test_shadow_off_by_default(client: TestClient) -> None:
    _ask(client, 3)
    report = client.get("/v1/shadow/report").json()
    assert (report["shadow_rate"], report["count"], report["dropped"]) == (0.0, 0, 0)


def test_every_request_compared_at_rate_one(shadow_client: Callable[..., TestClient]) -> None:
    client = shadow_client(shadow_rate=1.0, shadow_timeout_ms=10_000)
    assert _ask(client, 5) == [EXPECTED] * 5
    assert _runner(client).wait_idle()
    report = client.get("/v1/shadow/report").json()
    assert (report["count"], report["dropped"], report["errors"]) == (5, 0, 0)
    assert report["metrics"]["overlap@k"]["mean"] == 1.0 and report["metrics"]["rbo"]["p10"] == pytest.approx(
        1.0
    )
    assert report["latency_ratio"]["n"] == 5
    [version] = report["by_version"]
    assert (version["student_version"], version["teacher_version"], version["count"]) == ("v1", "v1", 5)
    page = client.get("/v1/shadow/report.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count("<svg") == 5 and "compared 5" in page.text
    metrics = client.get("/metrics").text
    assert 'recdistill_shadow_jobs_total{outcome="compared"} 5.0' in metrics
    assert 'recdistill_shadow_agreement_count{metric="rbo"} 5.0' in metrics


def test_cold_start_and_teacher_arm_answers_are_not_shadowed(
    shadow_client: Callable[..., TestClient],
) -> None:
    client = shadow_client(shadow_rate=1.0)
    client.post("/v1/recommend", json={"history": [], "k": 3})  # popularity fallback: same for both
    client.post("/v1/recommend", json=REQUEST, headers={"X-Recdistill-Arm": "teacher"})
    assert _runner(client).wait_idle()
    assert _runner(client).counts["submitted"] == 0


def test_teacher_that_raises_leaves_primary_answers_correct(shadow_client: Callable[..., TestClient]) -> None:
    client = shadow_client(shadow_rate=1.0)

    def broken(query: Query, run_options: ort.RunOptions) -> Result:
        raise RuntimeError("teacher exploded")

    _runner(client)._teacher_fn = broken
    assert _ask(client, 6) == [EXPECTED] * 6
    assert _runner(client).wait_idle()
    report = client.get("/v1/shadow/report").json()
    assert (report["count"], report["error"], report["errors"]) == (0, 6, 6)
    assert report["by_version"][0]["error"] == 6


def test_slow_teacher_never_delays_the_primary_and_full_queue_drops(
    shadow_client: Callable[..., TestClient],
) -> None:
    client = shadow_client(shadow_rate=1.0, shadow_queue_size=2, shadow_timeout_ms=50)
    started, release, never = threading.Event(), threading.Event(), threading.Event()

    def slow(query: Query, run_options: ort.RunOptions) -> Result:
        started.set()
        release.wait(10.0)  # held until every primary answer is back
        never.wait(0.1)  # and then still past the 50 ms timeout
        return recommend_batch([query])[0]

    runner = _runner(client)
    runner._teacher_fn = slow
    answers = _ask(client, 1)
    assert started.wait(10.0)  # the worker is now stuck in the teacher
    answers += _ask(client, 9)
    # Every primary answer came back while the teacher was still blocked: none waited for it.
    assert not release.is_set() and answers == [EXPECTED] * 10
    release.set()
    assert runner.wait_idle()
    assert (runner.counts["submitted"], runner.counts["dropped"]) == (3, 7)  # 1 running + 2 queued
    assert (runner.counts["timeout"], runner.counts["compared"]) == (3, 0)
    report = client.get("/v1/shadow/report").json()
    assert (report["count"], report["dropped"], report["timeout"]) == (0, 7, 3)
    assert 'recdistill_shadow_jobs_total{outcome="dropped"} 7.0' in client.get("/metrics").text


def test_comparisons_survive_a_restart_and_since_filters(
    shadow_client: Callable[..., TestClient], settings_for: Callable[..., Settings], models_dir: Path
) -> None:
    first = shadow_client(shadow_rate=1.0, shadow_timeout_ms=10_000)
    _ask(first, 2)
    assert _runner(first).wait_idle()
    first.__exit__(None, None, None)
    with TestClient(create_app(settings_for(models_dir, shadow_rate=0.0))) as second:
        assert second.get("/v1/shadow/report").json()["count"] == 2
        assert second.get("/v1/shadow/report", params={"since": "2999-01-01T00:00:00Z"}).json()["count"] == 0
        assert second.get("/v1/shadow/report", params={"since": "yesterday"}).status_code == 422


def test_shadow_rate_setting_is_validated(settings_for: Callable[..., Settings], models_dir: Path) -> None:
    with pytest.raises(ValueError, match="shadow_rate"):
        settings_for(models_dir, shadow_rate=1.5)


def test_shadow_sessions_are_built_when_a_version_loads(shadow_client: Callable[..., TestClient]) -> None:
    runner = _runner(shadow_client(shadow_rate=1.0, shadow_isolation="thread"))
    [(served, shadow)] = runner._shadows  # built by the ModelStore listener, before any request
    assert served.version == "v1" and shadow.teacher.scores is not served.teacher.scores


def test_teacher_process_loads_the_version_when_it_loads(
    shadow_client: Callable[..., TestClient], models_dir: Path
) -> None:
    runner = _runner(shadow_client(shadow_rate=1.0))  # isolation "process", the default
    assert runner._pool is not None and runner.counts["submitted"] == 0
    [child] = runner._pool.processes
    assert child.versions() == [str(models_dir / "v1")]  # told by the ModelStore listener, no request yet
