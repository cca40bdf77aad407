"""bench/served_history.py on the tiny version (tests/fixtures/tiny_model.py) and its log as a CSV.

The tiny version's seed is each user's whole log, so every check passes; a version seeded with the
train split only (each user's last two rows dropped: what versions used to publish) must fail them.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pytest

from bench.served_history import main, run
from tests.fixtures.tiny_model import build_version, tiny_arrays


def _log_csv(path: Path) -> Path:
    a = tiny_arrays()
    lines = ["user_id,item_id,timestamp"] + [
        f"{a.user_ids[u]},{a.item_ids[i]},{t}"
        for u, i, t in zip(a.seed_user, a.seed_item, a.seed_ts, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _holdout() -> bytes:
    """u0: query [i00] (shoes), test item i09 (top-ranked by a shoes history); u1: query [i01, i04], test i02."""
    buf = io.BytesIO()
    np.savez(
        buf, user=np.array([0, 1]), item=np.array([9, 2]), valid_item=np.array([0, 4]),
        query_indptr=np.array([0, 1, 3]), query_item=np.array([0, 1, 4]), reported=np.array([True, True]),
        test_history=np.array("train+valid"),
    )  # fmt: skip
    return buf.getvalue()


def _args(models: Path, log: Path, out: Path, **kw: object) -> argparse.Namespace:
    return argparse.Namespace(
        models=models, log=log, users=kw.get("users"), k=50, replay=True, name="t", out=out, note=""
    )


def test_a_version_seeded_with_the_whole_log_passes_every_check(tmp_path: Path) -> None:
    arrays = tiny_arrays()
    arrays.extra_files = {"holdout.npz": _holdout()}
    models = tmp_path / "models"
    build_version(models, "v1", arrays)
    log = _log_csv(tmp_path / "log.csv")
    payload, ok = run(_args(models, log, tmp_path), "cmd")
    known = payload["known_users"]
    assert ok and known["users"] == 5  # u0..u4 have log rows
    assert known["history_ends_with_last_two_log_items"] == known["history_equals_the_log"] == 5
    assert known["answers_with_an_item_from_the_log"] == 0
    rep = payload["replay"]
    assert rep["users"] == 2 and rep["query"].startswith("query: each user's test query")
    # u0's query [i00] (shoes) ranks i09 first; u1's [i01, i04] (books) ranks i10, i07, then the rest
    # by the small fourth axis, lower index first: i00, i02 -> the test item i02 at place 3
    assert rep["replayed"] == {"hr@10": 1.0, "ndcg@10": pytest.approx((1 + 1 / np.log2(5)) / 2)}
    first = payload["known_users"]["users"]
    assert run(_args(models, log, tmp_path, users=2), "cmd")[0]["known_users"]["users"] == 2 < first


def test_a_train_only_seed_fails_the_history_check(tmp_path: Path) -> None:
    arrays = tiny_arrays()
    users = arrays.seed_user
    last_two = np.zeros(len(users), bool)
    for u in np.unique(users):
        last_two[np.flatnonzero(users == u)[-2:]] = True
    arrays.seed_user, arrays.seed_item, arrays.seed_ts = (
        arrays.seed_user[~last_two], arrays.seed_item[~last_two], arrays.seed_ts[~last_two],
    )  # fmt: skip
    models = tmp_path / "models"
    build_version(models, "v1", arrays, seed_scope="train")
    log = _log_csv(tmp_path / "log.csv")
    out = tmp_path / "out"
    assert main(["--models", str(models), "--log", str(log), "--name", "old", "--out", str(out)]) == 1
    payload = json.loads((out / "served_history_old.json").read_text())
    assert payload["known_users"]["history_ends_with_last_two_log_items"] == 0
    assert payload["known_users"]["answers_with_an_item_from_the_log"] == 5  # k 50: every unseen item
    assert "history ends with the user's last two log items" in (out / "served_history_old.md").read_text()
