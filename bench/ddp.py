"""Data-parallel training on this machine: `recdistill pipeline --nproc N` beside the 1-process run.

Each run is the real CLI in a subprocess (so wall time includes torchrun's start-up and every rank's
imports), with its own models/work folders under a temp dir. Seeds vary the training only: the
synthetic shop's seed is offset by -seed so the data is the same for every run
(`load_interactions` adds the pipeline seed to it). Writes bench/results/<name>.json and .md.

    python -m bench.ddp --config configs/tiny.toml --seeds 5 --nproc 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import aggregate, fmt_mean_std, markdown_table, write_report

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("ndcg@10", "hr@10", "recall@50")


def run_once(
    config: Path, overrides: list[str], nproc: int, seed: int, root: Path, timeout: float
) -> dict[str, Any]:
    """One CLI pipeline run; returns wall seconds, the published test/valid metrics and stage seconds."""
    models, work = root / f"n{nproc}-s{seed}" / "models", root / f"n{nproc}-s{seed}" / "work"
    sets = [
        *overrides,
        f"seed={seed}",
        f"data.synthetic.seed={-seed}",
        f"models_dir={models}",
        f"work_dir={work}",
    ]
    cmd = [sys.executable, "-m", "recdistill.cli", "pipeline", "--config", str(config), "--no-progress"]
    cmd += [arg for s in sets for arg in ("--set", s)] + ["--nproc", str(nproc)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    latest = (models / "LATEST").read_text().strip()
    manifest = json.loads((models / latest / "manifest.json").read_text())
    m = manifest["metrics"]
    row: dict[str, Any] = {
        "nproc": nproc,
        "seed": seed,
        "wall_seconds": wall,
        "versions": len(list(models.glob("2*"))),
    }
    for side in ("teacher", "student"):
        for metric in METRICS:
            row[f"test {side} {metric}"] = m["test"][side][metric]
        row[f"valid {side} ndcg@10"] = m["valid"][side]["ndcg@10"]
    row["stage_seconds"] = m.get("seconds", {})
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "tiny.toml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--name", default="ddp")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        for seed in range(args.seeds):
            for nproc in (1, args.nproc):
                row = run_once(args.config, args.set, nproc, seed, Path(tmp), args.timeout)
                print(f"nproc {nproc} seed {seed}: {row['wall_seconds']:.1f} s, "
                      f"test student ndcg@10 {row['test student ndcg@10']:.4f}", flush=True)  # fmt: skip
                runs.append(row)

    keys = [k for k in runs[0] if k.startswith(("test ", "valid ")) or k == "wall_seconds"]
    summary = {
        n: aggregate([{k: r[k] for k in keys} for r in runs if r["nproc"] == n]) for n in (1, args.nproc)
    }
    # Paired by seed: what moving to N processes changes, against the seed-to-seed spread.
    diffs = {
        k: [b[k] - a[k] for a, b in zip(runs[0::2], runs[1::2], strict=True)]
        for k in keys
        if k != "wall_seconds"
    }
    payload = {
        "config": str(args.config),
        "overrides": args.set,
        "nproc": args.nproc,
        "seeds": args.seeds,
        "machine_cores": __import__("os").cpu_count(),
        "runs": runs,
        "summary": summary,
        "paired_diff_max_abs": {k: max(abs(v) for v in vals) for k, vals in diffs.items()},
    }
    rows = [
        [k, fmt_mean_std(summary[1][k]), fmt_mean_std(summary[args.nproc][k]), f"{payload['paired_diff_max_abs'].get(k, float('nan')):.4f}"]
        for k in keys
    ]  # fmt: skip
    md = (
        f"# DDP: 1 process vs {args.nproc} (`{args.config.name}` {' '.join(args.set)}, {args.seeds} seeds, "
        f"{payload['machine_cores']} cores)\n\n"
        "Wall time is the whole CLI run (start-up, data, training, evaluation, export, publish).\n\n"
        + markdown_table(["metric", "1 process", f"{args.nproc} processes", "max |paired diff|"], rows)
    )
    json_path, md_path = write_report(args.name, payload, md)
    print(md)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
