"""Reduced-precision item matrices in the student's topk graph (export.item_precision: a smaller, faster matrix at catalogue scale).

Hand-made cases: a student whose scores are known exactly (large margins, so float16 and int8 must
return the float32 top-k), stand-in students for sizes and parity, and graphs broken on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from core.manifest import HISTORY_INPUT, INDICES_OUTPUT, K_INPUT, SCORES_OUTPUT, ModelCard
from tests.fixtures.export_stubs import StubStudent, StubTeacher
from training.config import ConfigError
from training.config_file import load_config
from training.data.types import Split
from training.evaluate.report import render_markdown, write_report
from training.export import graphs, item_precision, parity, version
from training.export.item_precision import precision_report

REDUCED = ("float16", "int8")


class HandStudent(nn.Module):
    """24 items in 8 dimensions, item i = (1 + i // 8) * e_(i % 8); the user vector is the mean of
    the history's item vectors. A history holding only item j < 8 scores items 16+j, 8+j, j at
    3, 2, 1 and every other item at 0: the top-3 is [16+j, 8+j, j] with margins of 1."""

    n_items, history_len, padding_value, dim = 24, 4, 24, 8

    def __init__(self) -> None:
        super().__init__()
        items = torch.zeros(self.n_items, self.dim)
        for i in range(self.n_items):
            items[i, i % self.dim] = 1.0 + i // self.dim
        self.items = nn.Parameter(items)
        self.emb = nn.Embedding.from_pretrained(torch.cat([items, torch.zeros(1, self.dim)]), freeze=True)

    def user_vectors(self, history: torch.Tensor) -> torch.Tensor:
        keep = (history != self.padding_value).float().unsqueeze(-1)  # (B, L, 1)
        return (self.emb(history) * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (B, d)

    forward = user_vectors

    def item_vectors(self) -> torch.Tensor:
        return self.items


def _one_item_histories(model: HandStudent) -> np.ndarray:
    hist = np.full((model.dim, model.history_len), model.padding_value, np.int64)
    hist[:, -1] = np.arange(model.dim)  # row j: item j alone
    return hist


def _export(model: nn.Module, tmp_path: Path, precision: str) -> ModelCard:
    out = tmp_path / precision
    out.mkdir()
    return version.export_side(model.eval(), "student", out, opset=17, parameters=1, item_precision=precision)  # type: ignore[arg-type]


@pytest.mark.parametrize("precision", ["float32", *REDUCED])
def test_reduced_graphs_keep_the_interface_and_the_top_k_where_margins_are_large(
    tmp_path: Path, precision: str
) -> None:
    model = HandStudent()
    card = _export(model, tmp_path, precision)
    assert card.item_precision == precision
    sess = ort.InferenceSession(
        str(tmp_path / precision / card.topk.file), providers=["CPUExecutionProvider"]
    )
    assert [(i.name, i.type) for i in sess.get_inputs()] == [
        (HISTORY_INPUT, "tensor(int64)"),
        (K_INPUT, "tensor(int64)"),
    ]
    assert [(o.name, o.type) for o in sess.get_outputs()] == [
        (SCORES_OUTPUT, "tensor(float)"),
        (INDICES_OUTPUT, "tensor(int64)"),
    ]
    scores, idx = sess.run(
        None, {HISTORY_INPUT: _one_item_histories(model), K_INPUT: np.array([3], np.int64)}
    )
    j = np.arange(model.dim)
    np.testing.assert_array_equal(idx, np.stack([16 + j, 8 + j, j], axis=1))
    np.testing.assert_allclose(scores, np.tile([3.0, 2.0, 1.0], (model.dim, 1)), atol=0.05)


def test_the_item_matrix_and_the_file_shrink_by_the_precision(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = StubStudent(n_items=2000, dim=16)
    sizes, matrix = {}, {}
    for precision in ("float32", *REDUCED):
        card = _export(model, tmp_path, precision)
        path = tmp_path / precision / card.topk.file
        sizes[precision] = path.stat().st_size
        graph = onnx.load(str(path))
        matrix[precision] = graphs.item_matrix_bytes(graph)
        np.testing.assert_array_equal(  # the .npy stays float32 for the service's filtered path
            np.load(tmp_path / precision / card.item_vectors), model.item_vectors().detach().numpy()
        )
    # float32 4 B/value; float16 2 B; int8: 16 one-byte codes + one float32 scale per item
    assert matrix == {"float32": 2000 * 16 * 4, "float16": 2000 * 16 * 2, "int8": 2000 * (16 + 4)}
    assert sizes["float32"] - sizes["float16"] >= 60_000 and sizes["float16"] - sizes["int8"] >= 20_000


def test_float32_export_is_the_plain_float32_graph(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = StubStudent()
    card = _export(model, tmp_path, "float32")
    plain = tmp_path / "plain.onnx"
    graphs.build_topk_graph(tmp_path / "float32" / card.user.file, graphs.item_matrix(model), plain)
    assert (tmp_path / "float32" / card.topk.file).read_bytes() == plain.read_bytes()


def test_int8_quantizes_only_the_scoring_matmul_with_one_scale_per_item(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = StubStudent(n_items=50, dim=8)
    card = _export(model, tmp_path, "int8")
    graph = onnx.load(str(tmp_path / "int8" / card.topk.file)).graph
    (node,) = [n for n in graph.node if n.op_type == "MatMulNBits"]
    attrs = {a.name: a.i for a in node.attribute}
    assert attrs["bits"] == 8 and attrs["block_size"] == 16 and attrs["K"] == 8 and attrs["N"] == 50
    assert attrs["accuracy_level"] == 4
    scales = next(numpy_helper.to_array(t) for t in graph.initializer if t.name == node.input[2])
    assert scales.shape == (50, 1)  # dim 8 fits one 16-wide block: one scale per item
    # the query tower is untouched float32
    assert {t.data_type for t in graph.initializer if graphs.MATRIX_NAME not in t.name} == {
        onnx.TensorProto.FLOAT
    }


def test_int8_scores_do_not_depend_on_the_rest_of_the_batch(tmp_path: Path) -> None:
    """The service micro-batches requests: a user's list must not change with its neighbours (the
    reason for MatMulNBits over quantize_dynamic, which scales the whole batch at once)."""
    torch.manual_seed(0)
    model = StubStudent(n_items=300, dim=16)
    card = _export(model, tmp_path, "int8")
    sess = ort.InferenceSession(str(tmp_path / "int8" / card.topk.file), providers=["CPUExecutionProvider"])
    hist = np.random.default_rng(0).integers(0, 300, size=(6, 6)).astype(np.int64)
    hist[0] = 0  # one row with a much larger vector than the others
    k = np.array([10], np.int64)
    batch_scores, batch_idx = sess.run(None, {HISTORY_INPUT: hist, K_INPUT: k})
    for row in range(len(hist)):
        scores, idx = sess.run(None, {HISTORY_INPUT: hist[row : row + 1], K_INPUT: k})
        np.testing.assert_array_equal(idx[0], batch_idx[row])
        # float32 rounding of GEMV vs GEMM only (quantize_dynamic's graph changed 3 of these 6 top-10s)
        np.testing.assert_allclose(scores[0], batch_scores[row], rtol=0, atol=1e-5)


def test_the_teacher_stays_float32_and_float16_refuses_values_it_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="teacher side is always float32"):
        version.export_side(StubTeacher().eval(), "teacher", tmp_path, 17, 1, item_precision="int8")
    torch.manual_seed(0)
    huge = StubStudent()
    with torch.no_grad():
        huge.items.mul_(1e5)
    with pytest.raises(graphs.ParityError, match="beyond float16's range"):
        _export(huge, tmp_path, "float16")


def _parity_inputs(n_items: int) -> parity.ParityInputs:
    rng = np.random.default_rng(0)
    hist = rng.integers(0, n_items, size=(50, 6)).astype(np.int64)
    return parity.parity_inputs(hist, np.zeros(50, np.int64), 7, n_items, n_rows=400, seed=0)


@pytest.mark.parametrize("precision", REDUCED)
def test_reduced_parity_passes_within_the_bound_and_records_the_overlap(
    tmp_path: Path, precision: str
) -> None:
    torch.manual_seed(0)
    model = StubStudent(n_items=300, dim=16).eval()
    card = _export(model, tmp_path, precision)
    result = parity.check_parity(
        model, "student", card, tmp_path / precision, _parity_inputs(300), k=10, atol=1e-4, min_overlap=0.9
    )
    assert result["passed"] and result["item_precision"] == precision and result["mismatched_rows"] == 0
    assert 0.9 <= result["overlap@10"] <= 1.0 and result["rows"] == 400
    assert result["max_abs_user_vector_diff"] <= 1e-4  # the user graph is float32 either way


def _scale_initializer(path: Path, factor: np.ndarray | float) -> None:
    """Multiply the int8 graph's per-item scales by `factor`, in place."""
    model = onnx.load(str(path))
    (node,) = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    (init,) = [t for t in model.graph.initializer if t.name == node.input[2]]
    scaled = (numpy_helper.to_array(init) * factor).astype(np.float32)
    init.CopyFrom(numpy_helper.from_array(scaled, init.name))
    onnx.save(model, str(path))


