"""The dashboard in a real headless Chromium against a live service on 127.0.0.1: every page loads
with no console error and no request leaving loopback, the explorer shows both lists for a known
user, and a promote button changes what `/v1/models` serves.

Skips (saying why) only where Chromium is not installed; .ci/run installs Debian's `chromium`."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from app.ui.pages import PAGES
from tests.app.ui.live import ADMIN_TOKEN, Watched, call, require_browser

require_browser()


@pytest.mark.parametrize("slug", [slug for slug, _ in PAGES])
def test_each_page_loads_with_no_console_error_and_nothing_remote(
    server: str, watched: Watched, slug: str
) -> None:
    query = "?user=u1" if slug == "explore" else ""
    watched.page.goto(f"{server}/ui/{slug}{query}")
    watched.loaded()
    watched.page.wait_for_load_state("networkidle")
    assert "error" not in watched.page.inner_text("#status")
    assert watched.errors == []
    assert watched.remote() == []
    assert any(u.endswith("/ui/static/vendor/uPlot.iife.min.js") for u in watched.urls)
    # fits a 1400 px window (no button off-screen); legends name series, no "–" value placeholders
    assert watched.page.evaluate("document.documentElement.scrollWidth") <= 1400
    assert watched.page.locator(".u-legend .u-value").count() == 0


def test_pages_draw_their_charts(server: str, watched: Watched) -> None:
    watched.page.goto(f"{server}/ui/shadow")
    watched.loaded()
    assert watched.page.locator("section.pair .uplot").count() == 3  # agreement, latency ratio, share
    watched.page.goto(f"{server}/ui/ab")
    watched.loaded()
    assert watched.page.locator(".uplot").count() == 3
    assert watched.page.inner_text("#verdict-word") in ("better", "worse", "not yet")


def test_the_explorer_shows_both_lists_for_a_known_user(server: str, watched: Watched) -> None:
    watched.page.goto(f"{server}/ui/explore")
    watched.page.fill("#user", "u1")
    watched.page.fill("#k", "4")
    watched.page.click("button[type=submit]")
    watched.loaded()
    student = watched.page.locator("#student-list tbody tr")
    teacher = watched.page.locator("#teacher-list tbody tr")
    assert student.count() == 4 and teacher.count() == 4
    assert watched.page.locator("#history-list tbody tr").count() >= 1  # u1's seeded history
    compare = call(server, "/v1/compare", {"user_id": "u1", "k": 4})
    shown = [
        watched.page.locator("#student-list tbody tr").nth(i).get_attribute("data-item") for i in range(4)
    ]
    assert shown == [i["item_id"] for i in compare["student"]["items"]]
    assert watched.errors == []


def test_a_promote_button_changes_what_v1_models_serves(server: str, watched: Watched) -> None:
    assert call(server, "/v1/models")["version"] == "v2"
    watched.page.goto(f"{server}/ui/versions")
    watched.loaded()
    watched.page.fill("#token", ADMIN_TOKEN)
    watched.page.click("#admin button[type=submit]")
    button = watched.page.locator('button[data-action="promote"][data-version="v1"]')
    button.wait_for(state="visible")
    watched.page.wait_for_function("() => !document.querySelector('button[data-version=\"v1\"]').disabled")
    asked: list[str] = []
    watched.page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    button.click()  # dismissed: nothing changes
    watched.page.wait_for_function(
        "() => /cancelled/.test(document.getElementById('admin-result').textContent)"
    )
    assert asked and asked[0].startswith("Promote v1?") and call(server, "/v1/models")["version"] == "v2"
    watched.page.once("dialog", lambda d: d.accept())
    button.click()
    watched.page.wait_for_function(
        "() => /serving v1/.test(document.getElementById('admin-result').textContent)"
    )
    models = call(server, "/v1/models")
    assert (models["version"], models["latest"], models["served_because"]) == ("v1", "v1", "latest")
    assert watched.errors == []


def test_screenshot_script_writes_a_png_per_page(server: str, chromium: Any, tmp_path: Path) -> None:
    from scripts.ui_screenshots import shoot

    written = shoot(chromium, server, tmp_path)
    assert [p.name for p in written] == [f"ui-{slug}.png" for slug, _ in PAGES]
    assert all(p.read_bytes().startswith(b"\x89PNG") and p.stat().st_size > 5000 for p in written)


def test_the_watcher_sees_console_errors_and_remote_requests(server: str, watched: Watched) -> None:
    """The two page checks above can fail: an error and a request out are both caught."""
    watched.page.goto(f"{server}/ui/overview")
    watched.loaded()
    watched.page.evaluate("() => { console.error('boom'); fetch('http://192.0.2.1/x').catch(() => null); }")
    watched.page.wait_for_timeout(200)
    assert "boom" in watched.errors
    assert "http://192.0.2.1/x" in watched.remote()


def test_every_page_renders_a_candidate_beside_the_served_version(server: str, watched: Watched) -> None:
    """With a candidate loaded (the rollout shape): the overview names it, no page errs."""
    served = call(server, "/v1/models")["version"]
    other = "v1" if served == "v2" else "v2"
    request = urllib.request.Request(
        f"{server}/admin/candidate",
        json.dumps({"version": other}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read())["candidate"] == other
    for slug, _ in PAGES:
        watched.page.goto(f"{server}/ui/{slug}{'?user=u1' if slug == 'explore' else ''}")
        watched.loaded()
        assert "error" not in watched.page.inner_text("#status"), slug
        if slug == "overview":
            assert other in watched.page.inner_text("#cards")
    assert watched.errors == [] and watched.remote() == []
