"""The `recdistill` command: the whole offline job, each stage on its own, and the service.

It lives outside both wings and dispatches lazily: a service command (`serve`, `events export`, `models ...`)
imports `app` only, never `training` or torch, so the torch-free serving image (which does not ship
`training/`) runs it; an offline command first checks that its dependencies are installed and, if
not, says in one line how to install them (exit 2). Bad input (data, config, settings, a missing
file) prints one message on stderr and exits 2; never a traceback. A publish gate that fails
(training/evaluate/gates.py) prints one line per failed gate and exits 3: nothing was published.
What an error means is its base in core/errors.py (UserError, NotPublished, GatesFailed), never its name.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

from core.errors import GatesFailed, NotPublished, UserError

EXIT_USAGE = 2
EXIT_GATES = 3  # a publish gate failed: nothing was published (publish.require_gates=false overrides)
log = logging.getLogger("recdistill")
# What a command needs besides the service's dependencies: "train" the offline job with torch,
# "training" the offline job's numpy/pandas code only, None nothing more.
Needs = Literal["train", "training"] | None
INSTALL_TRAIN = "pip install 'recdistill[train]'"


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


DEFAULT_CONFIG = "configs/synthetic.toml"  # the built-in shop, from the repository root


def _config_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--config and --set; `required`: a command about the user's own data has no default to fall back on."""
    if required:
        parser.add_argument("--config", required=True, help="pipeline config (TOML) naming the data")
    else:
        parser.add_argument(
            "--config", default=DEFAULT_CONFIG, help=f"pipeline config (TOML; {DEFAULT_CONFIG})"
        )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. teacher.epochs=5",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _models_parser(sub: Any) -> None:
    """`recdistill models ...` (recdistill/models.py): service commands, torch-free."""
    models = sub.add_parser("models", help="published versions: list, show, diff, promote, pin, rollback")
    cmds = models.add_subparsers(dest="models_command", required=True)

    def add(name: str, func: str, help_: str, json: bool = False) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help_, description=help_)
        p.add_argument("--models", default="models", help="the models folder (as for serve)")
        if json:
            p.add_argument("--json", action="store_true", help="the raw form, as JSON (for scripts)")
        p.set_defaults(func=f"models.{func}", needs=None)
        return p

    add(
        "list", "cmd_list", "every version: created_at, dataset, NDCG@10, sizes, LATEST and pinned", json=True
    )
    show = add(
        "show", "cmd_show", "one version on one screen: data, models, metrics, gates, parity, files", True
    )
    show.add_argument("version")
    diff = add("diff", "cmd_diff", "two versions' offline metrics, agreement and sizes: what differs", True)
    diff.add_argument("a")
    diff.add_argument("b")
    diff.add_argument("--all", action="store_true", help="every row, also the values that are the same")
    add("promote", "cmd_promote", "verify a version and switch LATEST to it").add_argument("version")
    add(
        "pin", "cmd_pin", "verify a version and pin it: every replica serves it, polling never moves"
    ).add_argument("version")
    add("unpin", "cmd_unpin", "clear the pin: replicas follow LATEST again")
    add("rollback", "cmd_rollback", "pin the version published before the current one")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recdistill", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: str, help_: str, config: bool = True, needs: Needs = "train") -> Any:
        p = sub.add_parser(name, help=help_, description=help_)
        if config:
            _config_args(p)
        p.set_defaults(func=func, needs=needs)
        return p

    pipeline = add(
        "pipeline",
        "offline.cmd_pipeline",
        "data -> teacher -> soft labels -> student -> export -> evaluate -> publish",
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
    fetch.set_defaults(func="offline.cmd_data_fetch", needs="training")
    check = data.add_parser("check", help="load and validate the configured data; print a summary")
    _config_args(check, required=True)
    check.set_defaults(func="offline.cmd_data_check", needs="training")
    teacher = add(
        "teacher", "offline.cmd_teacher", "train (or import: teacher.source) the teacher into work_dir"
    )
    imp = teacher.add_subparsers(dest="teacher_command").add_parser(
        "import",
        help="check an imported teacher against the configured data; nothing trains",
        description="check an imported teacher against the configured data; nothing trains",
    )
    imp.add_argument("source", help="onnx:<spec>, python:package.module:factory or tables:<spec>")
    _config_args(imp)
    imp.set_defaults(func="offline.cmd_teacher_import", needs="train")
    add(
        "soft-labels",
        "offline.cmd_soft_labels",
        "compute (or load cached) soft labels from the teacher in work_dir",
    )
    add(
        "student",
        "offline.cmd_student",
        "train the distilled student (and scratch baseline, sweep) into work_dir",
    )
    add(
        "export",
        "offline.cmd_export",
        "evaluate, export to ONNX, check parity and publish from work_dir's checkpoints",
    )
    serve = add("serve", "service.cmd_serve", "serve the latest published version", config=False, needs=None)
    serve.add_argument("--models", default="models")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    ab = add(
        "simulate-ab",
        "offline.cmd_simulate_ab",
        "replay held-out users against a running service's A/B endpoint",
        config=False,
        needs="training",
    )
    ab.add_argument("--requests", type=int, default=1000)
    ab.add_argument("--url", default="http://127.0.0.1:8000")
    ab.add_argument("--models", default="models")
    ab.add_argument("--seed", type=int, default=0)
    ab.add_argument("--json", action="store_true", help="the whole result, with the A/B report, as JSON")
    events = sub.add_parser("events", help="the service's event log").add_subparsers(
        dest="events_command", required=True
    )
    export = events.add_parser("export", help="export logged events as an interactions CSV")
    export.add_argument(
        "--db",
        default=None,
        help="a SQLite history file; default: the store RECDISTILL_* selects (SQLite or the replicas' Redis)",
    )
    export.add_argument("--out", required=True)
    export.add_argument("--since", type=int, default=None, help="only events at or after these epoch seconds")
    export.set_defaults(func="service.cmd_events_export", needs=None)
    catalogue = sub.add_parser("catalogue", help="the service's live catalogue").add_subparsers(
        dest="catalogue_command", required=True
    )
    items = catalogue.add_parser(
        "export", help="export the catalogue with the live overlay and registered items as an item file"
    )
    items.add_argument("--out", required=True, help="the CSV to write (the next retrain's data.items_path)")
    items.add_argument("--models", default="models", help="the models folder (as for serve)")
    items.add_argument("--version", default=None, help="default: the served one (the pin, else LATEST)")
    items.set_defaults(func="service.cmd_catalogue_export", needs=None)
    _models_parser(sub)
    return parser


def missing_dependency(command: str, needs: Needs) -> str | None:
    """One line saying what to install when `command` cannot run here, else None.

    It imports what the command needs (the command would import it next anyway), so a package that is
    present but broken, or blocked, counts as missing rather than failing later with a traceback."""
    if needs is None:
        return None
    try:
        importlib.import_module("training")
    except ImportError:
        return f"recdistill {command}: the offline job (training/) is not installed here; install it with: {INSTALL_TRAIN}"
    if needs == "train":
        try:
            importlib.import_module("torch")
        except ImportError:
            return f"recdistill {command}: needs torch (the `train` extra); install it with: {INSTALL_TRAIN}"
    return None


def _handler(dotted: str) -> tuple[Callable[[argparse.Namespace], int], Any]:
    """("offline.cmd_pipeline") -> the function and its module, imported only now."""
    module_name, func = dotted.split(".")
    module = importlib.import_module(f"recdistill.{module_name}")
    return getattr(module, func), module


def _user_errors(module: Any) -> tuple[type[BaseException], ...]:
    """Bad input: every core.errors.UserError, a missing file, and what the command's module names
    beside them (other packages' errors, e.g. redis's)."""
    return (UserError, FileNotFoundError, *module.user_errors())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit 2 inside argparse
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    command = " ".join(
        a
        for a in (
            args.command,
            getattr(args, "data_command", None),
            getattr(args, "teacher_command", None),
            getattr(args, "events_command", None),
            getattr(args, "catalogue_command", None),
            getattr(args, "models_command", None),
        )
        if a
    )
    if message := missing_dependency(command, args.needs):
        print(message, file=sys.stderr)
        return EXIT_USAGE
    func, module = _handler(args.func)
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `recdistill models show V | head`: the reader stopped; not an error to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141  # as a command killed by SIGPIPE
    except GatesFailed as exc:  # one line per failed gate; no version, LATEST untouched
        print("\n".join(exc.lines), file=sys.stderr)
        print(f"recdistill {args.command}: not published (--set publish.require_gates=false "
              "publishes anyway)", file=sys.stderr)  # fmt: skip
        return EXIT_GATES
    except Exception as exc:
        if isinstance(exc, _user_errors(module)):
            print(f"recdistill {command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, NotPublished):  # parity, the ANN index, the publish step: nothing published
            print(f"recdistill {args.command}: failed: {exc}", file=sys.stderr)
            return 1
        raise


def exit_process(code: int) -> None:
    """Leave the process with `code`; a torchrun worker (WORLD_SIZE > 1) leaves with `os._exit`.

    Why: in torch 2.13, building a DistributedDataParallel keeps the gloo process group alive after
    `destroy_process_group` (its three threads, gloo_tcp_loop and two pt_gloo_runloop, are still
    running when the script ends), and destroying it during interpreter teardown races those
    threads: on a loaded machine 2 of 80 two-rank runs of tests/training/test_distributed.py's
    worker aborted at exit with "terminate called without an active exception". Every result is
    written, fsynced and renamed by then, so a worker flushes its logs and output and skips the
    teardown: 0 aborts in 120 runs under the same load.
    """
    if os.environ.get("WORLD_SIZE", "1") != "1":
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    exit_process(main())
