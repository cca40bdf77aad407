"""Where the offline job's time goes, stage by stage and line by line: `python -m bench.profile_stages --data DIR`.

Runs README's own-data command (`recdistill pipeline`, `configs/shop.toml` by default) on one shop log
under py-spy (a sampling profiler outside the process: nothing in the job is instrumented, so what
is measured is the job as it runs), with each training stage cut at `--stage-seconds` so a profile
costs minutes, not the half hour of a converged run. The samples are split by what the job was doing:
- the stage: the innermost frame in training/pipeline.py (`train_teacher`, `train_students`, ...);
  inside `train_students` the soft labels, the calibration and each `fit_student` run (named in the
  order their records in the run's work_dir were written: scratch, then the distilled student);
- in a training stage, the line of training/fit/loop.py's `train_loop` it was on (the step, the
  backward pass, the optimiser, the weight average, validation);
- inside the step, the line of the stage's `batch_loss` (building the batch, the towers, each loss).
Epoch times come from those records' curves. The run publishes even when a gate fails (cut stages
may not pass them): the export is part of the time. Results: bench/results/profile_<log>.{json,md,png}.

Every figure is a share of py-spy's samples (`--rate` a second) of one run on this machine.
"""

from __future__ import annotations

import argparse
import json
import linecache
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR, markdown_table, write_report

log = logging.getLogger(__name__)

PIPELINE_FILE = "training/pipeline.py"
LOOP_FILE = "training/fit/loop.py"
STUDENT_STAGES = {  # train_students' callees -> the stage they are
    "build_soft_labels": "soft_labels",
    "calibrate_fit": "calibrate",
}
PIPELINE_STAGES = {"train_teacher": "teacher"}  # named as its record and curve are
TOP_LINES = 8  # batch_loss lines listed per stage
MIN_SHARE = 0.005  # train_loop lines under this share of their stage are summed into "the rest"


class ProfileError(RuntimeError):
    """Bad input to the profile: one line naming what and where."""


@dataclass
class Frame:
    name: str
    file: str
    line: int

    @property
    def short(self) -> str:
        """The function's own name (py-spy gives qualified ones: `fit_teacher.<locals>.batch_loss`)."""
        return self.name.rsplit(".", 1)[-1]

    def source(self) -> str:
        """The frame's source line, stripped (py-spy names files by absolute path)."""
        return linecache.getline(self.file, self.line).strip() or f"{Path(self.file).name}:{self.line}"


@dataclass
class StageProfile:
    seconds: float = 0.0
    phases: Counter[str] = field(default_factory=Counter)  # train_loop line -> seconds
    step_lines: Counter[str] = field(default_factory=Counter)  # batch_loss line -> seconds


