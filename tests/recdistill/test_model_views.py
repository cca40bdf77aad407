"""`recdistill models show` and `diff`: a one-screen summary and only what differs, as aligned text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recdistill.cli import main
from tests.fixtures.model_versions import METRICS, build_published_like, cells, size_kib
from tests.fixtures.tiny_model import build_tiny_version


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["models", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_is_a_one_screen_summary(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: `models show` printed ~300 lines of raw JSON, the ALS tuning trials among them."""
    folder = build_published_like(models, "v3")
    code, out, _ = run(capsys, "show", "v3", "--models", str(models))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) <= 40 and "0.0133" not in out  # one screen; no tuning trial listed
    assert lines[:7] == [
        "version    v3",
        "created    2026-12-07 01:46:39 UTC",
        "dataset    tiny: 6 users, 12 items, 15 interactions (fingerprint 000000000000)",
        "teacher    imported: onnx:mine/teacher.toml (sha256 ab4a535b8f64)",
        "towers     teacher dim 4, history 5; student dim 4, history 5",
        "protocol   leave-one-out, test query = train + valid items",
        "warning    the teacher's test ndcg@10 0.0128 is below the ALS peer's 0.0130",
    ]
    test = lines.index("test (1,500 users)")
    assert cells(lines[test + 1]) == ["model", "parameters", "size", "hr@10", "ndcg@10", "mrr"]
    assert [cells(line) for line in lines[test + 2 : test + 7]] == [
        ["teacher", "231,136", _side_kib(folder, "teacher"), "0.0213", "0.0128", "0.0130"],
        ["student", "97,362", _side_kib(folder, "student"), "0.0213", "0.0124", "0.0130"],
        ["scratch", "97,362", "-", "0.0213", "0.0102", "0.0130"],
        ["popularity", "-", "-", "0.0213", "0.0119", "0.0130"],
        ["als", "870,464", "-", "0.0213", "0.0118", "0.0130"],
    ]
    assert len({len(line) for line in lines[test + 1 : test + 7]}) == 1  # right-aligned: one width
    agreement = lines.index("agreement with the teacher")
    assert [cells(line) for line in lines[agreement + 1 : agreement + 4]] == [
        ["model", "overlap@10", "rbo"],
        ["student", "0.8563", "0.9038"],
        ["als", "0.0986", "0.0764"],
    ]
    assert lines[agreement + 5 :] == [
        "peers      als tuned on ndcg@10 over 12 trials: factors 64, regularization 10, alpha 10, iterations 15",
        "gates      passed",
        "           student_vs_scratch passed: student ndcg@10 0.0124 >= scratch 0.0102 - tolerance 3%",
        "           student_vs_popularity passed: student ndcg@10 0.0124 >= popularity 0.0119",
        "parity     student ok (1,000 rows, max |score diff| 4.8e-07), teacher ok (1,000 rows, max |score diff| 2.9e-06)",
        "retrieval  exact top-k (the ONNX graph)",
        f"files      {len(json.loads((folder / 'manifest.json').read_text())['files'])} files, {size_kib(models, 'v3')} in {folder}",
        "           report: report.md, metrics.png",
    ]
    code, out, _ = run(capsys, "show", "v2", "--models", str(models))
    assert out.splitlines()[0] == "version    v2  (LATEST)"


def _side_kib(folder: Path, side: str) -> str:
    files = json.loads((folder / "manifest.json").read_text())["files"]
    return f"{sum(files[f'{side}{part}']['bytes'] for part in ('.onnx', '_user.onnx', '_items.npy')) / 1024:.1f} KiB"


def test_show_json_is_the_raw_form(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_published_like(models, "v3")
    code, out, _ = run(capsys, "show", "v3", "--models", str(models), "--json")
    body = json.loads(out)
    assert code == 0 and body["version"] == "v3" and body["dataset"]["n_items"] == 12
    assert body["parameters"] == {"teacher": 231136, "student": 97362}
    assert len(body["metrics"]["peers"]["als"]["trials"]) == 12
    assert body["teacher_source"]["source"] == "onnx:mine/teacher.toml"
    assert body["created_at"] == "2026-12-07T01:46:39.733443+00:00"


def test_diff_of_identical_versions_says_identical(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: it printed 55 rows of "+0.0000", and counts as "users 19412.0000"."""
    code, out, _ = run(capsys, "diff", "v2", "v2", "--models", str(models))
    assert code == 0
    assert out.splitlines() == [
        "                                v2                   v2  delta",
        "created (UTC)  2026-11-28 00:00:00  2026-11-28 00:00:00",
        "dataset: the same data (fingerprint 000000000000)",
        "test metrics: identical (6 values)",
        "agreement with the teacher: identical (2 values)",
        "parameters: identical (2 values)",
        "size: identical (3 values)",
    ]


def test_diff_shows_only_what_differs_and_all_with_all(
    models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = json.loads(json.dumps(METRICS))
    metrics["test"]["student"]["ndcg@10"] = 0.2625
    build_tiny_version(models, "v3", reverse=True, metrics=metrics, created_at="2026-11-29T00:00:00Z")
    code, out, _ = run(capsys, "diff", "v2", "v3", "--models", str(models))
    assert code == 0
    assert out.splitlines()[2:] == [
        "dataset: the same data (fingerprint 000000000000)",
        "test metrics: 1 of 6 differ",
        "  student ndcg@10               0.2500               0.2625  +0.0125",  # under the 19-wide dates
        "agreement with the teacher: identical (2 values)",
        "parameters: identical (2 values)",
        "size: identical (3 values)",
    ]
    code, out, _ = run(capsys, "diff", "v2", "v3", "--models", str(models), "--all")
    lines = out.splitlines()
    assert len(lines) == 3 + 4 + 6 + 2 + 2 + 3  # header, dataset, 4 titles, then every row
    assert cells(lines[lines.index("test metrics: 1 of 6 differ") + 3]) == [
        "teacher users",
        "19,412",
        "19,412",
    ]
    code, out, _ = run(capsys, "diff", "v1", "v2", "--models", str(models))
    rows = {cells(line)[0]: cells(line)[1:] for line in out.splitlines()[1:] if line.startswith("  ")}
    assert rows["teacher ndcg@10"] == ["-", "0.3125", "-"]  # v1 has no test metrics
    assert rows["teacher users"] == ["-", "19,412", "-"]
    assert rows["student"] == ["64", "250", "+186"]  # parameters
    assert rows["student rbo"] == ["-", "0.6000", "-"]
    code, out, _ = run(capsys, "diff", "v2", "v2", "--models", str(models), "--json")
    assert json.loads(out)["test"]["student.hr@10"] == {"v2": 0.45, "delta": 0.0}
