"""Quality on real shop logs: the pipeline a user runs, several seeds, checked against the published figures.

Each seed runs `recdistill pipeline --config <config> --set data.path=... --set seed=N ...` as a
subprocess (the command a user types, not a Python shortcut into the stages), into its own
`models_dir` and `work_dir` under `.recdistill/bench/quality/<dataset>/seed<N>/`, with its output in
`pipeline.log` beside them. The published version's report.json and manifest.json (or, when a
publish gate refused the version, `work_dir/refused.json`) are then read back, aggregated over seeds
(mean ± std and min/max) and checked against the thresholds below. Figures use the standard
leave-one-out protocol unless a seed's report says otherwise (the report states it either way).

    python -m bench.quality --data ../shared/data/amazon-beauty [--seeds 0 1 2] [--jobs 2]
    python -m bench.quality --data ml-100k
    python -m bench.quality --data ../shared/data/amazon-sports --summarize-only   # no training
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR, aggregate, fmt_mean_std, markdown_table, mean_std, write_report

log = logging.getLogger(__name__)

# --- what is run ---------------------------------------------------------------------------------
SHOP_CONFIG = Path("configs/shop.toml")  # the preset for shop logs (a folder of CSVs)
ML100K = "ml-100k"
ML100K_CONFIG = Path("configs/ml-100k.toml")
ML100K_CACHE = Path("data/cache")  # configs/ml-100k.toml's data.cache_dir
BENCH_ROOT = Path(".recdistill/bench/quality")  # <root>/<dataset>/seed<N>/{models,work,pipeline.log,run.json}
INTERACTIONS_FILE, ITEMS_FILE = "interactions.csv.gz", "items.csv.gz"
LOG_FILE, RUN_FILE = "pipeline.log", "run.json"
EXIT_GATES = 3  # `recdistill pipeline`'s exit status when a publish gate refused the version
MODELS = ("teacher", "student", "scratch", "popularity", "als")
METRICS = ("ndcg@10", "hr@10", "recall@50", "coverage@10")
NDCG, COVERAGE = "ndcg@10", "coverage@10"

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

STANDARD = "train+valid"
PROTOCOL_LINE = (
    "standard leave-one-out: test query = train + validation item, full ranking, seen items excluded"
)
PROTOCOL_WORDS = {
    STANDARD: PROTOCOL_LINE,
    "train": "train-only test query (the validation item is excluded but not in the query); "
    "not comparable with published figures",
}
PASS, FAIL, NA = "PASS", "FAIL", "N/A"
PUBLISHED, REFUSED, FAILED, MISSING = "published", "refused", "failed", "missing"


def recdistill_command() -> list[str]:
    """The `recdistill` console script (recdistill.cli:main), run with this interpreter: the one place to change."""
    return [sys.executable, "-m", "recdistill.cli"]


@dataclass(frozen=True)
class Dataset:
    """What `--data` names: a folder of shop CSVs or ml-100k."""

    name: str
    config: Path
    data_sets: tuple[str, ...]  # --set overrides that point the config at the data
    fetch: bool = False  # ml-100k: `recdistill data fetch ml-100k` first


def dataset_spec(data: str, config: Path | None = None) -> Dataset:
    """The config and data overrides for `--data` (a folder with interactions.csv.gz, or 'ml-100k')."""
    if data == ML100K:
        return Dataset(ML100K, config or ML100K_CONFIG, (), fetch=True)
    folder = Path(data)
    sets = ["data.source=file", f"data.path={folder / INTERACTIONS_FILE}"]
    if (folder / ITEMS_FILE).is_file():
        sets.append(f"data.items_path={folder / ITEMS_FILE}")
    return Dataset(folder.name, config or SHOP_CONFIG, tuple(sets))


def seed_dir(root: Path, dataset: str, seed: int) -> Path:
    return Path(root) / dataset / f"seed{seed}"


def pipeline_argv(ds: Dataset, seed: int, root: Path, user_sets: Sequence[str] = ()) -> list[str]:
    """The pipeline command of one seed: data overrides, seed and folders, then the user's (last wins)."""
    folder = seed_dir(root, ds.name, seed)
    sets = [*ds.data_sets, f"seed={seed}", f"models_dir={folder / 'models'}", f"work_dir={folder / 'work'}"]
    argv = [*recdistill_command(), "pipeline", "--config", str(ds.config)]
    for item in [*sets, *user_sets]:
        argv += ["--set", item]
    return [*argv, "--no-progress"]