def read_speedscope(path: Path) -> list[tuple[list[Frame], float]]:
    """(stack outermost first, seconds) per sample of the thread with the most time, in time order."""
    try:
        doc = json.loads(path.read_text())
        frames = [Frame(f["name"], f.get("file", ""), int(f.get("line", 0))) for f in doc["shared"]["frames"]]
        profile = max(doc["profiles"], key=lambda p: sum(p["weights"]))
        return [
            ([frames[i] for i in stack], float(w))
            for stack, w in zip(profile["samples"], profile["weights"], strict=True)
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProfileError(f"{path}: not a py-spy speedscope profile ({exc})") from exc


def _innermost(stack: list[Frame], file_suffix: str, name: str | None = None) -> Frame | None:
    for frame in reversed(stack):
        if frame.file.endswith(file_suffix) and (name is None or frame.short == name):
            return frame
    return None


def stage_of(stack: list[Frame]) -> str:
    """The stage a sample belongs to; `fit_student` for either student (named later, by order)."""
    names = {f.short for f in stack}
    if "fit_student" in names:
        return "fit_student"
    for callee, stage in STUDENT_STAGES.items():
        if callee in names:
            return stage
    frame = _innermost(stack, PIPELINE_FILE)
    if frame is not None:
        return PIPELINE_STAGES.get(frame.short, frame.short)
    return (
        "start-up" if not any(f.file.endswith(".py") and "/training/" in f.file for f in stack) else "other"
    )


def split_samples(
    samples: list[tuple[list[Frame], float]], student_names: list[str]
) -> dict[str, StageProfile]:
    """Per stage: its seconds, train_loop's lines and batch_loss's lines. Each contiguous run of
    `fit_student` samples takes the next name of `student_names` (the records' order)."""
    out: dict[str, StageProfile] = defaultdict(StageProfile)
    names, current, in_student = iter(student_names), "", False
    for stack, seconds in samples:
        stage = stage_of(stack)
        if stage == "fit_student":
            if not in_student:  # a new run of fit_student: the next student in the records' order
                current = next(names, f"student-{len(out)}")
            in_student, stage = True, current
        elif stage not in ("other", "start-up"):  # a stray sample does not end a student's run
            in_student = False
        profile = out[stage]
        profile.seconds += seconds
        loop = _innermost(stack, LOOP_FILE, "train_loop")
        if loop is not None:
            profile.phases[loop.source()] += seconds
            step = _innermost(stack, "", "batch_loss")
            if step is not None:
                profile.step_lines[step.source()] += seconds
    return dict(out)


def epoch_seconds(curves: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    """Per stage's curve: epochs run and the median seconds an epoch (its validation included)."""
    out: dict[str, dict[str, float | None]] = {}
    for name, curve in curves.items():
        ends = [row["seconds"] for row in curve]
        spans = sorted(b - a for a, b in zip([0.0, *ends][: len(ends)], ends, strict=True))
        out[name] = {"epochs": len(curve), "median_epoch_seconds": spans[len(spans) // 2] if spans else None}
    return out


def read_records(work_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The curves of the stage records a run leaves in its work_dir (`<stage>.json`, published or
    not), in the order the stages finished."""
    records = sorted(
        (p for p in Path(work_dir).glob("*.json") if p.stem in ("teacher", "scratch", "student")),
        key=lambda p: p.stat().st_mtime,
    )
    if not records:
        raise ProfileError(
            f"{work_dir}: no teacher.json, scratch.json or student.json (a pipeline's work_dir)"
        )
    return {p.stem: json.loads(p.read_text()).get("curve", []) for p in records}


# --- running the job --------------------------------------------------------------------------------


def pipeline_argv(args: argparse.Namespace, work: Path) -> list[str]:
    sets = [
        "data.source=file",
        f"data.path={args.data / 'interactions.csv.gz'}",
        f"data.items_path={args.data / 'items.csv.gz'}",
        f"models_dir={work / 'models'}",
        f"work_dir={work / 'work'}",
        f"teacher.max_train_seconds={args.stage_seconds}",
        f"student.max_train_seconds={args.stage_seconds}",
        "eval.peers=['popularity']",
        "publish.require_gates=false",  # a profile measures time: a refused gate would skip the export
        "side_process=false",  # py-spy follows one process: every stage in it (training/schedule/side.py)
        f"threads={args.threads}",
        f"seed={args.seed}",
        *args.set,
    ]
    argv = [sys.executable, "-m", "recdistill.cli", "pipeline", "--config", str(args.config), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    return argv


def run_profiled(args: argparse.Namespace, work: Path) -> tuple[Path, list[str]]:
    """The pipeline under py-spy; (speedscope file, the command). Its records are in work / "work"."""
    beside = Path(sys.executable).parent / "py-spy"  # the venv's, when its bin is not on PATH
    spy = shutil.which(args.py_spy) or (str(beside) if args.py_spy == "py-spy" and beside.is_file() else None)
    if spy is None:
        raise ProfileError(f"--py-spy {args.py_spy}: not found (pip install py-spy, or the bench extra)")
    out = work / "profile.speedscope.json"
    command = [spy, "record", "--rate", str(args.rate), "--format", "speedscope", "-o", str(out), "--"]
    command += pipeline_argv(args, work)
    log.info("running %s", " ".join(command))
    done = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], check=False)
    if done.returncode != 0:
        raise ProfileError(f"the profiled pipeline exited {done.returncode}; its log is above")
    return out, command


# --- report -----------------------------------------------------------------------------------------


def _folded(shares: dict[str, float]) -> dict[str, float]:
    """The lines at or above MIN_SHARE, then the others summed as "the rest"."""
    kept = {line: v for line, v in shares.items() if v >= MIN_SHARE}
    rest = sum(shares.values()) - sum(kept.values())
    return {**kept, "the rest": rest} if rest > 0 else kept


def summary(stages: dict[str, StageProfile], epochs: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    total = sum(p.seconds for p in stages.values()) or 1.0
    rows = []
    for name, p in sorted(stages.items(), key=lambda kv: -kv[1].seconds):
        rows.append(
            {
                "stage": name,
                "seconds": p.seconds,
                "share": p.seconds / total,
                **epochs.get(name, {}),
                "phases": _folded({line: s / p.seconds for line, s in p.phases.most_common()}),
                "step_lines": {line: s / p.seconds for line, s in p.step_lines.most_common(TOP_LINES)},
            }
        )
    return rows


def markdown(payload: dict[str, Any]) -> str:
    rows = payload["stages"]
    lines = [
        f"# Where the offline job's time goes: {payload['data']}",
        "",
        f"Command: `{payload['command']}`. py-spy at {payload['rate']} samples a second over the whole run, "
        f"each training stage cut at {payload['stage_seconds']:g} s (so training's share here is smaller than "
        "in a converged run: multiply its epochs instead). Machine: "
        f"{payload['machine']}.",
        "",
        markdown_table(
            ["stage", "sampled s", "share", "epochs run", "s / epoch (median)"],
            [
                [
                    r["stage"],
                    f"{r['seconds']:.1f}",
                    f"{100 * r['share']:.1f}%",
                    r.get("epochs", "-"),
                    "-" if r.get("median_epoch_seconds") is None else f"{r['median_epoch_seconds']:.1f}",
                ]
                for r in rows
            ],
        ),  # fmt: skip
    ]
    for r in rows:
        if not r["phases"]:
            continue
        lines += ["", f"## {r['stage']}: train_loop, then the step's batch_loss (share of the stage)", ""]
        lines.append(
            markdown_table(
                ["train_loop line", "share"], [[f"`{k}`", f"{100 * v:.1f}%"] for k, v in r["phases"].items()]
            )
        )
        if r["step_lines"]:
            lines += [
                "",
                markdown_table(
                    ["batch_loss line", "share"],
                    [[f"`{k}`", f"{100 * v:.1f}%"] for k, v in r["step_lines"].items()],
                ),
            ]
    lines += ["", f"![stages and phases]({payload['png']})"]
    return "\n".join(lines) + "\n"


def draw(payload: dict[str, Any], path: Path) -> None:
    """One bar per stage, split into backward / optimiser / step / validation / the rest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = {"backward": "backward", "step": "step(", "optimiser": "opt.", "validate": "validate"}
    rows = payload["stages"]
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(rows)))
    left = [0.0] * len(rows)
    for label, needle in [*buckets.items(), ("other", None)]:
        widths = []
        for r in rows:
            if needle is None:
                shared = sum(v for k, v in r["phases"].items() if not any(n in k for n in buckets.values()))
                widths.append(r["seconds"] * (shared if r["phases"] else 1.0))
            else:
                widths.append(r["seconds"] * sum(v for k, v in r["phases"].items() if needle in k))
        ax.barh([r["stage"] for r in rows], widths, left=left, label=label)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlabel("sampled seconds")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{payload['data']}: stages (training cut at {payload['stage_seconds']:g} s each)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.profile_stages", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data", type=Path, required=True, help="a folder with interactions.csv.gz and items.csv.gz"
    )
    p.add_argument("--config", type=Path, default=Path("configs/shop.toml"))
    p.add_argument("--stage-seconds", type=float, default=90.0, help="each training stage's cap")
    p.add_argument("--rate", type=int, default=100, help="py-spy samples a second")
    p.add_argument("--threads", type=int, default=1, help="torch threads (one core, as the benches run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="another pipeline override key=value")
    p.add_argument("--py-spy", default="py-spy", help="the py-spy executable")
    p.add_argument(
        "--speedscope", type=Path, help="summarise this py-spy profile (with --records), run nothing"
    )
    p.add_argument("--records", type=Path, help="the profiled run's work_dir (with --speedscope)")
    p.add_argument("--work", type=Path, help="keep the run here (default: a temp folder, removed)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    for name in ("interactions.csv.gz", "items.csv.gz"):
        if args.speedscope is None and not (args.data / name).is_file():
            p.error(f"--data {args.data}: no {name} there")
    if (args.speedscope is None) != (args.records is None):
        p.error("--speedscope and --records go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="recdistill-profile-"))
    try:
        if args.speedscope is not None:
            speedscope, records = args.speedscope, args.records
            command = "python -m bench.profile_stages " + " ".join(sys.argv[1:] if argv is None else argv)
        else:
            speedscope, argv_run = run_profiled(args, work)
            records, command = work / "work", " ".join(argv_run)
        curves = read_records(records)
        student_names = [n for n in curves if n != "teacher"]
        stages = split_samples(read_speedscope(speedscope), student_names)
        name = args.data.name
        payload = {
            "benchmark": "profile_stages",
            "data": name,
            "command": command,
            "rate": args.rate,
            "stage_seconds": args.stage_seconds,
            "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
            "stages": summary(stages, epoch_seconds(curves)),
            "png": f"profile_{name}.png",
        }
        args.out.mkdir(parents=True, exist_ok=True)
        draw(payload, args.out / payload["png"])
        json_path, md_path = write_report(f"profile_{name}", payload, markdown(payload), args.out)
        print(md_path.read_text())
        return 0
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
