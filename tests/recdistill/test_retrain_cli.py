"""`recdistill retrain` on the tiny shop: a warm version published as the candidate (LATEST kept), a
refused one (exit 3, nothing published, the summary still printed), `--promote`, and bad input.

One cold version (module fixture) is what serves; each test retrains into a copy of its folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.manifest import load_manifest, read_latest
from recdistill.cli import main

TINY = str(Path(__file__).resolve().parents[2] / "configs" / "tiny.toml")
FAST = ["--set", "eval.peers=['popularity']", "--set", "distill.train_scratch=false", "--no-progress"]
EVENTS = "user_id,item_id,timestamp,event\nnewbie,{a},2000000000,view\nnewbie,sku-new,2000000001,buy\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served")
    args = [
        "pipeline",
        "--config",
        TINY,
        "--set",
        f"models_dir={root / 'models'}",
        "--set",
        f"work_dir={root / 'w'}",
    ]
    assert main([*args, *FAST]) == 0
    return root / "models"


@pytest.fixture
def shop(served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Path, str]:
    """(the retrain command's head, the models folder, the served version), with an events CSV."""
    monkeypatch.setenv("RECDISTILL_HISTORY_DB", str(tmp_path / "state" / "history.sqlite3"))
    monkeypatch.delenv("RECDISTILL_HISTORY_BACKEND", raising=False)
    models = tmp_path / "models"
    shutil.copytree(served, models)
    v1 = read_latest(models)
    assert v1 is not None
    events = tmp_path / "events.csv"
    events.write_text(EVENTS.format(a=np.load(models / v1 / "items.npy")[0]))
    head = [
        "retrain",
        "--config",
        TINY,
        "--set",
        f"models_dir={models}",
        "--set",
        f"work_dir={tmp_path / 'w'}",
    ]
    return [*head, *FAST, "--events", str(events)], models, v1


def test_a_warm_retrain_becomes_the_candidate_and_leaves_latest(shop, capsys) -> None:
    head, models, v1 = shop
    assert main(head) == 0
    out = capsys.readouterr().out
    candidate = json.loads((models / "CANDIDATE").read_text())
    v2 = candidate["version"]
    assert candidate["source"] == "retrain" and v2 != v1 and read_latest(models) == v1
    manifest = load_manifest(models / v2)
    assert manifest.warm_start_from == v1
    assert manifest.events is not None and (manifest.events.rows, manifest.events.new_items) == (2, 1)
    assert (manifest.events.first, manifest.events.last, manifest.events.new_users) == (
        2_000_000_000,
        2_000_000_001,
        1,
    )
    assert manifest.metrics["served"]["version"] == v1
    assert [g["name"] for g in manifest.metrics["gates"]["gates"]][-1] == "student_vs_served"
    assert f"retrain: published {v2}" in out and "came in: 2 events" in out and f"served {v1}" in out
    assert f'"name": "retrain-{v2}", "arms": "serving_vs_candidate"' in out
    assert f"recdistill models promote {v2} --models {models}" in out


def test_a_retrain_worse_than_the_served_version_is_refused(shop, capsys, monkeypatch) -> None:
    head, models, v1 = shop
    better = {"version": v1, "student": {"ndcg@10": 1.0}, "unknown_test_items": 0}  # unbeatable
    monkeypatch.setattr("training.pipeline.served_metrics", lambda *args: better)
    before = sorted(p.name for p in models.iterdir())
    assert main([*head, "--set", "publish.require_gates=true"]) == 3
    captured = capsys.readouterr()
    assert "retrain: NOT published" in captured.out and "came in: 2 events" in captured.out
    assert "gate student_vs_served failed" in captured.out and f"served {v1} 1.0000" in captured.out
    assert "not published" in captured.err
    assert sorted(p.name for p in models.iterdir()) == before and read_latest(models) == v1


def test_promote_moves_latest_and_none_trains_cold(shop, capsys) -> None:
    head, models, v1 = shop
    assert main([*head, "--promote", "--set", "warm_start=none"]) == 0
    v2 = read_latest(models)
    assert v2 != v1 and not (models / "CANDIDATE").exists()
    assert load_manifest(models / v2).warm_start_from is None
    assert "trained cold" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(shop, tmp_path: Path, capsys) -> None:
    head, models, _ = shop
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\nu,i\n")
    assert main([*head, "--events", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "missing column" in err and "Traceback" not in err
    empty = tmp_path / "empty-models"
    empty.mkdir()
    assert main([*head, "--set", f"models_dir={empty}"]) == 2
    assert "nothing published" in capsys.readouterr().err
    assert main([*head, "--set", "warm_start=no such version"]) == 2
    assert "warm_start" in capsys.readouterr().err


def test_an_untyped_event_gets_the_weakest_type_or_the_one_named() -> None:
    import pandas as pd

    from core.errors import UserError
    from recdistill.retrain import event_types, untyped_event

    weights = {"view": 1.0, "purchase": 5.0}
    assert untyped_event(weights, None) == "view" and untyped_event({}, None) == "event"
    assert untyped_event(weights, "purchase") == "purchase"
    with pytest.raises(UserError, match="data.event_weights has"):
        untyped_event(weights, "click")
    frame = pd.DataFrame({"event": ["purchase", "", " "]})
    assert event_types(frame, weights, None).tolist() == ["purchase", "view", "view"]
    assert event_types(pd.DataFrame({"user_id": ["u"]}), {}, None).tolist() == ["event"]
