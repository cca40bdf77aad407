"""bench/pipeline_scale.py on the tiny shop: it runs the real pipeline and reports what it published."""

import json
from pathlib import Path

from bench.pipeline_scale import main
from training.evaluate.peers import implicit_missing

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.toml"


def test_runs_the_pipeline_and_reports_the_published_version(tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    args = ["--config", str(TINY), "--models-dir", str(tmp_path / "models"), "--out-dir", str(out),
            "--set", f"work_dir={tmp_path / 'work'}", "--set", "eval.max_users=50", "--name", "tiny"]  # fmt: skip
    assert main(args) == 0
    payload = json.loads((out / "tiny.json").read_text())
    summary = payload["summary"]
    assert payload["wall_seconds"] > 0 and payload["peak_rss_mb"] > 0
    assert summary["dataset"]["n_items"] == 120 and summary["test_users"] == 50
    peers = {"popularity"} | ({"als"} if implicit_missing() is None else set())  # the report's peers
    assert set(summary["test"]) == {"teacher", "student", "scratch"} | peers
    assert summary["retrieval"]["kind"] == "exact" and summary["soft_label_shortlist"] is None
    assert summary["parity"]["student"]["passed"] and "student_topk.onnx" in summary["files_mb"]
    version = (tmp_path / "models" / "LATEST").read_text().strip()
    assert summary["version"] == version

    # --version-dir summarises without training: the same figures, no wall time
    assert (
        main(["--version-dir", str(tmp_path / "models" / version), "--out-dir", str(out), "--name", "again"])
        == 0
    )
    again = json.loads((out / "again.json").read_text())
    assert again["summary"]["test"] == summary["test"] and "wall_seconds" not in again
    md = (out / "again.md").read_text()
    assert "| teacher |" in md and "## Published retrieval" in md
