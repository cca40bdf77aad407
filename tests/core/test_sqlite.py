"""core.sqlite.connect: one busy timeout, WAL, read-only opens that never create a file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.sqlite import BUSY_TIMEOUT_MS, connect, transaction


def test_a_writer_gets_wal_the_synchronous_level_and_the_one_busy_timeout(tmp_path: Path) -> None:
    conn = connect(tmp_path / "sub" / "db.sqlite3", "NORMAL")  # the folder is created
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
    assert connect(tmp_path / "full.sqlite3").execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_read_only_never_creates_the_file_and_refuses_writes(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        connect(tmp_path / "missing.sqlite3", read_only=True)
    assert not (tmp_path / "missing.sqlite3").exists()
    writer = connect(tmp_path / "db.sqlite3")
    writer.execute("CREATE TABLE t (x)")
    reader = connect(tmp_path / "db.sqlite3", read_only=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("INSERT INTO t VALUES (1)")


def test_a_failed_transaction_rolls_back_and_leaves_the_connection_usable(tmp_path: Path) -> None:
    from core.sqlite import transaction

    conn = connect(tmp_path / "db.sqlite3")
    conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    with pytest.raises(sqlite3.IntegrityError), transaction(conn) as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        tx.execute("INSERT INTO t VALUES (1)")  # the second one fails: neither is kept
    with transaction(conn, immediate=True) as tx:  # a BEGIN still works: no transaction was left open
        tx.execute("INSERT INTO t VALUES (2)")
    assert conn.execute("SELECT x FROM t").fetchall() == [(2,)]


def test_a_full_disk_raises_its_own_error_not_a_failed_rollback(tmp_path: Path) -> None:
    """Regression: SQLite rolls back by itself on SQLITE_FULL; `transaction`'s own ROLLBACK then
    failed ("no transaction is active") and hid "database or disk is full" from the caller."""
    conn = connect(tmp_path / "full.sqlite3")
    conn.execute("CREATE TABLE t (x TEXT)")
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow: a full disk
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"), transaction(conn) as c:
        c.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 100)
    assert not conn.in_transaction
    with transaction(conn) as c:  # the connection is usable again
        c.execute("DELETE FROM t")
