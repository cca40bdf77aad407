"""`recdistill models ...`: list, show, diff, promote, pin, unpin, rollback on a tiny models folder;
bad input is one line on stderr and exit 2; the commands run with torch and training blocked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.stores.pins import PIN_FILE
from recdistill.cli import main
from tests.blocked_imports import run_cli_blocked
from tests.fixtures.tiny_model import build_tiny_version

METRICS = {
    "test": {"teacher": {"ndcg@10": 0.3125, "hr@10": 0.5}, "student": {"ndcg@10": 0.25, "hr@10": 0.45}},
    "agreement": {"student": {"overlap@10": 0.7, "rbo": 0.6}},
    "parameters": {"teacher": 1000, "student": 250},
}


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """v1 (older), then v2 (LATEST) with offline metrics; the settings of a one-replica service."""
    monkeypatch.setenv("RECDISTILL_HISTORY_DB", str(tmp_path / "state" / "history.sqlite3"))
    monkeypatch.delenv("RECDISTILL_HISTORY_BACKEND", raising=False)
    models = tmp_path / "models"
    build_tiny_version(models, "v1", created_at="2026-11-27T00:00:00Z")
    build_tiny_version(models, "v2", reverse=True, metrics=METRICS, created_at="2026-11-28T00:00:00Z")
    return models


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["models", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_metrics_sizes_latest_and_pin(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--models", str(models))
    assert code == 0
    v1, v2 = (line for line in out.splitlines() if line.split()[0] in ("v1", "v2"))
    assert v1.split()[:5] == ["v1", "2026-11-27T00:00:00+00:00", "tiny", "-", "-"] and "LATEST" not in v1
    assert v2.split()[3:5] == ["0.3125", "0.2500"] and "1,000/250" in v2 and v2.endswith("LATEST")
    assert run(capsys, "pin", "v1", "--models", str(models))[0] == 0
    code, out, _ = run(capsys, "list", "--models", str(models), "--json")
    rows = {r["version"]: r for r in json.loads(out)}
    assert rows["v1"]["pinned"] and rows["v2"]["latest"] and not rows["v2"]["pinned"]
    assert rows["v2"]["bytes"]["total"] > rows["v2"]["bytes"]["student"] > 0


def test_show_prints_the_manifest_summary(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "v2", "--models", str(models))
    body = json.loads(out)
    assert code == 0 and body["version"] == "v2" and body["dataset"]["n_items"] == 12
    assert body["parameters"] == {"teacher": 1000, "student": 250}
    assert body["metrics"]["test"]["student"]["ndcg@10"] == 0.25


def test_diff_puts_two_versions_side_by_side(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "diff", "v1", "v2", "--models", str(models))
    assert code == 0
    lines = {line.split()[0] + " " + line.split()[1]: line.split()[2:] for line in out.splitlines()[2:]}
    assert lines["test teacher.ndcg@10"] == ["-", "0.3125", "-"]  # v1 has no test metrics
    assert lines["parameters student"] == ["64", "250", "+186"]
    assert lines["agreement student.rbo"] == ["-", "0.6000", "-"]
    code, out, _ = run(capsys, "diff", "v2", "v2", "--models", str(models), "--json")
    assert json.loads(out)["test"]["student.hr@10"] == {"v2": 0.45, "delta": 0.0}


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
