"""The benchmark's bookkeeping on hand-made numbers: aggregation, PASS/FAIL checks, the report files,
and reading a pipeline result. No training here (the peers are tested in test_peers.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.ml100k import Run, compute_checks, main, pipeline_runs, render_markdown, seed_config, summarize
from bench.report import aggregate, fmt_mean_std, markdown_table, mean_std, write_report
from training.config import PipelineConfig


def _runs(model: str, ndcgs: list[float], params: int, seconds: float = 1.0) -> list[Run]:
    return [Run(model, seed, {"ndcg@10": v, "users": 5.0}, params, seconds) for seed, v in enumerate(ndcgs)]


def test_mean_std_uses_the_sample_std() -> None:
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "values": [1.0, 2.0, 3.0]}
    assert mean_std([0.5]) == {"mean": 0.5, "std": 0.0, "values": [0.5]}
    with pytest.raises(ValueError, match="no values"):
        mean_std([])


def test_aggregate_refuses_runs_with_different_metrics() -> None:
    assert aggregate([{"a": 1.0}, {"a": 3.0}])["a"]["mean"] == 2.0
    with pytest.raises(ValueError, match="run 1 has metrics"):
        aggregate([{"a": 1.0}, {"b": 1.0}])


def test_formatting() -> None:
    assert fmt_mean_std(mean_std([0.1, 0.3])) == "0.2000 ± 0.1414"  # sqrt(0.02) = 0.14142
    assert fmt_mean_std(mean_std([0.1])) == "0.1000"
    assert markdown_table(["a", "b"], [[1, "x|y"]]) == "| a | b |\n| --- | --- |\n| 1 | x\\|y |"
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        markdown_table(["a", "b"], [[1]])


def _summary(teacher: list[float], student: list[float], scratch: list[float], als: list[float]) -> dict:
    runs = (
        _runs("teacher", teacher, 1_000_000)
        + _runs("student", student, 50_000)
        + _runs("scratch", scratch, 50_000)
        + _runs("ALS", als, 80_000)
    )
    return summarize(runs)


def test_checks_pass_on_numbers_that_meet_every_bar() -> None:
    # teacher mean 0.090 >= 1.10 x ALS 0.080 = 0.088; student 0.087 >= 0.95 x 0.090 = 0.0855;
    # student beats scratch in each seed; 1,000,000 / 50,000 = 20x.
    summary = _summary(
        [0.089, 0.090, 0.091], [0.086, 0.087, 0.088], [0.080, 0.081, 0.087], [0.079, 0.080, 0.081]
    )
    checks = compute_checks(summary, ["ALS", "BPR"])
    assert [c.status for c in checks] == ["PASS", "PASS", "PASS", "PASS"]
    assert "= 0.0880" in checks[0].detail and "20.0x" in checks[3].detail


def test_checks_fail_on_numbers_that_miss_each_bar() -> None:
    # teacher 0.087 < 1.10 x 0.080; student 0.082 < 0.95 x 0.087 = 0.08265; seed 2 scratch wins (tie counts as a loss).
    summary = _summary(
        [0.087, 0.087, 0.087], [0.082, 0.082, 0.082], [0.081, 0.081, 0.082], [0.080, 0.080, 0.080]
    )
    summary["student"]["n_parameters"] = 200_000  # 1,000,000 / 200,000 = 5x
    checks = compute_checks(summary, ["ALS"])
    assert [c.status for c in checks] == ["FAIL", "FAIL", "FAIL", "FAIL"]
    assert "seed 2: 0.0820 vs 0.0820" in checks[2].detail


def test_checks_are_not_applicable_without_the_pipeline() -> None:
    summary = summarize(_runs("ALS", [0.08], 10))
    assert [c.status for c in compute_checks(summary, ["ALS"])] == ["N/A"] * 4


def test_summarize_aggregates_per_model_over_seeds() -> None:
    summary = summarize(_runs("MF", [0.06, 0.08], 100, seconds=3.0))
    assert summary["MF"]["seeds"] == [0, 1]
    assert summary["MF"]["test"]["ndcg@10"]["mean"] == pytest.approx(0.07)
    assert "users" not in summary["MF"]["test"]
    assert summary["MF"]["n_parameters"] == 100 and summary["MF"]["train_seconds"]["mean"] == 3.0


def test_write_report_writes_json_and_markdown(tmp_path: Path) -> None:
    summary = _summary([0.09] * 2, [0.087] * 2, [0.08] * 2, [0.07] * 2)
    checks = compute_checks(summary, ["ALS"])
    md = render_markdown(
        summary, checks, {}, {"seeds": [0, 1], "seconds": 12.0, "n_items": 3, "n_eval_users": 5}
    )
    json_path, md_path = write_report(
        "demo", {"x": float("nan"), "checks": [c.status for c in checks]}, md, tmp_path
    )
    assert json.loads(json_path.read_text()) == {"x": None, "checks": ["PASS"] * 4}  # NaN is not JSON
    text = md_path.read_text()
    assert "| teacher | 0.0900 ± 0.0000 | 1,000,000 |" in text
    assert (
        "| student > scratch ndcg@10 in every seed | PASS | seed 0: 0.0870 vs 0.0800, seed 1: 0.0870 vs 0.0800 |"
        in text
    )
    with pytest.raises(ValueError, match="bad benchmark name"):
        write_report("../escape", {}, "", tmp_path)


def test_pipeline_runs_reads_the_pipeline_result() -> None:
    test = {
        m: {"ndcg@10": v, "hr@10": 2 * v} for m, v in (("teacher", 0.1), ("student", 0.09), ("scratch", 0.08))
    }
    manifest = SimpleNamespace(
        metrics={"parameters": {"teacher": 900, "student": 60, "scratch": 60}},
        teacher=SimpleNamespace(parameters=900),
        student=SimpleNamespace(parameters=60),
    )
    result = SimpleNamespace(
        metrics={"test": test, "valid": {"teacher": {"ndcg@10": 0.11}}},
        manifest=manifest,
        seconds={"teacher": 30.0, "student": 10.0, "scratch": 8.0, "soft_labels": 2.0},
    )
    runs = {r.model: r for r in pipeline_runs(result, seed=4)}
    assert runs["student"] == Run("student", 4, {"ndcg@10": 0.09, "hr@10": 0.18}, 60, 10.0, None)
    assert runs["teacher"].valid == {"ndcg@10": 0.11} and runs["teacher"].n_parameters == 900
    del test["scratch"]
    with pytest.raises(KeyError, match="no test metrics for 'scratch'"):
        pipeline_runs(result, seed=4)


def test_seed_config_never_publishes_into_models(tmp_path: Path) -> None:
    base = PipelineConfig()
    cfg = seed_config(base, 2, root=tmp_path)
    assert (cfg.seed, cfg.models_dir, cfg.work_dir) == (
        2,
        tmp_path / "seed2" / "models",
        tmp_path / "seed2" / "work",
    )
    assert base.seed == 0 and base.models_dir == Path("models")


def test_cli_peers_only_on_the_tiny_shop(tmp_path: Path) -> None:
    """The whole CLI path (config, data, quick grids, report) without the pipeline: checks are N/A, not PASS."""
    args = ["--config", "configs/tiny.toml", "--skip-pipeline", "--quick", "--seeds", "3"]
    code = main([*args, "--out", str(tmp_path)])
    assert code == 0
    payload = json.loads((tmp_path / "ml100k.json").read_text())
    assert set(payload["models"]) == {"ALS", "BPR", "MF"}
    assert payload["models"]["ALS"]["seeds"] == [3]
    assert [c["status"] for c in payload["checks"]] == ["N/A"] * 4
    assert "| ALS |" in (tmp_path / "ml100k.md").read_text()


def test_cli_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[teacher]\ndim = 'big'\n")
    assert main(["--config", str(bad), "--skip-pipeline", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "teacher.dim" in err
    assert main(["--config", str(tmp_path / "missing.toml"), "--out", str(tmp_path)]) == 2
    assert "missing.toml: no such config file" in capsys.readouterr().err


def test_run_all_finds_present_benchmarks_only() -> None:
    from bench import ml100k
    from bench.run_all import available

    assert available("bench.ml100k") is ml100k.main
    assert available("bench.no_such_benchmark") is None
