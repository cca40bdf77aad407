"""`recdistill models ...`: list, show, diff, promote, pin, unpin, rollback on a tiny models folder.

list prints aligned columns (show's and diff's text: test_model_views.py; `--json`: the raw form);
bad input is one line on stderr and exit 2; the commands run with torch and training blocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.stores.pins import PIN_FILE
from recdistill.cli import main
from tests.blocked_imports import run_cli_blocked
from tests.fixtures.model_versions import build_published_like, cells, size_kib
from tests.fixtures.tiny_model import build_tiny_version

ROOT = Path(__file__).resolve().parents[2]
LONG = "20261207T014618Z-4339d0fc"  # a pipeline's version name: 25 characters


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["models", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_aligns_its_columns_by_measured_widths(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: a 25-character version name and a microsecond created_at pushed every column out of
    line, and sizes were "MB 27.44" where the dashboard says "26.2 MiB"."""
    build_tiny_version(models, LONG, publish=False, created_at="2026-12-07T01:46:39.733443Z")
    assert run(capsys, "pin", "v1", "--models", str(models))[0] == 0
    code, out, err = run(capsys, "list", "--models", str(models))
    assert code == 0 and err == ""
    groups, header, *rows = out.splitlines()
    assert cells(header) == [
        "version",
        "created (UTC)",
        "dataset",
        "teacher",
        "student",
        "teacher",
        "student",
        "size",
        "state",
    ]
    assert cells(groups) == ["ndcg@10", "parameters"]
    expected = {
        "v1": ["v1", "2026-11-27 00:00:00", "tiny", "-", "-", "64", "64", size_kib(models, "v1"), "PINNED"],
        "v2": [
            "v2",
            "2026-11-28 00:00:00",
            "tiny",
            "0.3125",
            "0.2500",
            "1,000",
            "250",
            size_kib(models, "v2"),
            "LATEST",
        ],
        LONG: [LONG, "2026-12-07 01:46:39", "tiny", "-", "-", "64", "64", size_kib(models, LONG)],
    }
    assert [cells(r) for r in rows] == list(expected.values())  # oldest first
    # Every cell sits in its header's column: text starts where its header starts, numbers end where theirs ends.
    left = {0: "version", 1: "created (UTC)", 2: "dataset", 8: "state"}
    at, spans = 0, []
    for name in cells(header):
        start = header.index(name, at)
        spans.append((start, start + len(name)))
        at = start + len(name)
    for row in rows:
        for i, cell in enumerate(cells(row)):
            start, end = spans[i]
            if i in left:
                assert row[start : start + len(cell)] == cell, (row, cell)
            else:
                assert row[end - len(cell) : end] == cell and row[end : end + 1] in ("", " "), (row, cell)
    code, out, _ = run(capsys, "list", "--models", str(models), "--json")
    rows_json = {r["version"]: r for r in json.loads(out)}
    assert rows_json["v1"]["pinned"] and rows_json["v2"]["latest"] and not rows_json["v2"]["pinned"]
    assert rows_json["v2"]["bytes"]["total"] > rows_json["v2"]["bytes"]["student"] > 0
    assert rows_json[LONG]["created_at"] == "2026-12-07T01:46:39.733443+00:00"  # the raw form keeps it all


