"""Readiness, /v1/models, /metrics, the admin token, hot reload (good, corrupted, half-written) and
the LATEST watcher, all through the real app."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from core.manifest import file_entry, write_latest
from tests.fixtures.prometheus import metric_value
from tests.fixtures.tiny_model import build_tiny_version

V1_ANSWER = ["i09", "i06", "i03", "i00"]  # history [i00], exclude_seen false
V2_ANSWER = ["i00", "i03", "i06", "i09"]  # the reversed weights of build_tiny_version(reverse=True)
PROBE = {"history": ["i00"], "k": 4, "exclude_seen": False}


def answer(client: TestClient) -> tuple[str, list[str]]:
    r = client.post("/v1/recommend", json=PROBE)
    assert r.status_code == 200, r.text
    body = r.json()
    return body["model_version"], [i["item_id"] for i in body["items"]]


def test_not_ready_without_a_model_then_ready_after_publish_and_reload(
    tmp_path: Path, admin: dict, settings_for: Callable[..., Settings]
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    with TestClient(create_app(settings_for(models))) as client:
        assert client.get("/health/live").status_code == 200
        r = client.get("/health/ready")
        assert r.status_code == 503 and r.json()["status"] == "not ready"
        assert "no published model version" in r.json()["detail"]
        assert client.post("/v1/recommend", json=PROBE).status_code == 503
        assert client.get("/v1/models").status_code == 503
        assert client.post("/admin/reload", headers=admin).status_code == 409  # nothing published
        build_tiny_version(models, "v1")
        r = client.post("/admin/reload", headers=admin)
        assert r.status_code == 200 and r.json() == {"changed": True, "version": "v1", "previous": None}
        ready = client.get("/health/ready").json()
        assert ready.pop("store")["writes"]["ok"] is True  # the shared store works (outage: "degraded")
        assert ready == {"status": "ready", "model_version": "v1", "detail": None}
        assert answer(client) == ("v1", V1_ANSWER)


def test_models_summary(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["version"] == "v1" and body["n_items"] == 12 and body["n_users"] == 6
    assert body["categories"] == ["shoes", "books", "toys"]
    assert body["student"] == {"dim": 4, "history_len": 5, "parameters": 64}
    assert body["dataset"]["name"] == "tiny" and body["retrieval"]["kind"] == "exact"


def test_metrics_count_requests_and_name_the_version(client: TestClient) -> None:
    client.post("/v1/recommend", json=PROBE)
    client.post("/v1/recommend", json={"k": 0})
    text = client.get("/metrics").text
    assert 'recdistill_requests_total{endpoint="/v1/recommend",method="POST",status="200"} 1.0' in text
    assert 'recdistill_requests_total{endpoint="/v1/recommend",method="POST",status="422"} 1.0' in text
    assert 'recdistill_request_latency_seconds_count{endpoint="/v1/recommend"} 2.0' in text
    assert 'recdistill_model_info{version="v1"} 1.0' in text
    # the one valid request was one inference batch: its wall and CPU time are counted
    assert "recdistill_inference_batch_seconds_count 1.0" in text
    assert metric_value(text, "recdistill_inference_batch_seconds_sum") > 0
    assert metric_value(text, "recdistill_inference_cpu_seconds_total") > 0


def test_admin_is_off_without_a_token(
    tmp_path: Path, models_dir: Path, settings_for: Callable[..., Settings]
) -> None:
    with TestClient(create_app(settings_for(models_dir, admin_token=None))) as client:
        r = client.post("/admin/reload", headers={"Authorization": "Bearer anything-at-all-here"})
        assert r.status_code == 403 and "RECDISTILL_ADMIN_TOKEN" in r.json()["detail"]


def test_admin_needs_the_right_bearer_token(client: TestClient, admin: dict) -> None:
    r = client.post("/admin/reload")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.post("/admin/reload", headers={"Authorization": "Basic abc"}).status_code == 401
    assert (
        client.post("/admin/reload", headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code
        == 403
    )
    r = client.post("/admin/reload", headers=admin)
    assert r.status_code == 200 and r.json() == {"changed": False, "version": "v1", "previous": "v1"}


def test_reload_while_requests_run_drops_none(client: TestClient, models_dir: Path, admin: dict) -> None:
    seen: list[tuple[str, tuple[str, ...]]] = []
    failures: list[str] = []
    stop = threading.Event()

    def fire() -> None:
        while not stop.is_set():
            r = client.post("/v1/recommend", json=PROBE)
            if r.status_code != 200:
                failures.append(r.text)
                continue
            body = r.json()
            seen.append((body["model_version"], tuple(i["item_id"] for i in body["items"])))

    threads = [threading.Thread(target=fire) for _ in range(3)]
    for t in threads:
        t.start()
    while len(seen) < 20:
        time.sleep(0.01)
    build_tiny_version(models_dir, "v2", reverse=True)
    r = client.post("/admin/reload", headers=admin)
    count_at_swap = len(seen)
    while len(seen) < count_at_swap + 20:
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert r.status_code == 200 and r.json() == {"changed": True, "version": "v2", "previous": "v1"}
    assert failures == []
    assert set(seen) == {("v1", tuple(V1_ANSWER)), ("v2", tuple(V2_ANSWER))}  # each wholly from one version
    assert seen[-1] == ("v2", tuple(V2_ANSWER))


def test_corrupted_version_is_refused_and_the_old_keeps_serving(
    client: TestClient, models_dir: Path, admin: dict
) -> None:
    v2 = build_tiny_version(models_dir, "v2", reverse=True)
    onnx_path = v2 / "student.onnx"
    data = bytearray(onnx_path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte
    onnx_path.write_bytes(bytes(data))
    r = client.post("/admin/reload", headers=admin)
    assert r.status_code == 409
    assert "student.onnx" in r.json()["detail"] and "sha256" in r.json()["detail"]
    assert "still serving v1" in r.json()["detail"]
    assert answer(client) == ("v1", V1_ANSWER)
    assert client.get("/v1/models").json()["version"] == "v1"
    assert 'recdistill_model_reloads_total{outcome="refused"} 1.0' in client.get("/metrics").text


def test_half_written_version_is_refused(client: TestClient, models_dir: Path, admin: dict) -> None:
    half = models_dir / "v3"
    half.mkdir()
    (half / "student.onnx").write_bytes(b"partial")
    write_latest(models_dir, "v3")
    r = client.post("/admin/reload", headers=admin)
    assert r.status_code == 409 and "manifest" in r.json()["detail"]
    assert answer(client) == ("v1", V1_ANSWER)


def test_version_whose_onnx_does_not_load_is_refused_even_with_matching_hashes(
    client: TestClient, models_dir: Path, admin: dict
) -> None:
    v2 = build_tiny_version(models_dir, "v2", reverse=True)
    (v2 / "student_user.onnx").write_bytes(b"not an onnx graph")
    manifest = json.loads((v2 / "manifest.json").read_text())
    manifest["files"]["student_user.onnx"] = file_entry(v2 / "student_user.onnx").model_dump()
    (v2 / "manifest.json").write_text(json.dumps(manifest))
    r = client.post("/admin/reload", headers=admin)
    assert r.status_code == 409 and "student_user.onnx: onnxruntime cannot load it" in r.json()["detail"]
    assert answer(client) == ("v1", V1_ANSWER)


def test_reload_of_a_named_version_and_bad_names(client: TestClient, models_dir: Path, admin: dict) -> None:
    build_tiny_version(models_dir, "v2", reverse=True, publish=False)
    r = client.post("/admin/reload", headers=admin, json={"version": "v2"})
    assert r.status_code == 200 and r.json()["version"] == "v2"
    assert answer(client) == ("v2", V2_ANSWER)
    r = client.post("/admin/reload", headers=admin, json={"version": "../v1"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "version"]


def test_start_up_falls_back_to_the_newest_good_version(
    tmp_path: Path, models_dir: Path, settings_for: Callable[..., Settings]
) -> None:
    v2 = build_tiny_version(models_dir, "v2", reverse=True)  # LATEST = v2, then break it
    (v2 / "popularity.npy").write_bytes(b"broken")
    with TestClient(create_app(settings_for(models_dir))) as client:
        assert answer(client) == ("v1", V1_ANSWER)


def test_watching_latest_loads_a_new_version(
    tmp_path: Path, models_dir: Path, settings_for: Callable[..., Settings]
) -> None:
    with TestClient(create_app(settings_for(models_dir, reload_poll_seconds=0.05))) as client:
        assert answer(client)[0] == "v1"
        build_tiny_version(models_dir, "v2", reverse=True)
        for _ in range(400):  # bounded wait for the poller; no timing is asserted
            if client.get("/health/ready").json()["model_version"] == "v2":
                break
            time.sleep(0.025)
        assert answer(client) == ("v2", V2_ANSWER)


def test_a_new_version_reseeds_history_without_duplicating_logged_events(
    client: TestClient, models_dir: Path, admin: dict
) -> None:
    client.post("/v1/events", json={"user_id": "u0", "item_id": "i06", "timestamp": 120})
    build_tiny_version(models_dir, "v2", reverse=True)  # same seed as v1
    assert client.post("/admin/reload", headers=admin).status_code == 200
    items = [i["item_id"] for i in client.get("/v1/users/u0/history").json()["items"]]
    assert items == ["i00", "i03", "i06"]


def test_garbage_latest_is_refused_at_start_up_and_the_newest_good_version_serves(
    tmp_path: Path, models_dir: Path, settings_for: Callable[..., Settings]
) -> None:
    """Regression (found under the service benchmark): an unreadable or garbage models/LATEST crashed start-up with a
    traceback. It is now refused with a message naming the file; the newest good version serves."""
    (models_dir / "LATEST").write_bytes(b"\xff\xfe\x00garbage")
    with TestClient(create_app(settings_for(models_dir))) as client:
        assert answer(client) == ("v1", V1_ANSWER)
        assert client.get("/health/ready").json()["status"] == "ready"


def test_garbage_latest_and_no_version_is_not_ready_with_the_reason(
    tmp_path: Path, settings_for: Callable[..., Settings]
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "LATEST").write_text("../../etc/passwd\n")
    with TestClient(create_app(settings_for(models))) as client:
        r = client.get("/health/ready")
        assert r.status_code == 503
        assert "LATEST" in r.json()["detail"] and "not a version folder name" in r.json()["detail"]
        assert client.post("/v1/recommend", json=PROBE).status_code == 503


def test_latest_that_is_a_directory_is_refused_not_raised(
    tmp_path: Path, models_dir: Path, settings_for: Callable[..., Settings], admin: dict
) -> None:
    (models_dir / "LATEST").unlink()
    (models_dir / "LATEST").mkdir()  # read_text raises IsADirectoryError
    with TestClient(create_app(settings_for(models_dir))) as client:
        assert answer(client) == ("v1", V1_ANSWER)
        r = client.post("/admin/reload", headers=admin)
        assert r.status_code == 409 and "LATEST: unreadable" in r.json()["detail"]


def test_the_watcher_survives_a_garbage_latest_and_loads_the_next_good_one(
    tmp_path: Path, models_dir: Path, settings_for: Callable[..., Settings]
) -> None:
    with TestClient(create_app(settings_for(models_dir, reload_poll_seconds=0.02))) as client:
        (models_dir / "LATEST").write_bytes(b"\x00\x01 not a name")
        # v2 lands without touching LATEST: publishing it (LATEST = v2) and clobbering LATEST again
        # raced the 20 ms poller, which could load v2 in between (seen on a loaded machine).
        build_tiny_version(models_dir, "v2", reverse=True, publish=False)
        (models_dir / "LATEST").write_bytes(b"\xff\xfe")  # another kind of garbage
        for _ in range(10):  # several polls of the garbage LATEST
            assert answer(client) == ("v1", V1_ANSWER)
            time.sleep(0.02)
        write_latest(models_dir, "v2")
        for _ in range(400):  # bounded wait for the poller; no timing is asserted
            if client.get("/health/ready").json()["model_version"] == "v2":
                break
            time.sleep(0.025)
        assert answer(client) == ("v2", V2_ANSWER)
