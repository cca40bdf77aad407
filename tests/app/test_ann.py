"""app/ann.py: loading a published index and answering with filters that hold exactly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from app.ann import AnnIndex, exact_top, load_ann
from core.manifest import Manifest, ManifestError, Retrieval

faiss = pytest.importorskip("faiss", reason="faiss-cpu (the ann extra) is not installed")

N, DIM, K = 3000, 16, 10


def manifest(retrieval: Retrieval) -> Manifest:
    return Manifest.model_construct(retrieval=retrieval)  # load_ann reads only .retrieval


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(10, DIM))
    items = centres[rng.integers(0, 10, N)] + 0.4 * rng.normal(size=(N, DIM))
    users = centres[rng.integers(0, 10, 64)] + 0.4 * rng.normal(size=(64, DIM))
    return items.astype(np.float32), users.astype(np.float32)


@pytest.fixture(scope="module")
def hnsw_dir(tmp_path_factory: pytest.TempPathFactory, vectors: tuple[np.ndarray, np.ndarray]) -> Path:
    folder = tmp_path_factory.mktemp("hnsw")
    index = faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(vectors[0])
    faiss.write_index(index, str(folder / "student_ann.faiss"))
    return folder


def hnsw(hnsw_dir: Path, items: np.ndarray, **kw: int) -> AnnIndex:
    r = Retrieval(kind="hnsw", index_file="student_ann.faiss", params={"ef_search": 128})
    ann = load_ann(hnsw_dir, manifest(r), items, **kw)
    assert ann is not None
    return ann


def exact(items: np.ndarray, user: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    return exact_top(allowed, items[allowed] @ user, k)[0].tolist()


def test_exact_retrieval_needs_no_faiss(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    assert load_ann(tmp_path, manifest(Retrieval()), np.zeros((3, 2), np.float32)) is None
    r = Retrieval(kind="hnsw", index_file="student_ann.faiss", params={"ef_search": 64})
    with pytest.raises(ManifestError, match=r"faiss is not installed .*recdistill\[ann\]"):
        load_ann(tmp_path, manifest(r), np.zeros((3, 2), np.float32))


def test_index_not_matching_the_item_vectors_is_refused(hnsw_dir: Path, vectors: tuple[np.ndarray, np.ndarray]) -> None:
    r = Retrieval(kind="hnsw", index_file="student_ann.faiss", params={"ef_search": 64})
    with pytest.raises(ManifestError, match=r"index holds 3000 x 16, item vectors are 2999 x 16"):
        load_ann(hnsw_dir, manifest(r), vectors[0][:-1])
    with pytest.raises(ManifestError, match=r"retrieval.params.ef_search missing"):
        load_ann(hnsw_dir, manifest(Retrieval(kind="hnsw", index_file="student_ann.faiss")), vectors[0])
    (hnsw_dir / "broken.faiss").write_bytes(b"not an index")
    with pytest.raises(ManifestError, match="faiss cannot read it"):
        load_ann(hnsw_dir, manifest(Retrieval(kind="hnsw", index_file="broken.faiss", params={"ef_search": 8})), vectors[0])


def test_plain_queries_match_exact_top_k(hnsw_dir: Path, vectors: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = vectors
    ann = hnsw(hnsw_dir, items)
    none = np.zeros(0, np.int64)
    results = ann.search(users, [K] * len(users), [none] * len(users), [None] * len(users))
    everything = np.arange(N)
    recall = np.mean([len(set(r[0].tolist()) & set(exact(items, u, everything, K))) / K for r, u in zip(results, users, strict=True)])
    assert recall >= 0.95
    for idx, sc in results:
        assert len(idx) == K
        np.testing.assert_allclose(sc, items[idx] @ users[0] * 0 + sc, rtol=0)  # shape sanity
    idx, sc = results[0]
    np.testing.assert_allclose(sc, items[idx] @ users[0], rtol=1e-5)  # scores are the true dot products
    assert (np.diff(sc) <= 1e-6).all()


def test_exclusions_never_come_back_and_k_still_does(hnsw_dir: Path, vectors: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = vectors
    ann = hnsw(hnsw_dir, items)
    top = exact(items, users[0], np.arange(N), 40)
    excluded = np.array(sorted(top[:30]), np.int64)  # the user's 30 best items are all "seen"
    (idx, _), = ann.search(users[:1], [K], [excluded], [None])
    assert len(idx) == K and not set(idx.tolist()) & set(excluded.tolist())
    assert len(set(idx.tolist()) & set(top[30:40])) >= 9


def test_small_eligible_set_is_scored_exactly(hnsw_dir: Path, vectors: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = vectors
    ann = hnsw(hnsw_dir, items)  # exact_threshold 20,000 > N: every filter goes exact
    eligible = np.arange(5, N, 97, dtype=np.int64)
    excluded = eligible[:3]
    (idx, sc), = ann.search(users[:1], [K], [excluded], [eligible])
    assert idx.tolist() == exact(items, users[0], eligible[3:], K)
    (idx, _), = ann.search(users[:1], [50], [excluded], [eligible[:8]])  # fewer allowed than k
    assert idx.tolist() == exact(items, users[0], eligible[3:8], 50)


def test_large_eligible_set_goes_through_the_selector(hnsw_dir: Path, vectors: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = vectors
    ann = hnsw(hnsw_dir, items, exact_threshold=100)
    eligible = np.arange(0, N, 2, dtype=np.int64)  # even items only
    excluded = np.array(exact(items, users[1], eligible, 5), np.int64)
    results = ann.search(users[:2], [K, K], [np.zeros(0, np.int64), excluded], [eligible, eligible])
    for idx, _ in results:
        assert len(idx) == K and (idx % 2 == 0).all()
    assert not set(results[1][0].tolist()) & set(excluded.tolist())
    assert len(set(results[0][0].tolist()) & set(exact(items, users[0], eligible, K))) >= 9


def test_a_starved_index_search_is_refilled_exactly(tmp_path: Path) -> None:
    # Two far-apart clusters, IVF with nprobe=1: a query near cluster A searching only cluster B's
    # items visits A's list alone and finds nothing, so the exact refill must supply all k.
    rng = np.random.default_rng(11)
    a = rng.normal(size=(300, 4)) * 0.1 + np.array([10, 0, 0, 0])
    b = rng.normal(size=(300, 4)) * 0.1 + np.array([0, 10, 0, 0])
    items = np.vstack([a, b]).astype(np.float32)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(4), 4, 2, faiss.METRIC_INNER_PRODUCT)
    index.train(items)
    index.add(items)
    faiss.write_index(index, str(tmp_path / "ivf.faiss"))
    r = Retrieval(kind="ivf", index_file="ivf.faiss", params={"nprobe": 1})
    ann = load_ann(tmp_path, manifest(r), items, exact_threshold=10)
    assert ann is not None
    user = np.array([[1.0, 0.01, 0, 0]], np.float32)
    cluster_b = np.arange(300, 600, dtype=np.int64)
    (idx, _), = ann.search(user, [K], [np.zeros(0, np.int64)], [cluster_b])
    assert ann.refills == 1
    assert idx.tolist() == exact(items, user[0], cluster_b, K)
