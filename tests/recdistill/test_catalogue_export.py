"""`recdistill catalogue export`: the served version's catalogue with the live overlay applied, then
the registered items, as the item file the next retrain reads (checked with the trainer's reader)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from app.stores.catalogue_sqlite import SqliteCatalogueStore
from app.stores.records import CatalogueEntry
from recdistill.cli import main
from tests.fixtures.tiny_model import build_version, tiny_arrays


@pytest.fixture
def service_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A models folder with v1 (titles as an extra column) and the SQLite state the service keeps."""
    models = tmp_path / "models"
    build_version(models, "v1", tiny_arrays(), item_extra={"title": [f"Item {i}" for i in range(12)]})
    history = tmp_path / "state" / "history.sqlite3"
    monkeypatch.setenv("RECDISTILL_HISTORY_DB", str(history))
    store = SqliteCatalogueStore(history.with_name("state.sqlite3"))
    entries = {
        "i01": CatalogueEntry("i01", available=False),
        "i02": CatalogueEntry("i02", price=7.25, category="garden", fields={"title": "Trowel"}),
        "sku-9": CatalogueEntry(
            "sku-9", price=3.0, category="garden", fields={"attributes": "steel|small"}, registered=True
        ),
    }
    store.update(list(entries), lambda item, current: entries[item])
    store.close()
    return models


def test_export_writes_the_live_catalogue_and_the_registered_items(
    service_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "items.csv"
    assert main(["catalogue", "export", "--models", str(service_env), "--out", str(out)]) == 0
    assert "13 items of version v1 (1 registered)" in capsys.readouterr().out
    with out.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["item_id", "category", "price", "available", "title", "attributes"]
    assert rows[1] == ["i00", "shoes", "5.0", "true", "Item 0", ""]
    assert rows[2] == ["i01", "books", "10.0", "false", "Item 1", ""]
    assert rows[3] == ["i02", "garden", "7.25", "true", "Trowel", ""]
    assert rows[11] == ["i10", "books", "", "true", "Item 10", ""]  # unknown price: empty
    assert rows[13] == ["sku-9", "garden", "3.0", "true", "", "steel|small"]
    assert len(rows) == 14

    tabular = pytest.importorskip("training.data.tabular")  # the offline job reads it back as its item file
    from training.config import ItemColumnMap

    items = tabular.read_items(out, ItemColumnMap(extra=["title"]))
    assert items.item.tolist()[-1] == "sku-9" and items.category.tolist()[-1] == "garden"
    assert items.price.tolist()[-1] == 3.0 and items.extra["title"].tolist()[2] == "Trowel"


def test_an_unknown_version_is_one_line_and_exit_2(
    service_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "catalogue",
        "export",
        "--models",
        str(service_env),
        "--version",
        "v9",
        "--out",
        str(tmp_path / "x.csv"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "v9: no published version there" in err and "Traceback" not in err


def test_export_runs_without_training_or_torch(service_env: Path, tmp_path: Path) -> None:
    """A service command: it imports app and core only (it would fail on the blocked import otherwise)."""
    from tests.blocked_imports import run_cli_blocked

    out = tmp_path / "items.csv"
    env = {"RECDISTILL_HISTORY_DB": str(tmp_path / "state" / "history.sqlite3")}
    proc = run_cli_blocked(["catalogue", "export", "--models", str(service_env), "--out", str(out)], env=env)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().splitlines()[-1] == "sku-9,garden,3.0,true,,steel|small"
