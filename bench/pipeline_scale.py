"""The pipeline at catalog scale (1M items on 2 CPU cores): `python -m bench.pipeline_scale`.

Runs `recdistill pipeline --config configs/synthetic-1m.toml` (1,000,000 products) in a child
process, on this machine, and records what a team sizing its own catalog would ask: wall time per
stage, the child's peak RSS, the test metrics of every model, the teacher's soft-label shortlist
recall, the published ANN index's recall@10 and latency against the exact path, and the sizes.
With `--version-dir` it only summarises a version an earlier run published (no training).

Results: bench/results/pipeline_1m.json and .md (bench/report.py). Nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import machine_info
from bench.report import RESULTS_DIR, markdown_table, write_report
from core.manifest import load_manifest, read_latest

CONFIG = Path("configs/synthetic-1m.toml")
MODELS = ("teacher", "student", "scratch", "popularity")


def run_pipeline(config: Path, models_dir: Path, extra: list[str]) -> tuple[Path, float, float]:
    """(published version dir, wall seconds, peak RSS of the child in MB)."""
    cmd = [sys.executable, "-m", "recdistill.cli", "pipeline", "--config", str(config),
           "--set", f"models_dir={models_dir}", *extra]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: kB
    return models_dir / read_latest(models_dir), wall, peak_mb


def summarise(version_dir: Path) -> dict[str, Any]:
    """The published manifest and report, reduced to the figures the issue asks for."""
    manifest = load_manifest(version_dir)
    report = json.loads((version_dir / "report.json").read_text())
    files_mb = {
        name: round((version_dir / name).stat().st_size / 1e6, 1)
        for name in sorted(manifest.files)
        if name.endswith((".onnx", ".npy", ".faiss"))
    }
    return {
        "version": manifest.version,
        "dataset": manifest.dataset.model_dump(),
        "test_users": report.get("test_users"),
        "test": manifest.metrics["test"],
        "agreement": manifest.metrics.get("agreement", {}),
        "parameters": manifest.metrics.get("parameters", {}),
        "seconds": manifest.metrics.get("seconds", {}),
        "soft_label_shortlist": report.get("soft_label_shortlist"),
        "retrieval": manifest.retrieval.model_dump(mode="json"),
        "parity": {
            side: {k: v for k, v in p.items() if k != "short_history"} for side, p in manifest.parity.items()
        },
        "files_mb": files_mb,
    }


def markdown(payload: dict[str, Any]) -> str:
    s = payload["summary"]
    ds = s["dataset"]
    run = (
        f"wall {payload['wall_seconds']:.0f} s, child peak RSS {payload['peak_rss_mb']:.0f} MB; "
        if "wall_seconds" in payload
        else "summarised from the published version (no run timed here); "
    )
    lines = [
        "# Pipeline at catalog scale (`python -m bench.pipeline_scale`)",
        "",
        f"{ds['n_items']:,} items, {ds['n_users']:,} users, {ds['n_interactions']:,} interactions; {run}"
        f"test metrics on {s['test_users']} users ranked over the whole catalog.",
        "",
        "## Stages (seconds)",
        "",
        markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in s["seconds"].items()]),
        "",
        "## Test metrics",
        "",
    ]
    rows = []
    for name in MODELS:
        if name in s["test"]:
            m = s["test"][name]
            rows.append([name, f"{m['ndcg@10']:.4f}", f"{m['hr@10']:.4f}", f"{m['recall@50']:.4f}",
                         f"{s['parameters'].get(name, '-'):,}" if name in s["parameters"] else "-"])  # fmt: skip
    lines += [markdown_table(["model", "NDCG@10", "HR@10", "Recall@50", "parameters"], rows), ""]
    if s["soft_label_shortlist"]:
        sl = s["soft_label_shortlist"]
        lines += ["## Soft-label shortlist (IVF over the teacher's items)", "",
                  markdown_table(list(sl), [[f"{v:.4g}" for v in sl.values()]]), ""]  # fmt: skip
    r = s["retrieval"]
    lines += ["## Published retrieval", "", "```json", json.dumps(r, indent=2), "```", ""]
    lines += ["## Files (MB)", "", markdown_table(["file", "MB"], list(s["files_mb"].items()))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--models-dir", type=Path, default=Path("models"))
    ap.add_argument("--version-dir", type=Path, help="summarise this published version, do not train")
    ap.add_argument("--set", action="append", default=[], help="extra pipeline overrides (key=value)")
    ap.add_argument("--name", default="pipeline_1m")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    payload: dict[str, Any] = {"machine": machine_info(), "config": str(args.config)}
    if args.version_dir is None:
        extra = [x for s in args.set for x in ("--set", s)]
        version_dir, wall, peak = run_pipeline(args.config, args.models_dir, extra)
        payload |= {"wall_seconds": wall, "peak_rss_mb": peak, "command": " ".join(sys.argv)}
    else:
        version_dir = args.version_dir
    payload["summary"] = summarise(version_dir)
    json_path, md_path = write_report(args.name, payload, markdown(payload), args.out_dir)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
