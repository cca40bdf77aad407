"""The `recdistill` command: the whole offline job, each stage on its own, and the service.

Nothing heavy is imported at module level (no torch, no pandas): the serving image installs the
package without torch and runs `recdistill serve`, so every stage imports its modules inside its
own function. Bad input (data, config, a missing file) prints one message on stderr and exits 2;
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
log = logging.getLogger("recdistill")


def _load(args: argparse.Namespace) -> Any:
    from training.config import load_config

    if not Path(args.config).is_file():
        raise FileNotFoundError(f"{args.config}: no such config file")
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
    """(config, interactions, split, soft labels) from the teacher in work_dir (cached when possible)."""
    from training.pipeline import load_trained_teacher, soft_labels

    cfg, data, split = _load_data(args)
    teacher, _ = load_trained_teacher(cfg, data)
    return cfg, data, split, soft_labels(cfg, teacher, split, progress=_progress(args))


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


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from training.movielens import fetch_ml100k

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


def cmd_soft_labels(args: argparse.Namespace) -> int:
    _, _, _, labels = _load_soft_labels(args)
    print(f"soft labels: {len(labels)} pairs x {labels.candidates.shape[1]} candidates")
    return 0


def cmd_student(args: argparse.Namespace) -> int:
    from training.pipeline import train_students

    cfg, data, split, labels = _load_soft_labels(args)
    for name, fit in train_students(cfg, data, split, labels, progress=_progress(args)).items():
        print(f"{name}: {fit.checkpoint} in {fit.seconds:.1f} s; valid {_metrics_line(fit.valid_metrics)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.pipeline import load_data, load_trained, publish_trained

    cfg = _load(args)
    t0 = time.perf_counter()
    data, split = load_data(cfg)
    result = publish_trained(cfg, data, split, load_trained(cfg, data))
    print(summary(result.manifest.model_dump(mode="json"), result.version_dir, time.perf_counter() - t0))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from app.server import serve

    serve(Path(args.models), args.host, args.port)
    return 0


def cmd_simulate_ab(args: argparse.Namespace) -> int:
    from training.simulate_ab import simulate_ab

    result = simulate_ab(args.url, Path(args.models), args.requests, args.seed)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_events_export(args: argparse.Namespace) -> int:
    from app.events_export import export_events

    result = export_events(Path(args.db), Path(args.out))
    print(f"events written to {args.out}" + (f" ({result})" if result is not None else ""))
    return 0


# --- output -------------------------------------------------------------------------------------------


def _metrics_line(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "users" and isinstance(v, float))


def summary(manifest: dict[str, Any], version_dir: Path, seconds: float) -> str:
    """The one-screen result: where it went, how good, how small, how long."""
    metrics = manifest.get("metrics", {})
    test = metrics.get("test", {})
    lines = [
        f"published {manifest['version']} -> {version_dir}  ({seconds:.0f} s)",
        f"dataset {manifest['dataset']['name']}: {manifest['dataset']['n_users']} users, "
        f"{manifest['dataset']['n_items']} items, {manifest['dataset']['n_interactions']} interactions",
        "",
    ]
    if test:
        cols = [c for c in next(iter(test.values())) if c != "users"]
        lines.append(f"{'test':<12}" + "".join(f"{c:>13}" for c in cols))
        for name, row in test.items():
            lines.append(f"{name:<12}" + "".join(f"{row.get(c, float('nan')):>13.4f}" for c in cols))
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


# --- parser -------------------------------------------------------------------------------------------


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/synthetic.toml", help="pipeline config (TOML)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. teacher.epochs=5",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recdistill", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str, config: bool = True) -> Any:
        p = sub.add_parser(name, help=help_, description=help_)
        if config:
            _config_args(p)
        p.set_defaults(func=func)
        return p

    pipeline = add(
        "pipeline", cmd_pipeline, "data -> teacher -> soft labels -> student -> export -> evaluate -> publish"
    )
    pipeline.add_argument(
        "--nproc",
        type=_positive_int,
        default=1,
        metavar="N",
        help="train with N processes (DistributedDataParallel, re-launched under torchrun)",
    )
    data = sub.add_parser("data", help="fetch or check a dataset").add_subparsers(
        dest="data_command", required=True
    )
    fetch = data.add_parser("fetch", help="download and cache a public dataset (checksummed)")
    fetch.add_argument("dataset", choices=["ml-100k"])
    fetch.add_argument("--cache-dir", default="data/cache")
    fetch.set_defaults(func=cmd_data_fetch)
    check = data.add_parser("check", help="load and validate the configured data; print a summary")
    _config_args(check)
    check.set_defaults(func=cmd_data_check)
    add("teacher", cmd_teacher, "train the teacher into work_dir")
    add("soft-labels", cmd_soft_labels, "compute (or load cached) soft labels from the teacher in work_dir")
    add("student", cmd_student, "train the distilled student (and scratch baseline, sweep) into work_dir")
    add(
        "export", cmd_export, "evaluate, export to ONNX, check parity and publish from work_dir's checkpoints"
    )
    serve = add("serve", cmd_serve, "serve the latest published version", config=False)
    serve.add_argument("--models", default="models")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    ab = add(
        "simulate-ab",
        cmd_simulate_ab,
        "replay held-out users against a running service's A/B endpoint",
        config=False,
    )
    ab.add_argument("--requests", type=int, default=1000)
    ab.add_argument("--url", default="http://127.0.0.1:8000")
    ab.add_argument("--models", default="models")
    ab.add_argument("--seed", type=int, default=0)
    events = sub.add_parser("events", help="the service's event log").add_subparsers(
        dest="events_command", required=True
    )
    export = events.add_parser("export", help="export logged events as an interactions CSV")
    export.add_argument("--db", required=True)
    export.add_argument("--out", required=True)
    export.set_defaults(func=cmd_events_export)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input, not a bug; imported lazily (training.data pulls in numpy only)."""
    from core.manifest import ManifestError
    from training.config import ConfigError
    from training.data import DataError

    errors: list[type[BaseException]] = [ConfigError, DataError, ManifestError, FileNotFoundError]
    try:  # bad --requests, or the service is not reachable
        from training.simulate_ab import SimulationError

        errors.append(SimulationError)
    except ImportError:  # httpx is a dev dependency: absent from the serving image
        pass
    try:
        from training.pipeline import StageError

        errors.append(StageError)
    except ImportError:  # no torch (the serving image): no training stages to fail either
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit 2 inside argparse
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"recdistill {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if type(exc).__name__ in ("ParityError", "PublishError"):  # checked failures: nothing was published
            print(f"recdistill {args.command}: failed: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
