"""The seeds aggregated (mean ± std, min/max) and checked against the
thresholds the product promises on shop logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.checks import Check, meets, status
from bench.quality.runs import (
    COVERAGE,
    FAILED,
    METRICS,
    MISSING,
    ML100K,
    MODELS,
    NDCG,
    PUBLISHED,
    REFUSED,
    STANDARD,
    SeedRun,
)
from bench.report import aggregate, mean_std

# --- thresholds of the checks (the quality the product promises on shop logs) --------------------
# Teacher test NDCG@10 at least this: ~90% of SASRec + sampled softmax on the same files and protocol
# (shared/data/README.md: Beauty 0.0531, Sports 0.0314); ml-100k: no regression from the measured 0.106.
TEACHER_TARGET = {"amazon-beauty": 0.048, "amazon-sports": 0.029, ML100K: 0.100}
# The published SASRec figure drawn as a reference line on the plot.
PUBLISHED_SASREC = {"amazon-beauty": 0.0531, "amazon-sports": 0.0314}
TEACHER_OVER_ALS = 1.2  # the deep teacher must beat the classic ALS peer of the same run by 20%
STUDENT_OVER_TEACHER = 0.95  # distillation keeps at least 95% of the teacher's NDCG@10
PARAMETER_RATIO = 10.0  # the teacher has at least 10x the student's parameters
COVERAGE_RATIO = 0.5  # no popularity collapse: student coverage@10 >= half the teacher's
MAX_WALL_MINUTES = 30.0  # one seed's whole pipeline, 2-core machine; required where listed below
WALL_TIME_DATASETS = ("amazon-beauty",)
FLOAT_SLACK = 1e-12  # a value exactly at a threshold passes despite float rounding (1.2 * 0.04 etc.)

PROTOCOL_LINE = (
    "standard leave-one-out: test query = train + validation item, full ranking, seen items excluded"
)
PROTOCOL_WORDS = {
    STANDARD: PROTOCOL_LINE,
    "train": "train-only test query (the validation item is excluded but not in the query); "
    "not comparable with published figures",
}


# --- aggregation ---------------------------------------------------------------------------------


def _with_spread(stat: dict[str, Any]) -> dict[str, Any]:
    return {**stat, "min": min(stat["values"]), "max": max(stat["values"])}


def summarize_models(runs: Sequence[SeedRun]) -> dict[str, dict[str, Any]]:
    """Per model (in MODELS order, then any other): test metrics mean ± std and min/max over the seeds
    with figures (refused seeds included: their figures were measured), and the seeds used."""
    with_figures = [r for r in runs if r.has_figures]
    names = [m for m in MODELS if any(m in r.test for r in with_figures)]
    names += sorted({m for r in with_figures for m in r.test} - set(names))
    out = {}
    for model in names:
        rows = [r for r in with_figures if model in r.test]
        metrics = [m for m in METRICS if all(m in r.test[model] for r in rows)]
        stats = aggregate([{m: r.test[model][m] for m in metrics} for r in rows])
        out[model] = {
            "seeds": [r.seed for r in rows],
            "test": {m: _with_spread(s) for m, s in stats.items()},
        }
    return out


def _stat_map(values: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    return {key: _with_spread(mean_std(v)) for key, v in values.items() if v}


def summarize_parameters(runs: Sequence[SeedRun]) -> dict[str, Any]:
    """Parameter counts per model and the teacher/student ratio, per seed and over seeds."""
    by_model: dict[str, list[float]] = {}
    ratios: dict[int, float] = {}
    for r in runs:
        for model, n in r.parameters.items():
            by_model.setdefault(model, []).append(float(n))
        if r.parameters.get("teacher") and r.parameters.get("student"):
            ratios[r.seed] = r.parameters["teacher"] / r.parameters["student"]
    return {
        "models": _stat_map(by_model),
        "ratio": _stat_map({"teacher/student": list(ratios.values())}),
        "ratio_per_seed": ratios,
    }


def summarize_seconds(runs: Sequence[SeedRun]) -> dict[str, Any]:
    """Stage seconds (the report's "seconds", each stage over the seeds that report it) and total wall."""
    stages: dict[str, list[float]] = {}
    for r in runs:
        for stage, s in r.seconds.items():
            stages.setdefault(stage, []).append(s)
    walls = [r.wall_seconds for r in runs if r.wall_seconds is not None]
    return {"stages": _stat_map(stages), "wall": _stat_map({"wall": walls}).get("wall")}


# --- checks --------------------------------------------------------------------------------------


def _at_least(value: float, bar: float) -> bool:
    return bool(meets(value, ">=", bar, slack=FLOAT_SLACK))


def _pairs(runs: Sequence[SeedRun], a: str, b: str, metric: str = NDCG) -> dict[int, tuple[float, float]]:
    """seed -> (a's metric, b's metric) over the seeds with figures for both."""
    return {
        r.seed: (r.test[a][metric], r.test[b][metric])
        for r in runs
        if r.has_figures and metric in r.test.get(a, {}) and metric in r.test.get(b, {})
    }


def _mean(values: Sequence[float]) -> float:
    return float(mean_std(values)["mean"])


def check_teacher_target(runs: Sequence[SeedRun], target: float | None) -> Check:
    name = f"teacher {NDCG} >= target"
    values = [r.test["teacher"][NDCG] for r in runs if r.has_figures and NDCG in r.test.get("teacher", {})]
    if target is None:
        return Check(name, None, "no target for this data (--teacher-target sets one)")
    if not values:
        return Check(f"{name} {target:g}", None, "no teacher figures")
    mean = _mean(values)
    return Check(f"{name} {target:g}", (_at_least(mean, target)), f"mean {mean:.4f} vs {target:.4f}")


def check_teacher_vs_als(runs: Sequence[SeedRun]) -> Check:
    name = f"teacher {NDCG} >= {TEACHER_OVER_ALS:g} x ALS peer (same run)"
    pairs = _pairs(runs, "teacher", "als")
    if not pairs:
        return Check(name, None, "no ALS peer in the reports (is the `implicit` extra installed?)")
    teacher, als = _mean([t for t, _ in pairs.values()]), _mean([a for _, a in pairs.values()])
    per_seed = "; ".join(
        f"seed {s}: {t:.4f} vs {TEACHER_OVER_ALS:g} x {a:.4f} = {TEACHER_OVER_ALS * a:.4f} "
        f"{status(_at_least(t, TEACHER_OVER_ALS * a))}"
        for s, (t, a) in sorted(pairs.items())
    )
    bar = TEACHER_OVER_ALS * als
    ok = _at_least(teacher, bar)
    return Check(
        name, (ok), f"mean {teacher:.4f} vs {TEACHER_OVER_ALS:g} x {als:.4f} = {bar:.4f}; {per_seed}"
    )


def check_student_vs_teacher(runs: Sequence[SeedRun]) -> Check:
    name = f"student {NDCG} >= {STUDENT_OVER_TEACHER:g} x teacher"
    pairs = _pairs(runs, "student", "teacher")
    if not pairs:
        return Check(name, None, "no student and teacher figures")
    student, teacher = _mean([s for s, _ in pairs.values()]), _mean([t for _, t in pairs.values()])
    bar = STUDENT_OVER_TEACHER * teacher
    return Check(
        name,
        (_at_least(student, bar)),
        f"mean {student:.4f} vs {STUDENT_OVER_TEACHER:g} x {teacher:.4f} = {bar:.4f} ({student / teacher:.1%})"
        if teacher
        else f"mean {student:.4f} vs teacher 0",
    )


def check_parameter_ratio(runs: Sequence[SeedRun]) -> Check:
    name = f"teacher parameters >= {PARAMETER_RATIO:g} x student"
    ratios = summarize_parameters(runs)["ratio_per_seed"]
    if not ratios:
        return Check(name, None, "no parameter counts (no published seed)")
    low = min(ratios.values())
    detail = ", ".join(f"seed {s}: {q:.1f}x" for s, q in sorted(ratios.items()))
    return Check(name, (_at_least(low, PARAMETER_RATIO)), detail)


def check_student_vs_scratch(runs: Sequence[SeedRun]) -> Check:
    name = f"student {NDCG} > scratch in every seed"
    pairs = _pairs(runs, "student", "scratch")
    if not pairs:
        return Check(name, None, "no scratch student in the reports")
    wins = [s for s, (a, b) in pairs.items() if a > b]
    detail = ", ".join(f"seed {s}: {a:.4f} vs {b:.4f}" for s, (a, b) in sorted(pairs.items()))
    return Check(name, (len(wins) == len(pairs)), f"{len(wins)}/{len(pairs)} seeds; {detail}")


def check_coverage(runs: Sequence[SeedRun]) -> Check:
    name = f"student {COVERAGE} >= {COVERAGE_RATIO:g} x teacher"
    pairs = _pairs(runs, "student", "teacher", COVERAGE)
    if not pairs:
        return Check(name, None, f"no {COVERAGE} for student and teacher")
    student, teacher = _mean([s for s, _ in pairs.values()]), _mean([t for _, t in pairs.values()])
    bar = COVERAGE_RATIO * teacher
    return Check(
        name,
        (_at_least(student, bar)),
        f"mean {student:.4f} vs {COVERAGE_RATIO:g} x {teacher:.4f} = {bar:.4f}",
    )


def check_wall_time(runs: Sequence[SeedRun], dataset: str) -> Check:
    name = f"pipeline wall time <= {MAX_WALL_MINUTES:g} min per seed"
    walls = {r.seed: r.wall_seconds / 60.0 for r in runs if r.wall_seconds is not None}
    if not walls:
        return Check(name, None, "no measured runs")
    detail = ", ".join(f"seed {s}: {m:.1f} min" for s, m in sorted(walls.items()))
    if dataset not in WALL_TIME_DATASETS:
        return Check(name, None, f"required on {', '.join(WALL_TIME_DATASETS)} only; measured {detail}")
    return Check(name, (max(walls.values()) <= MAX_WALL_MINUTES), detail)


def check_not_refused(runs: Sequence[SeedRun]) -> Check:
    """Refused (exit 3) and overridden (gates failed, published with require_gates=false) both fail."""
    name = "no seed refused by the publish gate"
    judged = [r for r in runs if r.status in (PUBLISHED, REFUSED)]
    if not judged:
        return Check(name, None, "no seed reached the gates")
    refused = [r.seed for r in judged if r.status == REFUSED]
    overridden = [r.seed for r in judged if r.gates.get("status") == "overridden"]
    parts = [f"{len(refused)} of {len(judged)} refused" + (f" (seeds {refused})" if refused else "")]
    if overridden:
        parts.append(f"gates failed but overridden in seeds {overridden}")
    return Check(name, (not refused and not overridden), "; ".join(parts))


def check_protocol(runs: Sequence[SeedRun]) -> Check:
    name = "standard protocol in every seed"
    seen = {r.seed: r.test_history for r in runs if r.has_figures}
    if not seen:
        return Check(name, None, "no figures")
    other = {s: h for s, h in seen.items() if h != STANDARD}
    return Check(name, (not other), f"other protocol: {other}" if other else f"test_history {STANDARD}")


def check_completed(runs: Sequence[SeedRun]) -> Check:
    bad = {r.seed: r.error or r.status for r in runs if r.status in (FAILED, MISSING)}
    detail = "; ".join(f"seed {s}: {e}" for s, e in sorted(bad.items())) or f"{len(runs)} seed(s)"
    return Check("every seed ran to a result", (bool(runs) and not bad), detail)


def compute_checks(runs: Sequence[SeedRun], dataset: str, teacher_target: float | None = None) -> list[Check]:
    """Every check from the measured numbers; `teacher_target` None: the dataset's (N/A if unknown)."""
    target = teacher_target if teacher_target is not None else TEACHER_TARGET.get(dataset)
    return [
        check_teacher_target(runs, target),
        check_teacher_vs_als(runs),
        check_student_vs_teacher(runs),
        check_parameter_ratio(runs),
        check_student_vs_scratch(runs),
        check_coverage(runs),
        check_wall_time(runs, dataset),
        check_not_refused(runs),
        check_protocol(runs),
        check_completed(runs),
    ]
