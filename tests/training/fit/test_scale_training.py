"""Catalog-scale training paths: subset item tower, sparse id tables, sampled student loss,
the IVF soft-label shortlist, and a test-user cap. Each is checked against its exact counterpart."""

import numpy as np
import pytest
import torch

from tests.training.student.test_distill import cycle_log, tiny_cfg
from training.config import DistillConfig, TeacherConfig
from training.data.split import leave_last_out
from training.evaluate.ranking import evaluate
from training.fit.loop import make_optimizers
from training.fit.softmax import sparse_tables
from training.student.distill import fit_student
from training.student.shortlist import IvfShortlist, use_ivf
from training.student.soft_labels import build_soft_labels
from training.teacher.fit import fit_teacher
from training.teacher.two_tower import TwoTowerTeacher

faiss = pytest.importorskip("faiss")


def small_teacher_model() -> TwoTowerTeacher:
    torch.manual_seed(0)
    cat = np.array([0, 1, 2, 0, 1, -1], np.int64)  # one unknown category
    price = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 6.0], np.float32)  # one unknown price
    return TwoTowerTeacher(3, cat, price, TeacherConfig(dim=8, n_heads=2, history_len=4)).eval()


def test_item_vectors_of_a_subset_equal_the_whole_catalogs_rows():
    model = small_teacher_model()
    ids = torch.tensor([[5, 0, 3], [2, 2, 1]])
    with torch.no_grad():
        whole = model.item_vectors()
        part = model.item_vectors_of(ids)
        pad = model.item_content_of(torch.tensor([model.padding_value]))
    torch.testing.assert_close(part, whole[ids], rtol=0, atol=1e-6)
    assert torch.count_nonzero(pad) == 0  # the pad id contributes nothing to a history


def test_sparse_tables_follow_the_loss_and_get_lazy_adam():
    model = small_teacher_model()
    cfg = TeacherConfig()  # sparse_embeddings None: on exactly when the loss is sampled
    assert sparse_tables(cfg, False, [model.item_emb]) is False and not model.item_emb.sparse
    assert sparse_tables(cfg, True, [model.item_emb, model.user_emb]) is True
    opts = make_optimizers(model, lr=0.1, weight_decay=0.0)
    assert [type(o).__name__ for o in opts] == ["AdamW", "SparseAdam"]
    assert {id(p) for p in opts[1].param_groups[0]["params"]} == {
        id(model.item_emb.weight),
        id(model.user_emb.weight),
    }
    forced = TeacherConfig(sparse_embeddings=False)
    assert sparse_tables(forced, True, [model.item_emb]) is False

    # one step on items 1 and 4: only those rows of the table move (lazy Adam), the rest stay put
    model.train()
    sparse_tables(cfg, True, [model.item_emb, model.user_emb])
    opts = make_optimizers(model, lr=0.1, weight_decay=0.0)
    before = model.item_emb.weight.detach().clone()
    loss = model.item_vectors_of(torch.tensor([1, 4])).sum()
    loss.backward()
    for opt in opts:
        opt.step()
    moved = (model.item_emb.weight.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert moved == [1, 4]


def test_sampled_losses_with_sparse_tables_still_learn_the_cycle(tmp_path):
    log = cycle_log()
    split = leave_last_out(log)
    cfg = tiny_cfg()
    cfg.teacher.loss = "sampled"
    cfg.teacher.n_negatives = 10
    cfg.student.loss = "sampled"
    cfg.student.n_negatives = 10
    pop = split.item_popularity()
    pop_ndcg = evaluate(lambda u, h: np.tile(pop, (len(u), 1)), split, "valid", 5)["ndcg@10"]
    teacher = fit_teacher(split, log.catalog, cfg, tmp_path, progress=False)
    assert teacher.model.item_emb.sparse
    assert teacher.valid_metrics["ndcg@10"] > pop_ndcg + 0.3
    soft = build_soft_labels(teacher.model, split, cfg, tmp_path / "soft", "s" * 64, progress=False)
    student = fit_student(split, cfg, soft, tmp_path, progress=False)
    assert student.model.item_emb.sparse
    assert student.valid_metrics["ndcg@10"] > pop_ndcg + 0.3


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
