"""app/engine/ann.py: loading a published index and answering with filters that hold exactly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from app.engine.ann import AnnIndex, load_ann
from core.manifest import Manifest, ManifestError, Retrieval
from core.topk import top_k_of
from training.export.ann import build_index

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
    # the exporter's own builder, over the MIPS -> L2 reduction (queries get a 0 appended)
    index = build_index(vectors[0], "hnsw", space="mips_to_l2", hnsw_m=16, ef_construction=80)
    faiss.write_index(index, str(folder / "student_ann.faiss"))
    return folder


def hnsw(hnsw_dir: Path, items: np.ndarray, **kw: int) -> AnnIndex:
    r = Retrieval(
        kind="hnsw", index_file="student_ann.faiss", params={"ef_search": 128, "transform": "mips_to_l2"}
    )
    ann = load_ann(hnsw_dir, manifest(r), items, **kw)
    assert ann is not None
    return ann


def exact(items: np.ndarray, user: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    return top_k_of(allowed, items[allowed] @ user, k)[0].tolist()


def test_exact_retrieval_needs_no_faiss(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    assert load_ann(tmp_path, manifest(Retrieval()), np.zeros((3, 2), np.float32)) is None
    r = Retrieval(kind="hnsw", index_file="student_ann.faiss", params={"ef_search": 64})
    with pytest.raises(ManifestError, match=r"faiss is not installed .*recdistill\[ann\]"):
        load_ann(tmp_path, manifest(r), np.zeros((3, 2), np.float32))


def test_index_not_matching_the_item_vectors_is_refused(
    hnsw_dir: Path, vectors: tuple[np.ndarray, np.ndarray]
) -> None:
    r = Retrieval(
        kind="hnsw", index_file="student_ann.faiss", params={"ef_search": 64, "transform": "mips_to_l2"}
    )
    with pytest.raises(ManifestError, match=r"index holds 3000 x 17, expected 2999 x 17"):
        load_ann(hnsw_dir, manifest(r), vectors[0][:-1])
    with pytest.raises(ManifestError, match=r"retrieval.params.ef_search missing"):
        load_ann(hnsw_dir, manifest(r.model_copy(update={"params": {"transform": "mips_to_l2"}})), vectors[0])
    with pytest.raises(
        ManifestError, match=r"index holds 3000 x 17, expected 3000 x 16"
    ):  # transform not declared
        load_ann(hnsw_dir, manifest(r.model_copy(update={"params": {"ef_search": 64}})), vectors[0])
    (hnsw_dir / "broken.faiss").write_bytes(b"not an index")
    with pytest.raises(ManifestError, match="faiss cannot read it"):
        load_ann(
            hnsw_dir,
            manifest(Retrieval(kind="hnsw", index_file="broken.faiss", params={"ef_search": 8})),
            vectors[0],
        )


def test_plain_queries_match_exact_top_k(hnsw_dir: Path, vectors: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = vectors
    ann = hnsw(hnsw_dir, items)
    none = np.zeros(0, np.int64)
    results = ann.search(users, [K] * len(users), [none] * len(users), [None] * len(users))
    everything = np.arange(N)
    recall = np.mean(
        [
            len(set(r[0].tolist()) & set(exact(items, u, everything, K))) / K
            for r, u in zip(results, users, strict=True)
        ]
    )
    assert recall >= 0.99
    for (idx, sc), user in zip(results, users, strict=True):
        assert len(idx) == K
        np.testing.assert_allclose(sc, items[idx] @ user, rtol=1e-5)  # scores are the true dot products
        assert (np.diff(sc) <= 0).all()


def test_exclusions_never_come_back_and_k_still_does(
    hnsw_dir: Path, vectors: tuple[np.ndarray, np.ndarray]
) -> None:
    items, users = vectors
    ann = hnsw(hnsw_dir, items)
    top = exact(items, users[0], np.arange(N), 40)
    excluded = np.array(sorted(top[:30]), np.int64)  # the user's 30 best items are all "seen"
    ((idx, _),) = ann.search(users[:1], [K], [excluded], [None])
    assert len(idx) == K and not set(idx.tolist()) & set(excluded.tolist())
    assert idx.tolist() == top[30:40]


def test_an_exclusion_applies_to_its_own_query_only() -> None:
    # One batched search for both rows, exclusions tested over (row, item) keys at once: item 2,
    # excluded for row 0 only, must still come back for row 1 (and item 3 the other way round).
    items = np.array([[1.0, 0.0], [0.5, 0.0], [3.0, 0.0], [2.0, 0.0], [0.0, 1.0]], np.float32)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(2), 2, 1, faiss.METRIC_INNER_PRODUCT)
    index.train(items)
    index.add(items)
    ann = AnnIndex(index, "ivf", 1, items)
    users = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    results = ann.search(users, [3, 3], [np.array([2], np.int64), np.array([3], np.int64)], [None, None])
    assert [r[0].tolist() for r in results] == [[3, 0, 1], [2, 0, 1]]
    assert results[0][1].tolist() == [2.0, 1.0, 0.5]


def test_plain_ties_are_broken_by_lower_index_as_on_the_exact_path() -> None:
    items = np.array([[0.0, 1.0], [2.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 0.0]], np.float32)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(2), 2, 1, faiss.METRIC_INNER_PRODUCT)
    index.train(items)
    index.add(items)
    ((idx, sc),) = AnnIndex(index, "ivf", 1, items).search(
        np.array([[1.0, 0.0]], np.float32), [4], [np.zeros(0, np.int64)], [None]
    )
    assert idx.tolist() == [1, 3, 4, 2] and sc.tolist() == [2.0, 2.0, 2.0, 1.0]


def test_small_eligible_set_is_scored_exactly(hnsw_dir: Path, vectors: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = vectors
    ann = hnsw(hnsw_dir, items)  # exact_threshold 20,000 > N: every filter goes exact
    eligible = np.arange(5, N, 97, dtype=np.int64)
    excluded = eligible[:3]
    ((idx, sc),) = ann.search(users[:1], [K], [excluded], [eligible])
    assert idx.tolist() == exact(items, users[0], eligible[3:], K)
    ((idx, _),) = ann.search(users[:1], [50], [excluded], [eligible[:8]])  # fewer allowed than k
    assert idx.tolist() == exact(items, users[0], eligible[3:8], 50)


def test_large_eligible_set_goes_through_the_selector(
    hnsw_dir: Path, vectors: tuple[np.ndarray, np.ndarray]
) -> None:
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
    ((idx, _),) = ann.search(user, [K], [np.zeros(0, np.int64)], [cluster_b])
    assert ann.refills == 1
    assert idx.tolist() == exact(items, user[0], cluster_b, K)


# -- through the real app: a published version with an HNSW index vs the same version served exactly --


def _user_vectors(version_dir: Path, n: int, history_len: int, n_items: int, seed: int) -> np.ndarray:
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    hist = rng.integers(0, n_items, (n, history_len)).astype(np.int64)
    sess = ort.InferenceSession(str(version_dir / "student_user.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["user_vector"], {"history": hist})[0]


def _publish_pair(root: Path) -> tuple[Path, Path]:
    """models_exact/v1 and models_ann/v1 from the same arrays; the second gets an HNSW index."""
    from core.manifest import MANIFEST_FILE, file_entry, load_manifest, write_json_atomic, write_latest
    from tests.fixtures.tiny_model import build_version, random_arrays
    from training.export.ann import build_retrieval

    arrays = random_arrays(3000, n_users=50, dim=16, history_len=5, seed=3)
    exact_dir, ann_dir = root / "models_exact", root / "models_ann"
    build_version(exact_dir, "v1", arrays)
    version = build_version(ann_dir, "v1", arrays, publish=False)
    queries = _user_vectors(version, 1300, 5, 3000, seed=4)
    retrieval = build_retrieval(
        version,
        arrays.item_vectors,
        queries[:1000],
        queries[1000:],
        kind="hnsw",
        hnsw_m=16,
        ef_construction=80,
    )
    manifest = load_manifest(version)
    files = {**manifest.files, retrieval.index_file: file_entry(version / retrieval.index_file)}  # type: ignore[index]
    write_json_atomic(
        version / MANIFEST_FILE,
        manifest.model_copy(update={"retrieval": retrieval, "files": files}).model_dump(mode="json"),
    )
    write_latest(ann_dir, "v1")
    return exact_dir, ann_dir


@pytest.fixture(scope="module")
def published_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _publish_pair(tmp_path_factory.mktemp("pair"))


def test_the_service_answers_from_the_index_with_filters_held(
    tmp_path: Path, published_pair: tuple[Path, Path]
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.app.conftest import make_settings

    exact_dir, ann_dir = published_pair
    rng = np.random.default_rng(5)
    with (
        TestClient(create_app(make_settings(tmp_path / "e", exact_dir))) as exact_client,
        TestClient(create_app(make_settings(tmp_path / "a", ann_dir))) as ann_client,
    ):
        assert ann_client.app.state.store.current.ann is not None  # type: ignore[attr-defined]
        assert exact_client.app.state.store.current.ann is None  # type: ignore[attr-defined]
        models = ann_client.get("/v1/models").json()
        summary = models["retrieval"]
        assert summary["kind"] == "hnsw" and summary["metrics"]["recall@10"] >= 0.95
        assert models["retrieval_served"] == "hnsw"
        overlaps = []
        for i in range(30):
            history = [f"item{j}" for j in rng.integers(0, 3000, 5)]
            body: dict[str, object] = {"history": history, "k": 10}
            if i % 3 == 1:
                body["filters"] = {"categories": ["cat3", "cat7"]}  # ~120 items: scored exactly
            elif i % 3 == 2:
                body["filters"] = {"exclude_items": [f"item{j}" for j in range(0, 3000, 2)]}  # odd items only
            got = ann_client.post("/v1/recommend", json=body).json()
            want = exact_client.post("/v1/recommend", json=body).json()
            ids = [item["item_id"] for item in got["items"]]
            assert len(ids) == 10 and not set(ids) & set(history)
            if i % 3 == 1:
                assert ids == [item["item_id"] for item in want["items"]]  # small eligible set: exact
            if i % 3 == 2:
                assert all(int(x[4:]) % 2 == 1 for x in ids)
            overlaps.append(len(set(ids) & {item["item_id"] for item in want["items"]}) / 10)
        assert np.mean(overlaps) >= 0.95


def test_retrieval_exact_setting_serves_the_top_k_graph_and_leaves_the_index_unloaded(
    tmp_path: Path, published_pair: tuple[Path, Path]
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.app.conftest import make_settings

    exact_dir, ann_dir = published_pair
    rng = np.random.default_rng(6)
    with (
        TestClient(create_app(make_settings(tmp_path / "e", exact_dir))) as exact_client,
        TestClient(create_app(make_settings(tmp_path / "f", ann_dir, retrieval="exact"))) as forced,
    ):
        assert forced.app.state.store.current.ann is None  # type: ignore[attr-defined]
        summary = forced.get("/v1/models").json()
        assert summary["retrieval"]["kind"] == "hnsw" and summary["retrieval_served"] == "exact"
        assert exact_client.get("/v1/models").json()["retrieval_served"] == "exact"
        for _ in range(10):
            body = {"history": [f"item{j}" for j in rng.integers(0, 3000, 5)], "k": 10}
            got = forced.post("/v1/recommend", json=body).json()["items"]
            assert got == exact_client.post("/v1/recommend", json=body).json()["items"]
