"""The service benchmark's plumbing: percentiles, wrk's result line, its checks, and wrk + our Lua script.

The benchmark's numbers are never asserted (they depend on the machine); what is tested here is that
they are computed and judged correctly.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.floor import summarise
from bench.harness import inference_cell, inference_load, inference_seconds
from bench.loadgen import (
    WRK_MARKER,
    WrkResult,
    parse_wrk,
    percentiles_ms,
    run_wrk,
    stat_cpu_ticks,
    wrk_available,
    wrk_script,
)
from bench.service import checks_for
from bench.service_markdown import markdown


def test_percentiles_ms_hand_computed():
    # 1..10 ms: numpy's linear interpolation gives p50 5.5, p90 9.1, p99 9.91.
    stats = percentiles_ms([i / 1000 for i in range(1, 11)])
    assert stats["n"] == 10
    assert stats["p50"] == pytest.approx(5.5)
    assert stats["p90"] == pytest.approx(9.1)
    assert stats["p99"] == pytest.approx(9.91)
    assert stats["mean"] == pytest.approx(5.5)
    assert stats["max"] == pytest.approx(10.0)


def test_percentiles_ms_refuses_no_samples():
    with pytest.raises(ValueError, match="no latency samples"):
        percentiles_ms([])


def _wrk_line(**overrides: float) -> str:
    raw = {
        "requests": 30000,
        "duration_us": 15_000_000,
        "connect_errors": 0,
        "read_errors": 1,
        "write_errors": 0,
        "status_errors": 4,
        "timeouts": 2,
        "non2xx": 4,
        "p50_us": 12_500,
        "p90_us": 20_000,
        "p99_us": 45_250,
        "p999_us": 60_000,
        "max_us": 80_000,
        "mean_us": 13_000.5,
    }
    raw.update(overrides)
    return "Running 15s test @ http://127.0.0.1:1/\n" + WRK_MARKER + json.dumps(raw) + "\n"


def test_parse_wrk_reads_our_json_line():
    result = parse_wrk(_wrk_line())
    assert result.requests == 30000
    assert result.seconds == pytest.approx(15.0)
    assert result.rps == pytest.approx(2000.0)
    assert result.p50_ms == pytest.approx(12.5)
    assert result.p99_ms == pytest.approx(45.25)
    assert result.non2xx == 4
    assert result.socket_errors == 3  # read 1 + timeouts 2
    assert result.errors == 7


def test_parse_wrk_without_result_line_names_the_problem():
    with pytest.raises(ValueError, match="no WRKJSON line"):
        parse_wrk("Running 15s test\n  2 threads and 32 connections\n")


def test_wrk_script_cycles_bodies_and_paces_only_when_asked():
    plain = wrk_script("/v1/recommend", ['{"history": ["a"], "k": 10}'])
    assert '"{\\"history\\": [\\"a\\"], \\"k\\": 10}"' in plain  # a JSON string is a Lua string literal
    assert 'wrk.format("POST", "/v1/recommend"' in plain
    assert "function delay()" not in plain
    assert "function delay() return 12.500 end" in wrk_script("/x", ["{}"], delay_ms=12.5)


def test_stat_cpu_ticks_skips_a_comm_with_spaces_and_parens():
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    line = "4242 (py (worker) 1) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 7 0 100 0 0"
    assert stat_cpu_ticks(line) == 300


def test_checks_for_reads_nested_results():
    result = {
        "inprocess": {"student": {"recommender": {"p50": 0.8}}, "teacher_over_student_p50": 4.0},
        "http_single": {"p50": 2.0, "p99": 12.0},
        "wrk": {"rps": 1500.0, "p99_ms": 30.0, "errors": 0},
        "shadow": {"p99_ratio": 1.1, "compared": 0},
        "floor": {"ratio": 0.55},
    }
    status = {c["metric"]: c["status"] for c in checks_for(result, shadow=True)}
    assert status == {
        "inprocess.student.recommender.p50": "PASS",
        "inprocess.teacher_over_student_p50": "FAIL",
        "http_single.p50": "PASS",
        "http_single.p99": "FAIL",
        "wrk.rps": "PASS",
        "wrk.p99_ms": "PASS",
        "wrk.errors": "PASS",
        "floor.ratio": "FAIL",  # /v1/recommend under 60% of the empty endpoint
        # a ratio measured while the shadow compared nothing proves nothing
        "shadow.p99_ratio": "n/a (shadow recorded no comparisons)",
    }
    result["shadow"]["compared"] = 500
    assert {c["metric"]: c["status"] for c in checks_for(result, shadow=True)}["shadow.p99_ratio"] == "PASS"
    del result["wrk"]  # wrk not installed: its targets were not measured
    rows = {c["metric"]: c["status"] for c in checks_for(result, shadow=False)}
    assert rows["wrk.rps"] == rows["wrk.errors"] == "n/a" and "shadow.p99_ratio" not in rows


class _Handler(BaseHTTPRequestHandler):
    """200 for a body without "bad", 500 for one with it; keep-alive (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 500 if b"bad" in body else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.skipif(wrk_available() is None, reason="wrk not installed (apt-get install -y wrk)")
def test_wrk_counts_non_2xx_through_our_script(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        script = tmp_path / "s.lua"
        script.write_text(wrk_script("/v1/recommend", ['{"ok": 1}', '{"bad": 1}']))
        result = run_wrk(
            f"http://127.0.0.1:{server.server_port}/v1/recommend", script, 1, connections=2, threads=1
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.requests > 10
    # Each connection alternates good, bad, good, ... so half the answers (give or take one per
    # connection still in flight) are 500s, and only those are counted.
    assert abs(result.non2xx - result.requests / 2) <= 2
    assert result.socket_errors == 0


class _MetricsHandler(BaseHTTPRequestHandler):
    """GET /metrics: the inference series the service exports (as prometheus_client renders them)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = (
            b"# HELP recdistill_inference_batch_seconds Wall seconds per inference batch\n"
            b'recdistill_inference_batch_seconds_bucket{le="0.005"} 3.0\n'
            b"recdistill_inference_batch_seconds_sum 7.5\n"
            b"recdistill_inference_cpu_seconds_total 4.5\n"
            b"recdistill_inference_cpu_seconds_created 1.7e+09\n"
        )
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_inference_seconds_reads_both_series_and_none_without_them():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert inference_seconds(f"http://127.0.0.1:{server.server_port}") == (7.5, 4.5)
        server.RequestHandlerClass = _Handler  # the floor: no GET /metrics at all
        assert inference_seconds(f"http://127.0.0.1:{server.server_port}") is None
    finally:
        server.shutdown()
        server.server_close()


def test_inference_load_is_the_busy_share_and_its_cpu_share():
    # 6 s of batches in a 10 s run, 4.5 of them on a CPU: busy 60%, on a CPU 75% of that
    load = inference_load((1.0, 0.5), (7.0, 5.0), 10.0)
    assert load == {"inference_busy": 0.6, "inference_on_cpu": 0.75}
    assert inference_cell(load) == "60% / 75%"
    assert inference_load(None, (7.0, 5.0), 10.0) == {"inference_busy": None, "inference_on_cpu": None}
    assert inference_load((1.0, 0.5), (1.0, 0.5), 10.0) == {"inference_busy": 0.0, "inference_on_cpu": None}
    assert inference_cell({"inference_busy": None}) == "—"


def _wrk_row(rps: float, p99: float) -> dict:
    return {
        "rps": rps,
        "p50_ms": p99 / 4,
        "p99_ms": p99,
        "max_ms": p99 * 2,
        "errors": 0,
        "server_cpu_ms_per_request": 1.25,
        "event_loop_cpu_ms_per_request": 0.75,
    }


def _wrk_result(rps: float) -> WrkResult:
    return WrkResult(int(rps * 15), 15.0, rps, 2.0, 3.0, 9.0, 12.0, 20.0, 0, 0)


def _catalogue(n_items: int, with_shadow: bool) -> dict:
    lat = {"p50": 1.0, "p90": 2.0, "p99": 3.0, "n": 100, "mean": 1.2, "max": 4.0}
    res = {
        "n_items": n_items,
        "publish": {"seconds": 10.0, "version_bytes": 2**20, "peak_rss_mb_of_publisher": 500.0},
        "inprocess": {side: {"recommender": lat, "raw_ort": lat} for side in ("student", "teacher")},
        "http_single": {**lat, "errors": 0},
        "http_single_live": lat,
        "wrk": _wrk_row(1200.0, 40.0),
        "server": {
            "ready_seconds": 2.0,
            "torch_loaded": False,
            "memory_idle": {"rss_mb": 300.0, "peak_rss_mb": 310.0},
            "memory_after_load": {"rss_mb": 320.0, "peak_rss_mb": 330.0},
        },
    }
    res["inprocess"]["teacher_over_student_p50"] = 1.0
    res["floor"] = summarise(
        {"floor": [_wrk_result(8000.0), _wrk_result(7000.0)], "recommend": [_wrk_result(4900.0)] * 2},
        [1.1, 1.4, 1.3, 1.2, 1.25],
    )
    if with_shadow:
        res["shadow"] = {
            "full_load": {
                "off": res["wrk"],
                "on": {**_wrk_row(1100.0, 44.0), "inference_busy": 0.92, "inference_on_cpu": 0.59},
            },
            "paced": {
                "target_rps": 770.0,
                "delay_ms": 40.0,
                "rate_gap": 0.01,
                "off": _wrk_row(760.0, 20.0),
                "on": _wrk_row(755.0, 22.0),
            },
            "shadow_report": {"count": 500, "dropped": 3, "errors": 1},
            "shadow_phases": {"full_load": {"count": 400, "dropped": 3, "error": 0, "timeout": 1}},
            "compared": 500,
            "p99_ratio": 1.1,
            "p99_ratio_full_load": 1.1,
        }
    res["checks"] = checks_for(res, with_shadow)
    return res


def test_markdown_renders_every_section():
    payload = {
        "command": "python -m bench.service",
        "machine": {
            "nproc": 2,
            "cpu_model": "cpu",
            "python": "3.11",
            "versions": {"onnxruntime": "1"},
            "wrk": "wrk 4",
        },
        "args": {"connections": 32, "duration": 15.0},
        "catalogues": [_catalogue(100_000, True), _catalogue(1_000_000, False)],
    }
    text = markdown(payload)
    assert "## 100,000 items" in text and "## 1,000,000 items" in text
    assert "| shadow 1.0, paced (~770/s) | 755 | 5.50 | 22.00 | 44.00 | 0 | 1.250 | 0.750 | — |" in text
    assert "| shadow 1.0, full load | 1100 | 11.00 | 44.00 | 88.00 | 0 | 1.250 | 0.750 | 92% / 59% |" in text
    assert "| shadow.p99_ratio | <= 1.2 | 1.10 | PASS |" in text
    assert "| wrk.rps | >= 1000 | 1200.00 | PASS |" in text
    assert "| floor.ratio | >= 0.6 | 0.65 | PASS |" in text  # 4,900 / median(8,000, 7,000)
    assert "floor/recommend req/s: 8000/4900, 7000/4900; medians 7500 and 4900" in text
    assert "at 65% of the floor (0 errors; 1-minute load average 1.10 to 1.40" in text
    assert "Server RSS: 300 MB after start" in text
