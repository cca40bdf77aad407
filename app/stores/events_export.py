"""Export the events the service logged as a CSV the offline pipeline reads back (`data.extra_paths`).

Both history backends: the SQLite history file, or the Redis the replicas share (`e:<user>` sorted
sets, see app/stores/history_redis.py). Only logged events are written, never the seed rows: those
are the log the served version was built from, so exporting them would count every interaction of it
twice at the next retrain. Columns: user_id,item_id,timestamp,event (timestamp in epoch
seconds; event empty when not given), oldest first, ties in arrival order.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from app.config import Settings
from core.files import open_atomic
from core.sqlite import connect

COLUMNS = ("user_id", "item_id", "timestamp", "event")
_SCAN = 1000  # keys per SCAN / pipeline page


def write_csv(out_csv: Path, rows: Iterable[Sequence[object]], columns: Sequence[str] = COLUMNS) -> int:
    """The rows under `columns`, atomically (temp file, fsync, rename): a pipeline never reads half."""
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open_atomic(out_csv, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def export_events(db_path: Path, out_csv: Path, since: int | None = None) -> int:
    """Write the SQLite history's logged events (optionally with timestamp >= since); return the count.

    Reads through a read-only connection: safe while the service is running and writing.
    """
    db_path = Path(db_path)
    if not db_path.is_file():
        raise FileNotFoundError(f"{db_path}: no history database")
    conn = connect(db_path, read_only=True)
    try:
        query = "SELECT user_id, item_id, ts, COALESCE(event, '') FROM interactions WHERE source = 'event'"
        params: tuple[int, ...] = ()
        if since is not None:
            query += " AND ts >= ?"
            params = (since,)
        return write_csv(out_csv, conn.execute(query + " ORDER BY ts, id", params))
    finally:
        conn.close()


def export_events_redis(url: str, prefix: str, out_csv: Path, since: int | None = None) -> int:
    """Write the logged events of every user in the shared Redis (the `e:<user>` sets; the seed sets
    `s:<user>` are left out); return the count. Reads only: safe while the replicas write."""
    from app.stores.redis_client import sync_client

    r = sync_client(url, 10.0)
    try:
        head = f"{prefix}e:"
        keys = list(r.scan_iter(match=f"{head}*", count=_SCAN))
        rows: list[tuple[int, str, str, str, str]] = []  # (ts, seq hex, user, item, event)
        for start in range(0, len(keys), _SCAN):
            page = keys[start : start + _SCAN]
            pipe = r.pipeline(transaction=False)
            for key in page:
                pipe.zrangebyscore(key, "-inf" if since is None else since, "+inf", withscores=True)
            for key, members in zip(page, pipe.execute(), strict=True):
                user = key[len(head) :]
                for member, score in members:
                    item, event = json.loads(member[16:])
                    rows.append((int(score), member[:16], user, item, event or ""))
    finally:
        r.close()
    rows.sort()  # timestamp, then the global sequence number: arrival order, as SQLite's rowid
    return write_csv(out_csv, ((user, item, ts, event) for ts, _, user, item, event in rows))


def export_from_settings(settings: Settings, out_csv: Path, since: int | None = None) -> tuple[int, str]:
    """Export from the history store the settings select (RECDISTILL_HISTORY_BACKEND); (count, source)."""
    if settings.history_backend == "redis":
        from app.stores.redis_client import redact

        assert settings.redis_url is not None  # Settings refuses redis without a URL
        url = settings.redis_url.get_secret_value()
        return export_events_redis(url, settings.redis_prefix, out_csv, since), f"redis {redact(url)}"
    return export_events(settings.history_db, out_csv, since), str(settings.history_db)
