"""bench.quality's bookkeeping on hand-made run records: the command it runs, reading a seed's folders
back (published, refused, failed), aggregation, every check at and around its threshold, and the
report files. No training: the one subprocess test runs a two-line Python script.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.quality import checks as qchecks
from bench.quality import render as qrender
from bench.quality import run as q
from bench.quality import runs as qruns
from core.manifest import (
    DatasetInfo,
    FileEntry,
    Manifest,
    ModelCard,
    OnnxGraph,
    TensorSpec,
    referenced_files,
)

TEST_KEYS = ("ndcg@10", "hr@10", "recall@50", "coverage@10")


def _row(ndcg: float, coverage: float = 0.3) -> dict[str, float]:
    return {
        "ndcg@10": ndcg,
        "hr@10": 2 * ndcg,
        "recall@50": 4 * ndcg,
        "coverage@10": coverage,
        "users": 100.0,
    }


def _test(teacher: float = 0.06, student: float = 0.058, scratch: float = 0.05, als: float = 0.04,
          cov_teacher: float = 0.4, cov_student: float = 0.3) -> dict[str, dict[str, float]]:  # fmt: skip
    return {
        "teacher": _row(teacher, cov_teacher),
        "student": _row(student, cov_student),
        "scratch": _row(scratch),
        "popularity": _row(0.005, 0.001),
        "als": _row(als),
    }


def _run(seed: int = 0, status: str = qruns.PUBLISHED, wall: float = 600.0, **test: float) -> qruns.SeedRun:
    return qruns.SeedRun(
        seed,
        status,
        returncode=0 if status == qruns.PUBLISHED else 3,
        wall_seconds=wall,
        test=qruns._numbers(_test(**test)),
        parameters={"teacher": 1_000_000, "student": 100_000, "scratch": 100_000}
        if status == qruns.PUBLISHED
        else {},
        seconds={"teacher": 300.0 + seed, "student": 100.0},
        test_history="train+valid",
        gates={"status": "passed" if status == qruns.PUBLISHED else "failed"},
    )


# --- the command ---------------------------------------------------------------------------------


def test_folder_command_points_the_shop_config_at_the_csvs_then_the_seed_then_the_user(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "amazon-beauty"
    folder.mkdir()
    (folder / "interactions.csv.gz").write_bytes(b"")
    (folder / "items.csv.gz").write_bytes(b"")
    ds = q.dataset_spec(str(folder))
    assert ds.name == "amazon-beauty" and ds.config == Path("configs/shop.toml") and not ds.fetch
    argv = q.pipeline_argv(ds, 2, Path("root"), ["teacher.epochs=1", "seed=9"])
    assert argv[:3] == [sys.executable, "-m", "recdistill.cli"]
    assert argv[3:6] == ["pipeline", "--config", "configs/shop.toml"]
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert sets == [
        "data.source=file",
        f"data.path={folder / 'interactions.csv.gz'}",
        f"data.items_path={folder / 'items.csv.gz'}",
        "seed=2",
        "models_dir=root/amazon-beauty/seed2/models",
        "work_dir=root/amazon-beauty/seed2/work",
        "teacher.epochs=1",
        "seed=9",  # the user's come last: the config loader applies them in order, last wins
    ]
    assert argv[-1] == "--no-progress"


def test_folder_without_items_and_ml100k(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    ds = q.dataset_spec(str(folder), Path("configs/tiny.toml"))
    assert ds.config == Path("configs/tiny.toml")
    assert not any("items_path" in s for s in ds.data_sets)
    ml = q.dataset_spec("ml-100k")
    assert (ml.name, ml.config, ml.data_sets, ml.fetch) == ("ml-100k", Path("configs/ml-100k.toml"), (), True)
    argv = q.pipeline_argv(ml, 0, Path("r"))
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--set"] == [
        "seed=0",
        "models_dir=r/ml-100k/seed0/models",
        "work_dir=r/ml-100k/seed0/work",
    ]
    assert q.fetch_argv()[3:] == ["data", "fetch", "ml-100k", "--cache-dir", "data/cache"]


def test_run_logged_records_exit_status_log_and_wall_time(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-c",
        "import sys; print('to stdout'); print('to stderr', file=sys.stderr); sys.exit(3)",
    ]
    record = q.run_logged(argv, tmp_path / "seed0")
    assert record["returncode"] == 3 and record["wall_seconds"] >= 0
    log = (tmp_path / "seed0" / "pipeline.log").read_text()
    assert "to stdout" in log and "to stderr" in log
    assert json.loads((tmp_path / "seed0" / "run.json").read_text())["command"].endswith("sys.exit(3)'")


def test_seeds_side_by_side_train_without_a_side_process_each(monkeypatch, tmp_path: Path) -> None:
    """Two seeds at once already fill two cores: each gets side_process=false before the user's sets
    (which still win); one seed at a time keeps the pipeline's side process."""
    argvs: list[list[str]] = []

    def run_logged(argv: list[str], folder: Path) -> dict[str, Any]:
        argvs.append(argv)
        return {"returncode": 0, "wall_seconds": 0.0}

    monkeypatch.setattr(q, "run_logged", run_logged)
    ds = q.Dataset("shop", Path("configs/shop.toml"), ())
    q.run_seeds(ds, [0, 1], tmp_path, 2, ["teacher.epochs=1"])
    for argv in argvs:
        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        assert sets[-2:] == ["side_process=false", "teacher.epochs=1"]
    argvs.clear()
    q.run_seeds(ds, [0, 1], tmp_path, 1, [])
    q.run_seeds(ds, [0], tmp_path, 2, [])
    assert len(argvs) == 3 and not any("side_process=false" in argv for argv in argvs)


