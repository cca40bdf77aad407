"""bench/ab_calibration.py's bookkeeping on a tiny run: the simulated traffic has the configured
shape, and the report files (JSON, Markdown, PNG) are written. Its figures are not asserted here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.ab_calibration import LIFTS, NAME, Traffic, draw_arm, main


def test_simulated_users_have_the_configured_rate_and_a_heavy_tail() -> None:
    t = Traffic(users=20_000)
    clicks, impressions = draw_arm(np.random.default_rng(0), t)
    assert clicks.shape == impressions.shape == (20_000,)
    assert (impressions % t.k == 0).all() and impressions.min() == t.k
    assert abs(clicks.sum() / impressions.sum() - t.ctr) < 0.002  # E[clicks] / E[impressions] = E[p]
    assert impressions.max() > 20 * np.median(impressions)  # some users see far more than the rest
    lifted, _ = draw_arm(np.random.default_rng(0), t, lift=0.5)  # same draws, propensities x 1.5
    assert lifted.sum() > 1.3 * clicks.sum()


def test_a_tiny_run_writes_the_report(tmp_path: Path) -> None:
    code = main(
        ["--experiments", "40", "--power-experiments", "10", "--users", "200", "--out", str(tmp_path)]
    )
    assert code in (0, 1)  # 40 experiments are too few for the checks to mean anything
    payload = json.loads((tmp_path / f"{NAME}.json").read_text())
    assert payload["aa"]["experiments"] == 40
    assert [c["lift"] for c in payload["power_curve"]] == list(LIFTS)
    assert set(payload["checks"]) == {
        "aa_user_level_in_[0.03,0.07]", "aa_per_impression_above_0.07", "power_at_+10%_matches_prediction",
    }  # fmt: skip
    assert (tmp_path / f"{NAME}.png").read_bytes()[:4] == b"\x89PNG"
    assert "A/A" in (tmp_path / f"{NAME}.md").read_text()
