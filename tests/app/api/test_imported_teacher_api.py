"""The service against an imported teacher (embedding tables, published by the real pipeline):
/v1/compare returns the tables' list, the shadow compares against it, the A/B teacher arm serves it,
and a user the tables do not know is said to be unknown (compare) and counted (shadow), never guessed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.fixtures.imported_teacher import tiny_cfg, write_tables
from training.pipeline import load_data, run_pipeline

K = 5
HISTORY = ["i0000001", "i0000002"]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("imported")
    data, split = load_data(tiny_cfg(tmp))
    spec = write_tables(tmp / "tables", data, split, drop_users=10)
    cfg = tiny_cfg(
        tmp, f"teacher.source=tables:{spec}", "teacher.max_unmapped_share=0.1", "distill.train_scratch=false"
    )
    assert run_pipeline(cfg, progress=False) is not None
    users = pd.read_parquet(tmp / "tables" / "users.parquet")
    items = np.load(tmp / "tables" / "items.npy")
    item_ids = np.load(tmp / "tables" / "item_ids.npy")
    table = dict(zip(users["user_id"], users["vector"], strict=True))
    unknown = sorted(set(data.user_ids.tolist()) - set(table))

    def expected(user: str) -> list[str]:
        """The tables' own top-k for `user`: its vector against every item vector."""
        scores = items @ np.asarray(table[user], dtype=np.float32)
        return item_ids[np.argsort(-scores, kind="stable")[:K]].tolist()

    return {"models": tmp / "models", "known": sorted(table)[:3], "unknown": unknown, "expected": expected}


@pytest.fixture
def make_client(
    published: dict, settings_for: Callable[..., Settings]
) -> Iterator[Callable[..., TestClient]]:
    """make_client(**settings): the real app on the published version, lifespan running."""
    with ExitStack() as stack:
        yield lambda **overrides: stack.enter_context(
            TestClient(create_app(settings_for(published["models"], **overrides)))
        )


def _body(user: str | None) -> dict:
    return {"user_id": user, "history": HISTORY, "k": K, "exclude_seen": False}


def test_compare_returns_the_imported_teachers_list(
    make_client: Callable[..., TestClient], published: dict
) -> None:
    client = make_client()
    for user in published["known"]:
        r = client.post("/v1/compare", json=_body(user))
        assert r.status_code == 200
        teacher = r.json()["teacher"]
        assert teacher["available"] is True
        assert [i["item_id"] for i in teacher["items"]] == published["expected"](user)
        assert r.json()["agreement"] is not None


def test_compare_says_the_teacher_does_not_know_the_user(
    make_client: Callable[..., TestClient], published: dict
) -> None:
    client = make_client()
    for user in [published["unknown"][0], None]:  # a user the tables lack, and an anonymous session
        r = client.post("/v1/compare", json=_body(user))
        assert r.status_code == 200
        body = r.json()
        assert body["teacher"]["available"] is False and body["teacher"]["reason"] == "unknown user"
        assert "items" not in body["teacher"] and body["agreement"] is None
        assert len(body["student"]["items"]) == K  # the student serves it from the history


def test_shadow_compares_against_it_and_counts_unknown_users(
    make_client: Callable[..., TestClient], published: dict
) -> None:
    client = make_client(shadow_rate=1.0, shadow_isolation="thread", shadow_timeout_ms=10_000)
    for user in [*published["known"], *published["unknown"][:2], None]:
        assert client.post("/v1/recommend", json=_body(user)).status_code == 200
    assert client.app.state.experiment.shadow.wait_idle()  # type: ignore[attr-defined]
    report = client.get("/v1/shadow/report").json()
    assert report["count"] == 3 and report["unknown_user"] == 3
    assert report["metrics"]["overlap@k"]["n"] == 3


def test_ab_teacher_arm_serves_it(make_client: Callable[..., TestClient], published: dict) -> None:
    client = make_client()
    arm = {"X-Recdistill-Arm": "teacher"}
    user = published["known"][0]
    r = client.post("/v1/recommend", json=_body(user), headers=arm).json()
    assert r["arm"] == "teacher" and r["fallback"] is None
    assert [i["item_id"] for i in r["items"]] == published["expected"](user)
    r = client.post("/v1/recommend", json=_body(published["unknown"][0]), headers=arm).json()
    assert r["arm"] == "teacher" and r["fallback"] == "popular"  # labelled, not the lookup's empty row
