"""End to end: extra item columns (`data.item_columns.extra`) go from the shop's items file through the
real tiny pipeline (configs/tiny.toml) into the published `item_extra.npz`, which the manifest names,
and the service answers with them when a request asks (`"fields": ["title"]`), and only then.

One pipeline run on a small seeded CSV (module fixture, ~15 s on 2 cores).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from core.manifest import load_manifest, read_latest, verify_files
from training.config_file import load_config
from training.export.published_log import ITEM_EXTRA_FILE
from training.pipeline import PipelineResult, run_pipeline

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.toml"
N_USERS, N_ITEMS, PER_USER = 120, 40, 16


def title(item: int) -> str:
    """Known titles, with a comma and a non-ASCII letter so the CSV round trip is exercised."""
    return f"Café mug, no. {item}" if item % 5 == 0 else f"Item {item}"


def url(item: int) -> str:
    return "" if item % 7 == 0 else f"https://shop.example/p/{item}"  # some items have no url


def write_shop(folder: Path) -> tuple[Path, Path]:
    """interactions.csv (users with a favourite of 4 categories) and items.csv with title and url."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    log, items = folder / "interactions.csv", folder / "items.csv"
    with log.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id", "timestamp"])
        for user in range(N_USERS):
            favourite = user % 4
            liked = [i for i in range(N_ITEMS) if i % 4 == favourite]
            picks = np.where(
                rng.random(PER_USER) < 0.8, rng.choice(liked, PER_USER), rng.integers(0, N_ITEMS, PER_USER)
            )
            for step, item in enumerate(picks.tolist()):
                writer.writerow([f"u{user}", f"sku{item}", 1_700_000_000 + user * 1000 + step])
    with items.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item_id", "category", "price", "title", "url"])
        for item in range(N_ITEMS):
            writer.writerow([f"sku{item}", f"cat{item % 4}", 2.0 + item, title(item), url(item)])
    return log, items


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> PipelineResult:
    root = tmp_path_factory.mktemp("shop")
    log, items = write_shop(root / "data")
    overrides = [
        f"models_dir={root / 'models'}",
        f"work_dir={root / 'work'}",
        "data.source=file",
        f"data.path={log}",
        f"data.items_path={items}",
        f"data.cache_dir={root / 'cache'}",
        "data.item_columns.extra=['title', 'url']",
        "distill.train_scratch=false",
    ]
    return run_pipeline(load_config(TINY, overrides), progress=False)


def test_the_manifest_names_item_extra_and_the_file_holds_the_columns(published: PipelineResult) -> None:
    version_dir = published.version_dir
    assert read_latest(version_dir.parent) == version_dir.name
    manifest = load_manifest(version_dir)
    verify_files(version_dir, manifest)  # item_extra.npz is listed with its sha256, and matches
    assert (manifest.item_extra, manifest.item_extra_columns) == (ITEM_EXTRA_FILE, ["title", "url"])
    assert ITEM_EXTRA_FILE in manifest.files
    item_ids = np.load(version_dir / "items.npy", allow_pickle=False).tolist()
    with np.load(version_dir / ITEM_EXTRA_FILE, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["title", "url"]
        titles, urls = npz["title"].tolist(), npz["url"].tolist()
    assert len(item_ids) == len(titles) == N_ITEMS  # every item of this shop was interacted with
    for index, item_id in enumerate(item_ids):  # row i is the item at index i of the id map
        number = int(item_id.removeprefix("sku"))
        assert (titles[index], urls[index]) == (title(number), url(number))


def test_the_service_returns_the_fields_asked_for(published: PipelineResult, tmp_path: Path) -> None:
    settings = Settings(
        models_dir=published.version_dir.parent,
        history_db=tmp_path / "state" / "history.sqlite3",
        batch_max_wait_ms=0.0,
    )
    with TestClient(create_app(settings)) as client:
        models = client.get("/v1/models").json()
        assert models["version"] == published.version_dir.name
        assert models["item_fields"] == ["category", "price", "title", "url"]
        request = {"history": ["sku0", "sku4", "sku8"], "k": 10}
        lean = client.post("/v1/recommend", json=request)
        assert lean.status_code == 200 and all(set(i) == {"item_id", "score"} for i in lean.json()["items"])
        r = client.post("/v1/recommend", json={**request, "fields": ["title"]})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert len(items) == 10 and r.json()["fallback"] is None
        for item in items:
            assert set(item) == {"item_id", "score", "title"}  # only what was asked for
            assert item["title"] == title(int(item["item_id"].removeprefix("sku")))
        both = client.post("/v1/recommend", json={**request, "fields": ["url", "title"]}).json()["items"]
        for item in both:
            expected = url(int(item["item_id"].removeprefix("sku")))
            assert item["url"] == (expected or None)  # an empty cell is null, not ""
