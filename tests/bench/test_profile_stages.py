"""bench/profile_stages.py on a hand-made py-spy profile: samples split by stage, loop line and batch line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.profile_stages import (
    ProfileError,
    epoch_seconds,
    main,
    markdown,
    read_records,
    read_speedscope,
    split_samples,
    summary,
)


def _sources(root: Path) -> dict[str, Path]:
    """Source files whose lines the frames point at (py-spy names files by absolute path)."""
    files = {
        "pipeline": ("training/pipeline.py", ["def train_teacher():", "def train_students():"]),
        "loop": ("training/fit/loop.py", ["loss = step(batch)", "loss.backward()", "opt.step()", "metrics = validate()"]),
        "teacher": ("training/teacher/fit.py", ["x, y = trim_padding(inputs[i])", "seq = model.sequence_vectors(u, x)"]),
        "student": ("training/student/distill.py", ["def fit_student():", "hist = histories_before(...)"]),
        "labels": ("training/student/soft_labels.py", ["def build_soft_labels():"]),
    }  # fmt: skip
    out = {}
    for key, (name, lines) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        out[key] = path
    return out


def _profile(root: Path) -> Path:
    src = _sources(root)
    frames = [
        {"name": "train_teacher", "file": str(src["pipeline"]), "line": 1},  # 0: the stage "teacher"
        {"name": "train_loop", "file": str(src["loop"]), "line": 1},  # 1: the step
        {"name": "train_loop", "file": str(src["loop"]), "line": 2},  # 2: backward
        {"name": "fit_teacher.<locals>.batch_loss", "file": str(src["teacher"]), "line": 1},  # 3
        {"name": "fit_teacher.<locals>.batch_loss", "file": str(src["teacher"]), "line": 2},  # 4
        {"name": "train_students", "file": str(src["pipeline"]), "line": 2},  # 5
        {"name": "fit_student", "file": str(src["student"]), "line": 1},  # 6
        {"name": "build_soft_labels", "file": str(src["labels"]), "line": 1},  # 7
        {"name": "train_loop", "file": str(src["loop"]), "line": 4},  # 8: validate
        {"name": "fit_student.<locals>.batch_loss", "file": str(src["student"]), "line": 2},  # 9
        {"name": "<module>", "file": "/usr/lib/python3.11/runpy.py", "line": 1},  # 10
    ]
    teacher = [[0, 1, 3]] * 2 + [[0, 1, 4]] * 3 + [[0, 2]] * 5  # 10 samples
    scratch = [[5, 6, 1, 9]] * 4 + [[10]] + [[5, 6, 8]] * 2  # a stray sample inside does not split it
    labels = [[5, 7]] * 3
    student = [[5, 6, 1, 9]] * 6
    samples = teacher + scratch + labels + student
    doc = {
        "shared": {"frames": frames},
        "profiles": [
            {"type": "sampled", "samples": samples, "weights": [0.01] * len(samples)},
            {"type": "sampled", "samples": [[10]], "weights": [0.01]},  # another thread, less time
        ],
    }
    path = root / "profile.json"
    path.write_text(json.dumps(doc))
    return path


def test_samples_are_split_by_stage_loop_line_and_batch_line(tmp_path: Path) -> None:
    stages = split_samples(read_speedscope(_profile(tmp_path)), ["scratch", "student"])
    assert {k: round(v.seconds, 2) for k, v in stages.items()} == {
        "teacher": 0.10,
        "scratch": 0.06,
        "start-up": 0.01,
        "soft_labels": 0.03,
        "student": 0.06,
    }
    teacher = stages["teacher"]
    assert {k: round(v, 2) for k, v in teacher.phases.items()} == {
        "loss = step(batch)": 0.05,
        "loss.backward()": 0.05,
    }
    assert {k: round(v, 2) for k, v in teacher.step_lines.items()} == {
        "x, y = trim_padding(inputs[i])": 0.02,
        "seq = model.sequence_vectors(u, x)": 0.03,
    }
    assert {k: round(v, 2) for k, v in stages["scratch"].phases.items()} == {
        "loss = step(batch)": 0.04,
        "metrics = validate()": 0.02,
    }
    rows = {r["stage"]: r for r in summary(stages, {"scratch": {"epochs": 3, "median_epoch_seconds": 11.0}})}
    assert rows["teacher"]["share"] == pytest.approx(0.10 / 0.26)
    assert rows["teacher"]["phases"] == {
        "loss = step(batch)": pytest.approx(0.5),
        "loss.backward()": pytest.approx(0.5),
    }
    assert rows["scratch"]["epochs"] == 3
    text = markdown(
        {"data": "shop", "command": "c", "rate": 100, "stage_seconds": 90, "machine": "m", "stages": list(rows.values()), "png": "p.png"}
    )  # fmt: skip
    assert "| teacher | 0.1 | 38.5% | - | - |" in text
    assert "| `seq = model.sequence_vectors(u, x)` | 30.0% |" in text


def test_epoch_seconds_come_from_the_runs_records_in_the_order_they_were_written(tmp_path: Path) -> None:
    for i, (name, ends) in enumerate([("teacher", [20.0, 44.0, 65.0]), ("scratch", [9.0]), ("student", [])]):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"curve": [{"epoch": e, "seconds": s} for e, s in enumerate(ends, 1)]}))
        os.utime(path, (1_000 + i, 1_000 + i))
    (tmp_path / "refused.json").write_text("{}")  # not a stage record
    curves = read_records(tmp_path)
    assert list(curves) == ["teacher", "scratch", "student"]
    assert epoch_seconds(curves) == {
        "teacher": {"epochs": 3, "median_epoch_seconds": 21.0},  # spans 20, 24, 21
        "scratch": {"epochs": 1, "median_epoch_seconds": 9.0},
        "student": {"epochs": 0, "median_epoch_seconds": None},
    }
    with pytest.raises(ProfileError, match="no teacher.json"):
        read_records(tmp_path / "nowhere")


def test_a_file_that_is_no_profile_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    (tmp_path / "teacher.json").write_text(json.dumps({"curve": []}))
    argv = ["--data", str(tmp_path), "--speedscope", str(bad), "--records", str(tmp_path)]
    code = main([*argv, "--out", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {bad}: not a py-spy speedscope profile")
    with pytest.raises(SystemExit) as exc:
        main(["--data", str(tmp_path)])  # neither file there
    assert exc.value.code == 2


def test_the_profiled_pipeline_keeps_every_stage_in_the_one_process_py_spy_follows(tmp_path: Path) -> None:
    """py-spy samples one process: the side process (training/schedule/side.py) would take the scratch
    student, the ALS peer and half the soft labels out of the profile. The user's --set still comes last."""
    from bench.profile_stages import parse_args, pipeline_argv

    for name in ("interactions.csv.gz", "items.csv.gz"):
        (tmp_path / name).write_bytes(b"")
    argv = pipeline_argv(parse_args(["--data", str(tmp_path), "--set", "seed=3"]), tmp_path / "w")
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert "side_process=false" in sets and sets[-1] == "seed=3"
