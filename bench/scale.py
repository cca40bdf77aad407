"""Catalogue-scale benchmark: exact vs ANN retrieval of one model version, side by side.

Two ways to get the version it measures:
  - `--version-dir models/<version>`: a version the real pipeline published with an ANN index
    (manifest `retrieval.kind` hnsw or ivf), measured as it is:
        python -m bench.scale --version-dir /path/to/models/<version> --duration 15
    (run it on a quiet machine: in-process latency and wrk share the cores with anything else);
  - without it (bench/scale_synthetic.py), an UNTRAINED synthetic catalogue (bench/catalog.py: the real architectures and
    exporter; latency depends on shapes, not weights) of `--items` items is published and a copy
    gets an index built, tuned and measured by training/export/ann.py (the exporter's own step); with
    `--pipeline` the real pipeline (configs/synthetic.toml, short training) first runs at that size
    with `export.retrieval` set, to show that it completes. Random untrained item vectors are the
    worst case for an index (nothing is clustered): recall and breadth say little about trained ones.

Both paths serve the *same* version: the exact path is the student's top-k ONNX graph, forced by
the service setting RECDISTILL_RETRIEVAL=exact (the index is then not loaded); the ANN path is what
the manifest names. Measured, in one run:
  1. in-process, through app/engine/recommender.py as the service runs it (exclude_seen on): batch-1
     latency of each path, CPU milliseconds per request at batch 1 and at batch 32 (CPU time is
     what a shared machine distorts least), recall@10 of the ANN answers against the exact answers
     on >= 1,000 requests, and of both against a float32 numpy reference;
  2. over HTTP, each path behind the real server with wrk and 32 connections (bench/loadgen.py and
     bench/harness.py's server, bodies and wrk helpers: no second load generator), with the
     server's CPU per request.
Results: bench/results/scale.json and scale.md (bench/report.py). Pass/fail is computed from the
measured numbers (bench/checks.py) against the targets below; nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import floor
from bench.checks import lookup, meets
from bench.harness import (
    K,
    inference_cell,
    machine_info,
    request_bodies,
    running_server,
    torch_loaded,
    wrk_with_cpu,
)
from bench.loadgen import percentiles_ms, process_memory_mb, wrk_available, wrk_script
from bench.report import RESULTS_DIR, markdown_table, write_report
from bench.scale_synthetic import student_user_vectors, synthetic_version
from core.topk import exact_topk, recall_at_k

log = logging.getLogger(__name__)

BATCH = 32  # the second batch size measured in-process (the micro-batcher forms such batches under load)
PATHS = ("exact", "ann")
TARGETS: list[tuple[str, str, float]] = [
    ("inprocess.ann.p50", "<=", 2.0),
    ("inprocess.recall@10", ">=", 0.95),
    ("publish.retrieval.recall@10", ">=", 0.95),
    ("http.ann.rps", ">=", 1000.0),
    ("http.ann.errors", "<=", 0.0),
    ("http.floor.ratio.ann", ">=", 0.6),  # the ANN path's req/s over the empty endpoint's (bench/floor.py)
]


class ScaleError(RuntimeError):
    """A version that cannot be measured here (no index in its manifest, not a version folder)."""


# --- one version, both paths ------------------------------------------------------------------------


def check_version(version_dir: Path) -> Any:
    """The version's manifest; ScaleError unless it is a version folder whose manifest names an index."""
    from core.manifest import ManifestError, load_manifest

    try:
        manifest = load_manifest(version_dir)
    except (ManifestError, OSError) as exc:
        raise ScaleError(f"--version-dir {version_dir}: not a published version ({exc})") from exc
    if manifest.retrieval.kind not in ("hnsw", "ivf"):
        raise ScaleError(
            f"--version-dir {version_dir}: manifest retrieval is {manifest.retrieval.kind!r}; publish it "
            "with export.retrieval = 'hnsw' or 'ivf' to compare exact and ANN"
        )
    return manifest


