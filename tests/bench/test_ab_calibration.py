"""bench/ab_calibration.py's bookkeeping on a tiny run: the simulated traffic has the configured
shape (a heavy tail, a pre-period that carries activity and taste over), a look-by-look read stops at
the first verdict, and the report files (JSON, Markdown, PNG) are written. Its figures are measured
by the full run, not asserted here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.ab_calibration import LIFTS, LOOKS, NAME, Traffic, draw_arm, draw_users, first_call, main


def test_simulated_users_have_the_configured_rate_and_a_heavy_tail() -> None:
    t = Traffic(users=20_000)
    clicks, impressions = draw_arm(np.random.default_rng(0), t)
    assert clicks.shape == impressions.shape == (20_000,)
    assert (impressions % t.k == 0).all() and impressions.min() == t.k
    assert abs(clicks.sum() / impressions.sum() - t.ctr) < 0.002  # E[clicks] / E[impressions] = E[p]
    assert impressions.max() > 20 * np.median(impressions)  # some users see far more than the rest
    lifted, _ = draw_arm(np.random.default_rng(0), t, lift=0.5)  # same draws, propensities x 1.5
    assert lifted.sum() > 1.3 * clicks.sum()


def test_the_pre_period_carries_activity_and_taste_over() -> None:
    (x, y), (px, py) = draw_users(np.random.default_rng(1), Traffic(users=20_000))
    has = py > 0
    assert abs(has.mean() - 0.7) < 0.02
    assert np.corrcoef(y[has], py[has])[0, 1] > 0.5  # heavy users are heavy in both periods
    assert np.corrcoef(x[has] / y[has], px[has] / py[has])[0, 1] > 0.3


def test_first_call_stops_at_the_first_verdict() -> None:
    t = Traffic(users=3000, beta_concentration=200.0)
    rng = np.random.default_rng(2)
    (c, c_pre), (tr, t_pre) = draw_users(rng, t), draw_users(rng, t, lift=1.0)  # a doubling: found early
    look = first_call(c, tr, c_pre, t_pre, 20, "always_valid")
    assert look is not None and look < 20
    (c, c_pre), (tr, t_pre) = draw_users(rng, t), draw_users(rng, t)
    assert first_call(c, tr, c_pre, t_pre, 1, "always_valid") is None  # a null read once (seeded)


def test_a_tiny_run_writes_the_report(tmp_path: Path) -> None:
    code = main(["--experiments", "6", "--power-experiments", "4", "--users", "300", "--out", str(tmp_path)])
    assert code in (0, 1)  # 6 experiments are too few for the checks to mean anything
    payload = json.loads((tmp_path / f"{NAME}.json").read_text())
    assert [r["looks"] for r in payload["aa"]] == list(LOOKS)
    assert all(r["always_valid"]["experiments"] == 6 for r in payload["aa"])
    assert [r["lift"] for r in payload["power"]] == list(LIFTS)
    assert "issue_plus_20%_found_at_least_70%" in payload["checks"]
    assert (tmp_path / f"{NAME}.png").read_bytes()[:4] == b"\x89PNG"
    assert "A/A" in (tmp_path / f"{NAME}.md").read_text()


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--experiments", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2
