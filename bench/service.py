"""Service benchmark (throughput and p99 under load, and the cost of the teacher in shadow): `python -m bench.service`, also run by `make bench`.

For each catalogue size (default 100k and 1M items) it publishes an untrained model of the real
architectures (bench/catalog.py), then measures on this machine, in one run:
  - in-process top-10, student and teacher, through app/engine/recommender.py and through raw onnxruntime;
  - over HTTP, one keep-alive client, closed loop after warm-up;
  - over HTTP, 32 connections with wrk for ~15 s (throughput, percentiles, non-2xx and socket errors);
  - the server's resident memory (/proc/<pid>/status VmRSS and VmHWM);
  - (first size only) /v1/recommend with RECDISTILL_SHADOW_RATE=1.0 against shadow off: at full load
    with the same connections, and paced with wrk's delay() to the same offered rate.
The server is a subprocess (app.server.serve: uvicorn, uvloop, httptools, no access log) on
127.0.0.1 only (bench/harness.py). Every pass/fail is computed from the measured numbers
(bench/checks.py). Results go to bench/results/service.json and service.md (bench/service_markdown.py)
through bench/report.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import floor
from bench.checks import lookup, meets
from bench.checks import status as status_of
from bench.harness import (
    K,
    Server,
    http_get,
    machine_info,
    request_bodies,
    running_server,
    torch_loaded,
    wrk_with_cpu,
)
from bench.loadgen import (
    WrkResult,
    closed_loop,
    percentiles_ms,
    process_memory_mb,
    wrk_available,
    wrk_script,
)
from bench.report import RESULTS_DIR, write_report
from bench.service_markdown import fmt, markdown

log = logging.getLogger(__name__)

N_BODIES = 256

# The service's performance targets: (metric key, comparison, threshold).
TARGETS: list[tuple[str, str, float]] = [
    ("inprocess.student.recommender.p50", "<=", 1.5),
    ("inprocess.teacher_over_student_p50", ">=", 5.0),
    ("http_single.p50", "<=", 3.0),
    ("http_single.p99", "<=", 10.0),
    ("wrk.rps", ">=", 1000.0),
    ("wrk.p99_ms", "<=", 50.0),
    ("wrk.errors", "<=", 0.0),
    ("floor.ratio", ">=", 0.6),  # /v1/recommend's req/s over the empty endpoint's (bench/floor.py)
]
SHADOW_TARGET = ("shadow.p99_ratio", "<=", 1.2)


# --- the server under test -------------------------------------------------------------------------


# --- requests ----------------------------------------------------------------------------------------


# --- in-process --------------------------------------------------------------------------------------


def _time_calls(fn: Any, args: list[Any], n: int, warmup: int, max_seconds: float) -> dict[str, float]:
    for a in args[:warmup]:
        fn(a)
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    for i in range(n):
        if time.perf_counter() > deadline:
            break
        a = args[i % len(args)]
        t0 = time.perf_counter()
        fn(a)
        samples.append(time.perf_counter() - t0)
    return percentiles_ms(samples)


def in_process(version_dir: Path, bodies: list[dict[str, Any]], n: int, max_seconds: float) -> dict[str, Any]:
    """Top-10 latency at batch 1 through the service's recommender and through the published top-k
    graph alone (raw ORT: user vector, scores and TopK in one run, no filters)."""
    import onnxruntime as ort

    from app.engine.loading import load_version, session_options
    from app.engine.recommender import prepare, recommend_batch
    from core.manifest import HISTORY_INPUT, INDICES_OUTPUT, K_INPUT, SCORES_OUTPUT, USER_INPUT

    t0 = time.perf_counter()
    model = load_version(version_dir, intra_op_threads=1)
    load_seconds = time.perf_counter() - t0
    n_users = len(model.user_index)
    rng = np.random.default_rng(1)
    users = [f"user{u}" for u in rng.integers(0, n_users, len(bodies))]
    out: dict[str, Any] = {"load_seconds": load_seconds}
    for side_name in ("student", "teacher"):
        side = model.side(side_name)

        def via_recommender(i: int, side_name: str = side_name) -> None:
            body = bodies[i]
            prepared = prepare(
                model, history=body["history"], k=K, exclude_seen=True, user_id=users[i], side=side_name
            )
            recommend_batch([prepared.query])

        feeds = []
        for i, body in enumerate(bodies):
            hist = [model.item_index[x] for x in body["history"]][-side.history_len :]
            row = np.full((1, side.history_len), side.padding_value, np.int64)
            row[0, side.history_len - len(hist) :] = hist
            feed = {HISTORY_INPUT: row, K_INPUT: np.array([K], np.int64)}
            if side.needs_user:
                feed[USER_INPUT] = np.array([model.user_index.get(users[i], side.oov_user)], np.int64)
            feeds.append(feed)

        graph = ort.InferenceSession(
            str(version_dir / getattr(model.manifest, side_name).topk.file),
            sess_options=session_options(1),
            providers=["CPUExecutionProvider"],
        )

        def via_ort(i: int, graph: Any = graph, feeds: list = feeds) -> None:
            graph.run([SCORES_OUTPUT, INDICES_OUTPUT], feeds[i])

        idx = list(range(len(bodies)))
        out[side_name] = {
            "recommender": _time_calls(via_recommender, idx, n, warmup=50, max_seconds=max_seconds),
            "raw_ort": _time_calls(via_ort, idx, n, warmup=50, max_seconds=max_seconds),
        }
    out["teacher_over_student_p50"] = (
        out["teacher"]["recommender"]["p50"] / out["student"]["recommender"]["p50"]
    )
    out["teacher_over_student_p50_raw_ort"] = (
        out["teacher"]["raw_ort"]["p50"] / out["student"]["raw_ort"]["p50"]
    )
    return out


# --- HTTP --------------------------------------------------------------------------------------------


def shadow_counts(base: str) -> dict[str, Any] | None:
    """The service's own shadow report (teacher in shadow), or None when the endpoint is absent."""
    try:
        status, body = http_get(f"{base}/v1/shadow/report", timeout=10)
    except OSError:
        return None
    if status != 200:
        return None
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        return None


