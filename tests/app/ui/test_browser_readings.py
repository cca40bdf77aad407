"""What a reader sees, in headless Chromium against a live service: /docs draws every operation; the
A/B page draws the always-valid interval over time and its verdict says what that interval says; a
chart with one point spans its window, not years; every shadow figure names its pair; a stopped
experiment is marked; `?experiment=` is honoured; validation charts keep quality on its own axis;
an unknown user in the explorer is said to be unknown.

Skips (saying why) only where Chromium is not installed; .ci/run installs Debian's `chromium`."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.app.ui.live import ADMIN_TOKEN, Watched, call, require_browser

require_browser()


def _open(watched: Watched, url: str) -> None:
    watched.page.goto(url)
    watched.loaded()
    assert "error" not in watched.page.inner_text("#status")


def _traffic(server: str, users: range, clicks_every: int = 3) -> None:
    for i in users:
        answer = call(server, "/v1/recommend", {"user_id": f"u{i % 9}-{i}", "history": ["i00"], "k": 3})
        if i % clicks_every == 0:
            call(
                server,
                "/v1/feedback",
                {
                    "request_id": answer["request_id"],
                    "item_id": answer["items"][0]["item_id"],
                    "event": "click",
                },
            )


def test_docs_draw_every_operation(server: str, watched: Watched) -> None:
    """Swagger UI reads the OpenAPI 3.1 document: one drawn block per documented operation."""
    schema = call(server, "/openapi.json")
    assert schema["openapi"].startswith("3.1")
    operations = sum(len(methods) for methods in schema["paths"].values())
    watched.page.goto(f"{server}/docs")
    watched.page.wait_for_selector(".opblock")
    assert watched.page.locator(".opblock").count() == operations
    assert "Unable to render" not in watched.page.content()
    assert watched.errors == [] and watched.remote() == []


def test_the_ab_page_draws_the_interval_over_time_and_its_verdict_agrees_with_it(
    server: str, watched: Watched
) -> None:
    _open(watched, f"{server}/ui/ab")
    report = call(server, "/v1/ab/report")
    series = call(server, "/v1/ab/timeseries?bucket_seconds=60")
    charts = watched.charts()
    (title,) = [t for t in charts if t.startswith("CTR per user")]
    interval = charts[title]
    assert interval["labels"] == [
        "difference",
        "always-valid 95% low",
        "always-valid 95% high",
        "no difference",
    ]
    lift, low, high, zero = interval["last"]
    v = report["verdict"]
    assert (lift, low, high, zero) == (
        pytest.approx(100 * v["relative"]["lift"]), pytest.approx(100 * v["relative"]["low"]),
        pytest.approx(100 * v["relative"]["high"]), 0,
    )  # fmt: skip
    word = watched.page.inner_text("#verdict-word")
    assert word == v["verdict"] == ("better" if low > 0 else "worse" if high < 0 else "not yet")
    summary = watched.page.inner_text("#verdict-summary")
    assert (
        f"always-valid 95% interval {low / 100:+.2%} to {high / 100:+.2%}" in summary
    )  # words quote the chart
    widths = [
        b["difference"]["lift_high"] - b["difference"]["lift_low"]
        for b in series["buckets"]
        if b["difference"]["lift_low"] is not None
    ]
    assert widths[0] > 2 * widths[-1]  # it narrows as users come in
    assert "CTR per user (the verdict's) [95%]" in watched.page.inner_text("#arms-table")
    assert watched.errors == []


def test_a_one_point_chart_spans_its_window_and_experiment_in_the_url_is_honoured(
    server: str, watched: Watched
) -> None:
    started = call(
        server,
        "/admin/experiments",
        {"name": "fresh", "arms": "teacher_vs_student", "teacher_share": 0.5},
        ADMIN_TOKEN,
    )
    _traffic(server, range(40))
    _open(watched, f"{server}/ui/ab?experiment=fresh")
    assert watched.page.input_value("#experiment") == "fresh"
    assert call(server, "/v1/ab/report?experiment=fresh")["experiment"]["name"] == "fresh"
    start = datetime.fromisoformat(started["started_at"]).timestamp()
    for title, chart in watched.charts().items():
        low, high = chart["x"]
        assert low <= start + 1 and high >= time.time() - 120, title  # from the start to now
        assert high - low < 3 * 3600, title  # one bucket of points: minutes, never years
    _open(watched, f"{server}/ui/overview")
    for title, chart in watched.charts().items():
        assert chart["x"][1] - chart["x"][0] == pytest.approx(3600, abs=120), title  # the last hour
    _open(watched, f"{server}/ui/ab?experiment=no-such-one")
    assert "no experiment named no-such-one" in watched.page.inner_text("#controls")


def test_a_stopped_experiment_is_marked_and_says_so(server: str, watched: Watched) -> None:
    call(server, "/admin/experiments/fresh/stop", {}, ADMIN_TOKEN)
    _open(watched, f"{server}/ui/ab?experiment=fresh")
    assert watched.page.locator("[data-stopped]").is_visible()
    assert watched.page.inner_text("#verdict-summary").lstrip(" —").startswith("Stopped ")


def test_every_shadow_figure_names_its_pair(server: str, watched: Watched) -> None:
    """With a candidate loaded beside the teacher's past comparisons there are two pairs: each
    section, chart, card and histogram names its own; the latency ratio names what it divides."""
    served = call(server, "/v1/models")["version"]
    other = "v1" if served == "v2" else "v2"
    call(server, "/admin/candidate", {"version": other}, ADMIN_TOKEN)
    _traffic(server, range(100, 130))
    time.sleep(1.0)  # the shadow worker compares off the request path
    _open(watched, f"{server}/ui/shadow")
    sections = watched.page.locator("section.pair")
    names = [sections.nth(i).get_attribute("data-pair") for i in range(sections.count())]
    assert (
        f"student {served} vs teacher {served}" in names and f"serving {served} vs candidate {other}" in names
    )
    charts = watched.charts()
    for name in names:
        mine = [t for t in charts if t.endswith(f"· {name}")]
        assert len(mine) == 3, name  # agreement, latency ratio, share compared
        ratio = next(t for t in mine if t.startswith("Latency ratio"))
        assert ("candidate / serving" if "candidate" in name else "teacher / student") in ratio
    assert all(any(t.endswith(f"· {n}") for n in names) for t in charts)  # no chart without its pair
    _open(watched, f"{server}/ui/overview")
    overlap = watched.page.locator(".card .label", has_text="Overlap@k")
    assert overlap.count() == len(names) and all(
        " · " in overlap.nth(i).inner_text() for i in range(overlap.count())
    )
    watched.page.goto(f"{server}/v1/shadow/report.html")
    labels = watched.page.eval_on_selector_all("svg", "els => els.map(e => e.getAttribute('aria-label'))")
    assert labels and all(any(label.endswith(f" · {n}") for n in names) for label in labels)


def test_validation_charts_keep_quality_on_its_own_axis(server: str, watched: Watched) -> None:
    """The report's curves also record how many users were validated (5,000): not on NDCG's axis."""
    _open(watched, f"{server}/ui/versions")
    validation = {t: c for t, c in watched.charts().items() if ": validation" in t}
    assert validation and all(c["y"][1] <= 1.0 and "users" not in c["labels"] for c in validation.values())
    assert all("(5,000 users)" in t for t in validation)


def test_an_unknown_user_in_the_explorer_is_said_to_be_unknown(server: str, watched: Watched) -> None:
    _open(watched, f"{server}/ui/explore?user=nobody-at-all")
    cards = watched.page.inner_text("#agreement")
    assert "Unknown user" in cards and "nobody-at-all" in cards
    assert "overlap@k" not in cards  # no agreement headline for a list compared with itself
    _open(watched, f"{server}/ui/explore?user=u1&k=3")
    assert "Unknown user" not in watched.page.inner_text("#agreement")
