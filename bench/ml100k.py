"""The MovieLens-100k benchmark: recdistill's teacher, student and scratch student against tuned peers.

Protocol: configs/ml-100k.toml's data -> leave_last_out -> full-ranking `training.evaluate.ranking.evaluate`
with the pipeline's `eval.test_history` (default: the standard leave-one-out query = train items +
the validation item; everything the query has seen is excluded). The peers below are fitted on the
train items only, so under the standard query they do not see the validation item in their user
factors (the pipeline's own ALS peer, training/evaluate/peers.py, is refit on train + validation); the
shop-log benchmark with the pipeline's peers is bench/quality/run.py.
Peers are tuned on the validation item with the first seed, then the chosen config is refitted for
every seed. All PASS/FAIL checks are computed from the measured numbers.

    python -m bench.ml100k [--seeds 0 1 2] [--skip-pipeline] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.checks import Check
from bench.peers import Peer, default_peers, run_seeds, tune
from bench.report import RESULTS_DIR, aggregate, fmt_mean_std, markdown_table, mean_std, write_report
from training.config import ConfigError, PipelineConfig
from training.config_file import load_config
from training.data.split import leave_last_out
from training.data.types import DataError, Split

log = logging.getLogger(__name__)

NAME = "ml100k"
CONFIG = Path("configs/ml-100k.toml")
BENCH_DIR = Path(".recdistill/bench/ml100k")  # per-seed models_dir and work_dir of the pipeline runs
RECDISTILL_MODELS = ("teacher", "student", "scratch")

# The acceptance thresholds on MovieLens-100k: the student must reach these against the teacher.
TEACHER_OVER_PEER = 1.10
STUDENT_OVER_TEACHER = 0.95
PARAMETER_RATIO = 10.0


@dataclass(frozen=True)
class Run:
    """One model, one seed: test metrics, parameter count and training seconds."""

    model: str
    seed: int
    test: dict[str, float]
    n_parameters: int
    seconds: float
    valid: dict[str, float] | None = None


def load_bench_config(path: Path = CONFIG, overrides: list[str] | None = None) -> PipelineConfig:
    """The pipeline config the benchmark runs (configs/ml-100k.toml); ConfigError names a missing or bad file."""
    return load_config(path, overrides)


def load_split(cfg: PipelineConfig) -> Split:
    """The same data and split the pipeline uses; fetches MovieLens-100k into the cache on first use."""
    from training.data.load import load_interactions
    from training.data.movielens import fetch_ml100k

    if cfg.data.source == "ml-100k":
        fetch_ml100k(cfg.data.cache_dir)  # a no-op when the verified copy is cached
    # ml-100k and file sources ignore the seed; a synthetic shop would differ per pipeline seed.
    interactions = load_interactions(cfg.data, seed=cfg.seed)
    return leave_last_out(interactions, cfg.data.min_interactions)


# --- recdistill (the pipeline) -------------------------------------------------------------------


def seed_config(cfg: PipelineConfig, seed: int, root: Path = BENCH_DIR) -> PipelineConfig:
    """A copy of cfg for one seed, publishing into the benchmark's own folders (never models/)."""
    out = cfg.model_copy(deep=True)
    out.seed = seed
    out.models_dir = root / f"seed{seed}" / "models"
    out.work_dir = root / f"seed{seed}" / "work"
    return out


def pipeline_runs(result: Any, seed: int) -> list[Run]:
    """teacher, student and scratch Runs from a `training.pipeline.PipelineResult`.

    Test metrics: result.metrics["test"][model]; training seconds: result.seconds[model] (the
    student's excludes building the soft labels, which is result.seconds["soft_labels"]);
    parameters: the manifest's metrics["parameters"] (the scratch student has the student's shape).
    """
    test = result.metrics.get("test", {})
    params = dict(result.manifest.metrics.get("parameters", {}))
    params.setdefault("teacher", result.manifest.teacher.parameters)
    params.setdefault("student", result.manifest.student.parameters)
    params.setdefault("scratch", params["student"])
    valid = result.metrics.get("valid", {})
    runs = []
    for model in RECDISTILL_MODELS:
        if model not in test:
            raise KeyError(f"pipeline result has no test metrics for {model!r} (has {sorted(test)})")
        runs.append(
            Run(
                model,
                seed,
                {k: float(v) for k, v in test[model].items()},
                int(params[model]),
                float(result.seconds.get(model, float("nan"))),
                {k: float(v) for k, v in valid.get(model, {}).items()} or None,
            )
        )
    return runs


def run_recdistill(cfg: PipelineConfig, seeds: list[int], progress: bool = False) -> list[Run]:
    """Run the whole recdistill pipeline once per seed (training.pipeline.run_pipeline)."""
    try:
        from training.pipeline import run_pipeline
    except ImportError as exc:  # the hook: the pipeline module is written by a teammate
        raise RuntimeError(f"training.pipeline is not available ({exc}); rerun with --skip-pipeline") from exc
    if not cfg.distill.train_scratch:
        cfg = cfg.model_copy(deep=True)
        cfg.distill.train_scratch = True  # the scratch baseline is one of the checks
    runs: list[Run] = []
    for seed in seeds:
        start = time.perf_counter()
        result = run_pipeline(seed_config(cfg, seed), progress=progress)
        runs += pipeline_runs(result, seed)
        log.info(
            "recdistill seed %d done in %.0fs (%s)", seed, time.perf_counter() - start, result.version_dir
        )
    return runs


