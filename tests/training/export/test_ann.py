"""training/export/ann.py: exact reference, recall, and the build -> tune -> measure -> write step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

faiss = pytest.importorskip("faiss", reason="faiss-cpu (the ann extra) is not installed")

from core.topk import exact_topk, recall_at_k  # noqa: E402
from training.export.ann import (  # noqa: E402
    INDEX_FILE,
    AnnError,
    build_index,
    build_retrieval,
    mips_items,
    mips_queries,
    search_labels,
    tune_breadth,
)


def clustered(n_items: int, dim: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Items around 20 centres, queries near random centres: the shape of real two-tower vectors."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim)).astype(np.float32)
    items = centres[rng.integers(0, 20, n_items)] + 0.5 * rng.normal(size=(n_items, dim)).astype(np.float32)
    queries = centres[rng.integers(0, 20, n_queries)] + 0.5 * rng.normal(size=(n_queries, dim)).astype(
        np.float32
    )
    return items.astype(np.float32), queries.astype(np.float32)


@pytest.mark.parametrize("kind, breadth_key", [("hnsw", "ef_search"), ("ivf", "nprobe")])
def test_build_retrieval_meets_recall_and_writes_a_loadable_index(
    tmp_path: Path, kind: str, breadth_key: str
) -> None:
    items, queries = clustered(4000, 16, 1300, seed=1)
    retrieval = build_retrieval(
        tmp_path,
        items,
        queries[:1000],
        queries[1000:],
        kind=kind,
        hnsw_m=16,
        ef_construction=64,
        latency_queries=20,
    )
    assert retrieval.kind == kind and retrieval.index_file == INDEX_FILE
    assert retrieval.metrics["recall@10"] >= 0.95
    assert retrieval.metrics["recall_users"] == 1000
    assert {"exact_p50_ms", "ann_p50_ms", "exact_p99_ms", "ann_p99_ms", "build_seconds"} <= set(
        retrieval.metrics
    )
    assert retrieval.params[breadth_key] >= 1 and retrieval.params["n_items"] == 4000
    index = faiss.read_index(str(tmp_path / INDEX_FILE))
    assert index.ntotal == 4000
    if kind == "hnsw":  # HNSW on raw inner products: no transform recorded, none for the service to apply
        assert (index.d, index.metric_type) == (16, faiss.METRIC_INNER_PRODUCT)
        assert "transform" not in retrieval.params
    else:  # IVF over the MIPS -> L2 reduction: one extra coordinate, L2 metric, recorded in params
        assert (index.d, index.metric_type, retrieval.params["transform"]) == (
            17,
            faiss.METRIC_L2,
            "mips_to_l2",
        )
    # The recorded breadth reproduces the recorded recall on the same users.
    if kind == "hnsw":
        index.hnsw.efSearch = retrieval.params["ef_search"]
    else:
        index.nprobe = retrieval.params["nprobe"]
    _, exact = exact_topk(queries[:1000], items, 10)
    labels = search_labels(index, kind, queries[:1000], 10)  # type: ignore[arg-type]
    assert recall_at_k(labels, exact) == pytest.approx(retrieval.metrics["recall@10"])


@pytest.mark.parametrize("kind, space, want", [("hnsw", "mips_to_l2", 17), ("ivf", "inner_product", 16)])
def test_the_space_can_be_chosen_against_the_kinds_default(
    tmp_path: Path, kind: str, space: str, want: int
) -> None:
    items, queries = clustered(3000, 16, 1200, seed=4)
    retrieval = build_retrieval(
        tmp_path,
        items,
        queries[:1000],
        queries[1000:],
        kind=kind,
        space=space,
        latency_queries=5,  # type: ignore[arg-type]
    )
    index = faiss.read_index(str(tmp_path / INDEX_FILE))
    assert index.d == want and ("transform" in retrieval.params) == (space == "mips_to_l2")
    with pytest.raises(AnnError, match="unknown ANN space 'cosine'"):
        build_index(items, kind, space="cosine")  # type: ignore[arg-type]


def test_tuning_aims_at_the_target_and_settles_for_the_widest_rung_above_the_gate() -> None:
    items, queries = clustered(2000, 8, 200, seed=6)
    index = build_index(items, "ivf", ivf_nlist=8)
    _, exact = exact_topk(queries, items, 10)
    # nprobe = nlist scans every list: recall exactly 1.0, so a target of 1.0 is met there at the latest
    breadth, recall = tune_breadth(index, "ivf", queries, exact, 0.5, ladder=(1, 2, 4, 8), target=1.0)
    assert recall == 1.0 and breadth in (1, 2, 4, 8)
    for smaller in (b for b in (1, 2, 4) if b < breadth):
        index.nprobe = smaller
        assert recall_at_k(search_labels(index, "ivf", queries, 10), exact) < 1.0
    # target out of reach on a one-rung ladder: that rung, left set on the index, as it passes the gate
    breadth, recall = tune_breadth(index, "ivf", queries, exact, 0.1, ladder=(1,), target=1.0)
    assert breadth == 1 and index.nprobe == 1 and 0.1 <= recall < 1.0
    with pytest.raises(AnnError, match=r"below 1.0; raise"):
        tune_breadth(index, "ivf", queries, exact, 1.0, ladder=(1,))


def test_mips_reduction_hand_computed() -> None:
    items = np.array([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)  # |x|² = 9, 1, 2; max 9
    aug = mips_items(items)
    np.testing.assert_allclose(aug[:, 2], [0.0, np.sqrt(8.0), np.sqrt(7.0)], rtol=1e-6)
    q = mips_queries(np.array([[1.0, 0.0]], np.float32))
    assert q.tolist() == [[1.0, 0.0, 0.0]]
    l2 = ((aug - q) ** 2).sum(axis=1)  # = |q|² + 9 - 2 q·x = 1 + 9 - 2 * (3, 0, 1)
    np.testing.assert_allclose(l2, [4.0, 10.0, 8.0], rtol=1e-6)


def test_hnsw_with_a_wide_search_finds_the_exact_top_k() -> None:
    items, queries = clustered(500, 8, 20, seed=2)
    index = build_index(items, "hnsw", hnsw_m=16, ef_construction=100)
    index.hnsw.efSearch = 500
    _, exact = exact_topk(queries, items, 10)
    assert recall_at_k(search_labels(index, "hnsw", queries, 10), exact) == 1.0


def test_ivf_probing_every_list_finds_the_exact_top_k_and_the_service_loads_it(tmp_path: Path) -> None:
    from app.engine.ann import load_ann
    from core.manifest import Manifest, Retrieval

    items, queries = clustered(500, 8, 20, seed=2)
    items *= np.random.default_rng(5).lognormal(0.0, 0.5, (500, 1)).astype(np.float32)  # norm spread
    index = build_index(items, "ivf", ivf_nlist=8)
    index.nprobe = 8
    _, exact = exact_topk(queries, items, 10)
    assert recall_at_k(search_labels(index, "ivf", queries, 10), exact) == 1.0
    faiss.write_index(index, str(tmp_path / INDEX_FILE))
    r = Retrieval(kind="ivf", index_file=INDEX_FILE, params={"nprobe": 8, "transform": "mips_to_l2"})
    ann = load_ann(tmp_path, Manifest.model_construct(retrieval=r), items)
    assert ann is not None and ann.augment
    found = ann.search(queries, [10] * 20, [np.zeros(0, np.int64)] * 20, [None] * 20)
    assert [f[0].tolist() for f in found] == exact.tolist()


def test_a_fixed_breadth_below_the_recall_target_refuses_to_publish(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    items = rng.normal(size=(20_000, 32)).astype(np.float32)  # unclustered: hard for a thin graph
    queries = rng.normal(size=(200, 32)).astype(np.float32)
    with pytest.raises(AnnError, match=r"recall@10 0\.\d+ on 200 users is below 0.99"):
        build_retrieval(
            tmp_path,
            items,
            queries,
            queries,
            kind="hnsw",
            hnsw_m=4,
            ef_construction=8,
            ef_search=10,
            min_recall=0.99,
        )
    assert not (tmp_path / INDEX_FILE).exists()


def test_unknown_kind_and_empty_catalogue_are_refused() -> None:
    with pytest.raises(AnnError, match="unknown ANN kind 'lsh'"):
        build_index(np.ones((4, 2), np.float32), "lsh")  # type: ignore[arg-type]
    with pytest.raises(AnnError, match="empty catalogue"):
        build_index(np.zeros((0, 2), np.float32), "hnsw")


def test_pipeline_publishes_a_verified_index_the_service_loads(tmp_path: Path) -> None:
    from app.engine.loading import load_version
    from core.manifest import load_manifest, verify_files
    from training.config_file import load_config
    from training.pipeline import run_pipeline

    tiny = Path(__file__).resolve().parents[3] / "configs" / "tiny.toml"
    cfg = load_config(
        tiny,
        [
            f"models_dir={tmp_path / 'models'}",
            f"work_dir={tmp_path / 'work'}",
            "export.retrieval=hnsw",
            "export.hnsw_m=16",
            "export.ef_construction=64",
            "distill.train_scratch=false",
        ],
    )
    result = run_pipeline(cfg, progress=False)
    manifest = load_manifest(result.version_dir)
    verify_files(result.version_dir, manifest)  # the index is listed with its sha256
    r = manifest.retrieval
    assert r.kind == "hnsw" and r.index_file == INDEX_FILE and INDEX_FILE in manifest.files
    assert r.metrics["recall@10"] >= 0.95 and r.metrics["recall_users"] == 1000
    assert "transform" not in r.params and r.params["ef_search"] >= 10  # hnsw: raw inner products
    model = load_version(result.version_dir)
    assert model.ann is not None and model.ann.breadth == r.params["ef_search"]
