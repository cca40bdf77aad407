"""The offline job's commands (`pipeline`, `data`, `teacher`, `soft-labels`, `student`, `export`,
`simulate-ab`): thin wrappers over `training/`, which each imports inside its own function.

Only `recdistill.cli` imports this module, and only for these commands, after checking that the
offline job's dependencies are installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from recdistill.cli import DEFAULT_CONFIG


def _load(args: argparse.Namespace) -> Any:
    from training.config_file import load_config

    if not Path(args.config).is_file():
        default = " (the default when --config is not given: run from the repository root, or pass --config)"
        raise FileNotFoundError(
            f"{args.config}: no such config file{default if args.config == DEFAULT_CONFIG else ''}"
        )
    return load_config(Path(args.config), args.set)


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
    from training.pipeline import ensemble_soft_labels, soft_labels
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
    with session(cfg.device, cfg.threads) as ctx:  # joins torchrun's group; nothing in a single process
        result = run_pipeline(cfg, progress=_progress(args) and ctx.is_main)
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
    fit = train_teacher(cfg, data, split, progress=_progress(args))
    print(f"teacher: {fit.checkpoint} in {fit.seconds:.1f} s; valid {_metrics_line(fit.valid_metrics)}")
    return 0


def cmd_teacher_import(args: argparse.Namespace) -> int:
    """Import and check `args.source` against the configured data; print what was checked."""
    from training.pipeline import load_data
    from training.teacher.imported import import_teacher

    args.set = [*args.set, f"teacher.source={args.source}"]
    cfg = _load(args)
    data, _ = load_data(cfg)
    result = import_teacher(cfg, data)
    report, t = result.source.report, result.teacher
    print(f"teacher {args.source}: ok, sha256 {result.source.sha256}")
    print(f"  query: {'user index + ' if t.takes_user_id else ''}{'history' if t.takes_history else 'no history (a lookup by user id)'}; "
          f"dim {t.dim}; {t.n_items} items; scores are dot products")  # fmt: skip
    for what in ("items", "users"):
        if what in report:
            r = report[what]
            print(f"  {what}: {r['ids'] - r['unmapped_ids']} of {r['ids']} mapped, "
                  f"{r['unmapped_interaction_share']:.2%} of the interactions unmapped")  # fmt: skip
    if "export_check" in report:
        print(
            f"  ONNX export: max |user vector diff| {report['export_check']['max_abs_user_vector_diff']:.3g}"
        )
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
    for name, fit in train_students(cfg, data, split, teacher, progress=_progress(args)).items():
        print(f"{name}: {fit.checkpoint} in {fit.seconds:.1f} s; valid {_metrics_line(fit.valid_metrics)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.pipeline import load_data, publish_trained
    from training.trained import load_trained

    cfg = _load(args)
    t0 = time.perf_counter()
    data, split = load_data(cfg)
    result = publish_trained(cfg, data, split, load_trained(cfg, data))
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
    metrics = manifest.get("metrics", {})
    test = metrics.get("test", {})
    lines = [
        f"published {manifest['version']} -> {version_dir}  ({seconds:.0f} s)",
        f"dataset {manifest['dataset']['name']}: {manifest['dataset']['n_users']} users, "
        f"{manifest['dataset']['n_items']} items, {manifest['dataset']['n_interactions']} interactions",
        "",
        *_quality_lines(metrics),
    ]
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
    parity = manifest.get("parity", {})
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
    lines.append(f"report: {version_dir / 'report.md'}")
    return "\n".join(lines)


def user_errors() -> tuple[type[BaseException], ...]:
    """Other packages' exceptions that mean bad input here: none (the offline job's own errors are
    core.errors.UserError: DataError, ConfigError, StageError, TeacherImportError, SimulationError)."""
    return ()
