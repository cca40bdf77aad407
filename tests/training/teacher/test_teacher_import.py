"""Imported teachers (training/teacher/imported.py): the same teacher as a PyTorch module and as ONNX
gives the same soft labels and the same student; tables and our own published versions import; a
bad teacher stops with one line naming the file, exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recdistill.cli import main
from tests.fixtures import own_teacher
from tests.fixtures.imported_teacher import tiny_cfg, write_tables
from training.evaluate.ranking import evaluate
from training.evaluate.scoring import student_score_fn, teacher_score_fn
from training.pipeline import load_data, run_pipeline
from training.student.distill import fit_student
from training.student.soft_labels import build_soft_labels
from training.teacher.imported import import_teacher


@pytest.fixture(scope="module")
def sasrec(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny shop, and a SASRec trained on its train split's raw ids, saved and exported to ONNX."""
    tmp = tmp_path_factory.mktemp("own")
    cfg = tiny_cfg(tmp)
    data, split = load_data(cfg)
    model = own_teacher.train_sasrec(
        data.user_ids[split.train_users], data.catalog.item_ids[split.train_items]
    )
    own_teacher.save(model, tmp / "sasrec.pt")
    spec = own_teacher.export_onnx(model, tmp / "onnx")
    return {"tmp": tmp, "data": data, "split": split, "ckpt": tmp / "sasrec.pt", "spec": spec}


def _cfg(s: dict, name: str, *sets: str):
    return tiny_cfg(s["tmp"] / name, *sets)


def _python(s: dict, name: str = "py"):
    return _cfg(
        s,
        name,
        "teacher.source=python:tests.fixtures.own_teacher:load",
        f"teacher.factory_args={{path = '{s['ckpt']}'}}",
    )


def _onnx(s: dict, name: str = "onnx"):
    return _cfg(s, name, f"teacher.source=onnx:{s['spec']}")


def test_python_and_onnx_imports_give_the_same_soft_labels_and_student(sasrec: dict) -> None:
    data, split = sasrec["data"], sasrec["split"]
    labels, students = [], []
    for cfg in (_python(sasrec), _onnx(sasrec)):
        imported = import_teacher(cfg, data)
        labels.append(
            build_soft_labels(
                imported.teacher, split, cfg, cfg.work_dir / "sl", imported.source.sha256, progress=False
            )
        )
        fit = fit_student(split, cfg, labels[-1], cfg.work_dir, progress=False)
        students.append(
            evaluate(
                student_score_fn(fit.model),
                split,
                "test",
                cfg.student.history_len,
                test_history="train+valid",
            )
        )
    a, b = labels
    assert a.teacher_key != b.teacher_key  # different files, different sources
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-4)
    same_rows = (a.candidates == b.candidates).all(axis=1).mean()
    assert same_rows >= 0.99  # the rest: near-ties swapped by float rounding
    # same seed, same soft labels to float tolerance: the two students are the same student
    assert abs(students[0]["ndcg@10"] - students[1]["ndcg@10"]) <= 0.01
    assert students[0]["ndcg@10"] > 0


def test_python_import_maps_ids_and_exports(sasrec: dict) -> None:
    """Data item index -> the module's own (reversed) row: the imported scores are the module's."""
    data = sasrec["data"]
    imported = import_teacher(_python(sasrec, "py2"), data)
    module = own_teacher.load(str(sasrec["ckpt"]))
    own_row = {item: r for r, item in enumerate(module.item_ids)}
    rows = np.array([own_row[i] for i in data.catalog.item_ids])
    hist = torch.tensor([[data.n_items] * 6 + [3, 7]])
    own_hist = torch.tensor([[module.padding_value] * 6 + [rows[3], rows[7]]])
    with torch.no_grad():
        ours = imported.teacher.query_vectors(None, hist) @ imported.teacher.item_vectors().T
        theirs = module.query_vectors(None, own_hist) @ module.item_vectors().T
    np.testing.assert_allclose(ours.numpy()[0], theirs.numpy()[0, rows], atol=1e-5)
    assert imported.source.report["export_check"]["max_abs_user_vector_diff"] < 1e-4
    assert imported.source.files == {
        str(sasrec["ckpt"].resolve()): imported.source.files[str(sasrec["ckpt"].resolve())]
    }


def test_tables_pipeline_publishes_the_source_and_a_lookup_teacher(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path)
    data, split = load_data(cfg)
    spec = write_tables(tmp_path / "tables", data, split, drop_users=10)
    cfg = tiny_cfg(tmp_path, f"teacher.source=tables:{spec}", "teacher.max_unmapped_share=0.1")
    result = run_pipeline(cfg, progress=False)
    assert result is not None
    m = result.manifest
    assert m.teacher_source is not None and m.teacher_source.kind == "tables"
    assert m.teacher_source.source == f"tables:{spec}" and len(m.teacher_source.sha256) == 64
    assert m.teacher_source.report["unknown_users"] == 10
    assert m.teacher.known_users == "teacher_known_users.npy" and m.teacher.oov_user == data.n_users
    known = np.load(result.version_dir / m.teacher.known_users)
    assert known.shape == (data.n_users,) and int((~known).sum()) == 10
    assert m.parity["teacher"]["passed"]
    # the published version imports back as an onnx teacher: the same lookup, the same unknown users
    again = import_teacher(tiny_cfg(tmp_path / "again", f"teacher.source=onnx:{result.version_dir}"), data)
    np.testing.assert_array_equal(again.teacher.known_users, known)
    users = np.arange(data.n_users)
    hist = np.full((data.n_users, 1), data.n_items, np.int64)
    first = import_teacher(cfg, data).teacher
    np.testing.assert_allclose(
        teacher_score_fn(again.teacher)(users, hist), teacher_score_fn(first)(users, hist), atol=1e-5
    )


