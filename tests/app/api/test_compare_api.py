"""POST /v1/compare through the real app: both lists, agreement, rank changes, the same filters.

Known answers from tests/fixtures/tiny_model.py: history [i00] ranks i09 i06 i03 i00 first. The
"biased" version gives the teacher a +100 "books" bias for user u0, so for u0 the teacher answers
books (i10 i07 i04 i01) while the student, which has no user input, still answers shoes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.fixtures.tiny_model import build_version, tiny_arrays


def ids(side: dict) -> list[str]:
    return [item["item_id"] for item in side["items"]]


@pytest.fixture
def biased_client(tmp_path: Path, settings_for: Callable[..., Settings]) -> Iterator[TestClient]:
    arrays = tiny_arrays()
    bias = np.zeros((len(arrays.user_ids) + 1, arrays.dim), np.float32)
    bias[0, 1] = 100.0  # user u0 -> books
    arrays.teacher_user_bias = bias
    models = tmp_path / "biased-models"
    build_version(models, "b1", arrays)
    with TestClient(create_app(settings_for(models))) as client:
        yield client


def test_compare_answers_both_lists_side_by_side(client: TestClient) -> None:
    r = client.post("/v1/compare", json={"history": ["i00"], "k": 4, "exclude_seen": False})
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"student", "teacher", "agreement", "rank_changes"}
    for side in ("student", "teacher"):
        assert set(body[side]) >= {"items", "latency_ms", "model_version"}
        assert ids(body[side]) == ["i09", "i06", "i03", "i00"]  # same vectors, zero user bias
        assert body[side]["model_version"] == "v1" and body[side]["latency_ms"] > 0
    assert body["agreement"] == {
        "overlap@k": 1.0,
        "rbo": pytest.approx(1.0),
        "kendall_tau": 1.0,
        "ndcg_vs_teacher": pytest.approx(1.0),
    }
    assert body["rank_changes"] == []


def test_compare_shows_a_disagreement(biased_client: TestClient) -> None:
    body = biased_client.post(
        "/v1/compare", json={"user_id": "u0", "history": ["i00"], "k": 4, "exclude_seen": False}
    ).json()
    assert ids(body["student"]) == ["i09", "i06", "i03", "i00"]
    assert ids(body["teacher"]) == ["i10", "i07", "i04", "i01"]
    assert body["agreement"] == {"overlap@k": 0.0, "rbo": 0.0, "kendall_tau": None, "ndcg_vs_teacher": 0.0}
    assert body["rank_changes"][:2] == [
        {"item_id": "i09", "student_rank": 1, "teacher_rank": None},
        {"item_id": "i06", "student_rank": 2, "teacher_rank": None},
    ]
    assert body["rank_changes"][4] == {"item_id": "i10", "student_rank": None, "teacher_rank": 1}
    assert len(body["rank_changes"]) == 8


def test_compare_applies_the_filters_to_the_teacher_too(biased_client: TestClient) -> None:
    # Only toys: the teacher's books bias has nothing to act on, both rank toys by the 0.01 tail.
    body = biased_client.post(
        "/v1/compare",
        json={
            "user_id": "u0",
            "history": ["i00"],
            "k": 3,
            "filters": {"categories": ["toys"], "max_price": 50},
        },
    ).json()
    assert ids(body["student"]) == ids(body["teacher"]) == ["i02", "i05", "i08"]
    body = biased_client.post(
        "/v1/compare",
        json={"user_id": "u0", "history": ["i00"], "k": 2, "filters": {"exclude_items": ["i10"]}},
    ).json()
    assert ids(body["teacher"]) == ["i07", "i04"]  # i10 excluded from the teacher as from the student


def test_compare_rejects_bad_input_with_the_field(client: TestClient) -> None:
    r = client.post("/v1/compare", json={"history": ["i00"], "filters": {"categories": ["hats"]}})
    assert r.status_code == 404 and r.json()["detail"].startswith("filters.categories.0: unknown category")
    r = client.post("/v1/compare", json={"history": ["i00"], "k": 5000})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "k"]


def test_a_history_only_teacher_is_served_and_compared(
    tmp_path: Path, settings_for: Callable[..., Settings]
) -> None:
    # A teacher trained with teacher.use_user_id = false has no user input and no oov_user: the
    # service loads it and feeds it the history alone (it used to refuse the version).
    models = tmp_path / "history-only"
    build_version(models, "h1", tiny_arrays(), teacher_user_input=False)
    with TestClient(create_app(settings_for(models))) as client:
        assert client.get("/health/ready").status_code == 200
        r = client.post(
            "/v1/compare", json={"user_id": "u0", "history": ["i00"], "k": 4, "exclude_seen": False}
        )
        assert r.status_code == 200
        body = r.json()
        assert ids(body["teacher"]) == ids(body["student"]) == ["i09", "i06", "i03", "i00"]