def _shadow_compared(report: dict[str, Any] | None) -> int | None:
    """Number of comparisons the shadow recorded, wherever the report keeps its count."""
    if not report:
        return None
    for key in ("count", "compared", "comparisons"):
        if isinstance(report.get(key), int):
            return int(report[key])
    total = report.get("total")
    if isinstance(total, dict) and isinstance(total.get("count"), int):
        return int(total["count"])
    return None


def bench_catalogue(n_items: int, args: argparse.Namespace, work: Path, with_shadow: bool) -> dict[str, Any]:
    from bench.catalog import publish_synthetic

    models_dir = work / f"models-{n_items}"
    published = publish_synthetic(models_dir, n_items, seed=args.seed)
    result: dict[str, Any] = {
        "n_items": n_items,
        "publish": {
            "seconds": published.seconds,
            "peak_rss_mb_of_publisher": published.peak_rss_mb,
            "version_bytes": sum(p.stat().st_size for p in published.version_dir.iterdir()),
            "student_parameters": published.student_parameters,
            "teacher_parameters": published.teacher_parameters,
        },
    }
    bodies = request_bodies(published.version_dir, N_BODIES, seed=args.seed)
    raw_bodies = [json.dumps(b).encode() for b in bodies]
    log.info("%d items: in-process", n_items)
    result["inprocess"] = in_process(published.version_dir, bodies, args.requests, args.max_seconds)

    script = work / f"recommend-{n_items}.lua"
    script.write_text(wrk_script("/v1/recommend", [b.decode() for b in raw_bodies]))
    with running_server(models_dir, work / f"state-{n_items}-off", {}, args.ready_timeout) as server:
        result["server"] = {"ready_seconds": server.ready_seconds, "torch_loaded": torch_loaded(server.pid)}
        result["server"]["memory_idle"] = process_memory_mb(server.pid)
        log.info("%d items: one client over HTTP", n_items)
        result["http_single"] = closed_loop(
            "127.0.0.1", server.port, "/v1/recommend", raw_bodies, args.requests, max_seconds=args.max_seconds
        )
        # Baseline: the same client on an endpoint that does no model work (HTTP + framework cost).
        result["http_single_live"] = closed_loop(
            "127.0.0.1",
            server.port,
            "/health/live",
            [],
            args.requests,
            max_seconds=args.max_seconds,
            method="GET",
        )
        if wrk_available():
            log.info("%d items: wrk -c%d for %ss", n_items, args.connections, args.duration)
            off, result["wrk"] = wrk_with_cpu(server, script, args)
            if args.floor_rounds:
                result["floor"] = floor_rounds(
                    server, models_dir, work / f"state-{n_items}-floor", script, args
                )
                log.info("%d items: %s", n_items, floor.describe(result["floor"]))
        result["server"]["memory_after_load"] = process_memory_mb(server.pid)
    if with_shadow and "wrk" in result:
        result["shadow"] = shadow_comparison(
            models_dir,
            work,
            n_items,
            script,
            raw_bodies,
            off,
            result["wrk"],
            result["http_single"]["p50"],
            args,
        )
    return result


