"""The data contract: id maps, the leave-last-out split, the file readers and `load_interactions`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.config import ColumnMap, DataConfig, ItemColumnMap, SyntheticConfig
from training.data.indexing import append_log, build_interactions, index_ids
from training.data.load import load_interactions
from training.data.split import leave_last_out, with_validation_items
from training.data.synthetic import generate_synthetic
from training.data.tabular import read_items, read_log
from training.data.types import NO_CATEGORY, DataError, RawItems, RawLog


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def raw_log(rows: list[tuple[str, str, int]], weight: list[float] | None = None) -> RawLog:
    users, items, ts = zip(*rows, strict=True)
    return RawLog(
        source="test",
        user=np.array(users),
        item=np.array(items),
        timestamp=np.array(ts, dtype=np.int64),
        weight=np.array(weight or [1.0] * len(rows), dtype=np.float32),
    )


# --- index_ids and leave_last_out ---------------------------------------------------------------


def test_index_ids_numbers_ids_by_first_appearance():
    idx, ids = index_ids(np.array(["b", "a", "b", "c", "a"]))
    assert idx.tolist() == [0, 1, 0, 2, 1]
    assert ids.tolist() == ["b", "a", "c"]
    assert idx.dtype == np.int64


def test_leave_last_out_breaks_timestamp_ties_by_file_order():
    # u1: A@10, B@30, C@20, D@30 -> by time A, C, then B and D tied at 30: file order puts D last.
    # u2 has 2 interactions (< 3): train only. u3: exactly 3.
    log = build_interactions(
        "t",
        raw_log(
            [
                ("u1", "A", 10),
                ("u1", "B", 30),
                ("u2", "A", 5),
                ("u1", "C", 20),
                ("u3", "C", 1),
                ("u1", "D", 30),
                ("u2", "B", 6),
                ("u3", "A", 2),
                ("u3", "B", 3),
            ]
        ),
    )
    split = leave_last_out(log, min_interactions=3)
    item = {name: i for i, name in enumerate(log.catalog.item_ids.tolist())}
    user = {name: i for i, name in enumerate(log.user_ids.tolist())}
    assert split.test_users.tolist() == [user["u1"], user["u3"]]
    assert split.test_items.tolist() == [item["D"], item["B"]]
    assert split.valid_items.tolist() == [item["B"], item["A"]]
    assert split.history(user["u1"]).tolist() == [item["A"], item["C"]]  # validation item B excluded
    assert split.history(user["u2"]).tolist() == [item["A"], item["B"]]  # train-only user keeps all
    assert split.history(user["u3"]).tolist() == [item["C"]]
    assert split.train_timestamps.tolist() == [10, 20, 5, 6, 1]


def test_with_validation_items_trains_on_every_validation_item_but_the_held_out_users():
    # u1: A B C D E (valid D, test E); u2: A B (train only); u3: C A B (valid A, test B);
    # u4: B C D (valid C, test D). Held out: u3, so u1's D and u4's C join their train items.
    rows = [("u1", x, t) for t, x in enumerate("ABCDE")] + [("u2", "A", 1), ("u2", "B", 2)]
    rows += [("u3", x, t) for t, x in enumerate("CAB")] + [("u4", x, 10 + t) for t, x in enumerate("BCD")]
    log = build_interactions("t", raw_log(rows))
    split = leave_last_out(log, min_interactions=3)
    item = {name: i for i, name in enumerate(log.catalog.item_ids.tolist())}
    user = {name: i for i, name in enumerate(log.user_ids.tolist())}
    fit = with_validation_items(split, np.array([user["u3"]]))
    named = {u: [log.catalog.item_ids[i] for i in fit.history(user[u])] for u in ("u1", "u2", "u3", "u4")}
    assert named == {"u1": list("ABCD"), "u2": list("AB"), "u3": ["C"], "u4": list("BC")}
    assert fit.train_timestamps[fit.train_indptr[user["u4"]] :][:2].tolist() == [10, 10]  # after its last
    assert fit.valid_users.tolist() == [user["u3"]] and fit.valid_items.tolist() == [item["A"]]
    assert fit.test_users.tolist() == [user["u3"]] and fit.test_items.tolist() == [item["B"]]
    assert len(fit.train_weights) == len(fit.train_items) == len(split.train_items) + 2
    # Holding everyone out is the split itself.
    same = with_validation_items(split, split.valid_users)
    assert same.train_items.tolist() == split.train_items.tolist()
    assert same.valid_items.tolist() == split.valid_items.tolist()


# --- build_interactions / append_log ------------------------------------------------------------


def test_build_interactions_joins_metadata_and_keeps_catalog_only_items():
    items = RawItems(
        source="items",
        item=np.array(["B", "Z", "A"]),
        category=np.array(["shoes", "hats", ""]),
        price=np.array([9.5, 3.0, np.nan], dtype=np.float32),
    )
    log = build_interactions("t", raw_log([("u1", "A", 1), ("u2", "B", 2), ("u1", "C", 3)]), items)
    assert log.catalog.item_ids.tolist() == ["A", "B", "C", "Z"]  # log order, then catalog-only
    assert log.catalog.categories == ["hats", "shoes"]  # sorted
    assert log.catalog.category.tolist() == [NO_CATEGORY, 1, NO_CATEGORY, 0]
    np.testing.assert_array_equal(log.catalog.price, np.array([np.nan, 9.5, np.nan, 3.0], dtype=np.float32))
    assert log.item.tolist() == [0, 1, 2]
    assert log.user.tolist() == [0, 1, 0]


def test_append_log_reuses_indices_and_adds_new_ids_at_the_end():
    base = build_interactions(
        "t",
        raw_log([("u1", "A", 1), ("u2", "B", 2)]),
        RawItems("items", np.array(["A", "B"]), np.array(["x", "y"]), np.array([1.0, 2.0], dtype=np.float32)),
    )
    out = append_log(base, raw_log([("u2", "N", 5), ("u9", "A", 6), ("u9", "N", 7)], weight=[2.0, 1.0, 3.0]))
    assert out.user_ids.tolist() == ["u1", "u2", "u9"]
    assert out.catalog.item_ids.tolist() == ["A", "B", "N"]
    assert out.user.tolist() == [0, 1, 1, 2, 2]
    assert out.item.tolist() == [0, 1, 2, 0, 2]
    assert out.weight.tolist() == [1.0, 1.0, 2.0, 1.0, 3.0]
    assert out.catalog.category.tolist() == [0, 1, NO_CATEGORY]
    assert np.isnan(out.catalog.price[2]) and out.catalog.price[1] == 2.0
    assert out.catalog.categories == ["x", "y"]


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


def test_appended_items_have_no_attributes_and_the_fingerprint_sees_attributes():
    items = RawItems(
        source="items", item=np.array(["A", "B"]), category=np.array(["", ""]),
        price=np.array([np.nan, np.nan], np.float32),
        attr_indptr=np.array([0, 1, 2]), attr_tags=np.array(["t1", "t2"]),
    )  # fmt: skip
    base = build_interactions("x", raw_log([("u1", "A", 1), ("u1", "B", 2)]), items)
    grown = append_log(base, raw_log([("u2", "NEW", 3)]))
    indptr, index = grown.catalog.attribute_rows()
    assert indptr.tolist() == [0, 1, 2, 2] and index.tolist() == [0, 1]
    other = RawItems(**{**items.__dict__, "attr_tags": np.array(["t1", "t3"])})
    assert (
        build_interactions("x", raw_log([("u1", "A", 1), ("u1", "B", 2)]), other).fingerprint
        != base.fingerprint
    )
