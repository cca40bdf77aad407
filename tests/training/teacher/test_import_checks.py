"""What the import catches that publish and the soft-label cache would miss: a graph that runs at one
history length only, a digest blind to the adapter, a wrong id mapping, a pad index that is an item.

Each adapter is a tests.fixtures.adapters factory over the same SASRec checkpoint (conftest.py).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from recdistill.cli import main
from tests.fixtures import own_teacher
from tests.fixtures.adapters import baked_length
from tests.fixtures.imported_teacher import tiny_cfg
from training.export.graphs import ParityError
from training.export.parity import side_parity
from training.export.version import export_side
from training.student.labels import soft_labels
from training.teacher.imported import import_teacher
from training.teacher.module import module_teacher
from training.teacher.spec import TeacherImportError


def _import(capsys: pytest.CaptureFixture[str], sasrec: dict, factory: str) -> tuple[int, str, str]:
    """`recdistill teacher import python:tests.fixtures.<factory>` on the tiny shop: (rc, stdout, stderr)."""
    rc = main([
        "teacher", "import", f"python:tests.fixtures.{factory}", "--config", "configs/tiny.toml",
        "--set", f"teacher.factory_args={{path = '{sasrec['ckpt']}'}}",
        "--set", f"work_dir={sasrec['tmp'] / 'cli'}",
    ])  # fmt: skip
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_graph_with_the_length_baked_in_is_refused_naming_the_lengths(
    capsys: pytest.CaptureFixture[str], sasrec: dict
) -> None:
    """nn.MultiheadAttention's traced graph reshapes to the traced length (8, the fixture's history_len):
    refused at import, before anything trains, in one line naming the lengths that fail."""
    rc, out, err = _import(capsys, sasrec, "adapters:baked_length")
    assert rc == 2 and out == ""
    line = err.strip().splitlines()[-1]
    assert line.startswith("recdistill teacher import: error: python:tests.fixtures.adapters:baked_length: ")
    assert (
        "fails on histories of length 1-7 of 1 … 8 (works at 8). At length 1: the query graph fails" in line
    )
    assert "Reshape" in line and "left-pad the history to history_len inside query_vectors" in line
    assert "Traceback" not in err and "[E:onnxruntime" not in err


def test_an_onnx_graph_with_the_length_baked_in_is_refused_too(
    capsys: pytest.CaptureFixture[str], sasrec: dict, tmp_path: Path
) -> None:
    """The same attention handed over as ONNX (form 2): its graph is probed the same way."""
    spec = own_teacher.export_onnx(baked_length(str(sasrec["ckpt"])), tmp_path / "baked")
    rc = main(["teacher", "import", f"onnx:{spec}", "--config", "configs/tiny.toml",
               "--set", f"work_dir={tmp_path / 'work'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and f"error: {spec}: fails on histories of length 1-7 of 1 … 8 (works at 8)" in err
    assert "Traceback" not in err


def test_a_query_that_returns_every_position_says_so(
    capsys: pytest.CaptureFixture[str], sasrec: dict
) -> None:
    rc, _, err = _import(capsys, sasrec, "adapters:every_position")
    assert rc == 2 and err.strip().splitlines()[-1].endswith(
        "adapters:every_position: the query returns a sequence of 8 vectors per history (shape "
        "(16, 8, 16)); one vector per history expected (e.g. the last position's)"
    )


def test_publish_parity_on_a_baked_graph_is_one_line_never_a_traceback(tmp_path: Path, sasrec: dict) -> None:
    """Had such a teacher reached publish (the import bypassed), the half-length parity check says
    which graph fails on which shape: a TeacherImportError (exit 2) for an imported teacher."""
    cfg = tiny_cfg(tmp_path, "teacher.source=python:tests.fixtures.adapters:baked_length",
                   f"teacher.factory_args={{path = '{sasrec['ckpt']}'}}")  # fmt: skip
    teacher, _ = module_teacher("tests.fixtures.adapters:baked_length", sasrec["data"], cfg, {})
    card = export_side(teacher, "teacher", tmp_path, cfg.export.opset, teacher.n_parameters())
    with pytest.raises(TeacherImportError) as caught:
        side_parity(cfg, sasrec["split"], teacher, "teacher", card, tmp_path)
    message = str(caught.value)
    assert "teacher ONNX graph teacher_user.onnx fails on 100 histories of length 4: " in message
    assert "\n" not in message and "`recdistill teacher import` names the shapes that fail" in message
    # the same graph as one of ours: a ParityError (nothing published, exit 1), as one line too
    with pytest.raises(ParityError, match="fails on 100 histories of length 4: .*Reshape"):
        side_parity(tiny_cfg(tmp_path / "ours"), sasrec["split"], teacher, "teacher", card, tmp_path)


def _labels(sasrec: dict, factory: str, caplog: pytest.LogCaptureFixture) -> tuple:
    """(the imported source, its soft labels, (chunks computed, chunks from cache)) in one shared work_dir."""
    cfg = tiny_cfg(sasrec["tmp"] / "digest", f"teacher.source=python:tests.fixtures.{factory}",
                   f"teacher.factory_args={{path = '{sasrec['ckpt']}'}}")  # fmt: skip
    imported = import_teacher(cfg, sasrec["data"])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="training.student.soft_labels"):
        labels = soft_labels(cfg, imported.teacher, sasrec["split"], progress=False)
    (found,) = re.findall(r"(\d+) computed, (\d+) from cache", caplog.text)
    return imported.source, labels, tuple(map(int, found))


def test_adapter_code_or_item_ids_change_the_digest_and_recompute_the_soft_labels(
    sasrec: dict, caplog: pytest.LogCaptureFixture
) -> None:
    ours, labels, counts = _labels(sasrec, "own_teacher:load", caplog)
    assert counts[0] > 0 and counts[1] == 0
    again, _, counts = _labels(sasrec, "own_teacher:load", caplog)
    assert again.sha256 == ours.sha256 and counts == (0, counts[0] + counts[1])  # the same teacher: cached
    for factory in ("adapters:rescaled", "adapters:shuffled_ids"):
        other, other_labels, counts = _labels(sasrec, factory, caplog)
        # the same weight file (the old key) ...
        assert other.files["sasrec.pt"] == ours.files["sasrec.pt"]
        # ... yet another teacher: another digest, soft labels computed afresh and different
        assert other.sha256 != ours.sha256, factory
        assert counts[1] == 0 and counts[0] > 0, factory
        assert not np.allclose(other_labels.logits, labels.logits), factory
    # the manifest names the files relative to where the import ran, not by this machine's paths
    assert set(ours.files) == {"tests/fixtures/own_teacher.py", "sasrec.pt"}


def test_shuffled_item_ids_import_with_a_loud_warning_and_both_ndcg(
    capsys: pytest.CaptureFixture[str], sasrec: dict
) -> None:
    """item_ids reordered while the rows stay: every shape check passes, the sample's ranking does not."""
    rc, out, _ = _import(capsys, sasrec, "own_teacher:load")
    assert rc == 0 and out.startswith("teacher python:tests.fixtures.own_teacher:load: ok; sha256 ")
    good = re.search(r"sample of (\d+) validation users: NDCG@10 teacher ([\d.]+), popularity ([\d.]+)", out)
    assert good is not None and float(good[2]) > float(good[3]) and "WARNING" not in out
    assert "; clearly above (difference +" in out

    rc, out, _ = _import(capsys, sasrec, "adapters:shuffled_ids")
    assert rc == 0 and ": imported, but see the WARNING below; sha256 " in out.splitlines()[0]
    bad = re.search(r"sample of (\d+) validation users: NDCG@10 teacher ([\d.]+), popularity ([\d.]+)", out)
    assert bad is not None and bad[1] == good[1] and bad[3] == good[3]  # the same users, the same peer
    assert float(bad[2]) < float(bad[3]) < float(good[2])
    verdict = re.search(r"; NOT clearly above \(difference (-[\d.]+), standard error [\d.]+\)", out)
    shown = float(bad[2]) - float(bad[3])  # each figure rounded to 4 decimals
    assert verdict is not None and abs(float(verdict[1]) - shown) < 1.5e-4
    warning = out.strip().splitlines()[-1]
    assert warning.startswith(f"WARNING: the teacher is not clearly above popularity on {bad[1]} sampled")
    assert f"(NDCG@10 teacher {bad[2]}, popularity {bad[3]}, standard error" in warning
    assert "item_ids must name the item of each row" in warning