def test_reduced_parity_refuses_wrong_scales_and_scrambled_rankings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = StubStudent(n_items=300, dim=16).eval()
    card = _export(model, tmp_path, "int8")
    topk = tmp_path / "int8" / card.topk.file
    inputs = _parity_inputs(300)
    # Every scale x1.5: the ranking is intact (overlap 1) but the scores leave the int8 bound.
    _scale_initializer(topk, 1.5)
    with pytest.raises(graphs.ParityError, match="rows outside the int8 error bound"):
        parity.check_parity(model, "student", card, tmp_path / "int8", inputs, k=10, atol=1e-4)
    # Random signs: a scrambled ranking, far below the overlap floor.
    _scale_initializer(topk, np.where(np.random.default_rng(0).random((300, 1)) < 0.5, -1 / 1.5, 1 / 1.5))
    with pytest.raises(graphs.ParityError, match=r"overlap with float32 0\.[0-8]"):
        parity.check_parity(
            model, "student", card, tmp_path / "int8", inputs, k=10, atol=1e-4, min_overlap=0.9
        )


def test_error_bound_on_a_worked_example() -> None:
    q = np.array([[1.0, -2.0]], np.float32)
    b = np.array([[[4.0, 1.0]]], np.float32)
    # float16: 2 * sum_j |a_j| (|b_j| 2^-11 + 2^-25) = 2 * (1 * 4 + 2 * 1) * 2^-11 + 2 * 3 * 2^-25
    assert item_precision.score_error_bound("float16", q, b)[0, 0] == pytest.approx(
        12 * 2.0**-11 + 6 * 2.0**-25
    )
    # int8: steps 2/127 (query) and 4/127 (item); 2 * (|a|_1 sb/2 + |b|_1 sa/2 + D sa sb/4)
    sa, sb = 2 / 127, 4 / 127
    expected = 2 * (3 * sb / 2 + 5 * sa / 2 + 2 * sa * sb / 4)
    assert item_precision.score_error_bound("int8", q, b)[0, 0] == pytest.approx(expected)


