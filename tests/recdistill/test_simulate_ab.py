"""recdistill/simulate_ab.py against the real app (in-process client) on a tiny version with a holdout.

u0's stored history is i00, i03 (shoes), so with k = 3 the answer is i09, i06, ... and a held-out
i09 is always a hit; u1's history is books and a toy, so a held-out i00 never makes its top 3.
Those holdouts are in the older format (no test queries: the replay asks by user_id). A holdout with
test queries is replayed with the query as the history: u0 with the query [i01] (books) gets i10.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from recdistill.simulate_ab import SimulationError, format_summary, simulate_ab
from tests.fixtures.tiny_model import build_version, tiny_arrays


def _models(root: Path, holdout: list[tuple[int, int]]) -> Path:
    arrays = tiny_arrays()
    buf = io.BytesIO()
    pairs = np.array(holdout, np.int64).reshape(-1, 2)
    np.savez(buf, user=pairs[:, 0], item=pairs[:, 1])
    arrays.extra_files = {"holdout.npz": buf.getvalue()}
    models = root / "sim-models"
    build_version(models, "v1", arrays)
    return models


def _run(models: Path, settings_for: Callable[..., Settings], **kwargs: object) -> dict:
    settings = settings_for(models, experiment_teacher_share=0.5)
    with TestClient(create_app(settings)) as client:
        return simulate_ab("http://testserver", models, client=client, k=3, **kwargs)  # type: ignore[arg-type]


def test_a_published_test_query_is_sent_as_the_history_not_the_stored_one(
    tmp_path: Path, settings_for: Callable[..., Settings]
) -> None:
    arrays = tiny_arrays()
    buf = io.BytesIO()
    np.savez(
        buf, user=np.array([0]), item=np.array([10]), valid_item=np.array([1]),
        query_indptr=np.array([0, 1]), query_item=np.array([1]), reported=np.array([True]),
        test_history=np.array("train+valid"),
    )  # fmt: skip
    arrays.extra_files = {"holdout.npz": buf.getvalue()}
    models = tmp_path / "query-models"
    build_version(models, "v1", arrays)
    result = _run(models, settings_for, requests=6, seed=2, purchase_rate=0.0)
    # by u0's stored history (shoes) i10 would never be in the top 3; by the query [i01] it is first
    assert sum(t["clicks"] for t in result["by_arm"].values()) == 6
    assert result["query"].startswith("query: each user's test query (train + validation items)")
    assert result["query"] in format_summary(result)


def test_every_request_is_a_hit_when_the_held_out_item_is_top_ranked(
    tmp_path: Path, settings_for: Callable[..., Settings]
) -> None:
    models = _models(tmp_path, [(0, 9)])  # (u0, i09)
    result = _run(models, settings_for, requests=12, seed=3, purchase_rate=1.0)
    assert result["failed"] == 0
    assert "stored history of user_id" in result["query"]  # an older holdout: no test queries
    [(arm, tally)] = result["by_arm"].items()  # one user: one (sticky) arm
    assert tally == {"requests": 12, "clicks": 12, "purchases": 12}
    report_arm = result["report"]["arms"][arm]
    assert (report_arm["requests"], report_arm["clicks"], report_arm["purchases"], report_arm["users"]) == (
        12,
        12,
        12,
        1,
    )
    assert report_arm["impressions"] == 36


def test_misses_give_no_feedback(tmp_path: Path, settings_for: Callable[..., Settings]) -> None:
    models = _models(tmp_path, [(1, 0)])  # (u1, i00): never in u1's top 3
    result = _run(models, settings_for, requests=5, seed=0, purchase_rate=1.0)
    assert sum(t["clicks"] for t in result["by_arm"].values()) == 0
    assert sum(t["requests"] for t in result["by_arm"].values()) == 5


def test_nothing_published_or_no_service_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SimulationError, match="nothing published"):
        simulate_ab("http://127.0.0.1:9", tmp_path, 10, 0)
    models = _models(tmp_path, [(0, 9)])
    with pytest.raises(SimulationError, match="cannot reach the service"):
        simulate_ab("http://127.0.0.1:9", models, 3, 0, timeout_s=2.0)


def test_empty_holdout_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "empty"
    build_version(models, "v1", tiny_arrays())  # the fixture's default holdout has no rows
    with pytest.raises(SimulationError, match="holdout.npz: needs equally long, non-empty"):
        simulate_ab("http://127.0.0.1:9", models, 3, 0)


def test_format_summary_names_each_arm(tmp_path: Path, settings_for: Callable[..., Settings]) -> None:
    result = _run(_models(tmp_path, [(0, 9)]), settings_for, requests=4, seed=1, purchase_rate=0.0)
    text = format_summary(result)
    assert text.splitlines()[0] == "sent 4 requests (0 failed)"
    assert "student" in text and "teacher" in text and "SRM:" in text
    (verdict,) = [line for line in text.splitlines() if line.startswith("  verdict: ")]
    assert (
        verdict == f"  verdict: {result['report']['verdict']['summary']}"
        if result["report"]["verdict"]
        else True
    )
