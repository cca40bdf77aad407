"""bench/scale.py and bench/ann_index.py plumbing: the reference they judge recall by, the refusals,
the verdicts and the report. Their timings are never asserted (they depend on the machine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.ann_index import clustered_vectors, load_vectors, version_vectors
from bench.floor import summarise_paths
from bench.loadgen import WrkResult
from bench.scale import ScaleError, check_version, checks, markdown, parse_args


def test_a_version_without_an_index_is_refused_with_the_fix(tmp_path: Path) -> None:
    from tests.fixtures.tiny_model import build_version, random_arrays

    version = build_version(
        tmp_path / "models", "v1", random_arrays(50, n_users=5, dim=4, history_len=3, seed=0)
    )
    with pytest.raises(ScaleError, match=r"retrieval is 'exact'; publish it with export.retrieval"):
        check_version(version)
    with pytest.raises(ScaleError, match="not a published version"):
        check_version(tmp_path / "nowhere")


def test_version_dir_and_pipeline_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--version-dir", "models/v1", "--pipeline"])
    assert parse_args(["--version-dir", "models/v1"]).version_dir == Path("models/v1")


def _payload() -> dict:
    path = {"p50": 0.4, "p99": 1.2, "cpu_ms_per_request_batch1": 0.3, "cpu_ms_per_request_batch32": 0.1}
    return {
        "command": "python -m bench.scale --version-dir v",
        "source": "version",
        "machine": {"cpu_model": "cpu", "nproc": 2},
        "version": {"name": "v1", "dataset": "shop", "n_items": 1_000_000, "dim": 16},
        "publish": {
            "retrieval": {
                "kind": "ivf",
                "params": {"nprobe": 64},
                "metrics": {"recall@10": 0.96, "recall_users": 1000.0, "build_seconds": 200.0},
                "recall@10": 0.96,
            }
        },
        "inprocess": {
            "exact": {**path, "p50": 4.0},
            "ann": path,
            "recall@10": 0.94,
            "recall_requests": 1000,
            "short_answers": 0,
            "recall@10_vs_float32": {"exact": 1.0, "ann": 0.94},
        },
        "http": {
            "ann": {"rps": 1500.0, "p50_ms": 9.0, "p99_ms": 30.0, "errors": 0},
            "floor": summarise_paths(
                {
                    "floor": [_wrk(5000), _wrk(6000)],
                    "exact": [_wrk(2000), _wrk(2400)],
                    "ann": [_wrk(3000), _wrk(3300)],
                },
                [1.0, 1.5],
            ),
        },
    }


def _wrk(rps: float) -> WrkResult:
    return WrkResult(
        requests=int(rps * 10), seconds=10.0, rps=rps, p50_ms=5.0, p90_ms=8.0, p99_ms=12.0, p999_ms=15.0,
        max_ms=20.0, non2xx=0, socket_errors=0,
    )  # fmt: skip


def test_checks_judge_the_measured_numbers_and_mark_missing_ones_unknown() -> None:
    payload = _payload()
    verdicts = {c["metric"]: c["pass"] for c in checks(payload)}
    assert verdicts == {
        "inprocess.ann.p50": True,  # 0.4 <= 2
        "inprocess.recall@10": False,  # 0.94 < 0.95
        "publish.retrieval.recall@10": True,
        "http.ann.rps": True,
        "http.ann.errors": True,
        "http.floor.ratio.ann": False,  # medians 3150 / 5500 = 0.57 < 0.6
    }
    assert payload["http"]["floor"]["ratio"] == {"exact": 2200 / 5500, "ann": 3150 / 5500}
    del payload["http"]
    assert {c["metric"]: c["pass"] for c in checks(payload)}["http.ann.rps"] is None


def test_markdown_shows_both_paths_side_by_side() -> None:
    payload = _payload()
    payload["checks"] = checks(payload)
    text = markdown(payload)
    # no HTTP run for exact
    assert "| exact | 4.000 | 1.200 | 0.300 | 0.100 | - | - | - | - | - | - |" in text
    assert "| ann (ivf) | 0.400 | 1.200 | 0.300 | 0.100 | 1500 | 9.00 | 30.00 | - | - | 0 |" in text
    assert "1,000,000 items" in text and "exact 1.0000, ann 0.9400" in text
    assert "req/s: floor [5000, 6000]; exact [2000, 2400]; ann [3000, 3300]" in text
    assert "Medians over the floor's 5500: exact 40%, ann 57%" in text


def test_clustered_vectors_are_seeded_and_shaped() -> None:
    items, users = clustered_vectors(500, 8, 20, n_clusters=10, seed=3)
    assert items.shape == (500, 8) and users.shape == (20, 8) and items.dtype == np.float32
    again, _ = clustered_vectors(500, 8, 20, n_clusters=10, seed=3)
    np.testing.assert_array_equal(items, again)


def test_load_vectors_refuses_mismatched_or_too_few_rows(tmp_path: Path) -> None:
    np.save(tmp_path / "items.npy", np.zeros((10, 4), np.float32))
    np.save(tmp_path / "users.npy", np.zeros((2000, 3), np.float32))
    with pytest.raises(ValueError, match=r"items \(10, 4\) and users \(2000, 3\)"):
        load_vectors(tmp_path)
    np.save(tmp_path / "users.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="5 rows, need 2000"):
        load_vectors(tmp_path)


def test_version_vectors_are_the_published_students_own(tmp_path: Path) -> None:
    from tests.fixtures.tiny_model import build_version, random_arrays

    arrays = random_arrays(60, n_users=2100, dim=4, history_len=3, seed=1)
    version = build_version(tmp_path / "models", "v1", arrays)
    items, users = version_vectors(version, seed=2)
    np.testing.assert_array_equal(items, arrays.item_vectors)
    assert users.shape == (2000, 4) and users.dtype == np.float32
    np.testing.assert_array_equal(users, version_vectors(version, seed=2)[1])  # seeded
    small = build_version(tmp_path / "small", "v1", random_arrays(60, n_users=50, dim=4, history_len=3))
    with pytest.raises(ValueError, match="users with history, need 2000"):
        version_vectors(small)