# --- peers ---------------------------------------------------------------------------------------


def run_peers(
    split: Split, peers: list[Peer], seeds: list[int], k: int, recall_k: int
) -> tuple[list[Run], dict[str, Any]]:
    """Tune each peer on validation with seeds[0], refit its best config per seed; (runs, tuning record)."""
    runs: list[Run] = []
    tuning: dict[str, Any] = {}
    for peer in peers:
        start = time.perf_counter()
        tuned = tune(peer, split, seeds[0], k=k, recall_k=recall_k)
        seed_runs = run_seeds(peer, split, tuned.best, seeds, k=k, recall_k=recall_k)
        tuning[peer.name] = {
            "metric": f"valid {tuned.metric}",
            "best": tuned.best,
            "best_valid": max(t.valid[tuned.metric] for t in tuned.trials),
            "grid_size": len(peer.grid),
            "trials": [{"params": t.params, "valid": t.valid, "seconds": t.seconds} for t in tuned.trials],
            "seconds": time.perf_counter() - start,
            "seed_info": [dict(r.info, seed=r.seed) for r in seed_runs],
        }
        runs += [Run(peer.name, r.seed, r.test, r.n_parameters, r.seconds, r.valid) for r in seed_runs]
    return runs, tuning


# --- summary and checks --------------------------------------------------------------------------


