"""The shadow report: agreement and latency of the teacher vs the student, as JSON and as an HTML page.

Aggregation is numpy over the stored comparisons; the page draws its histograms as inline SVG so the
service needs no plotting library (matplotlib stays on the offline side).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from app.stores.records import (
    METRIC_COLUMNS,
    TEACHER_PAIR,
    ComparisonRows,
    failure_key,
    parse_failure_key,
)

# Report keys as the API names them (same names as /v1/compare's "agreement").
METRIC_NAMES = {"overlap": "overlap@k", "rbo": "rbo", "kendall_tau": "kendall_tau", "ndcg": "ndcg_vs_teacher"}
FAILURES = ("dropped", "error", "timeout", "unknown_user")


def summarize(values: np.ndarray) -> dict[str, float | int | None]:
    """n, mean and p10/p50/p90 of the finite values (kendall_tau is NaN where it is undefined)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"n": 0, "mean": None, "p10": None, "p50": None, "p90": None}
    p10, p50, p90 = np.percentile(finite, [10, 50, 90])
    return {
        "n": int(len(finite)),
        "mean": float(finite.mean()),
        "p10": float(p10),
        "p50": float(p50),
        "p90": float(p90),
    }


def _block(rows: ComparisonRows, mask: np.ndarray, failures: dict[str, int]) -> dict[str, Any]:
    student = rows.student_latency_ms[mask]
    teacher = rows.teacher_latency_ms[mask]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(student > 0, teacher / student, np.nan)
    return {
        "count": int(mask.sum()),
        **failures,
        "metrics": {METRIC_NAMES[m]: summarize(rows.metrics[m][mask]) for m in METRIC_COLUMNS},
        "latency_ms": {"student": summarize(student), "teacher": summarize(teacher)},
        "latency_ratio": summarize(ratio),  # teacher / student, per request
    }


def _coverage(compared: int, failures: dict[str, int], served: int) -> dict[str, Any]:
    """The share of traffic a report covers: every sampled job ends compared, dropped, timed out or
    failed, so sampled is their sum; coverage = compared / answers served in the window."""
    return {
        "served": served,
        "sampled": compared + sum(failures.values()),
        "compared": compared,
        "timed_out": failures["timeout"],
        "coverage": compared / served if served else None,
    }


def pair_info(kind: str, control_version: str, treatment_version: str) -> dict[str, Any]:
    """Both sides of a comparison with their versions, as every report names them."""
    treatment_side = "teacher" if kind == TEACHER_PAIR else "candidate"
    control_side = "student" if kind == TEACHER_PAIR else "serving"
    return {
        "kind": kind,
        "control": {"arm": control_side, "side": "student", "version": control_version},
        "treatment": {
            "arm": treatment_side,
            "side": "teacher" if kind == TEACHER_PAIR else "student",
            "version": treatment_version,
        },
        "name": f"{control_side} {control_version} vs {treatment_side} {treatment_version}",
    }


