"""The dashboard in a real headless Chromium against a live service on 127.0.0.1: every page loads
with no console error and no request leaving loopback, the explorer shows both lists for a known
user, and a promote button changes what `/v1/models` serves.

Skips (saying why) only where Chromium is not installed; .ci/run installs Debian's `chromium`."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.ui.pages import PAGES
from tests.app.ui.live import ADMIN_TOKEN, browser, chromium_path, dashboard_settings, live_server

pytest.importorskip("playwright", reason="playwright is not installed (the dev extra)")
CHROMIUM = chromium_path()
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_server(dashboard_settings(tmp_path_factory.mktemp("dashboard"))) as url:
        yield url


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    assert CHROMIUM is not None
    with browser(CHROMIUM) as instance:
        yield instance


class Watched:
    """A page with every console error, uncaught exception and request URL it produced."""

    def __init__(self, page: Any):
        self.page, self.errors, self.urls = page, [], []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.urls.append(r.url))

    def remote(self) -> list[str]:
        """Requests to anywhere but 127.0.0.1 (data: URLs are inline, not requests out)."""
        return [
            u
            for u in self.urls
            if not u.startswith("data:") and urllib.parse.urlsplit(u).hostname != "127.0.0.1"
        ]


@pytest.fixture
def watched(chromium: Any) -> Iterator[Watched]:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


def _loaded(w: Watched) -> None:
    """Wait until the page's script has reported (status line says updated or error)."""
    w.page.wait_for_function("() => /updated|error/.test(document.getElementById('status').textContent)")


@pytest.mark.parametrize("slug", [slug for slug, _ in PAGES])
def test_each_page_loads_with_no_console_error_and_nothing_remote(
    server: str, watched: Watched, slug: str
) -> None:
    query = "?user=u1" if slug == "explore" else ""
    watched.page.goto(f"{server}/ui/{slug}{query}")
    _loaded(watched)
    watched.page.wait_for_load_state("networkidle")
    assert "error" not in watched.page.inner_text("#status")
    assert watched.errors == []
    assert watched.remote() == []
    assert any(u.endswith("/ui/static/vendor/uPlot.iife.min.js") for u in watched.urls)


def test_pages_draw_their_charts(server: str, watched: Watched) -> None:
    watched.page.goto(f"{server}/ui/shadow")
    _loaded(watched)
    assert watched.page.locator("section.pair .uplot").count() == 3  # agreement, latency ratio, share
    watched.page.goto(f"{server}/ui/ab")
    _loaded(watched)
    assert watched.page.locator(".uplot").count() == 3
    assert "Verdict on ctr" in watched.page.inner_text("#verdict")


def test_the_explorer_shows_both_lists_for_a_known_user(server: str, watched: Watched) -> None:
    watched.page.goto(f"{server}/ui/explore")
    watched.page.fill("#user", "u1")
    watched.page.fill("#k", "4")
    watched.page.click("button[type=submit]")
    _loaded(watched)
    student = watched.page.locator("#student-list tbody tr")
    teacher = watched.page.locator("#teacher-list tbody tr")
    assert student.count() == 4 and teacher.count() == 4
    assert watched.page.locator("#history-list tbody tr").count() >= 1  # u1's seeded history
    compare = _json(server, "/v1/compare", {"user_id": "u1", "k": 4})
    shown = [
        watched.page.locator("#student-list tbody tr").nth(i).get_attribute("data-item") for i in range(4)
    ]
    assert shown == [i["item_id"] for i in compare["student"]["items"]]
    assert watched.errors == []


def test_a_promote_button_changes_what_v1_models_serves(server: str, watched: Watched) -> None:
    assert _json(server, "/v1/models")["version"] == "v2"
    watched.page.goto(f"{server}/ui/versions")
    _loaded(watched)
    watched.page.fill("#token", ADMIN_TOKEN)
    watched.page.click("#admin button[type=submit]")
    button = watched.page.locator('button[data-action="promote"][data-version="v1"]')
    button.wait_for(state="visible")
    watched.page.wait_for_function("() => !document.querySelector('button[data-version=\"v1\"]').disabled")
    button.click()
    watched.page.wait_for_function(
        "() => /serving v1/.test(document.getElementById('admin-result').textContent)"
    )
    models = _json(server, "/v1/models")
    assert (models["version"], models["latest"], models["served_because"]) == ("v1", "v1", "latest")
    assert watched.errors == []


def _json(server: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{server}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_screenshot_script_writes_a_png_per_page(server: str, chromium: Any, tmp_path: Path) -> None:
    from scripts.ui_screenshots import shoot

    written = shoot(chromium, server, tmp_path)
    assert [p.name for p in written] == [f"ui-{slug}.png" for slug, _ in PAGES]
    assert all(p.read_bytes().startswith(b"\x89PNG") and p.stat().st_size > 5000 for p in written)


def test_the_watcher_sees_console_errors_and_remote_requests(server: str, watched: Watched) -> None:
    """The two page checks above can fail: an error and a request out are both caught."""
    watched.page.goto(f"{server}/ui/overview")
    _loaded(watched)
    watched.page.evaluate("() => { console.error('boom'); fetch('http://192.0.2.1/x').catch(() => null); }")
    watched.page.wait_for_timeout(200)
    assert "boom" in watched.errors
    assert "http://192.0.2.1/x" in watched.remote()


def test_every_page_renders_a_candidate_beside_the_served_version(server: str, watched: Watched) -> None:
    """With a candidate loaded (the rollout shape): the overview names it, no page errs."""
    served = _json(server, "/v1/models")["version"]
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
        _loaded(watched)
        assert "error" not in watched.page.inner_text("#status"), slug
        if slug == "overview":
            assert other in watched.page.inner_text("#cards")
    assert watched.errors == [] and watched.remote() == []