def test_our_published_version_imports_as_is(tmp_path: Path) -> None:
    """A version recdistill published is an onnx teacher: the imported scores are our teacher's."""
    from training.teacher.two_tower import load_teacher

    cfg = tiny_cfg(tmp_path, "teacher.epochs=1", "student.epochs=1", "distill.train_scratch=false")
    result = run_pipeline(cfg, progress=False)
    assert result is not None
    data, split = load_data(cfg)
    ours = load_teacher(cfg.work_dir / "teacher.pt")
    imported = import_teacher(tiny_cfg(tmp_path / "again", f"teacher.source=onnx:{result.version_dir}"), data)
    users = split.test_users[:50]
    hist = np.full((50, ours.history_len), data.n_items, np.int64)
    hist[:, -1] = split.valid_items[:50]
    np.testing.assert_allclose(
        teacher_score_fn(imported.teacher)(users, hist), teacher_score_fn(ours)(users, hist), atol=1e-4
    )


# --- bad teachers: one line naming the file, exit 2 -------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], source: str, *sets: str) -> tuple[int, str]:
    argv = [
        "teacher",
        "import",
        source,
        "--config",
        "configs/tiny.toml",
        *(x for s in sets for x in ("--set", s)),
    ]
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err[-1] if err else ""


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tables")
    data, split = load_data(tiny_cfg(tmp))
    return write_tables(tmp, data, split)


def _variant(tables: Path, name: str, spec: str) -> Path:
    path = tables.parent / name
    path.write_text(spec)
    return path


def test_good_tables_import(capsys: pytest.CaptureFixture[str], tables: Path) -> None:
    assert main(["teacher", "import", f"tables:{tables}", "--config", "configs/tiny.toml"]) == 0
    assert "ok, sha256" in capsys.readouterr().out


def test_wrong_dims(capsys: pytest.CaptureFixture[str], tables: Path) -> None:
    np.save(tables.parent / "items_dim5.npy", np.zeros((120, 5), np.float32))
    spec = _variant(tables, "dims.toml", tables.read_text().replace('"items.npy"', '"items_dim5.npy"'))
    rc, line = _run(capsys, f"tables:{spec}")
    assert rc == 2 and "users.parquet: user vectors have dim 8, the item vectors (items_dim5.npy) 5" in line


def test_graph_output_dim_differs_from_item_matrix(capsys: pytest.CaptureFixture[str], sasrec: dict) -> None:
    folder = sasrec["spec"].parent
    np.save(folder / "items_dim4.npy", np.zeros((120, 4), np.float32))
    spec = folder / "dim4.toml"
    spec.write_text(sasrec["spec"].read_text().replace('"items.npy"', '"items_dim4.npy"'))
    rc, line = _run(capsys, f"onnx:{spec}")
    assert (
        rc == 2 and str(spec) in line and "outputs vectors of shape (16,), the item matrix has dim 4" in line
    )


def test_nan_rows(capsys: pytest.CaptureFixture[str], tables: Path) -> None:
    items = np.load(tables.parent / "items.npy")
    items[7, 2] = np.nan
    np.save(tables.parent / "items_nan.npy", items)
    spec = _variant(tables, "nan.toml", tables.read_text().replace('"items.npy"', '"items_nan.npy"'))
    rc, line = _run(capsys, f"tables:{spec}")
    assert rc == 2 and "items_nan.npy: 1 item rows hold NaN or Inf (first row 7" in line


def test_unknown_ids(capsys: pytest.CaptureFixture[str], tables: Path) -> None:
    ids = np.load(tables.parent / "item_ids.npy")
    ids[:12] = [f"other{i}" for i in range(12)]  # 10% of the catalogue renamed: those items have no row
    np.save(tables.parent / "item_ids_other.npy", ids)
    spec = _variant(tables, "ids.toml", tables.read_text().replace('"item_ids.npy"', '"item_ids_other.npy"'))
    rc, line = _run(capsys, f"tables:{spec}")
    assert rc == 2 and "items.npy:" in line and "name items with no row here (12 item ids" in line
    assert "teacher.max_unmapped_share is 0" in line
    assert _run(capsys, f"tables:{spec}", "teacher.max_unmapped_share=0.5")[0] == 0  # a share allowed


def test_missing_file(capsys: pytest.CaptureFixture[str], tables: Path) -> None:
    spec = _variant(tables, "missing.toml", tables.read_text().replace('"users.parquet"', '"gone.parquet"'))
    rc, line = _run(capsys, f"tables:{spec}")
    assert rc == 2 and line.endswith(f"{tables.parent / 'gone.parquet'}: no such file (named by {spec})")
    rc, line = _run(capsys, "onnx:/nowhere/teacher.toml")
    assert rc == 2 and line.endswith("/nowhere/teacher.toml: no such file")


def test_another_head_is_refused_with_why(capsys: pytest.CaptureFixture[str], tables: Path) -> None:
    spec = _variant(tables, "cosine.toml", tables.read_text().replace('score = "dot"', 'score = "cosine"'))
    rc, line = _run(capsys, f"tables:{spec}")
    assert rc == 2 and "score 'cosine': recdistill distils and serves dot-product teachers only" in line
