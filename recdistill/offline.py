"""The offline job's commands (`pipeline`, `data`, `teacher`, `soft-labels`, `student`, `export`,
`simulate-ab`): thin wrappers over `training/`, which each imports inside its own function.

Only `recdistill.cli` imports this module, and only for these commands, after checking that the
offline job's dependencies are installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import GatesFailed
from recdistill.cli import DEFAULT_CONFIG


def _load_config(args: argparse.Namespace) -> Any:
    """The config file with the --set overrides, as written."""
    from training.config_file import load_config

    if not Path(args.config).is_file():
        default = " (the default when --config is not given: run from the repository root, or pass --config)"
        raise FileNotFoundError(
            f"{args.config}: no such config file{default if args.config == DEFAULT_CONFIG else ''}"
        )
    return load_config(Path(args.config), args.set)


def _load(args: argparse.Namespace) -> Any:
    """The config, with `warm_start = "served"` resolved to the version the service serves."""
    return resolve_served(_load_config(args))


def resolve_served(cfg: Any) -> Any:
    """cfg with `warm_start = "served"` replaced by the served version's name (the pin, else LATEST,
    read where the service keeps them: RECDISTILL_* settings); VersionError when nothing is published."""
    from training.config import WARM_START_SERVED

    if cfg.warm_start == WARM_START_SERVED:
        from recdistill.models import served_version

        cfg.warm_start = served_version(Path(cfg.models_dir))
    return cfg


def _warm(cfg: Any, data: Any) -> Any:
    from training.warm.start import open_warm_start

    return open_warm_start(cfg, data)


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _load_data(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(config, interactions, split): what every stage that reads the configured data starts from."""
    from training.pipeline import load_data

    cfg = _load(args)
    data, split = load_data(cfg)
    return cfg, data, split


