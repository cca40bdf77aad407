"""Fixtures of the browser tests: a live service per test module (the dashboard's fixture data), one
headless Chromium per test module, and a watched page per test in a 1400 x 900 window.

Chromium is per module, not per session: Playwright's sync API keeps an asyncio loop running in the
main thread while it is open, so a session-wide browser made every later test's `asyncio.run` fail
("cannot be called from a running event loop")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.app.ui.live import Watched, browser, chromium_path, dashboard_settings, live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_server(dashboard_settings(tmp_path_factory.mktemp("dashboard"))) as url:
        yield url


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    with browser(executable) as instance:
        yield instance


@pytest.fixture
def watched(chromium: Any) -> Iterator[Watched]:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield Watched(context.new_page())
    finally:
        context.close()
