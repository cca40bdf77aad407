"""The version pin through the real app: it survives many LATEST polls while new versions are
published under it, a restart, and a reload without a version; /v1/models says what is served and
why; the admin version routes (list, show, diff, promote, pin, unpin, rollback) and their errors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.stores.pins import PIN_FILE
from tests.app.api.test_api_models import V1_ANSWER, V2_ANSWER, answer
from tests.fixtures.tiny_model import build_tiny_version


def wait_for(client: TestClient, version: str) -> None:
    """Poll the outcome (bounded at ~10 s); no timing is asserted."""
    for _ in range(400):
        if client.get("/health/ready").json()["model_version"] == version:
            return
        time.sleep(0.025)
    raise AssertionError(f"never served {version}: {client.get('/v1/models').json()}")


def count_polls(client: TestClient) -> list[int]:
    """Count the watcher's polls (it looks `store.poll` up on every iteration)."""
    store = client.app.state.store  # type: ignore[attr-defined]
    polls = [0]
    real = store.poll

    def counted() -> None:
        polls[0] += 1
        real()

    store.poll = counted
    return polls


def test_a_pinned_rollback_survives_many_polls_while_new_versions_are_published(
    models_dir: Path, admin: dict, settings_for: Callable[..., Settings]
) -> None:
    """Regression: a rollback by `POST /admin/reload {"version": old}` was undone by the LATEST watcher
    within one poll. A pinned rollback stays until unpinned, whatever LATEST says."""
    with TestClient(create_app(settings_for(models_dir, reload_poll_seconds=0.05))) as client:
        build_tiny_version(models_dir, "v2", reverse=True)  # LATEST = v2
        wait_for(client, "v2")
        r = client.post("/admin/rollback", headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["served_version"] == "v1" and r.json()["served_because"] == "pinned"
        assert r.json()["pinned"]["version"] == "v1" and r.json()["pinned"]["source"] == "rollback"
        polls = count_polls(client)
        build_tiny_version(models_dir, "v3", reverse=True)  # a new version published: LATEST = v3
        for _ in range(2000):  # at least 40 polls of LATEST = v3, bounded
            assert answer(client) == ("v1", V1_ANSWER)
            if polls[0] >= 40:
                break
            time.sleep(0.01)
        assert polls[0] >= 40
        assert client.post("/admin/reload", headers=admin).json() == {
            "changed": False, "version": "v1", "previous": "v1"
        }  # fmt: skip
        body = client.get("/v1/models").json()
        assert (body["version"], body["served_because"], body["latest"]) == ("v1", "pinned", "v3")
        assert client.post("/admin/unpin", headers=admin).status_code == 200
        wait_for(client, "v3")
        body = client.get("/v1/models").json()
        assert (body["served_version"], body["served_because"], body["pinned"]) == ("v3", "latest", None)
        assert answer(client) == ("v3", V2_ANSWER)


def test_models_reports_latest_then_pinned(client: TestClient, models_dir: Path, admin: dict) -> None:
    body = client.get("/v1/models").json()
    assert body["version"] == "v1" and body["n_items"] == 12  # the existing fields stay
    assert (body["served_version"], body["served_because"], body["latest"]) == ("v1", "latest", "v1")
    assert body["pinned"] is None and body["pin_error"] is None
    build_tiny_version(models_dir, "v2", reverse=True, publish=False)
    r = client.post("/admin/models/v2/pin", headers=admin)
    assert r.status_code == 200 and r.json()["served_version"] == "v2"
    body = client.get("/v1/models").json()
    assert (body["version"], body["served_because"], body["pinned"]["version"]) == ("v2", "pinned", "v2")
    assert json.loads((models_dir / PIN_FILE).read_text())["version"] == "v2"  # durable, beside LATEST


def test_the_pin_survives_a_restart(
    models_dir: Path, admin: dict, settings_for: Callable[..., Settings]
) -> None:
    build_tiny_version(models_dir, "v2", reverse=True)  # LATEST = v2
    with TestClient(create_app(settings_for(models_dir))) as client:
        assert client.post("/admin/models/v1/pin", headers=admin).status_code == 200
    with TestClient(create_app(settings_for(models_dir))) as client:
        assert answer(client) == ("v1", V1_ANSWER)
        assert client.get("/v1/models").json()["served_because"] == "pinned"


def test_a_pinned_version_that_fails_verification_keeps_what_is_served_and_says_so(
    models_dir: Path, settings_for: Callable[..., Settings]
) -> None:
    with TestClient(create_app(settings_for(models_dir, reload_poll_seconds=0.05))) as client:
        v2 = build_tiny_version(models_dir, "v2", reverse=True, publish=False)
        (v2 / "popularity.npy").write_bytes(b"broken")
        # Pinned elsewhere (another replica, or the CLI before the files broke): written directly.
        (models_dir / PIN_FILE).write_text('{"version": "v2", "pinned_at": "", "source": "cli"}')
        polls = count_polls(client)
        body: dict = {}
        for _ in range(400):  # bounded: until the watcher has tried the pin
            body = client.get("/v1/models").json()
            if polls[0] >= 3 and "refused" in (body["pin_error"] or ""):
                break
            time.sleep(0.025)
        assert answer(client) == ("v1", V1_ANSWER)
        assert body["served_version"] == "v1" and body["served_because"] == "latest"
        assert body["pinned"]["version"] == "v2"
        assert "pinned version v2 refused" in body["pin_error"] and "popularity.npy" in body["pin_error"]


def test_a_garbage_pin_file_stops_following_latest(
    models_dir: Path, settings_for: Callable[..., Settings]
) -> None:
    with TestClient(create_app(settings_for(models_dir, reload_poll_seconds=0.05))) as client:
        (models_dir / PIN_FILE).write_bytes(b"\xff not json")
        build_tiny_version(models_dir, "v2", reverse=True)  # LATEST = v2
        polls = count_polls(client)
        for _ in range(400):
            if polls[0] >= 10:
                break
            time.sleep(0.025)
        assert answer(client) == ("v1", V1_ANSWER)  # an unreadable pin is not "no pin"
        body = client.get("/v1/models").json()
        assert "PINNED" in body["pin_error"] and body["latest"] == "v2"


def test_admin_versions_list_show_diff(client: TestClient, models_dir: Path, admin: dict) -> None:
    metrics = {"test": {"teacher": {"ndcg@10": 0.25}, "student": {"ndcg@10": 0.2}}}
    build_tiny_version(models_dir, "v2", reverse=True, publish=False, metrics=metrics)
    r = client.get("/admin/models", headers=admin)
    assert r.status_code == 200
    rows = {row["version"]: row for row in r.json()["versions"]}
    assert set(rows) == {"v1", "v2"} and rows["v1"]["latest"] and not rows["v2"]["latest"]
    assert rows["v1"]["parameters"] == {"teacher": 64, "student": 64}
    assert rows["v1"]["ndcg@10"] == {"teacher": None, "student": None}  # the fixture has no test metrics
    assert rows["v2"]["ndcg@10"] == {"teacher": 0.25, "student": 0.2}
    assert client.get("/admin/models/v2", headers=admin).json()["dataset"]["name"] == "tiny"
    d = client.get("/admin/models/v1/diff/v2", headers=admin).json()
    assert d["test"]["student.ndcg@10"] == {"v1": None, "v2": 0.2, "delta": None}
    assert d["parameters"]["student"] == {"v1": 64.0, "v2": 64.0, "delta": 0.0}
    assert d["same_dataset"] is True
    assert client.get("/admin/models/nope", headers=admin).status_code == 404
    assert (
        client.get("/admin/models", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code
        == 403
    )
    assert client.get("/admin/models").status_code == 401


def test_admin_promote_and_its_errors(client: TestClient, models_dir: Path, admin: dict) -> None:
    build_tiny_version(models_dir, "v2", reverse=True, publish=False)
    r = client.post("/admin/models/v2/promote", headers=admin)
    assert r.status_code == 200 and (r.json()["latest"], r.json()["served_version"]) == ("v2", "v2")
    assert (models_dir / "LATEST").read_text().strip() == "v2"
    assert answer(client) == ("v2", V2_ANSWER)
    r = client.post("/admin/models/v9/promote", headers=admin)
    assert r.status_code == 404 and "v9" in r.json()["detail"]
    v3 = build_tiny_version(models_dir, "v3", publish=False)
    (v3 / "popularity.npy").write_bytes(b"broken")
    r = client.post("/admin/models/v3/promote", headers=admin)
    assert r.status_code == 409 and "popularity.npy" in r.json()["detail"]
    assert (models_dir / "LATEST").read_text().strip() == "v2"  # untouched
    r = client.post("/admin/models/v3/pin", headers=admin)
    assert r.status_code == 409 and not (models_dir / PIN_FILE).exists()  # nothing pinned
    assert client.post("/admin/models/-v1/pin", headers=admin).status_code == 422


def test_rollback_with_nothing_before_is_409(client: TestClient, admin: dict) -> None:
    r = client.post("/admin/rollback", headers=admin)
    assert r.status_code == 409 and "no version was published before it" in r.json()["detail"]


def test_openapi_documents_the_version_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/admin/models/{version}/pin"]["post"]["responses"]) >= {
        "200",
        "401",
        "403",
        "404",
        "409",
        "422",
    }
    assert set(paths["/admin/models/{version}/promote"]["post"]["responses"]) >= {"200", "404", "409", "422"}
    assert set(paths["/admin/rollback"]["post"]["responses"]) >= {"200", "401", "403", "409"}
    assert set(paths["/admin/unpin"]["post"]["responses"]) >= {"200", "401", "403"}
    assert set(paths["/admin/models/{a}/diff/{b}"]["get"]["responses"]) >= {"200", "401", "403", "404"}
