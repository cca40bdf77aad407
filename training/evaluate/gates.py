"""Publish gates and quality warnings, computed from the test metrics before anything is staged.

Pure functions over the `{model: {metric: value}}` dict that `training.evaluate.models.evaluate_all`
returns, so the rules are tested on hand-made numbers. A distillation that hurts (the distilled
student below the scratch student beyond `publish.scratch_tolerance`, or below popularity) is not
published: `GateError` carries one line per failed gate, and the CLI exits 3 with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import GatesFailed

PASSED, FAILED, NOT_EVALUATED, OVERRIDDEN = "passed", "failed", "not evaluated", "overridden"


class GateError(GatesFailed):
    """A publish gate failed: nothing was staged or published. `lines`: one line per failed gate."""

    def __init__(self, lines: list[str], gates: Mapping[str, Any]) -> None:
        super().__init__(lines)
        self.gates = dict(gates)


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _student_against(
    name: str,
    metric: str,
    student: float,
    label: str,
    reference: float,
    tolerance: float | None,
    **extra: Any,
) -> dict[str, Any]:
    """One gate's record: passes when student >= reference * (1 - tolerance) (the edge passes); a gate
    without a tolerance (None) compares with the reference itself and says no tolerance."""
    threshold = reference if tolerance is None else reference * (1.0 - tolerance)
    ok = student >= threshold
    status = PASSED if ok else FAILED
    line = (
        f"gate {name} {status}: student {metric} {student:.4f} {'>=' if ok else '<'} {label} {reference:.4f}"
    )
    record: dict[str, Any] = {"name": name, "status": status, "metric": metric, "student": student}
    record |= {"reference": reference, **extra}
    if tolerance is not None:
        record["tolerance"] = tolerance
        line += f" - tolerance {_pct(tolerance)}"
    return record | {"threshold": threshold, "line": line}


def student_vs_scratch(
    test: Mapping[str, Mapping[str, float]], metric: str, tolerance: float
) -> dict[str, Any]:
    """Passes when student >= scratch * (1 - tolerance); the edge passes. No scratch: not evaluated."""
    if "scratch" not in test:
        return {
            "name": "student_vs_scratch", "status": NOT_EVALUATED,
            "line": "gate student_vs_scratch not evaluated: no scratch student (distill.train_scratch = false)",
        }  # fmt: skip
    student, scratch = float(test["student"][metric]), float(test["scratch"][metric])
    return _student_against("student_vs_scratch", metric, student, "scratch", scratch, tolerance)


def student_vs_popularity(test: Mapping[str, Mapping[str, float]], metric: str) -> dict[str, Any]:
    """Passes when student >= popularity. Popularity not among eval.peers: not evaluated."""
    if "popularity" not in test:
        return {
            "name": "student_vs_popularity", "status": NOT_EVALUATED,
            "line": "gate student_vs_popularity not evaluated: popularity is not in eval.peers",
        }  # fmt: skip
    student, popularity = float(test["student"][metric]), float(test["popularity"][metric])
    return _student_against("student_vs_popularity", metric, student, "popularity", popularity, None)


def student_vs_served(
    test: Mapping[str, Mapping[str, float]], served: Mapping[str, Any], metric: str, tolerance: float
) -> dict[str, Any]:
    """Passes when the new student >= the served version's student * (1 - tolerance), both ranked on
    the new holdout (training/evaluate/served.py); the edge passes."""
    student, reference = float(test["student"][metric]), float(served["student"][metric])
    version = served["version"]
    return _student_against(
        "student_vs_served", metric, student, f"served {version}", reference, tolerance, version=version
    )


def check_gates(
    test: Mapping[str, Mapping[str, float]],
    k: int,
    tolerance: float,
    required: bool = True,
    served: Mapping[str, Any] | None = None,
    served_tolerance: float = 0.0,
) -> dict[str, Any]:
    """Every gate's result and the overall status: passed, failed (required) or overridden (not required).

    `served` (a retrain): the served version's student on the same holdout (training/evaluate/served.py)."""
    metric = f"ndcg@{k}"
    gates = [student_vs_scratch(test, metric, tolerance), student_vs_popularity(test, metric)]
    if served is not None:
        gates.append(student_vs_served(test, served, metric, served_tolerance))
    failed = [g["line"] for g in gates if g["status"] == FAILED]
    status = PASSED if not failed else (FAILED if required else OVERRIDDEN)
    return {
        "status": status,
        "required": required,
        "metric": metric,
        "scratch_tolerance": tolerance,
        "gates": gates,
        "failed": failed,
    }


def enforce(result: Mapping[str, Any]) -> None:
    """Raise GateError when a required gate failed."""
    if result["status"] == FAILED:
        raise GateError(list(result["failed"]), result)


def quality_warnings(test: Mapping[str, Mapping[str, float]], k: int) -> list[str]:
    """Loud, non-blocking findings: the teacher below the ALS peer (the deep model loses to a classic)."""
    metric = f"ndcg@{k}"
    out = []
    if "teacher" in test and "als" in test:
        teacher, als = float(test["teacher"][metric]), float(test["als"][metric])
        if teacher < als:
            out.append(
                f"WARNING: the teacher's test {metric} {teacher:.4f} is below the ALS peer's {als:.4f}: "
                "on this data a classic matrix factorisation beats the deep teacher"
            )
    return out


def gate_lines(result: Mapping[str, Any]) -> list[str]:
    """One line per gate, plus the override when gates failed but were not required."""
    lines = [g["line"] for g in result.get("gates", [])]
    if result.get("status") == OVERRIDDEN:
        lines.append("gates OVERRIDDEN (publish.require_gates = false): published although a gate failed")
    return lines
