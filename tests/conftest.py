"""Suite-wide: with RECDISTILL_REQUIRE_ALL_TESTS=1 (set by .ci/run) a skipped test fails the run.

A test skips only when this machine lacks what it needs (redis-server, chromium, wrk, the ml-100k
cache); `make test` installs those first (scripts/test-deps.sh). Where that must have worked, a skip
means a test silently did not run, so CI counts it as a failure instead of a green run that hid it.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = "RECDISTILL_REQUIRE_ALL_TESTS"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get(REQUIRE_ALL) != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.write_line(
                f"{REQUIRE_ALL}=1: {skipped} test(s) skipped; every test must run here", red=True
            )
