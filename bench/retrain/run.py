"""Warm retraining against cold on real shop logs: what the nightly `recdistill retrain` costs and keeps.

    python -m bench.retrain --data ../shared/data/amazon-beauty [--seeds 0 1 2] [--chain 5] [--refit]
    python -m bench.retrain --data ../shared/data/amazon-sports --summarize-only   # no training

Per log, day 0 is every user's log without their two newest interactions (bench/retrain/days.py);
per seed, day 0 is trained cold, then day 1 (the removed rows as the service's events) is retrained
warm from day 0 and cold, and warm again `--chain` - 1 more times in a row (bench/retrain/steps.py).
Every version is then ranked on day 1's holdout, the same users and queries (bench/retrain/measure.py).
Steps already run are read back, so the benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR
from bench.retrain.days import check_day1_holdout, make_days
from bench.retrain.measure import day1_data, measure_seed
from bench.retrain.render import write_outputs
from bench.retrain.steps import SeedPlan, run_seed

log = logging.getLogger(__name__)
ROOT = Path(".recdistill/bench/retrain")  # <root>/<dataset>/{days,seed<N>}
PROTOCOL = (
    "Day 0: each user's log without their two newest interactions, and the items it has seen; day 1: "
    "those rows back as the service's events (`recdistill retrain --events`), and the whole item file. "
    "Every figure ranks the student of a version, run as served (ONNX), on day 1's standard "
    "leave-one-out holdout (test query = train + validation item, full ranking, seen items excluded), "
    "the same users for every version; an item a version does not know is its miss. No day-1 test or "
    "validation item is in day 0's log (checked below on the files), and day 1 trains on neither a test "
    "item nor an early-stopping user's validation item (training_split), so no holdout reaches any "
    "day-0 or day-1 training data."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retrain", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder with interactions.csv.gz and items.csv.gz")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--chain", type=int, default=5, help="warm retrains in a row on day 1")
    parser.add_argument(
        "--refit", action="store_true", help="also day 0 with publish.refit (its own models folder)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for every step")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--summarize-only", action="store_true", help="read the steps on disk, run nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = Path(args.data)
    root = args.root / data.name
    days = make_days(data, root / "days")
    day1 = day1_data(days)
    result: dict[str, Any] = {
        "dataset": data.name, "protocol": PROTOCOL, "seeds": [], "commands": [], "leak_check": {},
        "days": {"day0_rows": days.n_day0, "events": days.n_events, "new_items": days.new_items},
        "cores": os.cpu_count(), "note": "wall times on a machine shared with other work; CPU seconds beside them",
    }  # fmt: skip
    check = check_day1_holdout(days)
    for seed in args.seeds:
        plan = SeedPlan(root / f"seed{seed}", days, seed, tuple(args.set))
        if args.summarize_only:
            steps = {p.stem: _read(p) for p in sorted(plan.folder.glob("*.json"), key=_run_order)}
        else:
            steps = run_seed(plan, args.chain, args.refit)
        if not steps:
            continue
        result["leak_check"][str(seed)] = check
        result["commands"] += [step["command"] for step in steps.values()]
        result["seeds"].append(
            {"seed": seed, "steps": steps, "ranked": measure_seed(days, plan.folder, steps, day1)}
        )
        log.info("seed %d: %s", seed, {k: v["returncode"] for k, v in steps.items()})
    print(write_outputs(result, RESULTS_DIR))  # noqa: T201 - the benchmark's one line of output
    return 0


def _run_order(path: Path) -> tuple[int, int, str]:
    """Steps read back from disk in the order run_seed runs them (day0, warm1, cold1, warm2.., refit),
    so tables and plots read the same after --summarize-only as after a run."""
    name = path.stem
    if name.startswith("warm") and name[4:].isdigit():
        number = int(name[4:])
        return (1, 0 if number == 1 else number + 1, name)
    return ({"day0": 0, "cold1": 1, "refit": 3}.get(name, 4), 1, name)


def _read(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text())
