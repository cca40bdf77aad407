"""training/fit/softmax.py at catalog scale: the full-softmax rule, the proposal, sparse id tables and
the sampled loss, each checked against its exact counterpart; and the teacher's subset item tower.
"""

import numpy as np
import pytest
import torch

from tests.fixtures.cycle import cycle_log, tiny_cfg
from tests.fixtures.hand_made import hand_made_log
from training.config import StudentConfig, TeacherConfig
from training.data.split import leave_last_out
from training.evaluate.ranking import evaluate
from training.fit.loop import make_optimizers
from training.fit.softmax import negative_proposal, sparse_tables, uses_full_softmax
from training.student.distill import fit_student
from training.student.soft_labels import build_soft_labels
from training.teacher.fit import fit_teacher
from training.teacher.two_tower import TwoTowerTeacher


def test_the_full_softmax_rule_is_the_same_for_the_teacher_and_the_student() -> None:
    for stage in (TeacherConfig(full_softmax_max_items=100), StudentConfig(full_softmax_max_items=100)):
        assert uses_full_softmax(stage, 100) and not uses_full_softmax(stage, 101)  # auto: up to the cap
        stage.loss = "full"
        assert uses_full_softmax(stage, 10**6)
        stage.loss = "sampled"
        assert not uses_full_softmax(stage, 1)
    assert uses_full_softmax(TeacherConfig(), 20_000) and not uses_full_softmax(TeacherConfig(), 20_001)
    assert uses_full_softmax(StudentConfig(), 100_000) and not uses_full_softmax(StudentConfig(), 100_001)


def test_the_negative_proposal_is_popularity_with_uniform_mass() -> None:
    # train items: u0 [0, 0, 1] (its last two rows are valid/test: 2, 3 leave), u1 [0, 1] -> train counts
    log = hand_made_log([0, 0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 2, 3, 0, 1, 2, 3], 2, 4)
    split = leave_last_out(log)
    assert split.item_popularity().tolist() == [3.0, 2.0, 0.0, 0.0]
    q = negative_proposal(split, smoothing=0.2)
    # 0.8 * count / 5 + 0.2 / 4
    torch.testing.assert_close(q, torch.tensor([0.53, 0.37, 0.05, 0.05]))
    assert float(q.sum()) == pytest.approx(1.0)


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
    assert [type(o).__name__ for o in opts] == ["AdamW", "LazyAdam"]  # SparseAdam's update, cheaper
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
