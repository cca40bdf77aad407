"""The OpenAPI contract, kept exactly: schemathesis with every check against the served /openapi.json.

A bounded, seeded run (a few hundred generated cases, seconds) on a real server process with the
hand-computable tiny model and the admin API on. It fails on any server error, undocumented status
or content type, schema-valid request refused, schema-violating request accepted, or response that
does not match its schema. The long run (tens of thousands of cases) uses the same command with a
larger --max-examples; see docs/service.md.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.main import create_app
from tests.blocked_imports import ROOT

ADMIN_TOKEN = "contract-test-token-0123456789"
SERVE = (
    "import sys; from pathlib import Path; from tests.fixtures.tiny_model import build_tiny_version; "
    "models = Path(sys.argv[1]); build_tiny_version(models, 'v1'); "
    "from app.server import serve; serve(models, '127.0.0.1', int(sys.argv[2]))"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("contract")
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RECDISTILL_ADMIN_TOKEN": ADMIN_TOKEN,
        "RECDISTILL_HISTORY_DB": str(root / "state" / "history.sqlite3"),
    }
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(root / "models"), str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/health/ready", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"server did not start: {(root / 'server.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_schemathesis_all_checks_bounded_and_seeded(server: str, tmp_path: Path) -> None:
    pytest.importorskip("schemathesis", reason="schemathesis is not installed (the dev extra)")
    st = shutil.which("st") or str(Path(sys.executable).with_name("st"))
    cmd = [
        st, "run", f"{server}/openapi.json", "--checks", "all", "--max-examples", "12", "--seed", "11",
        "--workers", "1", "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
        "--report", "json", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failures" not in proc.stdout.split("SUMMARY")[-1]


def test_the_schema_carries_the_settings_limits(tmp_path: Path) -> None:
    settings = Settings(
        models_dir=tmp_path / "models",
        history_db=tmp_path / "h.sqlite3",
        max_k=7,
        max_history=1234,
        max_batch_requests=3,
        max_events=9,
    )
    schema = create_app(settings).openapi()
    request = schema["components"]["schemas"]["RecommendRequest"]["properties"]
    assert request["k"]["maximum"] == 7
    assert [o.get("maxItems") for o in request["history"]["anyOf"]] == [1234, None]
    batch = schema["components"]["schemas"]["BatchRecommendRequest"]["properties"]["requests"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 3)
    events = schema["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert [(o.get("minItems"), o.get("maxItems")) for o in events["anyOf"]] == [(None, None), (1, 9)]


def test_every_status_a_route_returns_is_documented(tmp_path: Path) -> None:
    schema = create_app(Settings(models_dir=tmp_path / "m", history_db=tmp_path / "h.sqlite3")).openapi()
    paths = schema["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert statuses("/v1/recommend", "post") >= {"200", "400", "404", "413", "422", "503"}
    assert statuses("/v1/compare", "post") >= {"200", "400", "404", "413", "422", "503"}
    assert statuses("/v1/feedback", "post") >= {"201", "400", "404", "409", "413", "422"}
    assert statuses("/admin/reload", "post") >= {"200", "400", "401", "403", "409", "413", "422"}
    assert statuses("/v1/models", "get") >= {"200", "503"}
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    timestamp = schema["components"]["schemas"]["EventIn"]["properties"]["timestamp"]["anyOf"]
    assert {"type": "string", "format": "date-time"} in timestamp
    assert any(o.get("type") == "number" and o.get("minimum") == 0 for o in timestamp)
    assert json.dumps(schema)  # plain JSON all the way down