def fetch_argv(cache_dir: Path = ML100K_CACHE) -> list[str]:
    return [*recdistill_command(), "data", "fetch", ML100K, "--cache-dir", str(cache_dir)]


# --- running -------------------------------------------------------------------------------------


def run_logged(argv: Sequence[str], folder: Path) -> dict[str, Any]:
    """Run argv with stdout and stderr in folder/pipeline.log; write and return folder/run.json."""
    folder.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    with open(folder / LOG_FILE, "wb") as fh:
        rc = subprocess.run(list(argv), stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    record = {
        "command": shlex.join(argv),
        "returncode": rc,
        "wall_seconds": time.perf_counter() - t0,
        "started_at": started,
    }
    (folder / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def run_seeds(ds: Dataset, seeds: Sequence[int], root: Path, jobs: int, user_sets: Sequence[str]) -> None:
    """Each seed's pipeline from a clean folder, up to `jobs` at once (the configs train on one thread)."""
    from tqdm import tqdm

    for seed in seeds:  # stale LATEST or refused.json from an earlier run must not be read back
        shutil.rmtree(seed_dir(root, ds.name, seed), ignore_errors=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(run_logged, pipeline_argv(ds, s, root, user_sets), seed_dir(root, ds.name, s)): s
            for s in seeds
        }
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"{ds.name} seeds", unit="seed"):
            seed, record = futures[future], future.result()
            log.info(
                "seed %d: exit %d after %.0f s (%s)",
                seed,
                record["returncode"],
                record["wall_seconds"],
                seed_dir(root, ds.name, seed) / LOG_FILE,
            )


# --- reading a seed back -------------------------------------------------------------------------


@dataclass
class SeedRun:
    """One seed's outcome and figures, as read from its folders."""

    seed: int
    status: str  # published | refused (exit 3) | failed | missing
    returncode: int | None = None
    wall_seconds: float | None = None
    command: str | None = None
    version: str | None = None
    test: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> metric -> value
    parameters: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # stage seconds from the report
    test_history: str | None = None
    gates: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    peers_skipped: dict[str, str] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    epochs: dict[str, tuple[int, int]] = field(default_factory=dict)  # model -> (epochs run, best epoch)

    @property
    def has_figures(self) -> bool:
        return self.status in (PUBLISHED, REFUSED) and bool(self.test)


def _numbers(test: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        model: {k: float(v) for k, v in row.items() if isinstance(v, int | float) and k != "users"}
        for model, row in test.items()
    }


def _log_tail(folder: Path, lines: int = 5) -> str:
    path = folder / LOG_FILE
    if not path.is_file():
        return "no log"
    return " / ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def read_epochs(work: Path) -> dict[str, tuple[int, int]]:
    """(epochs run, best epoch) per trained model, from work_dir's records: a model whose run ends
    `patience` epochs after its best stopped early; one that ends at its best ran into its budget."""
    out = {}
    for record_path in sorted(work.glob("*.json")):
        try:
            curve = json.loads(record_path.read_text()).get("curve") or []
        except (json.JSONDecodeError, AttributeError):
            continue
        if curve and all(NDCG in row for row in curve):
            best = max(curve, key=lambda row: row[NDCG])
            out[record_path.stem] = (len(curve), int(best["epoch"]))
    return out


def read_seed(folder: Path, seed: int) -> SeedRun:
    """The seed's published version (models/LATEST), or its refused.json on exit 3, or why there is none."""
    from core.manifest import ManifestError, load_manifest, read_latest

    run = json.loads((folder / RUN_FILE).read_text()) if (folder / RUN_FILE).is_file() else {}
    out = SeedRun(seed, MISSING, run.get("returncode"), run.get("wall_seconds"), run.get("command"))
    out.epochs = read_epochs(folder / "work")
    refused, models = folder / "work" / "refused.json", folder / "models"
    version = read_latest(models) if models.is_dir() else None
    if out.returncode == EXIT_GATES or (out.returncode is None and version is None and refused.is_file()):
        if not refused.is_file():
            out.status, out.error = FAILED, f"exit {EXIT_GATES} but no {refused}"
            return out
        record = json.loads(refused.read_text())
        out.status, out.test = REFUSED, _numbers(record.get("test", {}))
        out.test_history, out.gates = record.get("test_history"), record.get("gates", {})
        out.warnings = list(record.get("warnings", []))
        out.parameters = {k: int(v) for k, v in record.get("parameters", {}).items()}
        out.seconds = {k: float(v) for k, v in record.get("seconds", {}).items()}
        return out
    if out.returncode not in (0, None) or version is None:
        out.status = FAILED if out.returncode is not None else MISSING
        out.error = (
            f"exit {out.returncode}: {_log_tail(folder)}" if out.returncode else "no published version"
        )
        return out
    try:
        manifest = load_manifest(models / version)
    except ManifestError as exc:
        out.status, out.error = FAILED, str(exc)
        return out
    report_path = models / version / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    metrics = manifest.metrics
    out.status, out.version, out.dataset = PUBLISHED, version, manifest.dataset.model_dump()
    out.test = _numbers(report.get("metrics", {}).get("test") or metrics.get("test", {}))
    params = report.get("parameters") or metrics.get("parameters") or {}
    params = {"teacher": manifest.teacher.parameters, "student": manifest.student.parameters} | params
    out.parameters = {k: int(v) for k, v in params.items()}
    out.seconds = {k: float(v) for k, v in (report.get("seconds") or metrics.get("seconds") or {}).items()}
    out.test_history = report.get("test_history") or metrics.get("test_history")
    out.gates = report.get("gates") or metrics.get("gates") or {}
    out.warnings = list(report.get("warnings") or metrics.get("warnings") or [])
    out.peers_skipped = dict(report.get("peers_skipped") or metrics.get("peers_skipped") or {})
    return out


def read_seeds(root: Path, dataset: str, seeds: Sequence[int]) -> list[SeedRun]:
    return [read_seed(seed_dir(root, dataset, s), s) for s in seeds]


def seeds_on_disk(root: Path, dataset: str) -> list[int]:
    folder = Path(root) / dataset
    found = [p.name[4:] for p in folder.glob("seed*") if p.is_dir()] if folder.is_dir() else []
    return sorted(int(s) for s in found if s.isdigit())


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


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS | FAIL | N/A
    detail: str


def _verdict(ok: bool) -> str:
    return PASS if ok else FAIL


def _at_least(value: float, bar: float) -> bool:
    return value >= bar - FLOAT_SLACK


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
        return Check(name, NA, "no target for this data (--teacher-target sets one)")
    if not values:
        return Check(f"{name} {target:g}", NA, "no teacher figures")
    mean = _mean(values)
    return Check(f"{name} {target:g}", _verdict(_at_least(mean, target)), f"mean {mean:.4f} vs {target:.4f}")


def check_teacher_vs_als(runs: Sequence[SeedRun]) -> Check:
    name = f"teacher {NDCG} >= {TEACHER_OVER_ALS:g} x ALS peer (same run)"
    pairs = _pairs(runs, "teacher", "als")
    if not pairs:
        return Check(name, NA, "no ALS peer in the reports (is the `implicit` extra installed?)")
    teacher, als = _mean([t for t, _ in pairs.values()]), _mean([a for _, a in pairs.values()])
    per_seed = "; ".join(
        f"seed {s}: {t:.4f} vs {TEACHER_OVER_ALS:g} x {a:.4f} = {TEACHER_OVER_ALS * a:.4f} "
        f"{_verdict(_at_least(t, TEACHER_OVER_ALS * a))}"
        for s, (t, a) in sorted(pairs.items())
    )
    bar = TEACHER_OVER_ALS * als
    ok = _at_least(teacher, bar)
    return Check(
        name, _verdict(ok), f"mean {teacher:.4f} vs {TEACHER_OVER_ALS:g} x {als:.4f} = {bar:.4f}; {per_seed}"
    )


def check_student_vs_teacher(runs: Sequence[SeedRun]) -> Check:
    name = f"student {NDCG} >= {STUDENT_OVER_TEACHER:g} x teacher"
    pairs = _pairs(runs, "student", "teacher")
    if not pairs:
        return Check(name, NA, "no student and teacher figures")
    student, teacher = _mean([s for s, _ in pairs.values()]), _mean([t for _, t in pairs.values()])
    bar = STUDENT_OVER_TEACHER * teacher
    return Check(
        name,
        _verdict(_at_least(student, bar)),
        f"mean {student:.4f} vs {STUDENT_OVER_TEACHER:g} x {teacher:.4f} = {bar:.4f} ({student / teacher:.1%})"
        if teacher
        else f"mean {student:.4f} vs teacher 0",
    )


def check_parameter_ratio(runs: Sequence[SeedRun]) -> Check:
    name = f"teacher parameters >= {PARAMETER_RATIO:g} x student"
    ratios = summarize_parameters(runs)["ratio_per_seed"]
    if not ratios:
        return Check(name, NA, "no parameter counts (no published seed)")
    low = min(ratios.values())
    detail = ", ".join(f"seed {s}: {q:.1f}x" for s, q in sorted(ratios.items()))
    return Check(name, _verdict(_at_least(low, PARAMETER_RATIO)), detail)


def check_student_vs_scratch(runs: Sequence[SeedRun]) -> Check:
    name = f"student {NDCG} > scratch in every seed"
    pairs = _pairs(runs, "student", "scratch")
    if not pairs:
        return Check(name, NA, "no scratch student in the reports")
    wins = [s for s, (a, b) in pairs.items() if a > b]
    detail = ", ".join(f"seed {s}: {a:.4f} vs {b:.4f}" for s, (a, b) in sorted(pairs.items()))
    return Check(name, _verdict(len(wins) == len(pairs)), f"{len(wins)}/{len(pairs)} seeds; {detail}")


def check_coverage(runs: Sequence[SeedRun]) -> Check:
    name = f"student {COVERAGE} >= {COVERAGE_RATIO:g} x teacher"
    pairs = _pairs(runs, "student", "teacher", COVERAGE)
    if not pairs:
        return Check(name, NA, f"no {COVERAGE} for student and teacher")
    student, teacher = _mean([s for s, _ in pairs.values()]), _mean([t for _, t in pairs.values()])
    bar = COVERAGE_RATIO * teacher
    return Check(
        name,
        _verdict(_at_least(student, bar)),
        f"mean {student:.4f} vs {COVERAGE_RATIO:g} x {teacher:.4f} = {bar:.4f}",
    )


def check_wall_time(runs: Sequence[SeedRun], dataset: str) -> Check:
    name = f"pipeline wall time <= {MAX_WALL_MINUTES:g} min per seed"
    walls = {r.seed: r.wall_seconds / 60.0 for r in runs if r.wall_seconds is not None}
    if not walls:
        return Check(name, NA, "no measured runs")
    detail = ", ".join(f"seed {s}: {m:.1f} min" for s, m in sorted(walls.items()))
    if dataset not in WALL_TIME_DATASETS:
        return Check(name, NA, f"required on {', '.join(WALL_TIME_DATASETS)} only; measured {detail}")
    return Check(name, _verdict(max(walls.values()) <= MAX_WALL_MINUTES), detail)


def check_not_refused(runs: Sequence[SeedRun]) -> Check:
    """Refused (exit 3) and overridden (gates failed, published with require_gates=false) both fail."""
    name = "no seed refused by the publish gate"
    judged = [r for r in runs if r.status in (PUBLISHED, REFUSED)]
    if not judged:
        return Check(name, NA, "no seed reached the gates")
    refused = [r.seed for r in judged if r.status == REFUSED]
    overridden = [r.seed for r in judged if r.gates.get("status") == "overridden"]
    parts = [f"{len(refused)} of {len(judged)} refused" + (f" (seeds {refused})" if refused else "")]
    if overridden:
        parts.append(f"gates failed but overridden in seeds {overridden}")
    return Check(name, _verdict(not refused and not overridden), "; ".join(parts))


def check_protocol(runs: Sequence[SeedRun]) -> Check:
    name = "standard protocol in every seed"
    seen = {r.seed: r.test_history for r in runs if r.has_figures}
    if not seen:
        return Check(name, NA, "no figures")
    other = {s: h for s, h in seen.items() if h != STANDARD}
    return Check(
        name, _verdict(not other), f"other protocol: {other}" if other else f"test_history {STANDARD}"
    )


def check_completed(runs: Sequence[SeedRun]) -> Check:
    bad = {r.seed: r.error or r.status for r in runs if r.status in (FAILED, MISSING)}
    detail = "; ".join(f"seed {s}: {e}" for s, e in sorted(bad.items())) or f"{len(runs)} seed(s)"
    return Check("every seed ran to a result", _verdict(bool(runs) and not bad), detail)


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


# --- output --------------------------------------------------------------------------------------


def protocol_words(runs: Sequence[SeedRun]) -> str:
    histories = sorted({r.test_history for r in runs if r.test_history})
    if not histories:
        return "unknown (no seed reported its test history)"
    return "; ".join(PROTOCOL_WORDS.get(h, h) for h in histories)


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def build_payload(
    dataset: str, runs: Sequence[SeedRun], checks: Sequence[Check], meta: dict[str, Any]
) -> dict[str, Any]:
    return {
        "benchmark": f"quality_{dataset}",
        "dataset": dataset,
        "protocol": protocol_words(runs),
        "meta": meta,
        "models": summarize_models(runs),
        "parameters": summarize_parameters(runs),
        "seconds": summarize_seconds(runs),
        "checks": [asdict(c) for c in checks],
        "refused_seeds": [r.seed for r in runs if r.status == REFUSED],
        "per_seed": [asdict(r) for r in runs],
        "reference": {"published_sasrec_ndcg@10": PUBLISHED_SASREC.get(dataset)},
    }


def _cell(stat: dict[str, Any] | None, digits: int = 4) -> str:
    return fmt_mean_std(stat, digits) if stat else "–"


def render_markdown(payload: dict[str, Any], plot: str | None = None) -> str:
    dataset, models, meta = payload["dataset"], payload["models"], payload["meta"]
    runs = payload["per_seed"]
    lines = [f"# Quality on {dataset}: the user's pipeline, {len(runs)} seed(s)", ""]
    lines += [f"Protocol: {payload['protocol']}.", ""]
    status = ", ".join(f"seed {r['seed']} {r['status']}" for r in runs)
    lines += [f"Test metrics, mean ± std over the seeds with figures (refused seeds included): {status}.", ""]
    rows = [[m, *(_cell(info["test"].get(k)) for k in METRICS)] for m, info in models.items()]
    lines += [markdown_table(["model", *METRICS], rows), ""]
    spread = [
        [m, *(f"{s['min']:.4f} – {s['max']:.4f}" if (s := info["test"].get(k)) else "–" for k in METRICS)]
        for m, info in models.items()
    ]
    lines += ["Spread (min – max over seeds):", "", markdown_table(["model", *METRICS], spread), ""]
    if reference := payload["reference"].get("published_sasrec_ndcg@10"):
        lines += [f"Published SASRec + sampled softmax on these files: NDCG@10 {reference}.", ""]
    if plot:
        lines += [f"![NDCG@10 per model]({plot})", ""]
    lines += [
        "## Checks",
        "",
        markdown_table(
            ["check", "result", "numbers"], [[c["name"], c["status"], c["detail"]] for c in payload["checks"]]
        ),
        "",
    ]
    lines += ["## Per seed", ""]
    per_seed = []
    for r in runs:
        ndcg = [f"{r['test'][m][NDCG]:.4f}" if NDCG in r["test"].get(m, {}) else "–" for m in models]
        wall = f"{r['wall_seconds'] / 60:.1f}" if r["wall_seconds"] is not None else "–"
        gates = r["gates"].get("status", "–") if r["gates"] else "–"
        per_seed.append([r["seed"], r["status"], *ndcg, wall, gates, r["version"] or r["error"] or "–"])
    header = ["seed", "status", *(f"{m} {NDCG}" for m in models), "wall min", "gates", "version / error"]
    lines += [markdown_table(header, per_seed), ""]
    params = payload["parameters"]
    if params["models"]:
        ratio = params["ratio"].get("teacher/student")
        lines += [
            "## Parameters",
            "",
            markdown_table(
                ["model", "parameters"], [[m, f"{s['mean']:,.0f}"] for m, s in params["models"].items()]
            ),
            "",
        ]
        if ratio:
            lines += [f"Teacher / student: {fmt_mean_std(ratio, 1)}x.", ""]
    seconds = payload["seconds"]
    if seconds["stages"] or seconds["wall"]:
        stage_rows = [[k, _cell(s, 1)] for k, s in seconds["stages"].items()]
        if seconds["wall"]:
            stage_rows.append(["total wall (subprocess)", _cell(seconds["wall"], 1)])
        lines += ["## Stage seconds", "", markdown_table(["stage", "seconds"], stage_rows), ""]
    trained = sorted({m for r in runs for m in r.get("epochs", {})})
    if trained:
        rows = [[r["seed"], *("{} / {}".format(*r["epochs"][m]) if m in r["epochs"] else "–" for m in trained)]
                for r in runs]  # fmt: skip
        lines += [
            "## Epochs (run / best on validation NDCG@10)",
            "",
            markdown_table(["seed", *trained], rows),
            "",
        ]
    warned = [(r["seed"], w) for r in runs for w in r["warnings"]]
    if warned:
        lines += ["## Warnings", "", *(f"- seed {s}: {w}" for s, w in warned), ""]
    lines += ["## Commands", "", "```", meta.get("command", ""), *meta.get("commands", []), "```", ""]
    machine = meta.get("machine", {})
    lines += [
        f"Machine: {machine.get('platform')}, {machine.get('cores')} cores, python "
        f"{machine.get('python')}; up to {meta.get('jobs')} seed(s) in parallel.",
        "",
    ]
    return "\n".join(lines)


def plot_ndcg(payload: dict[str, Any], target: float | None, path: Path) -> Path:
    """Bars of mean NDCG@10 per model (± std), each seed's value as a point, the published SASRec line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m, info in payload["models"].items() if NDCG in info["test"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, model in enumerate(models):
        stat = payload["models"][model]["test"][NDCG]
        ax.bar(i, stat["mean"], yerr=stat["std"], color="#9ecae1", edgecolor="#3182bd", capsize=4)
        n = len(stat["values"])
        offsets = [(j - (n - 1) / 2) * 0.12 for j in range(n)]
        ax.scatter([i + o for o in offsets], stat["values"], color="#08519c", zorder=3, s=18)
    if reference := payload["reference"].get("published_sasrec_ndcg@10"):
        ax.axhline(reference, color="#d62728", linestyle="-", label=f"published SASRec {reference}")
    if target is not None:
        ax.axhline(target, color="#ff7f0e", linestyle="--", label=f"teacher target {target:g}")
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("test NDCG@10")
    ax.set_title(f"{payload['dataset']}: NDCG@10 per model (bars: mean ± std, points: seeds)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(
    dataset: str,
    runs: Sequence[SeedRun],
    meta: dict[str, Any],
    out_dir: Path,
    teacher_target: float | None = None,
) -> tuple[dict[str, Any], tuple[Path, Path, Path]]:
    """Checks, `quality_<dataset>.json`, `.md` and `.png` in out_dir; returns the payload and the paths."""
    name = f"quality_{dataset}"
    checks = compute_checks(runs, dataset, teacher_target)
    payload = build_payload(dataset, runs, checks, meta)
    target = teacher_target if teacher_target is not None else TEACHER_TARGET.get(dataset)
    png = plot_ndcg(payload, target, Path(out_dir) / f"{name}.png")
    json_path, md_path = write_report(name, payload, render_markdown(payload, png.name), Path(out_dir))
    return payload, (json_path, md_path, png)


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data", required=True, help="a folder with interactions.csv.gz (+ items.csv.gz), or ml-100k"
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (summarize: those on disk)"
    )
    p.add_argument("--jobs", type=int, default=2, help="seeds run in parallel (default 2)")
    p.add_argument(
        "--config", type=Path, default=None, help=f"default {SHOP_CONFIG} ({ML100K_CONFIG} for ml-100k)"
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed on to every seed's pipeline, after the benchmark's own",
    )
    p.add_argument("--teacher-target", type=float, default=None, help="override the teacher NDCG@10 target")
    p.add_argument("--summarize-only", action="store_true", help="rebuild the outputs from the runs on disk")
    p.add_argument("--root", type=Path, default=BENCH_ROOT, help=f"the runs' folders (default {BENCH_ROOT})")
    p.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help=f"where the results go (default {RESULTS_DIR})"
    )
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ds = dataset_spec(args.data, args.config)
    if not args.summarize_only:
        if args.data != ML100K and not (Path(args.data) / INTERACTIONS_FILE).is_file():
            print(f"error: {Path(args.data) / INTERACTIONS_FILE}: no such file", file=sys.stderr)
            return 2
        if not ds.config.is_file():
            print(f"error: {ds.config}: no such config file", file=sys.stderr)
            return 2
    seeds = args.seeds or (seeds_on_disk(args.root, ds.name) if args.summarize_only else [0, 1, 2])
    if not seeds:
        print(f"error: no runs under {Path(args.root) / ds.name}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    fetch_cmd = None
    if not args.summarize_only:
        if ds.fetch:
            fetch_cmd = shlex.join(fetch_argv())
            record = run_logged(fetch_argv(), Path(args.root) / ds.name / "fetch")
            if record["returncode"] != 0:
                print(
                    f"error: {fetch_cmd} failed; see {Path(args.root) / ds.name / 'fetch' / LOG_FILE}",
                    file=sys.stderr,
                )
                return 2
        run_seeds(ds, seeds, args.root, args.jobs, args.sets)
    runs = read_seeds(args.root, ds.name, seeds)
    meta = {
        "command": " ".join(["python -m bench.quality", *(sys.argv[1:] if argv is None else argv)]),
        "commands": [c for c in [fetch_cmd, *(r.command for r in runs)] if c],
        "config": str(ds.config),
        "data": args.data,
        "seeds": seeds,
        "jobs": args.jobs,
        "user_sets": args.sets,
        "summarize_only": args.summarize_only,
        "root": str(args.root),
        "machine": machine_info(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "bench_seconds": time.perf_counter() - t0,
    }
    payload, paths = write_outputs(ds.name, runs, meta, args.out, args.teacher_target)
    table = [[c["name"], c["status"], c["detail"]] for c in payload["checks"]]
    print(markdown_table(["check", "result", "numbers"], table))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0 if all(r.status in (PUBLISHED, REFUSED) for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
