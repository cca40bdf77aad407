"""Shadow report aggregation and the HTML page, on hand-made comparison rows with hand-computed stats.

Percentiles are numpy's default (linear between closest ranks): for sorted [0, .5, 1, 1] the p10
sits at position 0.3 -> 0.15, the p50 at 1.5 -> 0.75, the p90 at 2.7 -> 1.0.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from app.experiment.shadow_report import build_report, render_html, svg_histogram
from app.stores.records import AnswerRows, ComparisonRows


@pytest.fixture
def rows() -> ComparisonRows:
    nan = float("nan")
    return ComparisonRows(
        student_version=np.array(["v1", "v1", "v2&", "v2&"]),
        teacher_version=np.array(["v1", "v1", "v2&", "v2&"]),
        metrics={
            "overlap": np.array([0.0, 0.5, 1.0, 1.0]),
            "rbo": np.array([0.1, 0.2, 0.3, 0.4]),
            "kendall_tau": np.array([nan, 1.0, -1.0, 0.5]),
            "ndcg": np.array([0.0, 1.0, 1.0, 1.0]),
        },
        student_latency_ms=np.array([1.0, 2.0, 4.0, 0.0]),
        teacher_latency_ms=np.array([2.0, 2.0, 2.0, 5.0]),
        failures={("v1", "dropped"): 3, ("v2&", "timeout"): 1, ("v3", "error"): 2},
        ts=np.array([10.0, 20.0, 30.0, 40.0]),
    )


def test_totals_and_percentiles_by_hand(rows: ComparisonRows) -> None:
    report = build_report(rows)
    assert (report["count"], report["dropped"], report["error"], report["timeout"], report["errors"]) == (
        4,
        3,
        2,
        1,
        3,
    )
    assert report["metrics"]["overlap@k"] == {
        "n": 4,
        "mean": 0.625,
        "p10": pytest.approx(0.15),
        "p50": 0.75,
        "p90": 1.0,
    }
    # Undefined taus (NaN) are left out: [-1, .5, 1] -> mean 1/6, median .5.
    tau = report["metrics"]["kendall_tau"]
    assert (tau["n"], tau["mean"], tau["p50"]) == (3, pytest.approx(1 / 6), 0.5)
    # Ratios teacher/student: 2, 1, .5 and none for a 0 ms student.
    ratio = report["latency_ratio"]
    assert (ratio["n"], ratio["mean"], ratio["p50"]) == (3, pytest.approx(3.5 / 3), 1.0)


def test_broken_down_by_version(rows: ComparisonRows) -> None:
    by = {v["student_version"]: v for v in build_report(rows)["by_version"]}
    assert set(by) == {"v1", "v2&", "v3"}  # v3 had only failures, and still shows
    assert (by["v1"]["count"], by["v1"]["dropped"], by["v1"]["metrics"]["overlap@k"]["mean"]) == (2, 3, 0.25)
    assert (by["v2&"]["count"], by["v2&"]["timeout"], by["v2&"]["errors"]) == (2, 1, 1)
    assert (by["v3"]["count"], by["v3"]["error"], by["v3"]["metrics"]["rbo"]["mean"]) == (0, 2, None)


def test_since_is_reported_as_iso_time(rows: ComparisonRows) -> None:
    assert build_report(rows, since=0.0)["since"] == "1970-01-01T00:00:00+00:00"


def test_html_page_has_a_section_per_pair_and_every_plot_names_its_pair(rows: ComparisonRows) -> None:
    page = render_html(build_report(rows), rows)
    assert page.startswith("<!doctype html>") and "<h1>Shadow comparisons" in page
    assert "Teacher in shadow" not in page
    assert page.count("<section class='pair'>") == 3 and page.count("<svg") == 15  # 5 plots per pair
    titles = re.findall(r'aria-label="([^"]*)"', page)
    assert all(" · student v" in t and " vs teacher v" in t for t in titles)  # each plot names its pair
    assert "latency ratio teacher / student · student v1 vs teacher v1" in titles
    assert "v2&amp;" in page and "v2& " not in page


def test_a_pairs_coverage_counts_answers_from_its_first_comparison() -> None:
    """The serving student v1 was compared with its teacher (t = 10, 20), then with candidate v2
    (t = 100, 110): answers served before t = 100 do not count against the candidate pair, nor the
    teacher pair's after its last comparison; forced-out arms, fallbacks and failures never count."""
    nan = float("nan")
    rows = ComparisonRows(
        student_version=np.array(["v1", "v1", "v1", "v1"]),
        teacher_version=np.array(["v1", "v1", "v2", "v2"]),
        metrics={m: np.array([0.2, 0.2, 1.0, 1.0]) for m in ("overlap", "rbo", "ndcg")}
        | {"kendall_tau": np.array([nan, nan, 1.0, 1.0])},
        student_latency_ms=np.ones(4),
        teacher_latency_ms=np.array([3.0, 3.0, 1.0, 1.0]),
        failures={},
        pair=np.array(["teacher_vs_student"] * 2 + ["serving_vs_candidate"] * 2),
        ts=np.array([10.0, 20.0, 100.0, 110.0]),
    )
    answer = ("serving", "user:a", 0.0, 3, 0, 0, 1.0, None, False, "v1")
    answers = AnswerRows.from_rows(
        [(*answer[:2], float(t), *answer[3:]) for t in (5, 10, 15, 20, 50, 100, 105, 110, 120)]
        + [("candidate", "user:b", 101.0, 3, 0, 0, 1.0, None, False, "v2")]  # the candidate arm's own
        + [("serving", "user:c", 102.0, 3, 0, 0, 1.0, "popular", False, "v1")]  # a fallback: never sampled
        + [("serving", "user:d", 103.0, 0, 0, 0, None, None, True, "v1")]  # failed
    )
    by = {b["pair"]["kind"]: b for b in build_report(rows, answers=answers)["by_version"]}
    teacher, candidate = by["teacher_vs_student"], by["serving_vs_candidate"]
    assert (teacher["served"], teacher["counted_from"]) == (3, 10.0)  # t = 10, 15, 20
    assert (candidate["served"], candidate["counted_from"]) == (4, 100.0)  # t = 100, 105, 110, 120
    assert candidate["coverage"] == 0.5 and teacher["coverage"] == pytest.approx(2 / 3)
    assert candidate["metrics"]["overlap@k"]["mean"] == 1.0 and teacher["metrics"]["overlap@k"]["mean"] == 0.2


def test_svg_histogram_bar_heights() -> None:
    svg = svg_histogram(np.array([0.05, 0.05, 0.95, np.nan]), 0.0, 1.0, bins=2, title="t")
    # [0, .5) holds 2 values, [.5, 1] holds 1; the plot is 150 - 2 * 28 = 94 px high: bars 94 and 47 px.
    assert svg.count("<rect") == 2
    assert 'height="94.0"' in svg and 'height="47.0"' in svg
    assert "(n=3)" in svg