def test_config_accepts_the_three_precisions_and_names_a_bad_one() -> None:
    assert load_config(None).export.item_precision == "float32"
    for precision in ("float32", "float16", "int8"):
        assert load_config(None, [f"export.item_precision={precision}"]).export.item_precision == precision
    with pytest.raises(ConfigError, match="export.item_precision"):
        load_config(None, ["export.item_precision=int4"])
    for bad in ("0", "1.5"):
        with pytest.raises(ConfigError, match="export.min_precision_overlap"):
            load_config(None, [f"export.min_precision_overlap={bad}"])


def _split(n_items: int) -> Split:
    """6 users; user u trained on items [u, u+1, u+2], validation item u+3, test item u+4."""
    users = np.arange(6)
    train = np.concatenate([[u, u + 1, u + 2] for u in users])
    return Split(
        n_users=6,
        n_items=n_items,
        train_indptr=np.arange(0, 19, 3),
        train_items=train,
        train_timestamps=np.arange(len(train)),
        valid_users=users,
        valid_items=users + 3,
        test_users=users,
        test_items=users + 4,
    )


@pytest.mark.parametrize("precision", REDUCED)
def test_precision_report_compares_both_graphs_on_the_same_users(tmp_path: Path, precision: str) -> None:
    torch.manual_seed(0)
    model = StubStudent(n_items=30, dim=8)
    card = _export(model, tmp_path, precision)
    stage = tmp_path / precision
    section = precision_report(_split(30), stage, card, k=3, recall_k=5, batch_size=4, latency_calls=10)
    assert section["precision"] == precision and section["users"] == 6
    f32, reduced, delta = (section["test"][key] for key in ("float32", "reduced", "delta"))
    assert set(f32) == set(reduced) == {"hr@3", "ndcg@3", "recall@5", "mrr", "coverage@3", "users"}
    assert delta == pytest.approx({m: reduced[m] - f32[m] for m in f32 if m != "users"})
    assert 0.0 <= section["overlap@3"] <= 1.0
    per_item = {"float16": 8 * 2, "int8": 16 + 4}[precision]  # dim 8: int8 pads to one 16-wide block
    assert section["item_matrix_bytes"] == {"float32": 30 * 8 * 4, "reduced": 30 * per_item}
    float32_card = _export(model, tmp_path, "float32")  # what precision_report rebuilds to compare
    assert (
        section["topk_file_bytes"]["float32"]
        == (tmp_path / "float32" / float32_card.topk.file).stat().st_size
    )
    assert section["topk_file_bytes"]["reduced"] == (stage / card.topk.file).stat().st_size
    for name in ("float32", "reduced"):
        assert section["latency"][name]["calls"] == 6 and section["latency"][name]["median_ms"] > 0
    loaded = section["item_matrix_bytes_after_ort_load"]
    if precision == "float16":  # onnxruntime 1.32's CPU session folds the Cast: float32 in memory
        assert loaded["reduced"] == loaded["float32"] == 30 * 8 * 4
    else:
        assert loaded["reduced"] < loaded["float32"]

    files = write_report(stage, {"version": "v", "precision": section}, k=3, recall_k=5)
    assert "report.json" in files
    assert json.loads((stage / "report.json").read_text())["precision"]["precision"] == precision
    md = (stage / "report.md").read_text()
    assert f"## Reduced-precision item matrix: {precision} vs float32" in md
    assert "| ndcg@3 |" in md and "| overlap@3 with float32 |" in md and "latency, median ms (CPU)" in md
    assert ("keeps this float16 matrix as float32" in md) == (precision == "float16")


