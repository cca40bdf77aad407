"""The shadow report: agreement and latency of each pair the shadow compared (the serving version's
student against its teacher, or against a candidate version's student), as JSON and as an HTML page.

Every figure belongs to one pair: two comparisons (a teacher that agrees 0.15 with its student, a
byte-identical candidate that agrees 1.0) averaged into one number describe neither. A pair's
coverage counts the answers the shadow could have sampled (the serving student's, with items and no
fallback) from the pair's first comparison on, not the answers served before the pair existed.

Aggregation is numpy over the stored comparisons; the page draws its histograms as inline SVG so the
service needs no plotting library (matplotlib stays on the offline side).
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from app.experiment.assignment import SERVING_ARMS
from app.stores.records import (
    METRIC_COLUMNS,
    TEACHER_PAIR,
    AnswerRows,
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


def shadowable(answers: AnswerRows) -> np.ndarray:
    """[n] bool: the answers the shadow samples from (the serving student's, with items, no fallback)."""
    return np.isin(answers.arm, SERVING_ARMS) & ~answers.error & ~answers.fallback & (answers.impressions > 0)


PairKey = tuple[str, str, str]  # (kind, control version, treatment version)


def pair_windows(rows: ComparisonRows, lead_s: float = 0.0) -> dict[PairKey, tuple[float, float]]:
    """Per pair, the time its answers count from and until: from its first comparison less `lead_s`
    (the shadow's timeout: a compared answer was served at most that long before its comparison) to
    its last comparison, or to the end of the window for the pair its control version was compared
    in last (still running)."""
    timed = np.isfinite(rows.ts)
    out: dict[PairKey, tuple[float, float]] = {}
    for key in zip(
        rows.pair.tolist(), rows.student_version.tolist(), rows.teacher_version.tolist(), strict=True
    ):
        if key in out:
            continue
        mask = (
            timed
            & (rows.pair == key[0])
            & (rows.student_version == key[1])
            & (rows.teacher_version == key[2])
        )
        if mask.any():
            out[key] = (float(rows.ts[mask].min()) - lead_s, float(rows.ts[mask].max()))
    for version in {k[1] for k in out}:
        latest = max((k for k in out if k[1] == version), key=lambda k: out[k][1])
        out[latest] = (out[latest][0], math.inf)
    return out


def served_in_pair(answers: AnswerRows | None, key: PairKey, window: tuple[float, float] | None) -> int:
    """The shadowable answers of the pair's control version inside its window (0 without either)."""
    if answers is None or window is None:
        return 0
    mask = (
        shadowable(answers)
        & (answers.version == key[1])
        & (answers.ts >= window[0])
        & (answers.ts <= window[1])
    )
    return int(mask.sum())


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
    rows: ComparisonRows, since: float | None = None, answers: AnswerRows | None = None, lead_s: float = 0.0
) -> dict[str, Any]:
    """The `/v1/shadow/report` body: one block per pair (teacher vs student of one version, or a
    serving version's student vs a candidate's), each with its coverage from the pair's start
    (`answers`: FeedbackStore.answer_rows of the window, every experiment), and the same totals over
    every pair together (for counting; the dashboard reads the pairs). `lead_s`: see pair_windows."""
    windows = pair_windows(rows, lead_s)
    total_fail = {kind: sum(n for (_, k), n in rows.failures.items() if k == kind) for kind in FAILURES}
    total = _block(rows, np.ones(len(rows), bool), total_fail)
    served_total = sum(served_in_pair(answers, key, window) for key, window in windows.items())
    report: dict[str, Any] = {
        "since": None if since is None else datetime.fromtimestamp(since, UTC).isoformat(),
        **total,
        "errors": total_fail["error"] + total_fail["timeout"],
        **_coverage(total["count"], total_fail, served_total),
        "by_version": [],
    }
    keys = {
        (str(p), str(s), str(t))
        for p, s, t in zip(
            rows.pair.tolist(), rows.student_version.tolist(), rows.teacher_version.tolist(), strict=True
        )
    }
    keys |= {parse_failure_key(key) for key, _ in rows.failures}  # pairs with failures only
    for key in sorted(keys):
        kind, student_v, teacher_v = key
        mask = (rows.pair == kind) & (rows.student_version == student_v) & (rows.teacher_version == teacher_v)
        fails = {fail: rows.failures.get((failure_key(*key), fail), 0) for fail in FAILURES}
        block = _block(rows, mask, fails)
        block["errors"] = fails["error"] + fails["timeout"]
        window = windows.get(key)
        report["by_version"].append(
            {
                "pair": pair_info(*key),
                "student_version": student_v,
                "teacher_version": teacher_v,
                **block,
                **_coverage(block["count"], fails, served_in_pair(answers, key, window)),
                "counted_from": None if window is None else window[0],
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


def ratio_label(pair: dict[str, Any]) -> str:
    """What a pair's latency ratio divides: "teacher / student", "candidate / serving"."""
    return f"{pair['treatment']['arm']} / {pair['control']['arm']}"


def _table(block: dict[str, Any]) -> str:
    pair = block["pair"]
    head = "<tr><th>metric</th><th>n</th><th>mean</th><th>p10</th><th>p50</th><th>p90</th></tr>"
    rows = [(name, s) for name, s in block["metrics"].items()]
    rows += [(f"latency ratio {ratio_label(pair)}", block["latency_ratio"])]
    sides = {"student": pair["control"], "teacher": pair["treatment"]}
    rows += [
        (f"latency ms ({sides[side]['arm']} {sides[side]['version']})", s)
        for side, s in block["latency_ms"].items()
    ]
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_fmt(s[c])}</td>" for c in ("n", "mean", "p10", "p50", "p90"))
        + "</tr>"
        for name, s in rows
    )
    return f"<table>{head}{body}</table>"


