"""The retraining loop closes without hand work, as a shop runs it every night:

serve v1 -> the shop launches a product (registered in the live catalogue) and users buy it (events)
-> `recdistill retrain` (warm from v1, the events and the product's metadata taken in) -> v2 is the
candidate, LATEST untouched -> the replica loads and shadows it within a poll (a serving v1 vs
candidate v2 pair with comparisons) -> a named experiment serves both -> promote -> v2 serves.

Runs the real tiny pipeline twice (configs/tiny.toml on a file source, ~10 s each) around the real app.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from core.manifest import load_manifest, read_latest
from recdistill.cli import main
from training.config import SyntheticConfig
from training.data.synthetic import generate_synthetic

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.toml")
TOKEN = "retrain-loop-admin-token-0123"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
NEW = "sku-launched"


def write_shop(folder: Path) -> tuple[Path, Path]:
    """The tiny synthetic shop as a shop's own files: orders.csv and products.csv (category, price)."""
    log = generate_synthetic(SyntheticConfig(n_users=300, n_items=120, n_interactions=6000, n_categories=6))
    cat = log.catalog
    orders, products = folder / "orders.csv", folder / "products.csv"
    rows = zip(log.user_ids[log.user], cat.item_ids[log.item], log.timestamp, strict=True)
    orders.write_text(  # typed events (data.columns.event): the service's are logged untyped
        "user_id,item_id,timestamp,event\n" + "".join(f"{u},{i},{t},purchase\n" for u, i, t in rows)
    )
    names = [cat.categories[c] if c >= 0 else "" for c in cat.category]
    products.write_text(
        "item_id,category,price\n"
        + "".join(f"{i},{c},{p}\n" for i, c, p in zip(cat.item_ids, names, cat.price, strict=True))
    )
    return orders, products


def wait_for(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the polls"
        time.sleep(0.05)


def test_serve_log_retrain_shadow_experiment_promote(tmp_path: Path, monkeypatch) -> None:
    orders, products = write_shop(tmp_path)
    models, history = tmp_path / "models", tmp_path / "state" / "history.sqlite3"
    monkeypatch.setenv("RECDISTILL_HISTORY_DB", str(history))  # the cron job runs with the service's settings
    monkeypatch.delenv("RECDISTILL_HISTORY_BACKEND", raising=False)
    sets = ["data.source=file", f"data.path={orders}", f"data.items_path={products}", f"models_dir={models}",
            f"work_dir={tmp_path / 'work'}", "eval.peers=['popularity']", "distill.train_scratch=false", "data.columns.event=event"]  # fmt: skip
    config = ["--config", TINY, *(arg for s in sets for arg in ("--set", s)), "--no-progress"]
    assert main(["pipeline", *config]) == 0
    v1 = read_latest(models)
    known = np.load(models / v1 / "items.npy").tolist()
    users = np.load(models / v1 / "users.npy").tolist()
    category = json.loads((models / v1 / "categories.json").read_text())[2]
    settings = Settings(
        models_dir=models, history_db=history, admin_token=TOKEN, batch_max_wait_ms=0.0,
        reload_poll_seconds=0.1, catalogue_poll_seconds=0.1, shadow_rate=1.0, shadow_isolation="thread",
        shadow_timeout_ms=10_000,
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        # The shop launches a product, and shoppers (one of them new) buy it after what they liked.
        r = client.post(
            "/admin/catalogue/items",
            headers=ADMIN,
            json={"item_id": NEW, "category": category, "price": 12.5},
        )
        assert r.status_code == 201, r.text
        buyers = ["shopper-new", *users[:7]]
        events = [
            {"user_id": user, "item_id": item, "timestamp": 2_000_000_000 + 10 * n + k}
            for n, user in enumerate(buyers)
            for k, item in enumerate([known[n], known[n + 1], NEW])
        ]
        # Logged without a type although the log has an event column: an empty type once failed the
        # retrain's data check; it now gets the default type (recdistill.retrain.untyped_event).
        for event in events:
            assert client.post("/v1/events", json=event).status_code == 201

        assert main(["retrain", *config]) == 0  # what cron runs: warm from the served v1
        v2 = json.loads((models / "CANDIDATE").read_text())["version"]
        assert v2 != v1 and read_latest(models) == v1  # published as the candidate, LATEST kept
        manifest = load_manifest(models / v2)
        assert manifest.warm_start_from == v1
        assert manifest.events is not None and (
            manifest.events.rows,
            manifest.events.new_users,
            manifest.events.new_items,
        ) == (len(events), 1, 1)
        items = np.load(models / v2 / "items.npy").tolist()
        codes = np.load(models / v2 / "item_category.npy")
        names = json.loads((models / v2 / "categories.json").read_text())
        assert names[codes[items.index(NEW)]] == category  # the registered metadata was trained with

        # Every replica loads the candidate within one poll and shadows it beside the serving version.
        wait_for(lambda: (client.get("/v1/models").json()["candidate"] or {}).get("version") == v2)
        request = {"history": known[:3], "k": 5}
        for _ in range(4):
            assert client.post("/v1/recommend", json=request).json()["model_version"] == v1
        assert client.app.state.experiment.shadow.wait_idle()  # type: ignore[attr-defined]
        [pair] = [
            b
            for b in client.get("/v1/shadow/report").json()["by_version"]
            if b["pair"]["kind"] == "serving_vs_candidate"
        ]
        assert (pair["pair"]["control"]["version"], pair["pair"]["treatment"]["version"]) == (v1, v2)
        assert pair["compared"] >= 4 and pair["metrics"]["overlap@k"]["n"] >= 4

        # A named experiment serves both; then it is stopped and v2 promoted.
        name = f"retrain-{v2}"
        start = {"name": name, "arms": "serving_vs_candidate", "candidate_share": 0.5}
        assert client.post("/admin/experiments", json=start, headers=ADMIN).status_code == 201
        served = {
            client.post("/v1/recommend", json={**request, "user_id": f"visitor{i}"}).json()["model_version"]
            for i in range(30)
        }
        assert served == {v1, v2}
        assert client.post(f"/admin/experiments/{name}/stop", headers=ADMIN).status_code == 200
        assert main(["models", "promote", v2, "--models", str(models)]) == 0
        assert client.delete("/admin/candidate", headers=ADMIN).status_code == 200
        wait_for(lambda: client.get("/v1/models").json()["version"] == v2)
        after = client.post("/v1/recommend", json={"user_id": "shopper-new", "k": 5}).json()
        assert after["model_version"] == v2 and after["fallback"] is None and len(after["items"]) == 5
        assert not {e["item_id"] for e in events if e["user_id"] == "shopper-new"} & {
            i["item_id"] for i in after["items"]
        }