def test_markdown_reports_reduced_parity_beside_float32_parity() -> None:
    parity = {
        "student": {"passed": True, "rows": 10, "k": 10, "exact_topk_rows": 7, "max_abs_score_diff": 0.01,
                    "atol": 1e-4, "item_precision": "int8", "overlap@10": 0.98, "min_overlap": 0.9,
                    "mismatched_rows": 0},
        "teacher": {"passed": True, "rows": 10, "k": 10, "exact_topk_rows": 10, "max_abs_score_diff": 0.0,
                    "atol": 1e-4},
    }  # fmt: skip
    md = render_markdown({"parity": parity})
    assert "int8 item matrix: top-10 overlap with float32 0.9800 (minimum 0.9)" in md
    assert md.count("item matrix") == 1  # the teacher line has no precision note


def test_tiny_pipeline_publishes_an_int8_student_the_service_loads(tmp_path: Path) -> None:
    from app.engine.loading import load_version
    from training.pipeline import run_pipeline

    tiny = Path(__file__).resolve().parents[3] / "configs" / "tiny.toml"
    cfg = load_config(
        tiny,
        [
            f"models_dir={tmp_path / 'models'}",
            f"work_dir={tmp_path / 'work'}",
            "export.item_precision=int8",
            "distill.train_scratch=false",
        ],
    )
    result = run_pipeline(cfg, progress=False)
    assert result is not None
    manifest = result.manifest
    assert manifest.student.item_precision == "int8" and manifest.teacher.item_precision == "float32"
    assert manifest.parity["student"]["item_precision"] == "int8" and manifest.parity["student"]["passed"]
    section = manifest.metrics["precision"]
    assert section["precision"] == "int8" and section["users"] == manifest.metrics["test"]["student"]["users"]
    # the float32 ONNX graph ranks as the PyTorch student did, on the same users
    assert section["test"]["float32"]["ndcg@10"] == pytest.approx(
        manifest.metrics["test"]["student"]["ndcg@10"]
    )
    report = json.loads((result.version_dir / "report.json").read_text())
    assert report["precision"] == section
    model = load_version(result.version_dir)  # verified and probed as any version: no service change
    assert model.manifest.student.item_precision == "int8"