def _pair_section(block: dict[str, Any], rows: ComparisonRows) -> str:
    """One pair: its coverage, a histogram per agreement metric and of its latency ratio, its table."""
    pair = block["pair"]
    mask = (rows.pair == pair["kind"]) & (rows.student_version == block["student_version"])
    mask &= rows.teacher_version == block["teacher_version"]
    student, teacher = rows.student_latency_ms[mask], rows.teacher_latency_ms[mask]
    ratio = np.where(student > 0, teacher / np.maximum(student, 1e-12), np.nan)
    finite = ratio[np.isfinite(ratio)]
    ratio_hi = float(max(2.0, math.ceil(np.percentile(finite, 99)) if len(finite) else 2.0))
    name = pair["name"]
    plots = [
        svg_histogram(
            rows.metrics[m][mask],
            -1.0 if m == "kendall_tau" else 0.0,
            1.0,
            title=f"{METRIC_NAMES[m]} · {name}",
        )
        for m in METRIC_COLUMNS
    ]
    plots.append(svg_histogram(ratio, 0.0, ratio_hi, title=f"latency ratio {ratio_label(pair)} · {name}"))
    since = ""
    if block.get("counted_from") is not None:
        since = f" since {datetime.fromtimestamp(block['counted_from'], UTC).isoformat(timespec='seconds')}"
    return (
        f"<section class='pair'><h2>{html.escape(name)}</h2>"
        f"<p>compared {block['count']} of {block['served']} shadowable answers{since} (coverage "
        f"{_fmt(block['coverage'])}), dropped {block['dropped']}, errors {block['error']}, timeouts {block['timeout']}</p>"
        f"<div>{''.join(plots)}</div>{_table(block)}</section>"
    )


def render_html(report: dict[str, Any], rows: ComparisonRows) -> str:
    """A self-contained page: per pair of versions, its coverage, a histogram per agreement metric and
    of the latency ratio, and its table (no figure mixes two pairs)."""
    since = f" since {html.escape(report['since'])}" if report["since"] else ""
    sections = "".join(_pair_section(block, rows) for block in report["by_version"])
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>recdistill shadow comparisons</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}"
        "svg{margin:4px;border:1px solid #eee}</style></head><body>"
        f"<h1>Shadow comparisons{since}</h1>"
        f"<p>{len(report['by_version'])} pair(s) compared; each section below is one pair.</p>"
        f"{sections or '<p>no comparisons yet</p>'}"
        "</body></html>"
    )