def test_a_pad_index_that_is_an_item_row_is_refused(capsys: pytest.CaptureFixture[str], sasrec: dict) -> None:
    rc, _, err = _import(capsys, sasrec, "adapters:pad_zero")
    line = err.strip().splitlines()[-1]
    assert (
        rc == 2
        and "adapters:pad_zero: padding_value 0 is a row of the item matrix (item id 'i0000119')" in line
    )
    assert "pad with an index that is no row, e.g. 120 (the number of items)" in line


def test_the_import_report_names_what_was_probed(capsys: pytest.CaptureFixture[str], sasrec: dict) -> None:
    """The screen a user reads before training: the query's inputs with the pad it was probed with
    (the fixture's 120 items, so pad 120), the id maps' coverage, the shapes, the files by relative name."""
    rc, out, _ = _import(capsys, sasrec, "own_teacher:load")
    lines = out.splitlines()
    assert rc == 0 and lines[1:3] == [
        "  query: history of 1 … 8 items, left-padded with 120 (no row); dim 16; 120 items; "
        "scores are dot products",
        "  items: 120 of 120 mapped, 0.00% of the interactions unmapped",
    ]
    shapes = re.fullmatch(
        r"  ONNX export: runs at history lengths 1-8, batch sizes 1 and 16; max \|user vector diff\| (\S+)",
        lines[3],
    )
    assert shapes is not None and float(shapes[1]) < 1e-4  # held to the module at every shape
    assert lines[-1] == "  files: tests/fixtures/own_teacher.py, sasrec.pt"
