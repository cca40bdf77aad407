"""The retraining loop closes without hand work: serve → log events → export → retrain → publish → reload.

Runs the real tiny pipeline twice (configs/tiny.toml, ~15 s each) around the real app.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.stores.events_export import export_events
from core.manifest import load_manifest, read_latest
from training.config_file import load_config
from training.pipeline import run_pipeline

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.toml"
TOKEN = "retrain-loop-admin-token-0123"


def test_events_logged_by_the_service_train_the_next_version_which_is_then_served(tmp_path: Path) -> None:
    models, work = tmp_path / "models", tmp_path / "work"
    base = [f"models_dir={models}", f"work_dir={work}", "distill.train_scratch=false"]
    first = run_pipeline(load_config(TINY, base), progress=False)
    v1 = first.version_dir.name
    item_ids = np.load(first.version_dir / "items.npy", allow_pickle=False)
    settings = Settings(
        models_dir=models,
        history_db=tmp_path / "state" / "history.sqlite3",
        admin_token=TOKEN,
        batch_max_wait_ms=0.0,
        reload_poll_seconds=0.0,
    )
    admin = {"Authorization": f"Bearer {TOKEN}"}
    # A shopper the first version never saw, and a product that is not in its catalogue yet.
    events = [
        {"user_id": "shopper-new", "item_id": str(item), "timestamp": 2_000_000_000 + i}
        for i, item in enumerate(item_ids[:6])
    ]
    events.append({"user_id": "shopper-new", "item_id": "sku-brand-new", "timestamp": 2_000_000_100})
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/models").json()["version"] == v1
        for event in events:
            assert client.post("/v1/events", json=event).status_code in (200, 201)
        before = client.post("/v1/recommend", json={"user_id": "shopper-new", "k": 5}).json()
        assert before["model_version"] == v1 and before["fallback"] is None

        exported = tmp_path / "events.csv"
        assert export_events(settings.history_db, exported) == len(events)
        with exported.open() as fh:
            rows = list(csv.DictReader(fh))
        assert [r["item_id"] for r in rows] == [e["item_id"] for e in events]

        second = run_pipeline(load_config(TINY, [*base, f"data.extra_paths=['{exported}']"]), progress=False)
        v2 = second.version_dir.name
        assert v2 != v1 and read_latest(models) == v2
        manifest = load_manifest(second.version_dir)
        assert manifest.dataset.n_interactions == first.manifest.dataset.n_interactions + len(events)
        assert "sku-brand-new" in np.load(second.version_dir / "items.npy", allow_pickle=False).tolist()
        assert "shopper-new" in np.load(second.version_dir / "users.npy", allow_pickle=False).tolist()

        reloaded = client.post("/admin/reload", headers=admin)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["version"] == v2 and reloaded.json()["previous"] == v1
        after = client.post("/v1/recommend", json={"user_id": "shopper-new", "k": 5}).json()
        assert after["model_version"] == v2
        assert len(after["items"]) == 5
        seen = {e["item_id"] for e in events}
        assert not seen & {item["item_id"] for item in after["items"]}  # exclude_seen still holds
