"""Catalogue-scale benchmark (issue 5): `python -m bench.scale`, 1M items by default.

One run, on this machine:
  1. publishes a 1M-item version (bench/catalog.py: the real architectures and exporter, untrained:
     latency depends on shapes, not weights) with exact retrieval, and a copy of it with an ANN
     index built, tuned and measured by training/ann.py (the exporter's own step);
     with `--pipeline` it first runs the real pipeline (configs/synthetic.toml, short training) on a
     1M-item synthetic shop with `export.retrieval` set, to show that it completes here;
  2. in-process, through app/recommender.py as the service runs it (batch 1, exclude_seen): top-10
     latency of the exact and the ANN version, and recall@10 of the ANN answers against the exact
     answers on >= 1,000 requests;
  3. over HTTP, each version behind the real server with wrk and 32 connections
     (bench/loadgen.py and bench/service.py's server and bodies: no second load generator).
Results: bench/results/scale.json and scale.md (bench/report.py). Pass/fail is computed from the
measured numbers against the issue's targets; nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.loadgen import percentiles_ms, process_memory_mb, run_wrk, wrk_available, wrk_script
from bench.report import RESULTS_DIR, markdown_table, write_report
from bench.service import _wrk_dict, machine_info, request_bodies, running_server, torch_loaded

log = logging.getLogger(__name__)

K = 10
TARGETS: list[tuple[str, str, float]] = [
    ("inprocess.ann.p50", "<=", 2.0),
    ("inprocess.recall@10", ">=", 0.95),
    ("publish.retrieval.recall@10", ">=", 0.95),
    ("http.ann.rps", ">=", 1000.0),
    ("http.ann.errors", "<=", 0.0),
]


def _user_vectors(version_dir: Path, histories: list[list[int]], history_len: int, pad: int) -> np.ndarray:
    """The student's user vectors for index histories, from its exported user graph (onnxruntime)."""
    import onnxruntime as ort

    from core.manifest import HISTORY_INPUT, USER_VECTOR_OUTPUT, load_manifest

    manifest = load_manifest(version_dir)
    sess = ort.InferenceSession(
        str(version_dir / manifest.student.user.file), providers=["CPUExecutionProvider"]
    )
    rows = np.full((len(histories), history_len), pad, np.int64)
    for r, hist in enumerate(histories):
        tail = hist[-history_len:]
        rows[r, history_len - len(tail) :] = tail
    out = [
        sess.run([USER_VECTOR_OUTPUT], {HISTORY_INPUT: rows[s : s + 1024]})[0]
        for s in range(0, len(rows), 1024)
    ]
    return np.concatenate(out)