def build_report(
    rows: ComparisonRows, since: float | None = None, served: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The `/v1/shadow/report` body: totals, then the same block per pair (teacher vs student of one
    version, or a serving version's student vs a candidate's), each with its coverage: `served`
    holds the answers served in the window per model version (FeedbackStore.served_counts)."""
    served = served or {}
    total_fail = {kind: sum(n for (_, k), n in rows.failures.items() if k == kind) for kind in FAILURES}
    total = _block(rows, np.ones(len(rows), bool), total_fail)
    report: dict[str, Any] = {
        "since": None if since is None else datetime.fromtimestamp(since, UTC).isoformat(),
        **total,
        "errors": total_fail["error"] + total_fail["timeout"],
        **_coverage(total["count"], total_fail, sum(served.values())),
        "by_version": [],
    }
    keys = {
        (str(p), str(s), str(t))
        for p, s, t in zip(
            rows.pair.tolist(), rows.student_version.tolist(), rows.teacher_version.tolist(), strict=True
        )
    }
    keys |= {parse_failure_key(key) for key, _ in rows.failures}  # pairs with failures only
    for kind, student_v, teacher_v in sorted(keys):
        mask = (rows.pair == kind) & (rows.student_version == student_v) & (rows.teacher_version == teacher_v)
        key = failure_key(kind, student_v, teacher_v)
        fails = {fail: rows.failures.get((key, fail), 0) for fail in FAILURES}
        block = _block(rows, mask, fails)
        block["errors"] = fails["error"] + fails["timeout"]
        report["by_version"].append(
            {
                "pair": pair_info(kind, student_v, teacher_v),
                "student_version": student_v,
                "teacher_version": teacher_v,
                **block,
                **_coverage(block["count"], fails, served.get(student_v, 0)),
            }
        )
    return report


# -- HTML ---------------------------------------------------------------------------------------------

_W, _H, _PAD = 320, 150, 28


def svg_histogram(values: np.ndarray, lo: float, hi: float, bins: int = 20, title: str = "") -> str:
    """A bar chart of `values` over [lo, hi] as a standalone <svg> element."""
    finite = values[np.isfinite(values)]
    counts, edges = np.histogram(np.clip(finite, lo, hi), bins=bins, range=(lo, hi))
    top = max(int(counts.max(initial=0)), 1)
    plot_w, plot_h = _W - 2 * _PAD, _H - 2 * _PAD
    bar_w = plot_w / bins
    bars = []
    for i, c in enumerate(counts.tolist()):
        h = plot_h * c / top
        x = _PAD + i * bar_w
        bars.append(
            f'<rect x="{x:.1f}" y="{_PAD + plot_h - h:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" '
            f'fill="#4c72b0"><title>[{edges[i]:.2f}, {edges[i + 1]:.2f}): {c}</title></rect>'
        )
    axis_y = _PAD + plot_h
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{html.escape(title)}">'
        f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="12">{html.escape(title)} (n={len(finite)})</text>'
        + "".join(bars)
        + f'<line x1="{_PAD}" y1="{axis_y}" x2="{_W - _PAD}" y2="{axis_y}" stroke="#333"/>'
        f'<text x="{_PAD}" y="{axis_y + 14}" font-size="10" text-anchor="middle">{lo:g}</text>'
        f'<text x="{_W - _PAD}" y="{axis_y + 14}" font-size="10" text-anchor="middle">{hi:g}</text>'
        f'<text x="{_PAD - 4}" y="{_PAD + 4}" font-size="10" text-anchor="end">{top}</text>'
        "</svg>"
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table(block: dict[str, Any]) -> str:
    head = "<tr><th>metric</th><th>n</th><th>mean</th><th>p10</th><th>p50</th><th>p90</th></tr>"
    rows = [(name, s) for name, s in block["metrics"].items()]
    rows += [("latency ratio (teacher/student)", block["latency_ratio"])]
    rows += [(f"latency ms ({side})", s) for side, s in block["latency_ms"].items()]
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_fmt(s[c])}</td>" for c in ("n", "mean", "p10", "p50", "p90"))
        + "</tr>"
        for name, s in rows
    )
    return f"<table>{head}{body}</table>"


def render_html(report: dict[str, Any], rows: ComparisonRows) -> str:
    """A self-contained page: totals, one histogram per agreement metric and the latency ratio, and a
    table per model version."""
    ratio = np.where(
        rows.student_latency_ms > 0,
        rows.teacher_latency_ms / np.maximum(rows.student_latency_ms, 1e-12),
        np.nan,
    )
    finite_ratio = ratio[np.isfinite(ratio)]
    ratio_hi = float(max(2.0, math.ceil(np.percentile(finite_ratio, 99)) if len(finite_ratio) else 2.0))
    plots = [
        svg_histogram(rows.metrics[m], -1.0 if m == "kendall_tau" else 0.0, 1.0, title=METRIC_NAMES[m])
        for m in METRIC_COLUMNS
    ]
    plots.append(svg_histogram(ratio, 0.0, ratio_hi, title="latency ratio teacher/student"))
    versions = "".join(
        f"<h3>{html.escape(v['pair']['name'])}</h3>"
        f"<p>compared {v['count']} of {v['served']} served (coverage {_fmt(v['coverage'])}), "
        f"dropped {v['dropped']}, errors {v['error']}, timeouts {v['timeout']}</p>" + _table(v)
        for v in report["by_version"]
    )
    since = f" since {html.escape(report['since'])}" if report["since"] else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>recdistill shadow report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}"
        "svg{margin:4px;border:1px solid #eee}</style></head><body>"
        f"<h1>Teacher in shadow{since}</h1>"
        f"<p>compared {report['count']}, dropped {report['dropped']}, errors {report['error']}, "
        f"timeouts {report['timeout']}</p>"
        f"<div>{''.join(plots)}</div>"
        f"<h2>All versions</h2>{_table(report)}<h2>By model version</h2>{versions or '<p>no comparisons yet</p>'}"
        "</body></html>"
    )