# --- reading a seed back -------------------------------------------------------------------------


def _card(params: int) -> ModelCard:
    spec = TensorSpec(dtype="int64", shape=["batch"])
    graph = OnnxGraph(file="x.onnx", inputs={"history": spec}, outputs={"scores": spec})
    return ModelCard(topk=graph, user=graph, item_vectors="v.npy", dim=8, history_len=10, padding_value=5,
                     parameters=params)  # fmt: skip


def _publish(folder: Path, report: dict[str, Any], rc: int = 0, wall: float = 123.0) -> None:
    """A published version in folder/models as the pipeline leaves it (files not real: not verified)."""
    version_dir = folder / "models" / "v1"
    version_dir.mkdir(parents=True)
    manifest = Manifest(
        version="v1", created_at=datetime.now(UTC),
        dataset=DatasetInfo(name="shop", fingerprint="f", n_users=10, n_items=5, n_interactions=50),
        config={}, files={}, student=_card(100), teacher=_card(2000), metrics={"test": report["metrics"]["test"]},
    )  # fmt: skip
    manifest.files = {n: FileEntry(sha256="0" * 64, bytes=0) for n in referenced_files(manifest)}
    (version_dir / "manifest.json").write_text(manifest.model_dump_json())
    (version_dir / "report.json").write_text(json.dumps(report))
    (folder / "models" / "LATEST").write_text("v1\n")
    (folder / "run.json").write_text(json.dumps({"command": "cmd", "returncode": rc, "wall_seconds": wall}))


def test_read_published_seed(tmp_path: Path) -> None:
    report = {
        "metrics": {"test": _test()},
        "parameters": {"teacher": 2000, "student": 100, "scratch": 100},
        "seconds": {"data": 1.5, "teacher": 100.0},
        "test_history": "train+valid",
        "gates": {"status": "passed", "gates": []},
        "warnings": ["WARNING: x"],
        "peers_skipped": {},
    }
    _publish(tmp_path, report)
    run = qruns.read_seed(tmp_path, 4)
    assert (run.seed, run.status, run.version, run.wall_seconds) == (4, "published", "v1", 123.0)
    assert run.test["teacher"]["ndcg@10"] == 0.06 and "users" not in run.test["teacher"]
    assert run.parameters == {"teacher": 2000, "student": 100, "scratch": 100}
    assert run.seconds == {"data": 1.5, "teacher": 100.0}
    assert run.test_history == "train+valid" and run.warnings == ["WARNING: x"]
    assert run.dataset["n_users"] == 10