def _cpu_ms_per_request(run: Any, queries: list[Any], batch: int) -> float:
    """Process CPU time per request answering `queries` in batches of `batch` (after one warm batch)."""
    run(queries[:batch])
    start = time.process_time()
    for s in range(0, len(queries), batch):
        run(queries[s : s + batch])
    return 1000.0 * (time.process_time() - start) / len(queries)


def _measure_path(version_dir: Path, retrieval: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """One path in-process: latency at batch 1, CPU per request at 1 and BATCH, answers, user vectors."""
    from app.engine.loading import load_version
    from app.engine.recommender import prepare, recommend_batch

    t0 = time.perf_counter()
    model = load_version(version_dir, intra_op_threads=1, retrieval=retrieval)  # type: ignore[arg-type]
    load_s = time.perf_counter() - t0
    queries = [prepare(model, history=b["history"], k=K, exclude_seen=True).query for b in bodies]
    for q in queries[:50]:  # warm-up
        recommend_batch([q])
    samples, answers = [], []
    for q in queries:
        t0 = time.perf_counter()
        (result,) = recommend_batch([q])
        samples.append(time.perf_counter() - t0)
        answers.append(result.indices.tolist())
    return {
        "stats": {
            **percentiles_ms(samples),
            "cpu_ms_per_request_batch1": _cpu_ms_per_request(recommend_batch, queries, 1),
            f"cpu_ms_per_request_batch{BATCH}": _cpu_ms_per_request(recommend_batch, queries, BATCH),
            "load_seconds": load_s,
            "uses_index": model.ann is not None,
            "index_kind": None if model.ann is None else model.ann.kind,
        },
        "answers": answers,
        # what the float32 reference needs, without keeping the model (and its sessions) alive
        "histories": [q.history.tolist() for q in queries],
        "excludes": [q.exclude for q in queries],
        "items": model.student.item_vectors,
        "history_len": model.student.history_len,
        "padding_value": model.student.padding_value,
    }


def in_process(version_dir: Path, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Both paths of one version through the service's recommender; recall of ANN vs exact and of
    both vs a float32 reference (the exact path differs from it only if the graph's items are reduced
    precision)."""
    from app.engine.recommender import limit_blas_threads

    restore = limit_blas_threads()  # numpy BLAS on one thread, as in the service
    try:
        out: dict[str, Any] = {}
        answers: dict[str, list[list[int]]] = {}
        for name, retrieval in (("exact", "exact"), ("ann", "manifest")):
            measured = _measure_path(version_dir, retrieval, bodies)
            out[name], answers[name] = measured["stats"], measured["answers"]
        vectors = student_user_vectors(
            version_dir, measured["histories"], measured["history_len"], measured["padding_value"]
        )
        _, ref_idx = exact_topk(vectors, measured["items"], K, block=32, excludes=measured["excludes"])
        reference = ref_idx.tolist()
    finally:
        restore()
    out["recall@10"] = recall_at_k(answers["ann"], answers["exact"])
    out["recall_requests"] = len(answers["ann"])
    out["short_answers"] = int(sum(len(a) < K for a in answers["ann"]))
    out["recall@10_vs_float32"] = {name: recall_at_k(answers[name], reference) for name in PATHS}
    return out


def serving_models_dir(version_dir: Path, work: Path) -> Path:
    """A models folder holding only `version_dir` (a symlink) as LATEST, so the server loads exactly it."""
    from core.manifest import write_latest

    models = work / "models-served"
    models.mkdir(parents=True, exist_ok=True)
    link = models / version_dir.name
    if not link.exists():
        link.symlink_to(version_dir.resolve(), target_is_directory=True)
    write_latest(models, version_dir.name)
    return models


def http(
    models_dir: Path, work: Path, bodies: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """wrk against the server on each path (RECDISTILL_RETRIEVAL=exact, the manifest's), then the
    floor (bench/floor.py) and both paths in alternating rounds: each path's req/s over the floor's."""
    script = work / "scale.lua"
    script.write_text(wrk_script("/v1/recommend", [json.dumps(b) for b in bodies]))
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as servers:
        bases = {}
        for name, retrieval in (("exact", "exact"), ("ann", "manifest")):
            # Anonymous bodies: the history store's seed is never read, so do not spend start-up on it.
            env = {"RECDISTILL_RETRIEVAL": retrieval, "RECDISTILL_SEED_HISTORY": "false"}
            server = servers.enter_context(
                running_server(models_dir, work / f"state-{name}", env, args.ready_timeout)
            )
            _, result = wrk_with_cpu(server, script, args)
            result["memory"] = process_memory_mb(server.pid)
            result["torch_loaded"] = torch_loaded(server.pid)
            result["ready_seconds"] = server.ready_seconds
            out[name], bases[name] = result, server.base
        if args.floor_rounds:
            empty = servers.enter_context(
                running_server(
                    models_dir, work / "state-floor", {}, args.ready_timeout, server_module="bench.floor"
                )
            )
            runs = floor.alternate_runs(
                {"floor": empty.base, **bases},
                script,
                args.floor_rounds,
                args.duration,
                args.connections,
                args.threads,
            )
            out["floor"] = floor.summarise_paths(*runs)
    return out


def measure_version(version_dir: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """In-process and (unless --no-http or wrk is missing) HTTP figures of both paths of one version."""
    manifest = check_version(version_dir)
    retrieval = manifest.retrieval.model_dump(mode="json")
    retrieval["recall@10"] = retrieval["metrics"].get(f"recall@{K}")
    payload: dict[str, Any] = {
        "version": {
            "path": str(version_dir),
            "name": manifest.version,
            "n_items": manifest.dataset.n_items,
            "dim": manifest.student.dim,
            "dataset": manifest.dataset.name,
            "item_precision": getattr(manifest.student, "item_precision", "float32"),
        },
        "publish": {"retrieval": retrieval},
    }
    bodies = request_bodies(version_dir, max(args.recall_users, 256), seed=args.seed)
    payload["inprocess"] = in_process(version_dir, bodies)
    if args.no_http:
        return payload
    if not wrk_available():
        log.warning("wrk not found: HTTP runs skipped (apt-get install -y wrk)")
        return payload
    payload["http"] = http(serving_models_dir(version_dir, work), work, bodies[:256], args)
    return payload


# --- report -----------------------------------------------------------------------------------------


def checks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, op, threshold in TARGETS:
        value = lookup(payload, key)
        out.append(
            {
                "metric": key,
                "target": f"{op} {threshold:g}",
                "value": value,
                "pass": meets(value, op, threshold),
            }
        )
    return out


def _f(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def floor_line(result: dict[str, Any] | None) -> str:
    """One sentence: the floor's rounds beside each path's, the medians and each path's ratio."""
    if not result:
        return "Floor: not measured (no HTTP runs, or --floor-rounds 0)."
    rounds = result["rounds"]
    per_path = "; ".join(
        f"{name} [{', '.join(format(r['rps'], '.0f') for r in runs)}]" for name, runs in rounds.items()
    )
    ratios = ", ".join(f"{name} {100 * r:.0f}%" for name, r in result["ratio"].items() if r is not None)
    load = result["load_average_1m"]
    return (
        f"Floor (bench/floor.py: an empty FastAPI POST endpoint parsing the same body, same uvicorn settings, "
        f"same wrk script), {len(rounds['floor'])} alternating rounds, req/s: {per_path}. Medians over the "
        f"floor's {result['floor_rps']:.0f}: {ratios} ({result['errors']} errors; 1-minute load average "
        f"{min(load):.2f} to {max(load):.2f} around the rounds)."
    )


def markdown(payload: dict[str, Any]) -> str:
    ip, r, v = payload["inprocess"], payload["publish"]["retrieval"], payload["version"]
    metrics = r["metrics"]
    source = (
        f"published version `{v['name']}` (dataset {v['dataset']}), measured as published"
        if payload["source"] == "version"
        else f"untrained synthetic catalogue `{v['name']}` (random item vectors: the index's worst case)"
    )
    rows = []
    for name in PATHS:
        h = lookup(payload, f"http.{name}") or {}
        rows.append(
            [
                name if name == "exact" else f"ann ({r['kind']})",
                _f(ip[name]["p50"], 3),
                _f(ip[name]["p99"], 3),
                _f(ip[name]["cpu_ms_per_request_batch1"], 3),
                _f(ip[name][f"cpu_ms_per_request_batch{BATCH}"], 3),
                _f(h.get("rps"), 0),
                _f(h.get("p50_ms"), 2),
                _f(h.get("p99_ms"), 2),
                _f(h.get("server_cpu_ms_per_request"), 3),
                inference_cell(h, missing="-"),
                h.get("errors", "-"),
            ]
        )
    lines = [
        f"# Catalogue scale: {v['n_items']:,} items, student dim {v['dim']} ({r['kind']} vs exact)",
        "",
        f"Source: {source}. Command: `{payload['command']}`.",
        "",
        f"Machine: {payload['machine'].get('cpu_model', '?')}, {payload['machine'].get('nproc', '?')} cores.",
        "",
        f"Index: params {json.dumps(r['params'])}; built in {_f(metrics.get('build_seconds'), 0)} s; "
        f"published recall@10 {_f(metrics.get(f'recall@{K}'), 4)} on {_f(metrics.get('recall_users'), 0)} users.",
        "",
        markdown_table(
            [
                "path",
                "in-process p50 ms",
                "p99 ms",
                "CPU ms/req b1",
                f"CPU ms/req b{BATCH}",
                "wrk req/s",
                "wrk p50 ms",
                "wrk p99 ms",
                "server CPU ms/req",
                "inference thread busy / on CPU",
                "errors",
            ],
            rows,
        ),
        "",
        f"Recall@10 of the served ANN answers vs the exact path: {ip['recall@10']:.4f} on "
        f"{ip['recall_requests']} requests (exclude_seen on; answers shorter than k: {ip['short_answers']}). "
        "Against a float32 numpy reference: "
        + ", ".join(f"{name} {value:.4f}" for name, value in ip["recall@10_vs_float32"].items())
        + ".",
        "",
        floor_line(lookup(payload, "http.floor")),
        "",
        markdown_table(
            ["metric", "target", "value", "pass"],
            [[c["metric"], c["target"], c["value"], c["pass"]] for c in payload["checks"]],
        ),
    ]
    if "pipeline" in payload:
        p = payload["pipeline"]
        lines += ["", f"Pipeline at {v['n_items']:,} items: {p['seconds']:.0f} s; stages {p['stages']}."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--version-dir",
        type=Path,
        default=None,
        help="measure this published version (manifest retrieval hnsw/ivf) instead of a synthetic one",
    )
    parser.add_argument("--items", type=int, default=1_000_000, help="synthetic catalogue size")
    parser.add_argument("--kind", choices=["hnsw", "ivf"], default="hnsw", help="synthetic: index kind")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=128)
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--recall-users", type=int, default=1000, help="requests measured in-process")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument(
        "--floor-rounds", type=int, default=3, help="alternating wrk rounds: the floor, exact, ann (0: none)"
    )
    parser.add_argument("--pipeline", action="store_true", help="also run the real pipeline at this size")
    parser.add_argument("--pipeline-users", type=int, default=50_000)
    parser.add_argument("--pipeline-interactions", type=int, default=1_000_000)
    parser.add_argument("--train-seconds", type=float, default=120.0)
    parser.add_argument("--set", action="append", default=[], help="extra pipeline override key=value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temp dir, removed)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.version_dir is not None and args.pipeline:
        parser.error("--pipeline builds its own version; it cannot be combined with --version-dir")
    if args.recall_users < 1 or args.duration <= 0 or args.connections < 1:
        parser.error("--recall-users and --connections must be >= 1 and --duration > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="recdistill-scale-"))
    command = "python -m bench.scale " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        payload: dict[str, Any] = {
            "command": command.strip(),
            "source": "synthetic" if args.version_dir is None else "version",
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": machine_info(),
        }
        version_dir = args.version_dir or synthetic_version(work, args, payload)
        try:
            payload.update(measure_version(Path(version_dir), work, args))
        except ScaleError as exc:
            log.error("%s", exc)
            return 2
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
