"""Shadow report aggregation and the HTML page, on hand-made comparison rows with hand-computed stats.

Percentiles are numpy's default (linear between closest ranks): for sorted [0, .5, 1, 1] the p10
sits at position 0.3 -> 0.15, the p50 at 1.5 -> 0.75, the p90 at 2.7 -> 1.0.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.experiment.shadow_report import build_report, render_html, svg_histogram
from app.stores.records import ComparisonRows


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


def test_html_page_has_a_plot_per_metric_and_escapes_names(rows: ComparisonRows) -> None:
    page = render_html(build_report(rows), rows)
    assert page.startswith("<!doctype html>") and page.count("<svg") == 5
    assert "v2&amp;" in page and "v2& " not in page
    assert "compared 4, dropped 3" in page


def test_svg_histogram_bar_heights() -> None:
    svg = svg_histogram(np.array([0.05, 0.05, 0.95, np.nan]), 0.0, 1.0, bins=2, title="t")
    # [0, .5) holds 2 values, [.5, 1] holds 1; the plot is 150 - 2 * 28 = 94 px high: bars 94 and 47 px.
    assert svg.count("<rect") == 2
    assert 'height="94.0"' in svg and 'height="47.0"' in svg
    assert "(n=3)" in svg