def publish_ann_copy(exact_dir: Path, models_dir: Path, args: argparse.Namespace) -> tuple[Path, float]:
    """Publish `exact_dir`'s artifacts (hard links) plus an ANN index as a new version in models_dir."""
    from core.manifest import load_manifest
    from training.ann import build_retrieval
    from training.publish import publish

    manifest = load_manifest(exact_dir)
    items = np.load(exact_dir / manifest.student.item_vectors, allow_pickle=False)
    bodies = request_bodies(exact_dir, args.recall_users + args.recall_users // 2, seed=args.seed + 1)
    index = {
        str(x): i for i, x in enumerate(np.load(exact_dir / manifest.item_ids, allow_pickle=False).tolist())
    }
    histories = [[index[x] for x in b["history"]] for b in bodies]
    queries = _user_vectors(
        exact_dir, histories, manifest.student.history_len, manifest.student.padding_value
    )

    def build(stage: Path) -> Any:
        for name in manifest.files:
            try:
                os.link(exact_dir / name, stage / name)
            except OSError:
                shutil.copy2(exact_dir / name, stage / name)
        retrieval = build_retrieval(
            stage,
            items,
            queries[: args.recall_users],
            queries[args.recall_users :],
            kind=args.kind,
            hnsw_m=args.hnsw_m,
            ef_construction=args.ef_construction,
            threads=args.build_threads,
            seed=args.seed,
        )
        return manifest.model_copy(update={"retrieval": retrieval, "created_at": datetime.now(UTC)})

    start = time.perf_counter()
    version_dir = publish(models_dir, f"{manifest.version}-{args.kind}", build)
    return version_dir, time.perf_counter() - start


def in_process(exact_dir: Path, ann_dir: Path, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch-1 latency of both versions through the service's recommender; recall of ANN vs exact."""
    from app.model_store import load_version
    from app.recommender import prepare, recommend_batch

    out: dict[str, Any] = {}
    answers: dict[str, list[list[int]]] = {}
    for name, path in (("exact", exact_dir), ("ann", ann_dir)):
        t0 = time.perf_counter()
        model = load_version(path, intra_op_threads=1)
        load_s = time.perf_counter() - t0
        queries = [prepare(model, history=b["history"], k=K, exclude_seen=True).query for b in bodies]
        for q in queries[:50]:  # warm-up
            recommend_batch([q])
        samples, got = [], []
        for q in queries:
            t0 = time.perf_counter()
            (result,) = recommend_batch([q])
            samples.append(time.perf_counter() - t0)
            got.append(result.indices.tolist())
        answers[name] = got
        out[name] = {**percentiles_ms(samples), "load_seconds": load_s, "uses_index": model.ann is not None}
        del model
    hits = [
        len(set(a) & set(e)) / max(1, len(e)) for a, e in zip(answers["ann"], answers["exact"], strict=True)
    ]
    out["recall@10"] = float(np.mean(hits))
    out["recall_requests"] = len(hits)
    out["short_answers"] = int(sum(len(a) < K for a in answers["ann"]))
    return out


def http(
    models_dir: Path, state: Path, bodies: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    script = state.parent / f"{state.name}.lua"
    script.write_text(wrk_script("/v1/recommend", [json.dumps(b) for b in bodies]))
    with running_server(models_dir, state, {}, args.ready_timeout) as server:
        result = _wrk_dict(run_wrk(f"{server.base}/v1/recommend", script, args.duration, args.connections, 2))
        result["memory"] = process_memory_mb(server.pid)
        result["torch_loaded"] = torch_loaded(server.pid)
    return result


def run_pipeline_at_scale(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The real offline job on a synthetic shop of args.items items, trained briefly, with an index."""
    from training.config import load_config
    from training.pipeline import run_pipeline

    overrides = [
        f"models_dir={work / 'models-pipeline'}",
        f"work_dir={work / 'work-pipeline'}",
        f"data.synthetic.n_items={args.items}",
        f"data.synthetic.n_users={args.pipeline_users}",
        f"data.synthetic.n_interactions={args.pipeline_interactions}",
        f"teacher.max_train_seconds={args.train_seconds}",
        f"student.max_train_seconds={args.train_seconds}",
        "teacher.epochs=1",
        "student.epochs=1",
        "distill.train_scratch=false",
        f"export.retrieval={args.kind}",
        f"export.hnsw_m={args.hnsw_m}",
        f"export.ef_construction={args.ef_construction}",
        f"export.ann_threads={args.build_threads}",
        *args.set,
    ]
    cfg = load_config(Path("configs/synthetic.toml"), overrides)
    start = time.perf_counter()
    result = run_pipeline(cfg, progress=False)
    return {
        "seconds": time.perf_counter() - start,
        "stages": result.seconds,
        "version": result.version_dir.name,
        "retrieval": result.manifest.retrieval.model_dump(mode="json"),
        "overrides": overrides,
    }


def lookup(data: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def checks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, op, threshold in TARGETS:
        value = lookup(payload, key)
        ok = None if value is None else (value <= threshold if op == "<=" else value >= threshold)
        out.append({"metric": key, "target": f"{op} {threshold:g}", "value": value, "pass": ok})
    return out


def markdown(payload: dict[str, Any]) -> str:
    ip, pub = payload["inprocess"], payload["publish"]
    r = pub["retrieval"]
    lines = [
        f"# Catalogue scale: {payload['args']['items']:,} items ({r['kind']})",
        "",
        f"Machine: {payload['machine'].get('cpu_model', '?')}, {payload['machine'].get('nproc', '?')} cores (shared, noisy).",
        "",
        f"Index: params {json.dumps(r['params'])}; built in {r['metrics']['build_seconds']:.0f} s; "
        f"published recall@10 {r['metrics']['recall@10']:.4f} on {r['metrics']['recall_users']:.0f} users.",
        "",
        markdown_table(
            ["path", "in-process p50 ms", "p99 ms", "wrk req/s", "wrk p50 ms", "wrk p99 ms", "errors"],
            [
                [
                    name,
                    f"{ip[name]['p50']:.3f}",
                    f"{ip[name]['p99']:.3f}",
                    *(
                        [f"{h['rps']:.0f}", f"{h['p50_ms']:.2f}", f"{h['p99_ms']:.2f}", h["errors"]]
                        if (h := lookup(payload, f"http.{name}"))
                        else ["-"] * 4
                    ),
                ]
                for name in ("exact", "ann")
            ],
        ),
        "",
        f"Recall@10 of the served ANN answers vs exact: {ip['recall@10']:.4f} on {ip['recall_requests']} requests "
        f"(exclude_seen on; answers shorter than k: {ip['short_answers']}).",
        "",
        markdown_table(
            ["metric", "target", "value", "pass"],
            [[c["metric"], c["target"], c["value"], c["pass"]] for c in payload["checks"]],
        ),
    ]
    if "pipeline" in payload:
        p = payload["pipeline"]
        lines += [
            "",
            f"Pipeline at {payload['args']['items']:,} items: {p['seconds']:.0f} s; stages {p['stages']}.",
        ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--kind", choices=["hnsw", "ivf"], default="hnsw")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=128)
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--recall-users", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--pipeline", action="store_true", help="also run the real pipeline at this size")
    parser.add_argument("--pipeline-users", type=int, default=50_000)
    parser.add_argument("--pipeline-interactions", type=int, default=1_000_000)
    parser.add_argument("--train-seconds", type=float, default=120.0)
    parser.add_argument("--set", action="append", default=[], help="extra pipeline override key=value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temp dir, removed)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from bench.catalog import publish_synthetic

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="recdistill-scale-"))
    try:
        payload: dict[str, Any] = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        }
        payload["machine"] = machine_info()
        if args.pipeline:
            log.info("pipeline at %d items", args.items)
            payload["pipeline"] = run_pipeline_at_scale(work, args)
        published = publish_synthetic(work / "models-exact", args.items, seed=args.seed)
        ann_dir, ann_seconds = publish_ann_copy(published.version_dir, work / "models-ann", args)
        from core.manifest import load_manifest

        payload["publish"] = {
            "exact_seconds": published.seconds,
            "ann_seconds": ann_seconds,
            "retrieval": load_manifest(ann_dir).retrieval.model_dump(mode="json"),
        }
        payload["publish"]["retrieval"]["recall@10"] = payload["publish"]["retrieval"]["metrics"]["recall@10"]
        bodies = request_bodies(published.version_dir, max(args.recall_users, 256), seed=args.seed)
        payload["inprocess"] = in_process(published.version_dir, ann_dir, bodies)
        if not args.no_http and wrk_available():
            payload["http"] = {
                "exact": http(work / "models-exact", work / "state-exact", bodies[:256], args),
                "ann": http(work / "models-ann", work / "state-ann", bodies[:256], args),
            }
        payload["checks"] = checks(payload)
        json_path, md_path = write_report("scale", payload, markdown(payload), args.out)
        print(md_path.read_text())
        print(f"wrote {json_path} and {md_path}")
        return 0 if all(c["pass"] is not False for c in payload["checks"]) else 1
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
