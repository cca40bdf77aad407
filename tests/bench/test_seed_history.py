"""bench/seed_history.py at a tiny size: its own checks hold on both backends, and the log it builds
returns exactly the half of the logged events it says it does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.seed_history import main, synthetic_log


def test_the_second_log_holds_the_returned_events_once_each() -> None:
    data = synthetic_log(rows=300, users=20, items=15, logged=10, seed=0)
    users, items, stamps, events = data.v2()
    assert len(users) == 305 and data.returned == 5
    assert (np.diff(np.unique(users, return_index=True)[1]) > 0).all()  # grouped by user
    back = {(e.user_id, e.item_id, e.timestamp) for e in data.logged[:5]}
    assert sum((u, i, t) in back for u, i, t in zip(users, items, stamps.tolist(), strict=True)) == 5
    assert set(events) <= {"view", "cart", "purchase", "click"}  # the log's types and the logged ones


def test_every_check_passes_on_both_backends(tmp_path: Path) -> None:
    argv = ["--rows", "2000", "--users", "250", "--items", "300", "--logged", "40", "--out", str(tmp_path)]
    assert main(argv) == 0
    payload = json.loads((tmp_path / "seed_history.json").read_text())
    for kind in payload["backends"]:
        result = payload["backends"][kind]
        assert all(result["checks"].values()), (kind, result["checks"])
        assert (result["first_seed"]["rows"], result["reseed"]["rows"]) == (2000, 2000)  # 2020 - 20 returned
    assert (tmp_path / "seed_history.png").is_file() and "| sqlite | first seed |" in (
        tmp_path / "seed_history.md"
    ).read_text()
