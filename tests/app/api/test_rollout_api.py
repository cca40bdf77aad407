"""Rolling out version N+1 against the N serving now, through the real app: the candidate in shadow
(a report per pair, with its coverage), an A/B between the two versions (both arms served, sticky),
and the candidate's admin routes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.experiment.assignment import Experiment
from tests.fixtures.tiny_model import build_tiny_version

REQUEST = {"history": ["i00"], "k": 4, "exclude_seen": False}
SERVING = ["i09", "i06", "i03", "i00"]  # v1's answer (tests/fixtures/tiny_model.py)
CANDIDATE = ["i00", "i03", "i06", "i09"]  # v2 (reverse=True) ranks the other way round


@pytest.fixture
def two_versions(tmp_path: Path) -> Path:
    """v1 published (LATEST), v2 beside it, not published."""
    models = tmp_path / "models"
    build_tiny_version(models, "v1")
    build_tiny_version(models, "v2", reverse=True, publish=False)
    return models


@pytest.fixture
def app_for(clients_for: Callable[..., TestClient], two_versions: Path) -> Callable[..., TestClient]:
    return lambda **overrides: clients_for(two_versions, **overrides)


def _ids(body: dict) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def test_candidate_in_shadow_reports_the_pair_and_its_coverage(app_for: Callable[..., TestClient]) -> None:
    client = app_for(
        candidate_version="v2", shadow_rate=1.0, shadow_isolation="thread", shadow_timeout_ms=10_000
    )
    models = client.get("/v1/models").json()
    assert models["served_version"] == "v1" and models["candidate"]["version"] == "v2"
    for _ in range(6):
        body = client.post("/v1/recommend", json=REQUEST).json()
        assert (_ids(body), body["model_version"], body["arm"]) == (SERVING, "v1", "student")
    client.post("/v1/recommend", json={"history": [], "k": 3})  # a fallback: served, never compared
    assert client.app.state.experiment.shadow.wait_idle()  # type: ignore[attr-defined]
    report = client.get("/v1/shadow/report").json()
    assert report["pair"]["kind"] == "serving_vs_candidate"
    [block] = report["by_version"]
    assert block["pair"]["control"] == {"arm": "serving", "side": "student", "version": "v1"}
    assert block["pair"]["treatment"] == {"arm": "candidate", "side": "student", "version": "v2"}
    # served: the answers the shadow could sample (the fallback is not one) since the pair started
    assert (block["served"], block["sampled"], block["compared"], block["dropped"], block["timed_out"]) == (
        6,
        6,
        6,
        0,
        0,
    )
    assert block["coverage"] == 1.0  # every shadowable answer was compared (shadow rate 1)
    # Same four items, opposite order: overlap@4 is 1, the rank agreement is not.
    assert block["metrics"]["overlap@k"]["mean"] == 1.0
    assert block["metrics"]["kendall_tau"]["mean"] == pytest.approx(-1.0)
    assert report["coverage"] == 1.0


def test_candidate_admin_routes(app_for: Callable[..., TestClient], admin: dict[str, str]) -> None:
    client = app_for()
    assert client.get("/v1/models").json()["candidate"] is None
    r = client.post("/admin/candidate", json={"version": "v2"}, headers=admin)
    assert r.status_code == 200 and r.json() == {
        "candidate": "v2",
        "previous": None,
        "serving": "v1",
        "candidate_source": "shared",
    }
    assert client.get("/v1/models").json()["candidate"]["version"] == "v2"
    assert client.post("/admin/candidate", json={"version": "nope"}, headers=admin).status_code == 409
    assert client.get("/v1/models").json()["candidate"]["version"] == "v2"  # a refusal changes nothing
    assert client.post("/admin/candidate", json={"version": "v2"}).status_code == 401
    r = client.delete("/admin/candidate", headers=admin)
    assert r.status_code == 200 and r.json()["previous"] == "v2"
    assert client.get("/v1/models").json()["candidate"] is None


def test_ab_between_two_versions_serves_both_arms_sticky(
    app_for: Callable[..., TestClient], admin: dict[str, str]
) -> None:
    client = app_for()
    start = {"name": "v2-rollout", "arms": "serving_vs_candidate", "candidate_share": 0.5}
    r = client.post("/admin/experiments", json=start, headers=admin)
    assert r.status_code == 409 and "candidate" in r.json()["detail"]  # no candidate loaded yet
    assert client.post("/admin/candidate", json={"version": "v2"}, headers=admin).status_code == 200
    r = client.post("/admin/experiments", json=start, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["pair"]["name"] == "serving v1 vs candidate v2"
    assert client.delete("/admin/candidate", headers=admin).status_code == 409  # in use

    users = [f"user{i}" for i in range(40)]
    expected = {
        u: Experiment("v2-rollout", "recdistill-ab-2026-1", 0.5, "serving_vs_candidate").assign(u).arm
        for u in users
    }
    assert set(expected.values()) == {"serving", "candidate"}
    for _ in range(2):  # sticky: the same user gets the same arm and version every time
        for user in users:
            body = client.post("/v1/recommend", json={**REQUEST, "user_id": user}).json()
            assert body["arm"] == expected[user]
            version, items = ("v2", CANDIDATE) if expected[user] == "candidate" else ("v1", SERVING)
            assert (body["model_version"], _ids(body)) == (version, items)
    report = client.get("/v1/ab/report").json()
    assert report["experiment"]["name"] == "v2-rollout" and report["pair"]["treatment"]["version"] == "v2"
    n_candidate = sum(arm == "candidate" for arm in expected.values())
    assert report["arms"]["candidate"]["users"] == n_candidate
    assert report["arms"]["serving"]["users"] == 40 - n_candidate
    assert report["arms"]["candidate"]["requests"] == 2 * n_candidate
    assert report["coverage"] == {"served": 80, "in_experiment": 80, "coverage": 1.0}
    assert set(report["comparison"]) == {"ctr", "conversion", "purchases_per_impression"}
    assert report["teacher_vs_student"] == {} and report["verdict"]["treatment"] == "candidate"
