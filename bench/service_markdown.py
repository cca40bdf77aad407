"""service.md: the service benchmark's payload (bench/service.py) as one page: the checks per catalogue
size, in-process and HTTP latencies, wrk with and without the teacher in shadow, memory and publish.
"""

from __future__ import annotations

from typing import Any

from bench import floor
from bench.checks import lookup
from bench.harness import inference_cell
from bench.report import markdown_table


def fmt(value: Any, digits: int = 2) -> str:
    """A measured value for a table: — when not measured, floats to `digits` places."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(payload: dict[str, Any]) -> str:
    """The whole page, from the payload bench/service.py writes as service.json."""
    m = payload["machine"]
    lines = [
        "# Service benchmark",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, onnxruntime "
        f"{m['versions']['onnxruntime']}, {m['wrk'] or 'no wrk'}. Command: `{payload['command']}`. "
        "One run; latencies are percentiles of that run in ms. Load generator and server share the CPUs.",
        "",
    ]
    for res in payload["catalogues"]:
        n = res["n_items"]
        lines += [f"## {n:,} items", ""]
        rows = [[c["metric"], c["target"], fmt(c["value"]), c["status"]] for c in res["checks"]]
        lines += [markdown_table(["metric", "target", "measured", "status"], rows), ""]
        ip = res["inprocess"]
        rows = [
            [side, path, fmt(ip[side][path]["p50"], 3), fmt(ip[side][path]["p99"], 3), ip[side][path]["n"]]
            for side in ("student", "teacher")
            for path in ("recommender", "raw_ort")
        ]
        lines += [
            "In-process top-10, batch 1:",
            "",
            markdown_table(["side", "path", "p50", "p99", "n"], rows),
            "",
        ]
        hs = res["http_single"]
        lines += [
            f"One HTTP client: p50 {fmt(hs['p50'])} ms, p90 {fmt(hs['p90'])}, p99 {fmt(hs['p99'])}, "
            f"n={hs['n']}, errors {hs['errors']}. Same client on GET /health/live (no model work): "
            f"p50 {fmt(res['http_single_live']['p50'])} ms, p99 {fmt(res['http_single_live']['p99'])}.",
            "",
        ]
        wrk_rows = []
        if "wrk" in res:
            wrk_rows.append(["shadow off, full load", res["wrk"]])
        sh = res.get("shadow")
        if sh:
            wrk_rows.append(["shadow 1.0, full load", sh["full_load"]["on"]])
            wrk_rows.append([f"shadow off, paced (~{sh['paced']['target_rps']:.0f}/s)", sh["paced"]["off"]])
            wrk_rows.append([f"shadow 1.0, paced (~{sh['paced']['target_rps']:.0f}/s)", sh["paced"]["on"]])
        if wrk_rows:
            rows = [
                [
                    name,
                    fmt(w["rps"], 0),
                    fmt(w["p50_ms"]),
                    fmt(w["p99_ms"]),
                    fmt(w["max_ms"]),
                    w["errors"],
                    fmt(w.get("server_cpu_ms_per_request"), 3),
                    fmt(w.get("event_loop_cpu_ms_per_request"), 3),
                    inference_cell(w),
                ]
                for name, w in wrk_rows
            ]
            lines += [
                f"wrk, {payload['args']['connections']} connections, {payload['args']['duration']} s:",
                "",
                markdown_table(
                    [
                        "run",
                        "req/s",
                        "p50",
                        "p99",
                        "max",
                        "errors",
                        "server CPU ms/req",
                        "event-loop CPU ms/req",
                        "inference thread busy / on CPU",
                    ],
                    rows,
                ),
                "",
            ]
        if "floor" in res:
            lines += [floor.describe(res["floor"]), ""]
        if sh:
            lines += [
                f"Shadow comparisons recorded: {sh['compared']}"
                f" (dropped {lookup(sh, 'shadow_report.dropped')}, errors {lookup(sh, 'shadow_report.errors')}); "
                f"p99 ratio paced {fmt(sh['p99_ratio'])} (achieved rates differ by "
                f"{100 * sh['paced']['rate_gap']:.0f}%), full load {fmt(sh['p99_ratio_full_load'])}. "
                f"Shadow per phase (compared/dropped/error/timeout): "
                + "; ".join(
                    f"{name} {v['count']}/{v['dropped']}/{v['error']}/{v['timeout']}"
                    for name, v in sh.get("shadow_phases", {}).items()
                )
                + ".",
                "",
            ]
        srv, pub = res["server"], res["publish"]
        lines += [
            f"Server RSS: {srv['memory_idle']['rss_mb']:.0f} MB after start, "
            f"{srv['memory_after_load']['rss_mb']:.0f} MB after load (peak {srv['memory_after_load']['peak_rss_mb']:.0f} MB); "
            f"ready in {srv['ready_seconds']:.1f} s; torch loaded in server: {srv['torch_loaded']}. "
            f"Publish: {pub['seconds']:.1f} s, {pub['version_bytes'] / 2**20:.0f} MB on disk, "
            f"publisher peak RSS {pub['peak_rss_mb_of_publisher']:.0f} MB.",
            "",
        ]
    return "\n".join(lines)
