"""The publish gates and the teacher-below-ALS warning: on hand-made metric dicts, then on a tiny
pipeline whose distillation is made to hurt (a teacher with shuffled item vectors), through the CLI.

Figures are chosen exactly representable in binary (0.5 * (1 - 0.25) = 0.375) so the edge of the
tolerance is tested exactly: the edge passes, anything below it fails.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from core.manifest import load_manifest, read_latest
from training.evaluate.gates import GateError, check_gates, enforce, gate_lines, quality_warnings
from training.evaluate.peers import implicit_missing


def _test(**ndcg: float) -> dict[str, dict[str, float]]:
    return {name: {"ndcg@10": value, "hr@10": 2 * value} for name, value in ndcg.items()}


def test_student_at_the_tolerance_edge_passes() -> None:
    result = check_gates(_test(student=0.375, scratch=0.5, popularity=0.1), k=10, tolerance=0.25)
    assert result["status"] == "passed" and result["failed"] == []
    scratch_gate = result["gates"][0]
    assert scratch_gate["name"] == "student_vs_scratch" and scratch_gate["threshold"] == 0.375
    assert scratch_gate["line"] == (
        "gate student_vs_scratch passed: student ndcg@10 0.3750 >= scratch 0.5000 - tolerance 25%"
    )


def test_student_just_below_the_tolerance_edge_fails_with_its_figures() -> None:
    result = check_gates(_test(student=0.3749, scratch=0.5, popularity=0.1), k=10, tolerance=0.25)
    assert result["status"] == "failed"
    assert result["failed"] == [
        "gate student_vs_scratch failed: student ndcg@10 0.3749 < scratch 0.5000 - tolerance 25%"
    ]
    with pytest.raises(GateError) as exc:
        enforce(result)
    assert exc.value.lines == result["failed"] and exc.value.gates["status"] == "failed"


def test_the_issue_example_fails_both_ways_it_should() -> None:
    """Beauty as published on 2026-12-01: distillation halved the student (0.0136 vs scratch 0.0279)."""
    result = check_gates(_test(student=0.0136, scratch=0.0279, popularity=0.0056), k=10, tolerance=0.03)
    assert result["failed"] == [
        "gate student_vs_scratch failed: student ndcg@10 0.0136 < scratch 0.0279 - tolerance 3%"
    ]
    below_pop = check_gates(_test(student=0.004, scratch=0.0041, popularity=0.0056), k=10, tolerance=0.03)
    assert [g["status"] for g in below_pop["gates"]] == ["passed", "failed"]
    assert below_pop["failed"] == [
        "gate student_vs_popularity failed: student ndcg@10 0.0040 < popularity 0.0056"
    ]


def test_popularity_gate_has_no_tolerance_and_a_tie_passes() -> None:
    result = check_gates(_test(student=0.25, scratch=0.25, popularity=0.25), k=10, tolerance=0.0)
    assert result["status"] == "passed"
    assert result["gates"][1]["line"] == (
        "gate student_vs_popularity passed: student ndcg@10 0.2500 >= popularity 0.2500"
    )


def test_no_scratch_model_is_not_evaluated_and_does_not_block() -> None:
    result = check_gates(_test(student=0.2, popularity=0.1), k=10, tolerance=0.03)
    assert result["status"] == "passed"
    assert result["gates"][0]["status"] == "not evaluated"
    assert "distill.train_scratch = false" in result["gates"][0]["line"]
    no_pop = check_gates(_test(student=0.2, scratch=0.2), k=10, tolerance=0.03)
    assert no_pop["gates"][1]["status"] == "not evaluated"


def test_failed_gates_not_required_are_overridden_and_say_so() -> None:
    result = check_gates(
        _test(student=0.1, scratch=0.5, popularity=0.2), k=10, tolerance=0.03, required=False
    )
    assert result["status"] == "overridden" and len(result["failed"]) == 2
    enforce(result)  # does not raise
    lines = gate_lines(result)
    assert len(lines) == 3 and "OVERRIDDEN" in lines[-1] and "publish.require_gates = false" in lines[-1]


def test_gates_read_the_configured_cutoff() -> None:
    test = {"student": {"ndcg@5": 0.1, "ndcg@10": 0.9}, "scratch": {"ndcg@5": 0.5, "ndcg@10": 0.1}}
    assert check_gates(test, k=5, tolerance=0.03)["status"] == "failed"
    assert check_gates(test, k=10, tolerance=0.03)["status"] == "passed"


def test_teacher_below_als_is_a_warning_with_both_figures() -> None:
    (line,) = quality_warnings(_test(teacher=0.0122, als=0.0339), k=10)
    assert line.startswith("WARNING:") and "0.0122" in line and "0.0339" in line
    assert quality_warnings(_test(teacher=0.05, als=0.0339), k=10) == []
    assert quality_warnings(_test(teacher=0.0339, als=0.0339), k=10) == []  # a tie is not below
    assert quality_warnings(_test(teacher=0.01), k=10) == []  # no ALS peer: nothing to compare


# --- the gate on a real tiny pipeline, through the command line -------------------------------------

TINY = Path(__file__).resolve().parents[3] / "configs" / "tiny.toml"


def _permuted_teacher(real):
    """Soft labels of a teacher whose item vectors were shuffled: each score lands on another item."""

    def soft_labels(cfg, teacher, split, progress=True, share=None):
        labels = real(cfg, teacher, split, progress, share)
        if labels is None:  # one share of the chunks, cached: nothing to permute yet
            return None
        perm = np.random.default_rng(0).permutation(split.n_items).astype(labels.candidates.dtype)
        return dataclasses.replace(labels, candidates=perm[labels.candidates])

    return soft_labels


def _hurt_args(root: Path, require_gates: bool) -> list[str]:
    """The tiny pipeline with a student that follows the (shuffled) teacher: hard labels weigh 1/40.

    The scratch student keeps weight_hard alone (Adam makes its scale moot), so it trains as usual.
    """
    sets = [
        f"models_dir={root / 'models'}", f"work_dir={root / 'work'}",
        f"publish.require_gates={str(require_gates).lower()}",
        "distill.weight_hard=0.05", "distill.weight_kl=1.0", "distill.weight_rank=1.0",
        "eval.als.factors=[8]", "eval.als.regularization=[0.1]", "eval.als.alpha=[10.0]",
    ]  # fmt: skip
    return ["pipeline", "--config", str(TINY), "--no-progress", *(a for s in sets for a in ("--set", s))]


@pytest.fixture(scope="module")
def overridden(tmp_path_factory: pytest.TempPathFactory):
    """publish.require_gates=false with a distillation that hurts: published, override recorded."""
    import training.student.labels
    from recdistill.cli import main

    root = tmp_path_factory.mktemp("gates")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            training.student.labels, "soft_labels", _permuted_teacher(training.student.labels.soft_labels)
        )
        code = main(_hurt_args(root, require_gates=False))
    return root, code


def test_require_gates_false_publishes_and_the_manifest_records_the_override(overridden) -> None:
    root, code = overridden
    assert code == 0
    version = read_latest(root / "models")
    manifest = load_manifest(root / "models" / version)
    gates = manifest.metrics["gates"]
    assert gates["status"] == "overridden" and gates["required"] is False
    assert any(
        line.startswith("gate student_vs_scratch failed: student ndcg@10 ") for line in gates["failed"]
    )
    report = json.loads((root / "models" / version / "report.json").read_text())
    assert report["gates"] == gates and report["test_history"] == "train+valid"
    peers = {"popularity"} | ({"als"} if implicit_missing() is None else set())
    assert set(report["metrics"]["test"]) == {"teacher", "student", "scratch"} | peers
    markdown = (root / "models" / version / "report.md").read_text()
    assert "## Publish gates: overridden" in markdown and "gate student_vs_scratch failed" in markdown


def test_a_distillation_that_hurts_is_not_published_exit_3(overridden, monkeypatch, capsys) -> None:
    import training.student.labels
    from recdistill.cli import main

    root, _ = overridden
    models = root / "models"
    before = sorted(p.name for p in models.iterdir())
    latest = (models / "LATEST").read_bytes()
    monkeypatch.setattr(
        training.student.labels, "soft_labels", _permuted_teacher(training.student.labels.soft_labels)
    )
    capsys.readouterr()
    assert main(_hurt_args(root, require_gates=True)) == 3
    out, err = capsys.readouterr()
    failed = [line for line in err.splitlines() if line.startswith("gate ")]
    # One line per failed gate, with the figures (measured: student 0.020, scratch 0.075, popularity 0.062).
    assert [line.split(":")[0] for line in failed] == [
        "gate student_vs_scratch failed",
        "gate student_vs_popularity failed",
    ]
    assert (
        " < scratch " in failed[0] and failed[0].endswith(" - tolerance 3%") and " < popularity " in failed[1]
    )
    assert "not published" in err and "Traceback" not in err
    assert (models / "LATEST").read_bytes() == latest
    assert sorted(p.name for p in models.iterdir()) == before  # no version folder, no staging folder
    refused = json.loads((root / "work" / "refused.json").read_text())
    assert refused["gates"]["status"] == "failed" and refused["gates"]["failed"] == failed
    # The export stage publishes the same checkpoints from work_dir: refused the same way.
    assert main(["export", *_hurt_args(root, require_gates=True)[1:]]) == 3
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("gate ")] == failed
    assert (models / "LATEST").read_bytes() == latest
    assert sorted(p.name for p in models.iterdir()) == before
    _refused_summary_says_what_and_how(out, refused, failed, main, models, before)


def _refused_summary_says_what_and_how(
    out: str, refused: dict, failed: list[str], main, models, before
) -> None:
    """The refused pipeline's stdout: the one-screen summary, as a published version gets, plus why
    and the command that publishes anyway, which then does."""
    lines = out.splitlines()
    assert lines[0].startswith("NOT published: a publish gate refused this version (")
    assert "publish gates failed:" in lines and all(f"  {line}" in lines for line in failed)
    for name, row in refused["test"].items():  # every model's test row, as refused.json holds it
        assert f"{name:<12}{row['hr@10']:>13.4f}{row['ndcg@10']:>13.4f}" in out
    parameters = refused["parameters"]
    assert f"parameters: teacher {parameters['teacher']:,}, student {parameters['student']:,}" in out
    why = lines.index("why refused:")
    assert lines[why + 1 : why + 1 + len(failed)] == [f"  {line}" for line in failed]
    assert (
        lines[why + 1 + len(failed)]
        == "to publish these models anyway (from work_dir, nothing trains again):"
    )
    again = shlex.split(lines[why + 2 + len(failed)])
    assert again[:2] == ["recdistill", "export"] and again[-2:] == ["--set", "publish.require_gates=false"]
    assert main(again[1:]) == 0  # the command it names publishes the refused models
    assert len(sorted(p.name for p in models.iterdir())) == len(before) + 1


def test_the_served_gate_passes_at_its_edge_and_fails_below_it_naming_the_version() -> None:
    served = {"version": "v1", "student": {"ndcg@10": 0.5}}
    test = _test(student=0.375, scratch=0.375, popularity=0.1)
    result = check_gates(test, k=10, tolerance=0.0, served=served, served_tolerance=0.25)
    gate = result["gates"][-1]
    assert (result["status"], gate["name"], gate["threshold"]) == ("passed", "student_vs_served", 0.375)
    below = check_gates(_test(student=0.3749, scratch=0.3, popularity=0.1), 10, 0.0, True, served, 0.25)
    assert below["failed"] == [
        "gate student_vs_served failed: student ndcg@10 0.3749 < served v1 0.5000 - tolerance 25%"
    ]
    assert [g["name"] for g in check_gates(test, 10, 0.0)["gates"]] == [
        "student_vs_scratch",
        "student_vs_popularity",
    ]
