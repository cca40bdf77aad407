"""Screenshots of every dashboard page into docs/ (docs/service.md links them): a live service on the
fixture data (tests/fixtures/dashboard.py), some traffic, then headless Chromium.

    PYTHONPATH=. python scripts/ui_screenshots.py [docs] [--traffic-seconds 40]

Refresh them whenever a page changes. Needs Debian's `chromium` and the dev extra (playwright).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from app.ui.pages import PAGES

VIEWPORT = {"width": 1400, "height": 900}


def shoot(browser: Any, base_url: str, out_dir: Path) -> list[Path]:
    """One full-page PNG per page, `ui-<page>.png`, in navigation order; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    written = []
    try:
        page = context.new_page()
        for slug, _ in PAGES:
            query = {"explore": "?user=u1&k=6", "overview": "?bucket=10"}.get(slug, "")
            page.goto(f"{base_url}/ui/{slug}{query}")
            page.wait_for_function(
                "() => /updated|error/.test(document.getElementById('status').textContent)"
            )
            page.wait_for_load_state("networkidle")
            path = out_dir / f"ui-{slug}.png"
            page.screenshot(path=str(path), full_page=True)
            written.append(path)
    finally:
        context.close()
    return written


def send_traffic(base_url: str, seconds: float) -> None:
    """Recommend requests (a few bad ones) for `seconds`, so the overview has a last hour to draw."""
    deadline, n = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        body = {"user_id": f"u{n % 7}", "k": 5} if n % 25 else {"history": ["i00"], "k": 0}  # k=0: a 422
        request = urllib.request.Request(
            f"{base_url}/v1/recommend", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with contextlib.suppress(urllib.error.HTTPError):  # the 422s are meant
            urllib.request.urlopen(request, timeout=5).read()
        n += 1
        time.sleep(0.05)


def main() -> None:
    from tests.app.ui.live import browser, chromium_path, dashboard_settings, live_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path("docs"))
    parser.add_argument("--traffic-seconds", type=float, default=40.0)
    args = parser.parse_args()
    executable = chromium_path()
    if executable is None:
        raise SystemExit("Chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as root:
        settings = dashboard_settings(Path(root), ui_sample_seconds=5.0)
        with live_server(settings) as url, browser(executable) as instance:
            send_traffic(url, args.traffic_seconds)
            for path in shoot(instance, url, args.out):
                print(path)  # noqa: T201 - a script's output


if __name__ == "__main__":
    main()
