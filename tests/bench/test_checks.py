"""bench/checks.py: the PASS / FAIL / N/A every benchmark states its checks with."""

from __future__ import annotations

import pytest

from bench.checks import FAIL, NA, PASS, Check, lookup, meets, status


def test_meets_compares_a_measured_value_with_its_target() -> None:
    assert meets(1.4, "<=", 1.5) is True
    assert meets(1.6, "<=", 1.5) is False
    assert meets(5.0, ">=", 5.0) is True  # the edge passes
    assert meets(4.9, ">=", 5.0) is False
    assert meets(None, "<=", 1.0) is None  # not measured: no verdict


def test_slack_lets_a_value_at_the_threshold_pass_despite_float_rounding() -> None:
    bar = 0.1 + 0.2  # 0.30000000000000004
    assert meets(0.3, ">=", bar) is False
    assert meets(0.3, ">=", bar, slack=1e-12) is True
    assert meets(0.2999, ">=", bar, slack=1e-12) is False


def test_an_unknown_comparison_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown comparison '<'"):
        meets(1.0, "<", 2.0)


def test_status_words_and_a_check_as_the_json_keeps_it() -> None:
    assert (status(True), status(False), status(None)) == (PASS, FAIL, NA) == ("PASS", "FAIL", "N/A")
    assert status(None, na="n/a") == "n/a"
    check = Check("student >= 0.95 x teacher", None, "pipeline not run")
    assert check.status == "N/A"
    assert check.as_dict() == {
        "name": "student >= 0.95 x teacher",
        "status": "N/A",
        "detail": "pipeline not run",
    }


def test_lookup_walks_dotted_keys_and_gives_none_for_what_is_missing() -> None:
    result = {"wrk": {"rps": 1500.0, "latency": {"p99": 30.0}}, "errors": 0}
    assert lookup(result, "wrk.latency.p99") == 30.0
    assert lookup(result, "errors") == 0
    assert lookup(result, "wrk.missing") is None
    assert lookup(result, "errors.count") is None  # a number has no keys