@pytest.mark.parametrize("argv", [["list"], ["show", "v1"], ["diff", "v1", "v2"], ["rollback"], ["unpin"]])
def test_a_models_folder_that_does_not_exist_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Regression: `models list` on a mistyped folder printed "no versions" and exited 0."""
    missing = tmp_path / "modles"
    code, out, err = run(capsys, *argv, "--models", str(missing))
    assert code == 2 and out == ""
    assert err == (
        f"recdistill models {argv[0]}: error: {missing}: no such folder "
        "(--models names the folder versions are published to)\n"
    )
    assert not missing.exists()


def test_an_empty_models_folder_lists_nothing_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "models").mkdir()
    code, out, _ = run(capsys, "list", "--models", str(tmp_path / "models"))
    assert (
        code == 0
        and out == f"no versions under {tmp_path / 'models'} (`recdistill pipeline` publishes one)\n"
    )


def test_output_cut_short_by_the_reader_is_not_an_error(models: Path, tmp_path: Path) -> None:
    """`recdistill models show V --json | head`: the reader closes the pipe; no traceback, no error line."""
    build_published_like(models, "big", trials=20_000)  # ~2 MB of JSON: more than a pipe holds
    env = {**os.environ, "RECDISTILL_HISTORY_DB": str(tmp_path / "state" / "h.sqlite3")}
    argv = [sys.executable, "-m", "recdistill", "models", "show", "big", "--json", "--models", str(models)]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "{\n"
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141
    assert proc.stderr.read() == ""


def test_promote_switches_latest_after_verifying(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "promote", "v1", "--models", str(models))
    assert code == 0 and out.strip() == "LATEST -> v1"
    assert (models / "LATEST").read_text().strip() == "v1"
    v3 = build_tiny_version(models, "v3", publish=False)
    (v3 / "student.onnx").write_bytes(b"not onnx")
    code, out, err = run(capsys, "promote", "v3", "--models", str(models))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "student.onnx" in err
    assert (models / "LATEST").read_text().strip() == "v1"  # untouched


def test_pin_unpin_and_rollback(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "rollback", "--models", str(models))  # LATEST = v2 -> pin v1
    assert code == 0 and out.startswith("pinned v1 (rolled back from v2")
    assert json.loads((models / PIN_FILE).read_text())["source"] == "rollback"
    code, _, err = run(capsys, "rollback", "--models", str(models))  # nothing before v1
    assert code == 2 and "no version was published before it" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "unpin", "--models", str(models))
    assert code == 0 and "was v1" in out and "LATEST = v2" in out and not (models / PIN_FILE).exists()
    code, out, _ = run(capsys, "pin", "v2", "--models", str(models))
    assert code == 0 and json.loads((models / PIN_FILE).read_text())["version"] == "v2"


@pytest.mark.parametrize(
    "argv, named",
    [
        (["show", "v9"], "v9"),
        (["diff", "v1", "nope"], "nope"),
        (["pin", "v9"], "v9"),
        (["promote", "../v1"], "../v1"),
        (["show", "broken"], "manifest.json"),
    ],
)
def test_bad_input_is_one_line_naming_it_exit_2(
    models: Path, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    (models / "broken").mkdir()
    (models / "broken" / "manifest.json").write_text('{"version": "broken"')
    code, _, err = run(capsys, *argv, "--models", str(models))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"recdistill models {argv[0]}: error: ") and named in line
    assert not (models / PIN_FILE).exists()


def test_a_corrupt_pin_is_one_line_exit_2(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (models / PIN_FILE).write_text("garbage")
    code, _, err = run(capsys, "list", "--models", str(models))
    assert code == 2 and "PINNED" in err and len(err.strip().splitlines()) == 1


def test_models_commands_run_without_training_or_torch(models: Path, tmp_path: Path) -> None:
    env = {"RECDISTILL_HISTORY_DB": str(tmp_path / "state" / "h.sqlite3")}
    proc = run_cli_blocked(["models", "rollback", "--models", str(models)], env=env)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli_blocked(["models", "list", "--models", str(models)], env=env)
    assert proc.returncode == 0 and "PINNED" in proc.stdout, proc.stderr


def test_a_mistyped_setting_is_one_warning_line_and_the_command_runs(models: Path, tmp_path: Path) -> None:
    env = {"RECDISTILL_HISTORY_DB": str(tmp_path / "state" / "h.sqlite3"), "RECDISTILL_SHADOWRATE": "0.5"}
    proc = run_cli_blocked(["models", "list", "--models", str(models)], env=env)
    assert proc.returncode == 0 and "LATEST" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if "SHADOWRATE" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith(
        "RECDISTILL_SHADOWRATE: not a setting, ignored (did you mean RECDISTILL_SHADOW_RATE?)"
    )
