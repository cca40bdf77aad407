"""The A/B experiment through the real app: sticky arms across restarts, forced arms, feedback that
survives a restart and is validated against the served answer, and the report's counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.experiment.assignment import Experiment
from app.main import create_app

AB = {"experiment_name": "exp-t", "experiment_salt": "salt-t", "experiment_teacher_share": 0.5}


def _recommend(client: TestClient, user: str | None, headers: dict[str, str] | None = None) -> dict:
    body = {"history": ["i00"], "k": 3, "exclude_seen": False, **({"user_id": user} if user else {})}
    r = client.post("/v1/recommend", json=body, headers=headers or {})
    assert r.status_code == 200, r.text
    return r.json()


def test_default_is_everyone_on_the_student(client: TestClient) -> None:
    assert {_recommend(client, f"user{i}")["arm"] for i in range(20)} == {"student"}


def test_assignment_is_sticky_across_restarts(
    settings_for: Callable[..., Settings], models_dir: Path
) -> None:
    users = [f"user{i}" for i in range(40)]
    expected = [Experiment("exp-t", "salt-t", 0.5).assign(u).arm for u in users]
    assert set(expected) == {"student", "teacher"}
    for _ in range(2):  # two app lifetimes on the same settings
        with TestClient(create_app(settings_for(models_dir, **AB))) as client:
            assert [_recommend(client, u)["arm"] for u in users] == expected


def test_forced_arm_and_session_unit(settings_for: Callable[..., Settings], models_dir: Path) -> None:
    with TestClient(create_app(settings_for(models_dir, **AB))) as client:
        assert _recommend(client, "user1", {"X-Recdistill-Arm": "teacher"})["arm"] == "teacher"
        assert _recommend(client, "user1", {"X-Recdistill-Arm": "student"})["arm"] == "student"
        r = client.post("/v1/recommend", json={"history": ["i00"]}, headers={"X-Recdistill-Arm": "champion"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["header", "X-Recdistill-Arm"]
        session_arm = Experiment("exp-t", "salt-t", 0.5).arm_for("session:s-42")
        assert _recommend(client, None, {"X-Session-Id": "s-42"})["arm"] == session_arm


def test_feedback_is_validated_and_survives_a_restart(
    settings_for: Callable[..., Settings], models_dir: Path
) -> None:
    settings = settings_for(models_dir, **AB)
    with TestClient(create_app(settings)) as client:
        answer = _recommend(client, "user1")
        first_item = answer["items"][0]["item_id"]
        r = client.post(
            "/v1/feedback", json={"request_id": answer["request_id"], "item_id": first_item, "event": "click"}
        )
        assert r.status_code == 201 and r.json()["duplicate"] is False
    with TestClient(create_app(settings)) as client:  # restart: the answer log and feedback are on disk
        r = client.post(
            "/v1/feedback",
            json={"request_id": answer["request_id"], "item_id": first_item, "event": "purchase"},
        )
        assert r.status_code == 201 and r.json()["arm"] == answer["arm"]
        again = client.post(
            "/v1/feedback", json={"request_id": answer["request_id"], "item_id": first_item, "event": "click"}
        )
        assert again.json()["duplicate"] is True  # the click from before the restart is still there
        unknown = client.post(
            "/v1/feedback", json={"request_id": "nope", "item_id": first_item, "event": "click"}
        )
        # 404 (documented): the body is valid against the schema, the request id names no served answer
        assert unknown.status_code == 404 and "unknown request id" in unknown.json()["detail"]
        foreign = client.post(
            "/v1/feedback", json={"request_id": answer["request_id"], "item_id": "i11", "event": "click"}
        )
        assert foreign.status_code == 409 and "was not in the answer" in foreign.json()["detail"]
        bad_event = client.post(
            "/v1/feedback", json={"request_id": answer["request_id"], "item_id": first_item, "event": "like"}
        )
        assert bad_event.status_code == 422 and bad_event.json()["detail"][0]["loc"] == ["body", "event"]


def test_ab_report_counts_by_hand(settings_for: Callable[..., Settings], models_dir: Path) -> None:
    exp = Experiment("exp-t", "salt-t", 0.5)
    students = [u for u in (f"user{i}" for i in range(50)) if exp.arm_for(f"user:{u}") == "student"][:2]
    teachers = [u for u in (f"user{i}" for i in range(50)) if exp.arm_for(f"user:{u}") == "teacher"][:1]
    with TestClient(create_app(settings_for(models_dir, **AB))) as client:
        s1 = _recommend(client, students[0])
        _recommend(client, students[0])
        _recommend(client, students[1])
        t1 = _recommend(client, teachers[0])
        _recommend(client, teachers[0], {"X-Recdistill-Arm": "student"})  # forced: not in the split
        for answer, event in ((s1, "click"), (s1, "purchase"), (t1, "click")):
            item = answer["items"][0]["item_id"]
            client.post(
                "/v1/feedback", json={"request_id": answer["request_id"], "item_id": item, "event": event}
            )
        report = client.get("/v1/ab/report").json()
    student, teacher = report["arms"]["student"], report["arms"]["teacher"]
    assert {k: student[k] for k in ("users", "requests", "impressions", "clicks", "purchases")} == {
        "users": 2, "requests": 3, "impressions": 9, "clicks": 1, "purchases": 1,
    }  # fmt: skip
    assert {k: teacher[k] for k in ("users", "requests", "impressions", "clicks", "purchases")} == {
        "users": 1, "requests": 1, "impressions": 3, "clicks": 1, "purchases": 0,
    }  # fmt: skip
    assert student["ctr"]["rate"] == pytest.approx(1 / 9) and teacher["ctr"]["rate"] == pytest.approx(1 / 3)
    assert student["conversion"]["rate"] == pytest.approx(1 / 3)
    assert 0 <= student["ctr"]["low"] < 1 / 9 < student["ctr"]["high"] <= 1
    assert report["teacher_vs_student"]["ctr"]["diff"] == pytest.approx(1 / 3 - 1 / 9)
    assert report["srm"]["observed"] == {"student": 2, "teacher": 1} and report["srm"]["dof"] == 1
    assert report["experiment"]["name"] == "exp-t"


def test_ab_report_is_user_level_with_a_verdict_and_documented(
    settings_for: Callable[..., Settings], models_dir: Path
) -> None:
    """Two users per arm, one click each on unequal impressions: the report's user-level numbers are
    the delta method's on those tables, its verdict is words, and its schema is in /openapi.json."""
    exp = Experiment("exp-t", "salt-t", 0.5)
    pool = [f"user{i}" for i in range(80)]
    students = [u for u in pool if exp.arm_for(f"user:{u}") == "student"][:2]
    teachers = [u for u in pool if exp.arm_for(f"user:{u}") == "teacher"][:2]
    with TestClient(create_app(settings_for(models_dir, **AB))) as client:
        for user, n_requests in ((students[0], 1), (students[1], 2), (teachers[0], 1), (teachers[1], 1)):
            answers = [_recommend(client, user) for _ in range(n_requests)]
            item = answers[0]["items"][0]["item_id"]
            client.post(
                "/v1/feedback",
                json={"request_id": answers[0]["request_id"], "item_id": item, "event": "click"},
            )
        _recommend(client, None)  # anonymous: served by the student, not part of the user-level analysis
        report = client.get("/v1/ab/report").json()
        schema = client.get("/openapi.json").json()
    # Student users (clicks, impressions) (1, 3), (1, 6): R = 2/9; residuals 1/3, -1/3: s = 2/9; ȳ = 4.5,
    # so Var = (2/9) / 4.5² / 2 = 4/729. Teacher (1, 3), (1, 3): R = 1/3, Var 0. SE = 2/27.
    ctr = report["teacher_vs_student"]["ctr"]
    assert ctr["diff"] == pytest.approx(1 / 3 - 2 / 9)
    assert ctr["se"] == pytest.approx(2 / 27)
    assert ctr["z"] == pytest.approx(1.5)
    assert ctr["verdict"] == "not yet" and ctr["per_impression"]["diff"] == ctr["diff"]  # anonymous left out
    assert report["per_user"]["student"]["units"] == 2 and report["per_user"]["student"]["impressions"] == 9
    assert report["arms"]["student"]["impressions"] == 9  # the randomised traffic only
    assert (report["anonymous"]["requests"], report["anonymous"]["impressions"]) == (1, 3)  # shown apart
    # Always valid: pooled rate 4/15, τ = 0.15 × 4/15 = 0.04, x = (τ / SE)² = 0.2916, c = 5.2603912742765
    # (mpmath); MDE = (c + z_0.8) SE. The fixed-horizon reading keeps (z_0.975 + z_0.8) SE.
    assert ctr["critical_value"] == pytest.approx(5.26039127427651223, rel=1e-9)
    assert report["verdict"]["verdict"] == "not yet" and report["verdict"]["mde"] == pytest.approx(
        0.452000926507364928, rel=1e-9
    )
    assert ctr["fixed_horizon"]["mde"] == pytest.approx(2.8015852181129683 * 2 / 27)
    assert report["verdict_uses"] == "always_valid" and report["fixed_horizon"]["p_value"] == pytest.approx(
        ctr["fixed_horizon"]["p_value"]
    )
    ok = schema["paths"]["/v1/ab/report"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": "#/components/schemas/ABReport"}
    assert set(schema["components"]["schemas"]["ABReport"]["properties"]) >= {
        "experiment", "arms", "anonymous", "comparison", "teacher_vs_student", "per_user", "verdict",
        "verdict_uses", "fixed_horizon", "guardrails", "srm",
    }  # fmt: skip


def test_answers_log_their_latency_and_fallback_and_a_failed_answer_counts_against_its_arm(
    settings_for: Callable[..., Settings], models_dir: Path
) -> None:
    """The guardrails' inputs through the real request path: a served answer's latency and popular
    fallback reach the report per arm, and an answer that fails after its arm was assigned (here the
    batcher raises) is a 500 to the caller and one error of that arm, not an answer."""
    exp = Experiment("exp-t", "salt-t", 0.5)
    teacher = next(u for u in (f"user{i}" for i in range(50)) if exp.arm_for(f"user:{u}") == "teacher")
    with TestClient(create_app(settings_for(models_dir, **AB)), raise_server_exceptions=False) as client:
        _recommend(client, teacher)
        fallback = client.post("/v1/recommend", json={"user_id": teacher, "history": [], "k": 3}).json()
        assert fallback["fallback"] == "popular"
        batcher = client.app.state.batcher  # type: ignore[attr-defined]
        submit = batcher.submit

        async def broken(query: object) -> object:
            raise RuntimeError("inference failed")

        batcher.submit = broken
        assert (
            client.post("/v1/recommend", json={"user_id": teacher, "history": ["i00"], "k": 3}).status_code
            == 500
        )
        batcher.submit = submit
        report = client.get("/v1/ab/report").json()
    arm = report["guardrails"]["arms"]["teacher"]
    assert (arm["attempts"], arm["errors"], arm["fallbacks"], arm["latency_answers"]) == (3, 1, 1, 2)
    assert arm["error_rate"] == pytest.approx(1 / 3) and arm["fallback_share"] == 0.5
    assert arm["latency_p99_ms"] is not None and arm["latency_p99_ms"] > 0
    assert report["arms"]["teacher"]["requests"] == 2  # the failed one is not an answer
    assert set(report["guardrails"]["tests"]) == {"error_rate", "latency_p99", "fallback_share"}


def test_a_lift_to_quote_users_needed_for_must_be_positive(client: TestClient) -> None:
    bad = client.get("/v1/ab/report?lift=0")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "lift"]
