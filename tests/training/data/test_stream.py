"""Streaming reads (catalogue-scale logs): chunked results equal one-shot results, errors keep global rows, event weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.fixtures.files import write
from training.config import ColumnMap, ConfigError, DataConfig, SyntheticConfig
from training.config_file import load_config
from training.data.indexing import append_log, build_interactions, index_ids
from training.data.load import load_interactions
from training.data.stream import IdMap, _compact, append_files, stream_interactions
from training.data.synthetic import generate_synthetic
from training.data.tabular import iter_log, read_items, read_log
from training.data.types import DataError

CHUNKS = [1, 2, 7, 10_000]  # 10_000: the whole file in one chunk
EVENTS = {"view": 1.0, "click": 2.0, "purchase": 5.0}
COLUMNS = ColumnMap(weight="qty", event="kind")


@pytest.fixture
def shop_frame() -> pd.DataFrame:
    """41 rows of the synthetic shop with raw ids, a quantity and an event type per row."""
    log = generate_synthetic(
        SyntheticConfig(n_users=8, n_items=12, n_interactions=41, n_categories=3, seed=4)
    )
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "user_id": log.user_ids[log.user],
            "item_id": log.catalog.item_ids[log.item],
            "timestamp": log.timestamp,
            "qty": rng.integers(1, 4, size=len(log)).astype(np.float64),
            "kind": rng.choice(sorted(EVENTS), size=len(log)),
        }
    )


@pytest.fixture
def files(tmp_path, shop_frame) -> dict[str, Path]:
    """The same log as CSV (with blank lines, which must not shift anything) and as Parquet."""
    lines = shop_frame.to_csv(index=False).splitlines()
    lines[5:5] = [""]
    lines[20:20] = ["", ""]
    csv_path = write(tmp_path / "log.csv", "\n".join(lines) + "\n")
    parquet_path = tmp_path / "log.parquet"
    shop_frame.to_parquet(parquet_path, index=False, row_group_size=10)  # batches cross row groups
    items = tmp_path / "items.csv"
    ids = sorted(set(shop_frame["item_id"])) + ["only_in_catalog"]
    pd.DataFrame(
        {"item_id": ids[::-1], "category": ["a", "b"] * (len(ids) // 2) + ["a"] * (len(ids) % 2)}
    ).assign(price=1.5).to_csv(items, index=False)
    return {"csv": csv_path, "parquet": parquet_path, "items": items}


# --- IdMap ------------------------------------------------------------------------------------------


def test_id_map_fed_in_chunks_numbers_ids_like_index_ids_on_the_whole_column():
    ids = IdMap()
    out = np.concatenate([ids.index(np.array(part)) for part in (["b", "a"], ["b", "c"], ["a"])])
    assert out.tolist() == [0, 1, 0, 2, 1]
    assert ids.ids().tolist() == ["b", "a", "c"]
    assert out.dtype == np.int64


def test_id_map_continues_a_known_map():
    ids = IdMap(np.array(["x", "y"]))
    assert ids.index(np.array(["z", "y", "z", "w"])).tolist() == [2, 1, 2, 3]
    assert ids.ids().tolist() == ["x", "y", "z", "w"]
    assert len(ids) == 4


def test_indices_past_int32_are_kept_as_int64():
    assert _compact(np.array([0, 5], dtype=np.int64)).dtype == np.int32
    big = np.array([0, 2**31], dtype=np.int64)
    assert _compact(big).dtype == np.int64 and _compact(big).tolist() == [0, 2**31]


# --- chunked == one-shot ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("chunk_rows", CHUNKS)
def test_chunked_result_equals_the_one_shot_result(files, kind, chunk_rows):
    items = read_items(files["items"], DataConfig().item_columns)
    one_shot = build_interactions("log", read_log(files[kind], COLUMNS, event_weights=EVENTS), items)
    streamed = stream_interactions(
        "log", files[kind], COLUMNS, items=items, chunk_rows=chunk_rows, event_weights=EVENTS
    )
    assert streamed.fingerprint == one_shot.fingerprint
    assert streamed.user.dtype == streamed.item.dtype == streamed.timestamp.dtype == np.int64
    assert streamed.weight.dtype == np.float32
    assert streamed.catalog.item_ids[-1] == "only_in_catalog"  # metadata-only items after log items


@pytest.mark.parametrize("chunk_rows", CHUNKS)
def test_chunked_reading_of_csv_and_parquet_gives_the_same_log(files, shop_frame, chunk_rows):
    logs = [stream_interactions("log", files[k], COLUMNS, chunk_rows=chunk_rows) for k in ("csv", "parquet")]
    assert logs[0].fingerprint == logs[1].fingerprint
    assert len(logs[0]) == len(shop_frame) == 41  # blank lines are not records, nothing is lost
    users, user_ids = index_ids(shop_frame["user_id"].to_numpy())
    assert logs[0].user.tolist() == users.tolist()
    assert logs[0].user_ids.tolist() == user_ids.tolist()


@pytest.mark.parametrize("chunk_rows", [1, 3])
def test_extra_logs_stream_into_the_same_maps_as_append_log(tmp_path, files, chunk_rows):
    extra = write(
        tmp_path / "events.csv", "user_id,item_id,timestamp\nnewbie,only_in_catalog,5\nnewbie,fresh,6\n"
    )
    items = read_items(files["items"], DataConfig().item_columns)
    cols = ColumnMap()
    expected = append_log(
        build_interactions("log", read_log(files["csv"], cols), items), read_log(extra, cols)
    )
    streamed = stream_interactions(
        "log", files["csv"], cols, items=items, extra_paths=[extra], chunk_rows=chunk_rows
    )
    assert streamed.fingerprint == expected.fingerprint
    assert streamed.catalog.item_ids[-2:].tolist() == ["only_in_catalog", "fresh"]
    base = generate_synthetic(SyntheticConfig(n_users=5, n_items=6, n_interactions=20, n_categories=2))
    appended = append_files(base, [extra, extra], cols, chunk_rows=chunk_rows)
    assert (
        appended.fingerprint
        == append_log(append_log(base, read_log(extra, cols)), read_log(extra, cols)).fingerprint
    )


def test_load_interactions_gives_the_same_log_for_every_chunk_size(files):
    results = {
        load_interactions(
            DataConfig(source="file", path=files["csv"], items_path=files["items"], chunk_rows=n)
        ).fingerprint
        for n in CHUNKS
    }
    assert len(results) == 1


def test_float_ids_are_formatted_per_value_so_chunks_cannot_change_them(tmp_path):
    path = tmp_path / "log.parquet"
    pd.DataFrame(
        {"user_id": ["u1", "u2", "u3"], "item_id": [12.0, 12.5, 13.0], "timestamp": [1, 2, 3]}
    ).to_parquet(path, index=False)
    for chunk_rows in (1, 2, 3):
        assert read_log(path, ColumnMap(), chunk_rows=chunk_rows).item.tolist() == ["12", "12.5", "13"]


# --- errors keep their global row numbers -------------------------------------------------------------


def test_csv_error_in_the_third_chunk_names_the_global_row(tmp_path):
    # chunk_rows=2 over lines: [header, row 2], [rows 3, 4], [rows 5, 6] -> row 6 is in the third chunk.
    path = write(
        tmp_path / "log.csv", "user_id,item_id,timestamp\nu1,A,1\nu1,B,2\nu2,A,3\nu2,B,4\nu3,A,soon\n"
    )
    chunks = iter_log(path, ColumnMap(), chunk_rows=2)
    assert [len(next(chunks)) for _ in range(2)] == [1, 2]
    with pytest.raises(DataError) as err:
        next(chunks)
    assert str(err.value) == (
        f"{path}, row 6, column 'timestamp': not a timestamp: 'soon' "
        "(expected epoch seconds or ISO-8601, e.g. 2024-05-01T12:30:00Z)"
    )


def test_csv_parse_error_in_a_late_chunk_names_the_global_line(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\nu1,A,1\nu1,B,2\n\nu2,B,4\nu3,A,5,x\n")
    with pytest.raises(DataError) as err:
        read_log(path, ColumnMap(), chunk_rows=2)
    assert str(err.value) == (
        f"{path}: cannot parse: Error tokenizing data. C error: Expected 3 fields in line 6, saw 4"
    )


def test_parquet_error_in_the_third_batch_names_the_global_row(tmp_path):
    path = tmp_path / "log.parquet"
    frame = pd.DataFrame(
        {"user_id": ["u1", "u2", "u3", "u4", None], "item_id": list("ABCDE"), "timestamp": range(5)}
    )
    frame.to_parquet(path, index=False)
    with pytest.raises(DataError) as err:
        stream_interactions("log", path, ColumnMap(), chunk_rows=2)
    assert str(err.value) == f"{path}, row 5, column 'user_id': missing user id"


def test_a_header_followed_only_by_blank_lines_has_no_data_rows_in_any_chunk_size(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n\n\n\n")
    for chunk_rows in (1, 2, 10):
        with pytest.raises(DataError, match=r"log\.csv: no data rows \(only a header\)"):
            read_log(path, ColumnMap(), chunk_rows=chunk_rows)


# --- event weights --------------------------------------------------------------------------------


def test_event_weights_multiply_the_weight_column(tmp_path):
    path = write(
        tmp_path / "log.csv",
        "user_id,item_id,timestamp,qty,kind\nu1,A,1,2,purchase\nu1,B,2,1, view \nu2,A,3,0.5,click\n",
    )
    log = read_log(path, COLUMNS, event_weights=EVENTS)
    assert log.weight.tolist() == [10.0, 1.0, 1.0]  # 2 x 5, 1 x 1 (event value stripped), 0.5 x 2
    no_qty = read_log(path, ColumnMap(event="kind"), event_weights=EVENTS)
    assert no_qty.weight.tolist() == [5.0, 1.0, 2.0]
    unweighted = read_log(path, COLUMNS)  # empty mapping: the weight column alone
    assert unweighted.weight.tolist() == [2.0, 1.0, 0.5]


@pytest.mark.parametrize("chunk_rows", [1, 10])
def test_an_event_missing_from_a_non_empty_mapping_names_file_row_and_column(tmp_path, chunk_rows):
    path = write(
        tmp_path / "log.csv", "user_id,item_id,timestamp,kind\nu1,A,1,view\nu1,B,2,view\nu2,A,3,refund\n"
    )
    cfg = DataConfig(
        source="file", path=path, columns=ColumnMap(event="kind"), event_weights=EVENTS, chunk_rows=chunk_rows
    )
    with pytest.raises(DataError) as err:
        load_interactions(cfg)
    assert str(err.value) == (
        f"{path}, row 4, column 'kind': unknown event type 'refund'; "
        "data.event_weights has ['click', 'purchase', 'view']"
    )


def test_event_weights_config_from_overrides_and_its_errors(tmp_path):
    cfg = load_config(None, ["data.columns.event=kind", "data.event_weights={view = 1, purchase = 5}"])
    assert cfg.data.event_weights == {"view": 1.0, "purchase": 5.0}
    assert cfg.data.chunk_rows == 250_000
    with pytest.raises(ConfigError, match="data.event_weights is set but data.columns.event is not"):
        load_config(None, ["data.event_weights={view = 1}"])
    with pytest.raises(
        ConfigError, match=r"data\.event_weights\.view: Input should be greater than or equal to 0"
    ):
        load_config(None, ["data.columns.event=kind", "data.event_weights={view = -1}"])
    with pytest.raises(ConfigError, match=r"data\.chunk_rows: Input should be greater than 0"):
        load_config(None, ["data.chunk_rows=0"])


def test_cli_data_check_exits_2_on_an_unknown_event(tmp_path, capsys):
    from recdistill.cli import main

    log = write(tmp_path / "events.csv", "user_id,item_id,timestamp,kind\nu1,A,1,view\nu1,B,2,return\n")
    cfg = write(
        tmp_path / "file.toml",
        f'[data]\nsource = "file"\npath = "{log}"\nchunk_rows = 1\n'
        '[data.columns]\nevent = "kind"\n[data.event_weights]\nview = 1.0\npurchase = 5.0\n',
    )
    assert main(["data", "check", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{log}, row 3, column 'kind': unknown event type 'return'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("chunk_rows", CHUNKS)
def test_event_types_travel_with_their_rows_through_every_path(tmp_path, files, shop_frame, chunk_rows):
    """The service's history keeps a view apart from a purchase, so the log keeps each row's type."""
    extra = write(tmp_path / "events.csv", "user_id,item_id,timestamp,qty,kind\nnewbie,fresh,6,1,cart\n")
    streamed = stream_interactions("log", files["csv"], COLUMNS, extra_paths=[extra], chunk_rows=chunk_rows)
    first_seen = list(dict.fromkeys(shop_frame["kind"]))  # event types are coded by first appearance
    assert streamed.event_types == (*first_seen, "cart")
    assert streamed.event_names().tolist() == [*shop_frame["kind"], "cart"]
    one_shot = append_log(
        build_interactions("log", read_log(files["csv"], COLUMNS)), read_log(extra, COLUMNS)
    )
    assert one_shot.fingerprint == streamed.fingerprint
    # a base without event types (the synthetic shop) gains them for the appended rows only
    base = generate_synthetic(SyntheticConfig(n_users=5, n_items=6, n_interactions=20, n_categories=2))
    grown = append_files(base, [extra], COLUMNS, chunk_rows=chunk_rows)
    assert grown.event_names().tolist() == [""] * 20 + ["cart"]
    assert grown.event_types == ("cart",)


def test_event_types_change_the_fingerprint_only_when_a_log_has_them(files):
    plain = stream_interactions("log", files["csv"], ColumnMap(weight="qty"))
    typed = stream_interactions("log", files["csv"], ColumnMap(weight="qty", event="kind"))
    assert plain.event is None and plain.event_names() is None
    assert typed.event is not None and typed.fingerprint != plain.fingerprint
    assert (
        plain.fingerprint
        == build_interactions("log", read_log(files["csv"], ColumnMap(weight="qty"))).fingerprint
    )
