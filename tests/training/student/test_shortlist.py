"""training/student/shortlist.py: the IVF shortlist of the teacher's top-M, exact when every cell is probed."""

import numpy as np
import pytest

from tests.fixtures.cycle import cycle_log, tiny_cfg
from training.config import DistillConfig
from training.data.split import leave_last_out
from training.student.shortlist import IvfShortlist, use_ivf
from training.student.soft_labels import build_soft_labels
from training.teacher.fit import fit_teacher

faiss = pytest.importorskip("faiss")


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(16, dim))
    x = centres[rng.integers(0, 16, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_ivf_shortlist_probing_every_cell_is_exact():
    items = clustered(3000, 8, 0)
    queries = clustered(50, 8, 1) * 5.0
    cfg = DistillConfig(shortlist="ivf", shortlist_nlist=20, shortlist_nprobe=20)
    index = IvfShortlist.build(items, cfg, seed=0, threads=1)
    scores, ids = index.top(queries, 30)
    exact = np.argsort(-(queries @ items.T), axis=1, kind="stable")[:, :30]
    np.testing.assert_array_equal(ids, exact)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ items.T, exact, 1), atol=1e-5)
    recall = index.measure_recall(queries, 30)
    assert recall["recall@30"] == 1.0 and recall["recall@10"] == 1.0 and recall["nprobe"] == 20.0


def test_ivf_shortlist_probing_few_cells_reports_its_recall():
    items = clustered(3000, 8, 0)
    queries = clustered(200, 8, 1) * 5.0
    index = IvfShortlist.build(
        items, DistillConfig(shortlist_nlist=40, shortlist_nprobe=1), seed=0, threads=1
    )
    _, ids = index.top(queries, 100)
    assert (ids >= 0).all()  # rows one cell cannot fill are scored exactly instead of padded with -1
    recall = index.measure_recall(queries, 100)["recall@100"]
    exact = np.argsort(-(queries @ items.T), axis=1)[:, :100]
    by_hand = np.mean([len(set(a) & set(e)) / 100 for a, e in zip(ids.tolist(), exact.tolist(), strict=True)])
    assert recall == pytest.approx(by_hand) and recall < 1.0


def test_use_ivf_decides_by_setting_and_catalog_size():
    assert use_ivf(DistillConfig(shortlist="ivf"), 10)
    assert not use_ivf(DistillConfig(shortlist="exact"), 10**7)
    assert not use_ivf(DistillConfig(shortlist_min_items=1000), 999)
    assert use_ivf(DistillConfig(shortlist_min_items=1000), 1000)


def test_soft_labels_from_an_exhaustive_shortlist_equal_exact_ones(tmp_path):
    log = cycle_log()
    split = leave_last_out(log)
    cfg = tiny_cfg()
    cfg.teacher.epochs = 1
    teacher = fit_teacher(split, log.catalog, cfg, tmp_path, progress=False).model
    exact = build_soft_labels(teacher, split, cfg, tmp_path / "exact", "e" * 64, progress=False)
    cfg.distill.shortlist = "ivf"
    cfg.distill.shortlist_nlist = 2
    cfg.distill.shortlist_nprobe = 2  # every cell: the shortlist is the catalog
    ivf = build_soft_labels(teacher, split, cfg, tmp_path / "ivf", "e" * 64, progress=False)
    assert exact.shortlist is None
    assert ivf.shortlist is not None and ivf.shortlist["recall@5"] == 1.0
    np.testing.assert_array_equal(ivf.candidates, exact.candidates)
    np.testing.assert_allclose(ivf.logits, exact.logits, rtol=0, atol=1e-5)
