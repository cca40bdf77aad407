"""The numpy/ORT core without HTTP: eligible sets by hand, one batch mixing every path, the teacher side,
and load-time verification errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.engine.loading import load_version
from app.engine.model import LoadedModel
from app.engine.recommender import Query, UnknownCategory, eligible_items, prepare, recommend_batch
from core.manifest import ManifestError
from tests.fixtures.tiny_model import build_tiny_version


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_version(build_tiny_version(tmp_path_factory.mktemp("models"), "v1"))


def test_eligible_items_by_hand(model: LoadedModel) -> None:
    assert eligible_items(model, None, None, None) is None
    assert eligible_items(model, [0], None, None).tolist() == [0, 3, 6, 9]
    assert eligible_items(model, [2, 0, 2], None, None).tolist() == [0, 2, 3, 5, 6, 8, 9, 11]
    assert eligible_items(model, None, 20, 35).tolist() == [3, 4, 5, 6]
    assert eligible_items(model, None, None, 10).tolist() == [0, 1]
    assert eligible_items(model, None, 55, None).tolist() == [11]  # i10 (NaN price) never passes
    assert eligible_items(model, [1], 10, 40).tolist() == [1, 4, 7]
    assert eligible_items(model, [1], 41, 45).tolist() == []


def test_prepare_maps_ids_and_names_unknown_category(model: LoadedModel) -> None:
    p = prepare(
        model, history=["i00", "zz", "i03"], k=3, exclude_seen=True, user_id="u1", exclude_items=["i05", "??"]
    )
    assert p.query.history.tolist() == [0, 3]
    assert sorted(p.query.exclude.tolist()) == [0, 3, 5]
    assert p.query.user == 1 and p.unknown_items == ["zz"]
    with pytest.raises(UnknownCategory) as err:
        prepare(model, history=[], k=3, exclude_seen=True, categories=["toys", "hats"])
    assert err.value.position == 1 and err.value.name == "hats"


def test_one_batch_mixing_plain_filtered_and_cold_queries(model: LoadedModel) -> None:
    q_plain = Query(model, np.array([0]), 3, exclude=np.array([9]))
    q_filtered = Query(model, np.array([0]), 2, eligible=np.array([1, 4, 7, 10]))
    q_cold = Query(model, np.zeros(0, np.int64), 2, exclude=np.array([5]))
    q_big_k = Query(model, np.array([1]), 12)
    results = recommend_batch([q_plain, q_filtered, q_cold, q_big_k])
    assert [r.indices.tolist() for r in results[:3]] == [[6, 3, 0], [1, 4], [2, 7]]
    assert [r.fallback for r in results] == [None, None, "popular", None]
    assert results[3].indices.tolist()[:4] == [10, 7, 4, 1] and len(results[3].indices) == 12
    # the filtered path scores with item_vectors @ user_vector: the same numbers the graph gives
    assert results[1].scores.tolist() == pytest.approx([0.0132, 0.0096], abs=1e-6)


def test_teacher_side_takes_the_user_and_maps_unknown_users_to_oov(model: LoadedModel) -> None:
    known = Query(model, np.array([0]), 2, user=2, side="teacher")
    unknown = Query(model, np.array([0]), 2, user=None, side="teacher")
    a, b = recommend_batch([known, unknown])
    assert a.indices.tolist() == b.indices.tolist() == [9, 6]  # the fixture's user bias is zero


def test_load_rejects_mismatched_arrays(tmp_path: Path) -> None:
    v = build_tiny_version(tmp_path, "v1")
    manifest = json.loads((v / "manifest.json").read_text())
    manifest["student"]["padding_value"] = 11
    (v / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="padding_value 11 != n_items 12"):
        load_version(v)


def test_load_rejects_a_missing_file(tmp_path: Path) -> None:
    v = build_tiny_version(tmp_path, "v1")
    (v / "teacher_items.npy").unlink()
    with pytest.raises(ManifestError, match="teacher_items.npy: listed in the manifest but missing"):
        load_version(v)
