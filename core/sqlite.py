"""The one way the project opens SQLite: WAL, an explicit synchronous level, one busy timeout.

Writers that find the database locked wait up to BUSY_TIMEOUT_MS instead of failing at once (the
history, the served-answer log and the event export may all touch the same files).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

BUSY_TIMEOUT_MS = 10_000


def connect(
    path: Path, synchronous: Literal["FULL", "NORMAL"] | str = "FULL", read_only: bool = False
) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit) that threads may share under a lock.

    `read_only` opens an existing file without creating it or changing its journal mode (safe while
    the service writes). FULL fsyncs every commit into the WAL; anything else is NORMAL.
    """
    if read_only:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
        )
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, immediate: bool = False) -> Iterator[sqlite3.Connection]:
    """BEGIN (IMMEDIATE: take the write lock now), COMMIT on a clean exit, ROLLBACK on any exception.

    Without the rollback a failed statement would leave the shared connection inside a transaction
    that the next caller's BEGIN refuses.

    Regression: a full disk (SQLITE_FULL) or an I/O error makes SQLite roll the transaction back by
    itself; the ROLLBACK here then failed with "cannot rollback - no transaction is active", and that
    error replaced the real one ("database or disk is full") in the caller's 503 and in the log."""
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
        conn.execute("COMMIT")  # with synchronous=FULL this fsyncs the WAL before returning
    except BaseException:
        if conn.in_transaction:  # also when the COMMIT itself failed, unless SQLite rolled back already
            conn.execute("ROLLBACK")
        raise


def add_column(conn: sqlite3.Connection, table: str, column: str, decl: str) -> None:
    """`ALTER TABLE ADD COLUMN` unless `table` has `column` already: a file written by an older
    release gains the column (with decl's DEFAULT for its old rows) instead of failing on it."""
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if column not in present:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