def floor_rounds(
    server: Server, models_dir: Path, state_dir: Path, script: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """The floor (bench/floor.py) started beside the running service, then alternating wrk rounds."""
    with running_server(models_dir, state_dir, {}, args.ready_timeout, server_module="bench.floor") as empty:
        return floor.alternate(
            server.base, empty.base, script, args.floor_rounds, args.duration, args.connections, args.threads
        )


def shadow_comparison(
    models_dir: Path,
    work: Path,
    n_items: int,
    script: Path,
    raw_bodies: list[bytes],
    off: WrkResult,
    off_row: dict[str, Any],
    unloaded_p50_ms: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The shadow's cost: shadow rate 1.0 vs off, same connections at full load, then paced to one rate."""
    out: dict[str, Any] = {"full_load": {"off": off_row}}
    with running_server(
        models_dir, work / f"state-{n_items}-shadow", {"RECDISTILL_SHADOW_RATE": "1.0"}, args.ready_timeout
    ) as server:
        log.info("%d items: wrk with shadow rate 1.0", n_items)
        on, out["full_load"]["on"] = wrk_with_cpu(server, script, args)
        # Paced (wrk has no constant-rate mode; wrk2 is not packaged): each connection thinks for
        # delay_ms between requests so the offered rate is ~70% of the slower full-load rate; the
        # unloaded single-client p50 estimates the service time inside each cycle.
        target_rps = 0.7 * min(on.rps, off.rps)
        cycle_ms = 1000.0 * args.connections / target_rps if target_rps > 0 else 0.0
        delay_ms = max(0.0, cycle_ms - unloaded_p50_ms)
        paced_script = work / f"recommend-{n_items}-paced.lua"
        paced_script.write_text(
            wrk_script("/v1/recommend", [b.decode() for b in raw_bodies], delay_ms=delay_ms)
        )
        after_full = shadow_counts(server.base)
        paced_on, paced_on_row = wrk_with_cpu(server, paced_script, args)
        out["shadow_report"] = shadow_counts(server.base)
        out["memory_after_load"] = process_memory_mb(server.pid)
    with running_server(models_dir, work / f"state-{n_items}-off2", {}, args.ready_timeout) as server:
        paced_off, paced_off_row = wrk_with_cpu(server, paced_script, args)
    out["paced"] = {
        "target_rps": target_rps,
        "delay_ms": delay_ms,
        "off": paced_off_row,
        "on": paced_on_row,
    }
    # What the shadow did in each phase (the report is cumulative): compared / dropped / errors.
    phases = {"full_load": (None, after_full), "paced": (after_full, out["shadow_report"])}
    out["shadow_phases"] = {
        name: {
            key: (lookup(end, key) or 0) - (lookup(start, key) or 0) if start else lookup(end, key)
            for key in ("count", "dropped", "error", "timeout")
        }
        for name, (start, end) in phases.items()
        if end
    }
    out["paced"]["rate_gap"] = abs(paced_on.rps - paced_off.rps) / max(paced_on.rps, paced_off.rps, 1e-9)
    out["compared"] = _shadow_compared(out["shadow_report"])
    out["p99_ratio"] = paced_on.p99_ms / paced_off.p99_ms if paced_off.p99_ms > 0 else None
    out["p99_ratio_full_load"] = on.p99_ms / off.p99_ms if off.p99_ms > 0 else None
    return out


# --- verdicts and output -----------------------------------------------------------------------------


def checks_for(result: dict[str, Any], shadow: bool) -> list[dict[str, Any]]:
    targets = TARGETS + ([SHADOW_TARGET] if shadow else [])
    rows = []
    for key, op, threshold in targets:
        value = lookup(result, key)
        status = status_of(meets(value, op, threshold), na="n/a")
        if key == SHADOW_TARGET[0] and status != "n/a" and not lookup(result, "shadow.compared"):
            status = "n/a (shadow recorded no comparisons)"
        rows.append({"metric": key, "target": f"{op} {threshold:g}", "value": value, "status": status})
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="100000,1000000", help="comma-separated catalogue sizes")
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per latency loop")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time bound of each latency loop")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--no-shadow", action="store_true", help="skip the shadow comparison")
    parser.add_argument(
        "--floor-rounds",
        type=int,
        default=3,
        help="alternating wrk rounds against the empty endpoint (0: none)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="keep models and logs here (default: temp)"
    )
    args = parser.parse_args(argv)
    try:
        args.item_sizes = [int(x) for x in args.items.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--items: expected comma-separated integers, got {args.items!r}")
    if not args.item_sizes or min(args.item_sizes) < 100:
        parser.error("--items: every size must be at least 100")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not wrk_available():
        log.warning("wrk not found: the concurrent and shadow runs are skipped (apt-get install -y wrk)")
    command = "python -m bench.service " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="recdistill-bench-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        catalogues = []
        for i, n_items in enumerate(args.item_sizes):
            shadow = i == 0 and not args.no_shadow
            res = bench_catalogue(n_items, args, work, with_shadow=shadow)
            res["checks"] = checks_for(res, shadow)
            catalogues.append(res)
            for c in res["checks"]:
                log.info(
                    "%d items: %s %s: %s (%s)",
                    n_items,
                    c["metric"],
                    c["target"],
                    fmt(c["value"]),
                    c["status"],
                )
    payload = {
        "benchmark": "service",
        "command": command.strip(),
        "machine": machine_info(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "catalogues": catalogues,
    }
    try:
        text = markdown(payload)
    except Exception:  # never lose a 15-minute run to a formatting bug: keep the numbers
        log.exception("could not render the Markdown table; writing the JSON with a stub .md")
        text = "# Service benchmark\n\nMarkdown rendering failed; see service.json.\n"
    json_path, md_path = write_report("service", payload, text, args.out)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.exit(main())