def _load_soft_labels(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """(config, interactions, split, soft labels) from the models in work_dir (cached when possible):
    the teacher's, or with `distill.soft_labels_from = "teacher+scratch"` the teacher's and the
    scratch student's, which `recdistill student` trains first."""
    from training.student.labels import ensemble_soft_labels, soft_labels
    from training.student.model import load_student
    from training.trained import load_trained_teacher
    from training.workdir import StageError

    cfg, data, split = _load_data(args)
    teacher, _ = load_trained_teacher(cfg, data)
    if cfg.distill.soft_labels_from == "teacher":
        return cfg, data, split, soft_labels(cfg, teacher, split, progress=_progress(args))
    scratch = Path(cfg.work_dir) / "scratch.pt"
    if not scratch.is_file():
        raise StageError(
            f"{scratch}: no scratch student; distill.soft_labels_from = 'teacher+scratch' needs it: "
            "run `recdistill student`, which trains it first"
        )
    labels = ensemble_soft_labels(cfg, teacher, load_student(scratch), split, progress=_progress(args))
    return cfg, data, split, labels


# --- subcommands --------------------------------------------------------------------------------------


def cmd_pipeline(args: argparse.Namespace) -> int:
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:  # --nproc N: re-launch under torchrun
        from training.distributed import relaunch

        _load(args)  # a bad config fails here, once, with exit 2
        return relaunch(args.nproc, _pipeline_argv(args))
    from training.distributed import session
    from training.pipeline import run_pipeline

    cfg = _load(args)
    t0 = time.perf_counter()
    with session(cfg.device, cfg.threads) as ctx, _summary_when_refused(args, cfg, t0):
        result = run_pipeline(cfg, progress=_progress(args) and ctx.is_main)  # torchrun: joins its group
    if result is None:  # torchrun, rank != 0: rank 0 publishes and prints
        return 0
    print(summary(result.manifest.model_dump(mode="json"), result.version_dir, time.perf_counter() - t0))
    return 0


def _pipeline_argv(args: argparse.Namespace) -> list[str]:
    """The `pipeline` command line without --nproc: what each torchrun worker runs."""
    argv = ["-v"] if args.verbose else []
    argv += ["pipeline", "--config", str(args.config)]
    for item in args.set:
        argv += ["--set", item]
    return argv + (["--no-progress"] if args.no_progress else [])


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from training.data.movielens import fetch_ml100k

    folder = fetch_ml100k(Path(args.cache_dir))
    print(f"ml-100k ready in {folder}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    import numpy as np

    cfg, data, split = _load_data(args)
    per_user = np.bincount(data.user, minlength=data.n_users)
    print(
        f"{data.name}: {data.n_users} users, {data.n_items} items, {len(data)} interactions\n"
        f"  interactions per user: median {np.median(per_user):.0f}, max {per_user.max(initial=0)}\n"
        f"  evaluated users (>= {cfg.data.min_interactions} interactions): {len(split.test_users)}\n"
        f"  train interactions: {len(split.train_items)}\n"
        f"  categories: {len(data.catalog.categories)}, items with a price: "
        f"{int(np.isfinite(data.catalog.price).sum())}\n"
        f"  fingerprint: {data.fingerprint}"
    )
    return 0


def cmd_teacher(args: argparse.Namespace) -> int:
    from training.pipeline import train_teacher

    cfg, data, split = _load_data(args)
    fit = train_teacher(cfg, data, split, progress=_progress(args), warm=_warm(cfg, data))
    print(f"teacher: {fit.checkpoint} in {fit.seconds:.1f} s; valid {_metrics_line(fit.valid_metrics)}")
    return 0


def cmd_teacher_import(args: argparse.Namespace) -> int:
    """Import and check `args.source` against the configured data; print what was checked."""
    from training.pipeline import load_data
    from training.teacher.import_report import import_report
    from training.teacher.imported import import_teacher

    args.set = [*args.set, f"teacher.source={args.source}"]
    cfg = _load(args)
    data, _ = load_data(cfg)
    print("\n".join(import_report(import_teacher(cfg, data))))
    return 0


def cmd_soft_labels(args: argparse.Namespace) -> int:
    _, _, _, labels = _load_soft_labels(args)
    print(f"soft labels: {len(labels)} pairs x {labels.candidates.shape[1]} candidates")
    return 0


def cmd_student(args: argparse.Namespace) -> int:
    from training.pipeline import train_students
    from training.trained import load_trained_teacher

    cfg, data, split = _load_data(args)
    teacher, _ = load_trained_teacher(cfg, data)
    fits = train_students(cfg, data, split, teacher, progress=_progress(args), warm=_warm(cfg, data))
    for name, fit in fits.items():
        print(f"{name}: {fit.checkpoint} in {fit.seconds:.1f} s; valid {_metrics_line(fit.valid_metrics)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.pipeline import load_data, publish_trained
    from training.trained import load_trained

    cfg = _load(args)
    t0 = time.perf_counter()
    data, split = load_data(cfg)
    with _summary_when_refused(args, cfg, t0):
        result = publish_trained(cfg, data, split, load_trained(cfg, data), warm=_warm(cfg, data))
    print(summary(result.manifest.model_dump(mode="json"), result.version_dir, time.perf_counter() - t0))
    return 0


def cmd_simulate_ab(args: argparse.Namespace) -> int:
    from recdistill.simulate_ab import format_summary, simulate_ab

    result = simulate_ab(args.url, Path(args.models), args.requests, args.seed)
    print(json.dumps(result, indent=2, default=str) if args.json else format_summary(result))
    return 0


# --- output -------------------------------------------------------------------------------------------


def _metrics_line(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "users" and isinstance(v, float))


def _quality_lines(metrics: dict[str, Any]) -> list[str]:
    """Warnings first, then the test protocol, the peers skipped and the publish gates."""
    from training.evaluate.gates import gate_lines
    from training.evaluate.report import PROTOCOLS

    lines = list(metrics.get("warnings", []))
    if history := metrics.get("test_history"):
        lines.append(f"protocol: {PROTOCOLS.get(history, history)}")
    lines += [f"peer {name} skipped: {why}" for name, why in metrics.get("peers_skipped", {}).items()]
    if gates := metrics.get("gates"):
        lines += [f"publish gates {gates['status']}:", *(f"  {line}" for line in gate_lines(gates))]
    return [*lines, ""] if lines else []


def summary(manifest: dict[str, Any], version_dir: Path, seconds: float) -> str:
    """The one-screen result: where it went, how good, how small, how long."""
    lines = [
        f"published {manifest['version']} -> {version_dir}  ({seconds:.0f} s)",
        f"dataset {manifest['dataset']['name']}: {manifest['dataset']['n_users']} users, "
        f"{manifest['dataset']['n_items']} items, {manifest['dataset']['n_interactions']} interactions",
        "",
        *_result_lines(manifest.get("metrics", {}), manifest.get("parity", {})),
        f"report: {version_dir / 'report.md'}",
    ]
    return "\n".join(lines)


def refused_summary(record: dict[str, Any], path: Path, seconds: float, again: str) -> str:
    """The one-screen result of a version a publish gate refused: every model's metrics, the gates,
    why refused and how to publish it anyway (`again`: the command that does), from refused.json."""
    failed = [g["line"] for g in record.get("gates", {}).get("gates", []) if g.get("status") == "failed"]
    return "\n".join([
        f"NOT published: a publish gate refused this version ({seconds:.0f} s); LATEST and every "
        "published version are unchanged",
        "",
        *_result_lines(record, {}),
        "",
        "why refused:",
        *(f"  {line}" for line in failed),
        "to publish these models anyway (from work_dir, nothing trains again):",
        f"  {again}",
        f"the refused version's figures: {path}",
    ])  # fmt: skip


@contextlib.contextmanager
def _summary_when_refused(args: argparse.Namespace, cfg: Any, t0: float) -> Iterator[None]:
    """Print `refused_summary` on stdout when a publish gate refuses the version, then let the CLI
    answer the refusal as it does (the failed gates on stderr, exit 3)."""
    from training.workdir import REFUSED_FILE

    try:
        yield
    except GatesFailed:
        path = Path(cfg.work_dir) / REFUSED_FILE
        if path.is_file():  # torchrun: rank 0 wrote it and prints
            sets = [*args.set, "publish.require_gates=false"]
            again = " ".join(
                ["recdistill export --config", str(args.config), *(f"--set {shlex.quote(s)}" for s in sets)]
            )
            record = json.loads(path.read_text())
            print(refused_summary(record, path, time.perf_counter() - t0, again))
        raise


def _result_lines(metrics: dict[str, Any], parity: dict[str, Any]) -> list[str]:
    """Warnings, gates, the test table, agreement, sizes, parity and timings: what a summary shows
    of a version, published (its manifest's metrics) or refused (refused.json)."""
    test = metrics.get("test", {})
    lines = _quality_lines(metrics)
    if test:
        cols = [c for c in next(iter(test.values())) if c != "users"]
        width = max(12, *(len(name) + 1 for name in test))  # e.g. "teacher+scratch", the soft labels' source
        lines.append(f"{'test':<{width}}" + "".join(f"{c:>13}" for c in cols))
        for name, row in test.items():
            lines.append(f"{name:<{width}}" + "".join(f"{row.get(c, float('nan')):>13.4f}" for c in cols))
        lines.append("")
    agreement = metrics.get("agreement", {}).get("student")
    if agreement:
        lines.append(
            "student vs teacher: "
            + ", ".join(f"{k} {v:.3f}" for k, v in agreement.items() if k != "users" and v is not None)
        )
    params = metrics.get("parameters", {})
    if params.get("teacher") and params.get("student"):
        lines.append(
            f"parameters: teacher {params['teacher']:,}, student {params['student']:,} "
            f"({params['student'] / params['teacher']:.1%})"
        )
    if parity:
        lines.append(
            "ONNX parity: "
            + ", ".join(
                f"{side} {'ok' if p.get('passed') else 'FAILED'} ({p.get('rows')} rows)"
                for side, p in parity.items()
            )
        )
    timings = metrics.get("seconds", {})
    if timings:
        lines.append("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    return lines


def user_errors() -> tuple[type[BaseException], ...]:
    """Other packages' exceptions that mean bad input here: none (the offline job's own errors are
    core.errors.UserError: DataError, ConfigError, StageError, TeacherImportError, SimulationError)."""
    return ()
