"""Named experiments through the real app: start, stop and reset, rows keyed by experiment so a new
experiment on the same state db never reports another one's users (regression: a fresh server
reported the previous run's users and an SRM alarm), and names that are never reused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app


def _serve(client: TestClient, users: list[str]) -> None:
    for user in users:
        body = {"history": ["i00"], "k": 3, "user_id": user}
        assert client.post("/v1/recommend", json=body).status_code == 200


def _units(report: dict) -> int:
    return sum(arm["units"] for arm in report["per_user"].values())


def test_start_stop_reset_and_isolation(
    settings_for: Callable[..., Settings], models_dir: Path, admin: dict[str, str]
) -> None:
    settings = settings_for(models_dir)
    with TestClient(create_app(settings)) as client:
        listed = client.get("/v1/experiments").json()
        assert listed["running"] == "student-vs-teacher"  # the settings' experiment runs by default
        r = client.post("/admin/experiments", json={"name": "exp-a", "teacher_share": 0.5}, headers=admin)
        assert r.status_code == 201 and r.json()["running"] and r.json()["teacher_share"] == 0.5
        _serve(client, [f"a{i}" for i in range(20)])
        again = client.post("/admin/experiments", json={"name": "exp-b"}, headers=admin)
        assert again.status_code == 409 and "exp-a" in again.json()["detail"]  # one at a time
        stopped = client.post("/admin/experiments/exp-a/stop", headers=admin).json()
        assert stopped["running"] is False and stopped["stopped_at"] is not None
        _serve(client, ["late"])  # after the stop: in no experiment's report
        assert _units(client.get("/v1/ab/report", params={"experiment": "exp-a"}).json()) == 20
        assert client.get("/v1/ab/report").status_code == 404  # nothing runs now

    with TestClient(create_app(settings)) as client:  # a fresh server on the same state db
        assert client.get("/v1/experiments").json()["running"] is None  # exp-a stays stopped
        r = client.post("/admin/experiments", json={"name": "exp-b", "teacher_share": 0.5}, headers=admin)
        assert r.status_code == 201
        report = client.get("/v1/ab/report").json()
        assert report["experiment"]["name"] == "exp-b" and _units(report) == 0
        assert report["srm"]["mismatch"] is False
        _serve(client, ["b1", "b2"])
        assert _units(client.get("/v1/ab/report").json()) == 2
        assert _units(client.get("/v1/ab/report?experiment=exp-a").json()) == 20
        reused = client.post("/admin/experiments/exp-b/stop", headers=admin)
        assert reused.status_code == 200
        taken = client.post("/admin/experiments", json={"name": "exp-a"}, headers=admin)
        assert taken.status_code == 409 and "not reused" in taken.json()["detail"]
        reset = client.post("/admin/experiments/exp-a/reset", headers=admin).json()
        assert reset["deleted_answers"] == 20 and reset["experiment"]["reset_at"] is not None
        assert _units(client.get("/v1/ab/report?experiment=exp-a").json()) == 0
        assert _units(client.get("/v1/ab/report?experiment=exp-b").json()) == 2
        names = [e["name"] for e in client.get("/v1/experiments").json()["experiments"]]
        assert names == ["student-vs-teacher", "exp-a", "exp-b"]
        assert client.post("/admin/experiments/nope/stop", headers=admin).status_code == 404
        assert client.get("/v1/ab/report?experiment=nope").status_code == 404
