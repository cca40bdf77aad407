"""A live service on 127.0.0.1 (uvicorn in a thread) with the dashboard's fixture data, and the
system's headless Chromium driven by Playwright: shared by the browser tests and
scripts/ui_screenshots.py. Playwright never downloads a browser here; it is given Debian's."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from app.config import Settings
from app.main import create_app
from tests.fixtures.dashboard import past_hour, publish_versions

ADMIN_TOKEN = "dashboard-admin-token-0123456789"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def require_browser() -> None:
    """Skip the calling test module, saying why, where playwright or Chromium is missing (.ci/run
    installs Debian's `chromium`; the dev extra brings playwright)."""
    import pytest

    pytest.importorskip("playwright", reason="playwright is not installed (the dev extra)")
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


def chromium_path() -> str | None:
    """The system's Chromium, or None (the browser tests then skip, naming the package)."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            real = Path(
                "/usr/lib/chromium/chromium"
            )  # Debian's wrapper script probes the host; the binary does not
            return str(real) if name == "chromium" and real.is_file() else found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dashboard_settings(root: Path, **overrides: Any) -> Settings:
    """Two published versions (v2 served), a past hour of shadow and A/B data, admin on."""
    models = root / "models"
    publish_versions(models)
    values: dict[str, Any] = {
        "models_dir": models,
        "history_db": root / "state" / "history.sqlite3",
        "admin_token": ADMIN_TOKEN,
        "experiment_teacher_share": 0.5,
        "shadow_rate": 1.0,
        "shadow_isolation": "thread",
        "reload_poll_seconds": 0.0,
    }
    values.update(overrides)
    settings = Settings(**values)
    settings.state_db_path.parent.mkdir(parents=True, exist_ok=True)
    past_hour(settings.state_db_path, time.time())
    return settings


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port until the block ends; yields its base URL."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard-live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the dashboard's live server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def browser(executable: str) -> Iterator[Any]:
    """A headless Chromium (Playwright's Browser) started from `executable`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            yield instance
        finally:
            instance.close()


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

    def loaded(self) -> None:
        """Wait until the page's script has reported (status line says updated or error)."""
        self.page.wait_for_function(
            "() => /updated|error/.test(document.getElementById('status').textContent)"
        )

    def charts(self) -> dict[str, dict[str, Any]]:
        """What each drawn chart shows, keyed by title: its series labels, axis window, last values."""
        found = self.page.evaluate(
            "() => [...document.querySelectorAll('.chart')].map(c => ({...c.dataset}))"
        )
        out = {}
        for d in found:
            if "xMin" not in d:
                continue
            out[d["title"]] = {
                "labels": json.loads(d["labels"]),
                "last": json.loads(d["last"]),
                "x": (float(d["xMin"]), float(d["xMax"])),
                "y": (float(d["yMin"]), float(d["yMax"])),
            }
        return out


def call(server: str, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    """JSON from the live server (POST when there is a body)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(
        urllib.request.Request(f"{server}{path}", data, headers), timeout=30
    ) as response:
        return json.loads(response.read())