def summarize(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per model: test metrics mean ± std over seeds, parameter count, training seconds, per-seed rows."""
    models: dict[str, list[Run]] = {}
    for run in runs:
        models.setdefault(run.model, []).append(run)
    out = {}
    for model, rows in models.items():
        rows = sorted(rows, key=lambda r: r.seed)
        out[model] = {
            "seeds": [r.seed for r in rows],
            "test": aggregate([{k: v for k, v in r.test.items() if k != "users"} for r in rows]),
            "n_parameters": max(r.n_parameters for r in rows),
            "train_seconds": mean_std([r.seconds for r in rows]),
            "per_seed": [
                {"seed": r.seed, "test": r.test, "valid": r.valid, "seconds": r.seconds} for r in rows
            ],
        }
    return out


def _per_seed(summary: dict[str, Any], model: str, metric: str) -> dict[int, float]:
    return {row["seed"]: row["test"][metric] for row in summary[model]["per_seed"]}


def compute_checks(
    summary: dict[str, dict[str, Any]], peers: list[str], metric: str = "ndcg@10"
) -> list[Check]:
    """The four acceptance checks on MovieLens-100k, from the numbers; N/A when a model they compare was not run."""

    def mean(model: str) -> float:
        return float(summary[model]["test"][metric]["mean"])

    have = set(summary)
    checks = []
    peers_run = [p for p in peers if p in have]
    name = f"teacher >= {TEACHER_OVER_PEER:.2f} x best peer {metric}"
    if "teacher" in have and peers_run:
        best = max(peers_run, key=mean)
        bar = TEACHER_OVER_PEER * mean(best)
        detail = (
            f"teacher {mean('teacher'):.4f} vs {TEACHER_OVER_PEER:.2f} x {best} {mean(best):.4f} = {bar:.4f}"
        )
        checks.append(Check(name, mean("teacher") >= bar, detail))
    else:
        checks.append(Check(name, None, "teacher or peers not run"))
    name = f"student >= {STUDENT_OVER_TEACHER:.2f} x teacher {metric}"
    if {"teacher", "student"} <= have:
        bar = STUDENT_OVER_TEACHER * mean("teacher")
        detail = f"student {mean('student'):.4f} vs {STUDENT_OVER_TEACHER:.2f} x teacher {mean('teacher'):.4f} = {bar:.4f}"
        checks.append(Check(name, mean("student") >= bar, detail))
    else:
        checks.append(Check(name, None, "pipeline not run"))
    name = f"student > scratch {metric} in every seed"
    if {"student", "scratch"} <= have:
        student, scratch = _per_seed(summary, "student", metric), _per_seed(summary, "scratch", metric)
        seeds = sorted(set(student) & set(scratch))
        wins = [s for s in seeds if student[s] > scratch[s]]
        detail = ", ".join(f"seed {s}: {student[s]:.4f} vs {scratch[s]:.4f}" for s in seeds)
        checks.append(Check(name, bool(seeds) and len(wins) == len(seeds), detail or "no seeds"))
    else:
        checks.append(Check(name, None, "pipeline not run"))
    name = f"student has >= {PARAMETER_RATIO:.0f}x fewer parameters than the teacher"
    if {"teacher", "student"} <= have:
        teacher_p, student_p = summary["teacher"]["n_parameters"], summary["student"]["n_parameters"]
        ratio = teacher_p / student_p if student_p else float("inf")
        checks.append(
            Check(
                name,
                ratio >= PARAMETER_RATIO,
                f"teacher {teacher_p:,} / student {student_p:,} = {ratio:.1f}x",
            )
        )
    else:
        checks.append(Check(name, None, "pipeline not run"))
    return checks


def render_markdown(
    summary: dict[str, dict[str, Any]], checks: list[Check], tuning: dict[str, Any], meta: dict[str, Any]
) -> str:
    metrics = list(next(iter(summary.values()))["test"]) if summary else []
    rows = [
        [
            model,
            *(fmt_mean_std(info["test"][m]) if m in info["test"] else "–" for m in metrics),
            f"{info['n_parameters']:,}",
            fmt_mean_std(info["train_seconds"], digits=1),
        ]
        for model, info in summary.items()
    ]
    lines = [f"# {meta.get('config', 'ml-100k')}: recdistill vs tuned peers", ""]
    if meta.get("pipeline_error"):
        lines += [f"**The recdistill pipeline failed:** `{meta['pipeline_error']}`", ""]
    lines += [
        f"Test metrics, full ranking over {meta.get('n_items', '?')} items, {meta.get('n_eval_users', '?')} users, "
        f"mean ± std over seeds {meta.get('seeds')}. Peers tuned on validation NDCG@10 (seed {meta.get('seeds', [0])[0]}).",
        "",
        markdown_table(["model", *metrics, "parameters", "train seconds"], rows),
        "",
        "## Checks",
        "",
        markdown_table(["check", "result", "numbers"], [[c.name, c.status, c.detail] for c in checks]),
    ]
    if tuning:
        lines += ["", "## Peer tuning (chosen config)", ""]
        lines.append(
            markdown_table(
                ["peer", "grid size", "best params", "best valid NDCG@10"],
                [
                    [
                        name,
                        t["grid_size"],
                        ", ".join(f"{k}={v}" for k, v in t["best"].items()),
                        f"{t['best_valid']:.4f}",
                    ]
                    for name, t in tuning.items()
                ],
            )
        )
    lines += [
        "",
        f"Command: `{meta.get('command', 'python -m bench.ml100k')}`",
        "",
        f"Total benchmark time: {meta.get('seconds', float('nan')):.0f} s on {meta.get('machine', '?')}.",
    ]
    return "\n".join(lines)


def run_benchmark(
    cfg: PipelineConfig,
    seeds: list[int],
    skip_pipeline: bool = False,
    quick: bool = False,
    out_dir: Path = RESULTS_DIR,
    command: str = "python -m bench.ml100k",
) -> tuple[dict[str, Any], tuple[Path, Path]]:
    """Everything `python -m bench.ml100k` does; returns the JSON payload and the two written paths."""
    start = time.perf_counter()
    split = load_split(cfg)
    k, recall_k = cfg.eval.k, cfg.eval.recall_k
    peers = default_peers(quick=quick)
    peer_runs, tuning = run_peers(split, peers, seeds, k, recall_k)
    peer_seconds = time.perf_counter() - start
    pipeline: list[Run] = []
    pipeline_error = None
    if not skip_pipeline:
        try:
            pipeline = run_recdistill(cfg, seeds)
        except Exception as exc:  # keep the peers' numbers; the report and exit status say what failed
            log.exception("the recdistill pipeline failed")
            pipeline_error = f"{type(exc).__name__}: {exc}"
    summary = summarize(pipeline + peer_runs)
    checks = compute_checks(summary, [p.name for p in peers], metric=f"ndcg@{k}")
    meta = {
        "command": command,
        "seeds": seeds,
        "config": cfg.name,
        "skip_pipeline": skip_pipeline,
        "pipeline_error": pipeline_error,
        "quick_grids": quick,
        "n_users": split.n_users,
        "n_items": split.n_items,
        "n_train": int(len(split.train_items)),
        "n_eval_users": int(len(split.test_users)),
        "machine": f"{platform.machine()} {platform.system()}, python {platform.python_version()}",
        "peer_seconds": peer_seconds,
        "seconds": time.perf_counter() - start,
    }
    payload = {
        "benchmark": NAME,
        "meta": meta,
        "models": summary,
        "checks": [c.as_dict() for c in checks],
        "tuning": tuning,
    }
    paths = write_report(NAME, payload, render_markdown(summary, checks, tuning, meta), out_dir)
    return payload, paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ml100k", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--skip-pipeline", action="store_true", help="only the peers (no teacher/student runs)"
    )
    parser.add_argument("--quick", action="store_true", help="one config per peer instead of the tuning grid")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        cfg = load_bench_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch

    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or 2)
    try:
        command = " ".join(["python -m bench.ml100k", *(sys.argv[1:] if argv is None else argv)])
        payload, (json_path, md_path) = run_benchmark(
            cfg, args.seeds, args.skip_pipeline, args.quick, args.out, command
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads_before)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 1 if payload["meta"]["pipeline_error"] else 0


if __name__ == "__main__":
    sys.exit(main())