def test_read_refused_seed_keeps_its_figures(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    refused = {"test": _test(student=0.01), "test_history": "train+valid", "gates": {"status": "failed"},
               "warnings": []}  # fmt: skip
    (tmp_path / "work" / "refused.json").write_text(json.dumps(refused))
    (tmp_path / "run.json").write_text(json.dumps({"command": "c", "returncode": 3, "wall_seconds": 9.0}))
    run = qruns.read_seed(tmp_path, 1)
    assert run.status == "refused" and run.test["student"]["ndcg@10"] == 0.01
    assert run.parameters == {} and run.gates == {"status": "failed"} and run.has_figures


def test_epochs_run_and_best_come_from_the_work_records_and_are_drawn(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    curve = [{"epoch": e, "ndcg@10": v} for e, v in [(1, 0.01), (2, 0.03), (3, 0.02), (4, 0.025)]]
    (tmp_path / "work" / "student.json").write_text(json.dumps({"curve": curve}))
    (tmp_path / "work" / "teacher.json").write_text(json.dumps({"curve": []}))  # imported: no curve
    (tmp_path / "work" / "refused.json").write_text(json.dumps({"test": _test()}))  # not a record
    assert qruns.read_epochs(tmp_path / "work") == {"student": (4, 2)}
    run = _run(0)
    run.epochs = {"student": (4, 2)}
    _, (_, md_path, _) = qrender.write_outputs("amazon-beauty", [run], _meta(), tmp_path / "out")
    assert "| seed | student |\n| --- | --- |\n| 0 | 4 / 2 |" in md_path.read_text()


def test_each_students_popularity_penalty_comes_from_its_record_and_is_tabled(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    calibration = {"rule": "one-standard-error", "penalties": [0.0, 0.3], "chosen": 0.3}
    (tmp_path / "work" / "student.json").write_text(json.dumps({"curve": [], "calibration": calibration}))
    (tmp_path / "work" / "scratch.json").write_text(
        json.dumps({"curve": [], "calibration": calibration | {"chosen": 0.0}})
    )
    (tmp_path / "work" / "teacher.json").write_text(json.dumps({"curve": []}))  # never calibrated
    assert qruns.read_penalties(tmp_path / "work") == {"scratch": 0.0, "student": 0.3}
    run = _run(0)
    run.penalties = {"scratch": 0.0, "student": 0.3}
    _, (_, md_path, _) = qrender.write_outputs("amazon-beauty", [run], _meta(), tmp_path / "out")
    text = md_path.read_text()
    assert (
        "## Popularity penalty" in text
        and "| seed | scratch | student |\n| --- | --- | --- |\n| 0 | 0 | 0.3 |" in text
    )


def test_an_earlier_refusal_is_not_read_when_this_run_published(tmp_path: Path) -> None:
    _publish(tmp_path, {"metrics": {"test": _test()}, "test_history": "train+valid"})
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "refused.json").write_text(json.dumps({"test": _test(student=0.0)}))
    assert qruns.read_seed(tmp_path, 0).status == "published"


def test_read_failed_and_missing_seeds(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "run.json").write_text(
        json.dumps({"command": "c", "returncode": 2, "wall_seconds": 1.0})
    )
    (tmp_path / "a" / "pipeline.log").write_text("loading\nrecdistill pipeline: error: bad column\n")
    failed = qruns.read_seed(tmp_path / "a", 0)
    assert failed.status == "failed" and "bad column" in (failed.error or "") and not failed.has_figures
    assert qruns.read_seed(tmp_path / "nothing", 1).status == "missing"


# --- aggregation ---------------------------------------------------------------------------------


def test_models_are_aggregated_over_seeds_with_spread() -> None:
    runs = [_run(0, teacher=0.05), _run(1, teacher=0.07), _run(2, qruns.FAILED)]
    runs[2].test = {}
    models = qchecks.summarize_models(runs)
    assert list(models) == ["teacher", "student", "scratch", "popularity", "als"]
    ndcg = models["teacher"]["test"]["ndcg@10"]
    assert ndcg["mean"] == pytest.approx(0.06) and ndcg["std"] == pytest.approx(0.0141421356)
    assert (ndcg["min"], ndcg["max"]) == (0.05, 0.07) and models["teacher"]["seeds"] == [0, 1]
    assert set(models["teacher"]["test"]) == set(TEST_KEYS)


def test_refused_seeds_count_in_the_figures_but_not_in_parameters() -> None:
    runs = [_run(0, teacher=0.05), _run(1, qruns.REFUSED, teacher=0.09)]
    assert qchecks.summarize_models(runs)["teacher"]["test"]["ndcg@10"]["mean"] == pytest.approx(0.07)
    params = qchecks.summarize_parameters(runs)
    assert params["ratio_per_seed"] == {0: 10.0} and params["models"]["teacher"]["values"] == [1_000_000.0]
    seconds = qchecks.summarize_seconds(runs)
    assert seconds["stages"]["teacher"]["mean"] == pytest.approx(300.5) and seconds["wall"]["mean"] == 600.0


# --- checks at and around their thresholds ------------------------------------------------------


def test_teacher_target() -> None:
    assert qchecks.check_teacher_target([_run(teacher=0.048)], 0.048).status == "PASS"
    assert qchecks.check_teacher_target([_run(teacher=0.0479)], 0.048).status == "FAIL"
    assert qchecks.check_teacher_target([_run(teacher=0.5)], None).status == "N/A"
    by_name = {c.name: c.status for c in qchecks.compute_checks([_run(teacher=0.0479)], "amazon-beauty")}
    assert by_name["teacher ndcg@10 >= target 0.048"] == "FAIL"
    assert (
        qchecks.compute_checks([_run(teacher=0.0479)], "amazon-beauty", teacher_target=0.04)[0].status
        == "PASS"
    )
    assert qchecks.compute_checks([_run(teacher=0.0479)], "my-shop")[0].status == "N/A"
    assert qchecks.compute_checks([_run(teacher=0.10)], "ml-100k")[0].status == "PASS"


def test_teacher_vs_als_on_the_mean_with_each_seed_said() -> None:
    assert qchecks.check_teacher_vs_als([_run(teacher=0.048, als=0.04)]).status == "PASS"  # exactly 1.2x
    assert qchecks.check_teacher_vs_als([_run(teacher=0.0479, als=0.04)]).status == "FAIL"
    mixed = qchecks.check_teacher_vs_als([_run(0, teacher=0.06, als=0.04), _run(1, teacher=0.047, als=0.04)])
    assert mixed.status == "PASS"  # mean 0.0535 >= 0.048, though seed 1 alone is below
    assert "seed 0: 0.0600 vs 1.2 x 0.0400 = 0.0480 PASS" in mixed.detail
    assert "seed 1: 0.0470 vs 1.2 x 0.0400 = 0.0480 FAIL" in mixed.detail
    no_als = _run()
    del no_als.test["als"]
    assert qchecks.check_teacher_vs_als([no_als]).status == "N/A"


def test_student_vs_teacher() -> None:
    assert qchecks.check_student_vs_teacher([_run(teacher=0.06, student=0.057)]).status == "PASS"  # 95%
    assert qchecks.check_student_vs_teacher([_run(teacher=0.06, student=0.0569)]).status == "FAIL"


def test_parameter_ratio() -> None:
    run = _run()
    assert qchecks.check_parameter_ratio([run]).status == "PASS"  # exactly 10x
    run.parameters["student"] = 100_001
    assert qchecks.check_parameter_ratio([run]).status == "FAIL"
    assert qchecks.check_parameter_ratio([_run(status=qruns.REFUSED)]).status == "N/A"


def test_student_above_scratch_in_every_seed() -> None:
    assert qchecks.check_student_vs_scratch([_run(0, student=0.051, scratch=0.05)]).status == "PASS"
    tie = qchecks.check_student_vs_scratch(
        [_run(0, student=0.06, scratch=0.05), _run(1, student=0.05, scratch=0.05)]
    )
    assert tie.status == "FAIL" and tie.detail.startswith("1/2 seeds")  # strictly above, in every seed


def test_coverage() -> None:
    assert qchecks.check_coverage([_run(cov_teacher=0.4, cov_student=0.2)]).status == "PASS"  # exactly half
    assert qchecks.check_coverage([_run(cov_teacher=0.4, cov_student=0.1999)]).status == "FAIL"


def test_wall_time_is_required_on_beauty_only() -> None:
    limit = qchecks.MAX_WALL_MINUTES * 60
    assert qchecks.check_wall_time([_run(wall=limit)], "amazon-beauty").status == "PASS"
    assert (
        qchecks.check_wall_time([_run(0, wall=10.0), _run(1, wall=limit + 1)], "amazon-beauty").status
        == "FAIL"
    )
    other = qchecks.check_wall_time([_run(wall=limit + 1)], "amazon-sports")
    assert other.status == "N/A" and "30.0 min" in other.detail


def test_refused_seeds_fail_the_gate_check() -> None:
    ok = qchecks.check_not_refused([_run(0), _run(1)])
    assert ok.status == "PASS" and ok.detail == "0 of 2 refused"
    refused = qchecks.check_not_refused([_run(0), _run(1, qruns.REFUSED), _run(2, qruns.REFUSED)])
    assert refused.status == "FAIL" and refused.detail == "2 of 3 refused (seeds [1, 2])"
    overridden = _run(0)
    overridden.gates = {"status": "overridden"}
    assert qchecks.check_not_refused([overridden]).status == "FAIL"


def test_protocol_and_completion() -> None:
    train_only = _run(1)
    train_only.test_history = "train"
    assert qchecks.check_protocol([_run(0)]).status == "PASS"
    assert qchecks.check_protocol([_run(0), train_only]).status == "FAIL"
    failed = qruns.SeedRun(2, qruns.FAILED, 1, error="exit 1: boom")
    assert qchecks.check_completed([_run(0)]).status == "PASS"
    assert qchecks.check_completed([_run(0), failed]).status == "FAIL"


# --- the report ----------------------------------------------------------------------------------


def _meta() -> dict[str, Any]:
    return {"command": "python -m bench.quality --data x", "commands": ["python -m recdistill.cli pipeline ..."],
            "jobs": 2, "machine": qrender.machine_info()}  # fmt: skip


def test_markdown_states_the_protocol_and_the_table(tmp_path: Path) -> None:
    runs = [_run(0), _run(1, qruns.REFUSED, student=0.01)]
    payload, (json_path, md_path, png) = qrender.write_outputs("amazon-beauty", runs, _meta(), tmp_path)
    md = md_path.read_text()
    assert qchecks.PROTOCOL_LINE in md
    assert "| model | ndcg@10 | hr@10 | recall@50 | coverage@10 |" in md
    assert "| teacher | 0.0600 ± 0.0000 |" in md
    assert "| student | 0.0340 ± 0.0339 |" in md  # (0.058 + 0.01) / 2; sample std 0.03394
    assert "![NDCG@10 per model](quality_amazon-beauty.png)" in md and png.stat().st_size > 0
    assert "python -m recdistill.cli pipeline ..." in md
    saved = json.loads(json_path.read_text())
    assert saved["refused_seeds"] == [1] and saved["protocol"] == qchecks.PROTOCOL_LINE
    assert saved["reference"]["published_sasrec_ndcg@10"] == 0.0531
    status = {c["name"]: c["status"] for c in saved["checks"]}
    assert status["no seed refused by the publish gate"] == "FAIL"


def test_summarize_only_rebuilds_from_disk_without_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("--summarize-only must not run the pipeline")

    monkeypatch.setattr(q, "run_seeds", no_training)
    root, out = tmp_path / "runs", tmp_path / "out"
    for seed in (0, 2):
        report = {"metrics": {"test": _test(teacher=0.05 + seed / 100)}, "test_history": "train+valid",
                  "parameters": {"teacher": 2000, "student": 100}, "seconds": {"teacher": 1.0}}  # fmt: skip
        _publish(qruns.seed_dir(root, "amazon-sports", seed), report)
    rc = q.main(
        [
            "--data",
            str(tmp_path / "amazon-sports"),
            "--summarize-only",
            "--root",
            str(root),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    saved = json.loads((out / "quality_amazon-sports.json").read_text())
    assert saved["meta"]["seeds"] == [0, 2]
    assert saved["models"]["teacher"]["test"]["ndcg@10"]["mean"] == pytest.approx(0.06)
    assert (out / "quality_amazon-sports.png").is_file() and (out / "quality_amazon-sports.md").is_file()
