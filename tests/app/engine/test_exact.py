"""The plain path without the top-k graph: the hand-written score graph, and the same answers as the
published top-k graph (ids and scores bit for bit) at every batch size, with exclusions and ties."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.engine.exact import exact_top_k
from app.engine.loading import load_version, session_options
from app.engine.model import LoadedModel
from app.engine.recommender import Query, recommend_batch
from app.engine.score_graph import SCORES, USER_VECTORS, score_session
from tests.fixtures.tiny_model import build_tiny_version, build_version, random_arrays

N_ITEMS = 3_000  # 46 groups of 64: the pruned ranking applies up to k = 11


def _with_published_graph(model: LoadedModel) -> LoadedModel:
    """`model` whose sides rank with their published top-k graph, as the service did before."""

    def graph_side(name: str) -> object:
        side = model.side(name)
        card = getattr(model.manifest, name)
        graph = ort.InferenceSession(
            str(model.path / card.topk.file), session_options(1), providers=["CPUExecutionProvider"]
        )
        return replace(side, topk=graph, scores=None)

    return replace(model, student=graph_side("student"), teacher=graph_side("teacher"))


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    arrays = random_arrays(N_ITEMS, n_users=20, dim=8, history_len=6, seed=3)
    return load_version(build_version(tmp_path_factory.mktemp("models"), "v1", arrays))


def _queries(model: LoadedModel, n: int, seed: int, side: str = "student") -> list[Query]:
    rng = np.random.default_rng(seed)
    return [
        Query(
            model,
            rng.integers(0, model.n_items, int(rng.integers(1, 6))),
            int(rng.choice([1, 5, 10, 11, 40])),  # 40: beyond the pruning, the whole row is ranked
            exclude=rng.choice(model.n_items, int(rng.choice([0, 3, 300])), replace=False).astype(np.int64),
            user=int(rng.integers(0, 20)) if side == "teacher" else None,
            side=side,
        )
        for _ in range(n)
    ]


def test_score_graph_is_the_matrix_product() -> None:
    items = np.array([[1, 0], [0, 2], [3, -1], [0.5, 0.5]], np.float32)
    session = score_session(items, session_options(1))
    (scores,) = session.run([SCORES], {USER_VECTORS: np.array([[1, 1], [2, 0]], np.float32)})
    assert scores.tolist() == [[1.0, 2.0, 2.0, 1.0], [2.0, 0.0, 6.0, 1.0]]
    assert session.get_outputs()[0].shape == ["batch", 4]


@pytest.mark.parametrize("side", ["student", "teacher"])
@pytest.mark.parametrize("batch", [1, 2, 7, 23])
def test_same_answers_as_the_published_topk_graph(large: LoadedModel, side: str, batch: int) -> None:
    assert large.side(side).scores is not None and large.side(side).topk is None  # float32: no graph
    queries = _queries(large, 23, seed=batch, side=side)
    graph_model = _with_published_graph(large)
    for start in range(0, len(queries), batch):
        group = queries[start : start + batch]
        ours = recommend_batch(group)
        before = recommend_batch([replace(q, model=graph_model) for q in group])
        for q, a, b in zip(group, ours, before, strict=True):
            assert a.indices.tolist() == b.indices.tolist()
            assert a.scores.tobytes() == b.scores.tobytes()  # the same MatMul node: the same bits
            assert len(a.indices) == q.k and not set(a.indices.tolist()) & set(q.exclude.tolist())


def test_ties_at_the_kth_place_go_to_the_lowest_indices(tmp_path: Path) -> None:
    # 2,560 items, item i has vector i % 10 (4 e_3 for i % 10 == 3, zero from 4 on): 256 items tie at the top
    arrays = random_arrays(2_560, n_users=5, dim=4, history_len=3, seed=0)
    distinct = (np.eye(10, 4) * np.arange(1, 11)[:, None]).astype(np.float32)
    arrays.item_vectors, arrays.mix = np.tile(distinct, (256, 1)), None
    model = load_version(build_version(tmp_path, "v1", arrays))
    query = Query(model, np.array([3]), 5)  # user vector 4 e_3: items 3, 13, 23, ... score 16
    (ours,) = recommend_batch([query])
    (before,) = recommend_batch([replace(query, model=_with_published_graph(model))])
    assert ours.indices.tolist() == before.indices.tolist() == [3, 13, 23, 33, 43]


def test_excluding_most_of_the_catalogue_leaves_the_rest(large: LoadedModel) -> None:
    session = large.student.scores
    assert session is not None
    user = np.ones((1, 8), np.float32)
    keep = np.array([5, 77, 2_999])
    excluded = np.setdiff1d(np.arange(N_ITEMS), keep)
    [(idx, sc)] = exact_top_k(session, N_ITEMS, user, [10], [(excluded,)])
    (all_scores,) = session.run([SCORES], {USER_VECTORS: user})
    assert sorted(idx.tolist()) == keep.tolist() and np.isfinite(sc).all()  # 3 allowed, not 10
    assert idx.tolist() == keep[np.argsort(-all_scores[0, keep], kind="stable")].tolist()


def test_a_reduced_precision_side_keeps_its_graph(tmp_path: Path) -> None:
    version = build_tiny_version(tmp_path, "v1")
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["student"]["item_precision"] = "int8"  # the service then trusts only the graph's scores
    (version / "manifest.json").write_text(json.dumps(manifest))
    model = load_version(version)
    assert model.student.topk is not None and model.student.scores is None
    assert model.teacher.scores is not None  # only the student's card changed
    (result,) = recommend_batch([Query(model, np.array([0]), 3, exclude=np.array([9]))])
    assert result.indices.tolist() == [6, 3, 0]


def test_a_batch_split_into_blocks_answers_as_one_block_and_as_a_full_sort(
    large: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = large.student.scores
    assert session is not None
    rng = np.random.default_rng(11)
    users = rng.standard_normal((9, 8)).astype(np.float32)
    ks = [1, 5, 10, 11, 40, 10, 3, 11, 7]
    unavailable = np.sort(rng.choice(N_ITEMS, 50, replace=False)).astype(np.int64)
    excludes = [(rng.choice(N_ITEMS, int(n), replace=False), unavailable) for n in [0, 3, 300] * 3]
    whole = exact_top_k(session, N_ITEMS, users, ks, excludes)
    monkeypatch.setattr("app.engine.exact.SCORES_PER_BLOCK", 2 * N_ITEMS)  # blocks of 2, 2, 2, 2 and 1 rows
    blocked = exact_top_k(session, N_ITEMS, users, ks, excludes)
    (scores,) = session.run([SCORES], {USER_VECTORS: users})
    for row, ((idx, sc), (b_idx, b_sc)) in enumerate(zip(whole, blocked, strict=True)):
        assert idx.tolist() == b_idx.tolist() and sc.tobytes() == b_sc.tobytes()
        allowed = np.setdiff1d(np.arange(N_ITEMS), np.concatenate(excludes[row]))
        order = allowed[np.lexsort((allowed, -scores[row, allowed]))][: ks[row]]  # score desc, then id
        assert idx.tolist() == order.tolist()
        assert sc.tobytes() == scores[row, order].tobytes()
