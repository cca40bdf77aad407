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

This module runs the seeds and holds the command line; reading a seed back is bench/quality/runs.py,
aggregation and the checks bench/quality/checks.py, the JSON, Markdown and plot bench/quality/render.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.quality.render import machine_info, write_outputs
from bench.quality.runs import (
    LOG_FILE,
    ML100K,
    PUBLISHED,
    REFUSED,
    RUN_FILE,
    read_seeds,
    seed_dir,
    seeds_on_disk,
)
from bench.report import RESULTS_DIR, markdown_table

log = logging.getLogger(__name__)

# --- what is run ---------------------------------------------------------------------------------
SHOP_CONFIG = Path("configs/shop.toml")  # the preset for shop logs (a folder of CSVs)
ML100K_CONFIG = Path("configs/ml-100k.toml")
ML100K_CACHE = Path("data/cache")  # configs/ml-100k.toml's data.cache_dir
BENCH_ROOT = Path(".recdistill/bench/quality")  # <root>/<dataset>/seed<N>/{models,work,pipeline.log,run.json}
INTERACTIONS_FILE, ITEMS_FILE = "interactions.csv.gz", "items.csv.gz"


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
    """Each seed's pipeline from a clean folder, up to `jobs` at once (the configs train on one thread).

    Seeds side by side already use the cores, so each then trains without its side process
    (training/schedule/side.py): four processes on two cores would only slow each other. The user's
    `--set side_process=...` still wins."""
    from tqdm import tqdm

    if min(jobs, len(seeds)) > 1:
        user_sets = ["side_process=false", *user_sets]

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
