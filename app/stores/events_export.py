"""Export the events the service logged as a CSV the offline pipeline reads back (`data.extra_paths`).

Only `source = 'event'` rows are written: the seed rows are the training data the served version was
built from, so exporting them would count every training interaction twice at the next retrain.
Columns: user_id,item_id,timestamp,event (timestamp in epoch seconds; event empty when not given).
"""

from __future__ import annotations

import csv
from pathlib import Path

from core.files import open_atomic
from core.sqlite import connect

COLUMNS = ("user_id", "item_id", "timestamp", "event")


def export_events(db_path: Path, out_csv: Path, since: int | None = None) -> int:
    """Write the logged events (oldest first, optionally with timestamp >= since); return the row count.

    The CSV appears atomically (temp file, fsync, rename), so a pipeline never reads half of it.
    Reads through a read-only connection: safe while the service is running and writing.
    """
    db_path, out_csv = Path(db_path), Path(out_csv)
    if not db_path.is_file():
        raise FileNotFoundError(f"{db_path}: no history database")
    conn = connect(db_path, read_only=True)
    try:
        query = "SELECT user_id, item_id, ts, COALESCE(event, '') FROM interactions WHERE source = 'event'"
        params: tuple[int, ...] = ()
        if since is not None:
            query += " AND ts >= ?"
            params = (since,)
        rows = conn.execute(query + " ORDER BY ts, id", params)
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        with open_atomic(out_csv, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            for row in rows:
                writer.writerow(row)
                count += 1
    finally:
        conn.close()
    return count
