"""training/data/tabular.py and table.py: the user's CSV/TSV/Parquet log and item metadata, and every error
naming the file, the row and the column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.fixtures.files import write
from training.config import ColumnMap, DataConfig, ItemColumnMap
from training.data.indexing import build_interactions
from training.data.load import load_interactions
from training.data.tabular import read_items, read_log
from training.data.types import NO_CATEGORY, DataError

# --- index_ids and leave_last_out ---------------------------------------------------------------


# --- build_interactions / append_log ------------------------------------------------------------


# --- the tabular reader -------------------------------------------------------------------------


def test_column_mapping_weights_and_both_timestamp_forms(tmp_path):
    path = write(
        tmp_path / "orders.csv",
        "customer,sku,when,qty,kind\n"
        "c1,s1,1704067200,2,buy\n"
        "c1,s2,2024-01-01T02:00:00+02:00,1,view\n"  # same instant as 1704067200
        "c2,s1,2024-01-01 00:00:30,0.5,view\n"  # naive ISO is UTC
        "c2,s3,1704067260.9,1,view\n",  # float epoch is floored
    )
    cols = ColumnMap(user="customer", item="sku", timestamp="when", weight="qty", event="kind")
    log = read_log(path, cols)
    assert log.user.tolist() == ["c1", "c1", "c2", "c2"]
    assert log.item.tolist() == ["s1", "s2", "s1", "s3"]
    assert log.timestamp.tolist() == [1704067200, 1704067200, 1704067230, 1704067260]
    assert log.weight.tolist() == [2.0, 1.0, 0.5, 1.0]


def test_csv_tsv_and_parquet_give_the_same_interactions(tmp_path):
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1", "u3"],
            "item_id": ["i1", "i1", "i2", "i3"],
            "timestamp": [100, 50, 200, 70],
        }
    )
    frame.to_csv(tmp_path / "log.csv", index=False)
    frame.to_csv(tmp_path / "log.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "log.parquet", index=False)
    items = pd.DataFrame(
        {"item_id": ["i1", "i2", "i3"], "category": ["a", "b", "a"], "price": [1.5, 2.0, 3.25]}
    )
    items.to_csv(tmp_path / "items.csv", index=False)
    items.to_parquet(tmp_path / "items.parquet", index=False)
    logs = [
        build_interactions(
            "x",
            read_log(tmp_path / f"log.{ext}", ColumnMap()),
            read_items(tmp_path / f"items.{ext2}", ItemColumnMap()),
        )
        for ext, ext2 in (("csv", "csv"), ("tsv", "csv"), ("parquet", "parquet"))
    ]
    assert logs[0].timestamp.tolist() == [100, 50, 200, 70]
    assert logs[0].catalog.price.tolist() == [1.5, 2.0, 3.25]
    assert {log.fingerprint for log in logs} == {logs[0].fingerprint}


def test_parquet_native_types_ids_and_datetimes(tmp_path):
    frame = pd.DataFrame(
        {
            "user_id": np.array([7, 8], dtype=np.int64),
            "item_id": np.array([12.0, 13.0]),  # ints stored as float must not become "12.0"
            "timestamp": pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"]),
        }
    )
    frame.to_parquet(tmp_path / "log.parquet", index=False)
    log = read_log(tmp_path / "log.parquet", ColumnMap())
    assert log.user.tolist() == ["7", "8"]
    assert log.item.tolist() == ["12", "13"]
    assert log.timestamp.tolist() == [1704067200, 1704067260]


def test_blank_lines_are_skipped_but_rows_keep_their_numbers(tmp_path):
    path = write(tmp_path / "log.csv", "\ufeffuser_id,item_id,timestamp\nu1,i1,1\n\nu2,,2\n")  # BOM too
    with pytest.raises(DataError) as err:
        read_log(path, ColumnMap())
    assert str(err.value) == f"{path}, row 4, column 'item_id': missing item id"


@pytest.mark.parametrize(
    ("text", "columns", "expected"),
    [
        ("", ColumnMap(), "the file is empty (no header, no rows)"),
        ("user_id,item_id,timestamp\n", ColumnMap(), "no data rows (only a header)"),
        (
            "user,item_id,timestamp\nu1,i1,1\n",
            ColumnMap(),
            "column 'user_id': missing column 'user_id'; columns found: ['user', 'item_id', 'timestamp']",
        ),
        (
            "user_id,item_id,timestamp,item_id\nu1,i1,1,i2\n",
            ColumnMap(),
            "duplicate column name 'item_id' in the header",
        ),
        (
            "user_id,item_id,timestamp\nu1,i1,1\nu1,i2,yesterday\n",
            ColumnMap(),
            "row 3, column 'timestamp': not a timestamp: 'yesterday'",
        ),
        (
            "user_id,item_id,timestamp\nu1,i1,2024-13-01\n",
            ColumnMap(),
            "row 2, column 'timestamp': not a timestamp: '2024-13-01'",
        ),
        ("user_id,item_id,timestamp\nu1,i1,\n", ColumnMap(), "row 2, column 'timestamp': missing timestamp"),
        (
            "user_id,item_id,timestamp\nu1,i1,1704067200000\n",
            ColumnMap(),
            "row 2, column 'timestamp': '1704067200000' is too large for epoch seconds (milliseconds?)",
        ),
        (
            "user_id,item_id,timestamp\nu1,i1,1\n  ,i2,2\n",
            ColumnMap(),
            "row 3, column 'user_id': missing user id",
        ),
        ("user_id,item_id,timestamp\nu1,,1\n", ColumnMap(), "row 2, column 'item_id': missing item id"),
        (
            "user_id,item_id,timestamp,w\nu1,i1,1,1\nu1,i2,2,lots\n",
            ColumnMap(weight="w"),
            "row 3, column 'w': weight is not a number: 'lots'",
        ),
        (
            "user_id,item_id,timestamp,w\nu1,i1,1,-1\n",
            ColumnMap(weight="w"),
            "row 2, column 'w': weight must not be negative, got '-1'",
        ),
        (
            "user_id,item_id,timestamp,w\nu1,i1,1,\n",
            ColumnMap(weight="w"),
            "row 2, column 'w': missing weight",
        ),
        (
            "user_id,item_id,timestamp,e\nu1,i1,1,\n",
            ColumnMap(event="e"),
            "row 2, column 'e': missing event type",
        ),
        (
            "user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2,extra\n",
            ColumnMap(),
            "cannot parse: Error tokenizing data. C error: Expected 3 fields in line 3, saw 4",
        ),
    ],
)
def test_log_errors_name_file_row_and_column(tmp_path, text, columns, expected):
    path = write(tmp_path / "log.csv", text)
    with pytest.raises(DataError) as err:
        read_log(path, columns)
    assert str(err.value).startswith(
        f"{path}, {expected}" if expected.startswith(("row", "column")) else f"{path}: {expected}"
    )


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        read_log(tmp_path / "nope.csv", ColumnMap())
    with pytest.raises(DataError, match=r"log\.xlsx: unsupported file type; expected \.csv, \.tsv"):
        read_log(write(tmp_path / "log.xlsx", "x"), ColumnMap())
    with pytest.raises(DataError, match=r"log\.parquet: cannot read as Parquet"):
        read_log(write(tmp_path / "log.parquet", "not parquet"), ColumnMap())


def test_parquet_errors_count_rows_from_one(tmp_path):
    pd.DataFrame({"user_id": ["u1", None], "item_id": ["i1", "i2"], "timestamp": [1, 2]}).to_parquet(
        tmp_path / "l.parquet"
    )
    with pytest.raises(DataError) as err:
        read_log(tmp_path / "l.parquet", ColumnMap())
    assert str(err.value) == f"{tmp_path / 'l.parquet'}, row 2, column 'user_id': missing user id"
    pd.DataFrame({"user": ["u1"], "item_id": ["i1"], "timestamp": [1]}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(
        DataError, match=r"missing column 'user_id'; columns found: \['user', 'item_id', 'timestamp'\]"
    ):
        read_log(tmp_path / "m.parquet", ColumnMap())


def test_item_metadata_errors(tmp_path):
    dup = write(tmp_path / "items.csv", "item_id,category,price\ni1,a,1\ni2,b,2\ni1,c,3\n")
    with pytest.raises(DataError) as err:
        read_items(dup, ItemColumnMap())
    assert str(err.value) == f"{dup}, row 4, column 'item_id': duplicate item id 'i1' (first seen in row 2)"
    bad = write(tmp_path / "items2.csv", "item_id,category,price\ni1,a,1\ni2,b,cheap\n")
    with pytest.raises(DataError) as err:
        read_items(bad, ItemColumnMap())
    assert str(err.value) == f"{bad}, row 3, column 'price': price is not a number: 'cheap'"


def test_item_metadata_empty_cells_mean_unknown(tmp_path):
    path = write(tmp_path / "items.csv", "sku,cat,price\ni1,,\ni2,b,2.5\n")
    items = read_items(path, ItemColumnMap(item="sku", category="cat"))
    assert items.category.tolist() == ["", "b"]
    assert np.isnan(items.price[0]) and items.price[1] == 2.5


# --- load_interactions --------------------------------------------------------------------------


# --- multi-valued item attributes ---------------------------------------------------------------


def test_item_attributes_are_parsed_with_the_separator_and_indexed_by_item(tmp_path):
    # Tags are stripped, empty tags dropped, a repeat within a row kept once; no category/price
    # columns in the file is fine because the defaults were not asked for by name.
    write(tmp_path / "items.csv", "item_id,attributes\nA,brand1| face \nB,\nC,brand2|face|face||\n")
    write(tmp_path / "log.csv", "user_id,item_id,timestamp\nu1,C,1\nu1,A,2\nu2,D,3\n")
    cfg = DataConfig(source="file", path=tmp_path / "log.csv", items_path=tmp_path / "items.csv")
    log = load_interactions(cfg)
    cat = log.catalog
    assert cat.item_ids.tolist() == ["C", "A", "D", "B"]  # log order, then metadata-only items
    assert cat.attributes == ["brand1", "brand2", "face"]
    indptr, index = cat.attribute_rows()
    tags = [[cat.attributes[j] for j in index[indptr[i] : indptr[i + 1]]] for i in range(cat.n_items)]
    assert tags == [["brand2", "face"], ["brand1", "face"], [], []]  # D: not in the file; B: empty cell
    assert np.isnan(cat.price).all() and (cat.category == NO_CATEGORY).all()


def test_item_attribute_separator_is_a_setting(tmp_path):
    path = write(tmp_path / "items.tsv", "sku\ttags\nA\tx;y\n")
    items = read_items(path, ItemColumnMap(item="sku", attributes="tags"), attribute_separator=";")
    assert items.attr_indptr.tolist() == [0, 2] and items.attr_tags.tolist() == ["x", "y"]


def test_a_named_item_column_must_exist_but_a_default_one_may_be_absent(tmp_path):
    path = write(tmp_path / "items.csv", "item_id,category\nA,x\n")
    items = read_items(path, ItemColumnMap())  # no price, no attributes column: both defaults
    assert items.attr_indptr is None and np.isnan(items.price[0])
    with pytest.raises(DataError, match=r"missing column 'tags'"):
        read_items(path, ItemColumnMap(attributes="tags"))
