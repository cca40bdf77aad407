"""training/data/load.py: the configured source and its extra logs, and the errors that name the config key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.files import write
from training.config import ColumnMap, DataConfig, SyntheticConfig
from training.data.load import load_interactions
from training.data.synthetic import generate_synthetic
from training.data.types import NO_CATEGORY, DataError


def test_load_interactions_file_source_with_items_and_extra_logs(tmp_path):
    write(tmp_path / "log.csv", "who,what,at\nu1,A,1\nu2,B,2\nu1,B,3\n")
    write(tmp_path / "items.csv", "item_id,category,price\nA,x,1\nB,y,2\nC,x,3\n")
    write(tmp_path / "events.csv", "who,what,at\nu3,A,10\nu1,NEW,11\n")
    cfg = DataConfig(
        source="file",
        path=tmp_path / "log.csv",
        items_path=tmp_path / "items.csv",
        columns=ColumnMap(user="who", item="what", timestamp="at"),
        extra_paths=[tmp_path / "events.csv"],
    )
    log = load_interactions(cfg)
    assert log.name == "log"
    assert log.user_ids.tolist() == ["u1", "u2", "u3"]
    assert log.catalog.item_ids.tolist() == ["A", "B", "C", "NEW"]
    assert log.user.tolist() == [0, 1, 0, 2, 0]
    assert log.item.tolist() == [0, 1, 1, 0, 3]
    assert log.timestamp.tolist() == [1, 2, 3, 10, 11]
    assert log.catalog.category.tolist() == [0, 1, 0, NO_CATEGORY]
    assert log.catalog.categories == ["x", "y"]


def test_load_interactions_extra_log_errors_name_the_extra_file(tmp_path):
    write(tmp_path / "log.csv", "user_id,item_id,timestamp\nu1,A,1\n")
    bad = write(tmp_path / "events.csv", "user_id,item_id,timestamp\nu1,A,soon\n")
    cfg = DataConfig(source="file", path=tmp_path / "log.csv", extra_paths=[bad])
    with pytest.raises(DataError, match=r"events\.csv, row 2, column 'timestamp'"):
        load_interactions(cfg)


def test_load_interactions_file_source_needs_a_path():
    with pytest.raises(DataError, match=r"data\.path is required when data\.source = 'file'"):
        load_interactions(DataConfig(source="file"))


def test_a_missing_data_file_names_the_file_and_the_config_key_that_named_it(tmp_path, monkeypatch):
    """Regression: a missing data file was named, but not `data.path`, the key the user must fix."""
    log = write(tmp_path / "log.csv", "user_id,item_id,timestamp\nu1,A,1\n")
    gone = tmp_path / "gone.csv"
    cases = [
        (DataConfig(source="file", path=gone), f"{gone}: no such file (named by data.path)"),
        (
            DataConfig(source="file", path=log, items_path=gone),
            f"{gone}: no such file (named by data.items_path)",
        ),
        (
            DataConfig(source="synthetic", extra_paths=[log, gone]),
            f"{gone}: no such file (named by data.extra_paths[1])",
        ),
    ]
    for cfg, message in cases:
        with pytest.raises(DataError) as err:
            load_interactions(cfg)
        assert str(err.value) == message
    monkeypatch.chdir(tmp_path)  # a relative path says where it was looked for
    with pytest.raises(DataError) as err:
        load_interactions(DataConfig(source="file", path=Path("data/orders.csv")))
    assert str(err.value) == f"data/orders.csv: no such file (named by data.path, relative to {tmp_path})"
    # a file the source does not read is not required: items_path belongs to source = "file"
    synthetic = DataConfig(
        source="synthetic",
        items_path=gone,
        synthetic=SyntheticConfig(n_users=20, n_items=10, n_interactions=60),
    )
    assert load_interactions(synthetic).n_users > 0


def test_load_interactions_synthetic_adds_the_pipeline_seed():
    small = SyntheticConfig(n_users=30, n_items=40, n_interactions=300, n_categories=4, seed=3)
    cfg = DataConfig(source="synthetic", synthetic=small)
    assert load_interactions(cfg).fingerprint == generate_synthetic(small).fingerprint
    shifted = small.model_copy(update={"seed": 5})
    assert load_interactions(cfg, seed=2).fingerprint == generate_synthetic(shifted).fingerprint
