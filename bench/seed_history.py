"""Seeding the history store from a version's whole log, on both backends: `python -m bench.seed_history`.

A published version seeds every interaction of its log into the history store (training/
published_log.py), and each new version re-seeds: that must stay fast on a million-interaction log,
and must neither duplicate a row nor lose a logged event. On a synthetic log shaped like a shop's
(`--rows` interactions over `--users` users, grouped by user and time as the seed file is, with
event types), for SQLite and for a redis-server this benchmark starts on loopback, it measures:
  1. the first seed (version v1, empty store);
  2. `--logged` events posted through the store, half of them equal to rows of the next log (they
     came back through `recdistill events export` and a retrain), half not;
  3. the re-seed of version v2 = v1's log + the returned events.
Every count is checked against what it must be (rows added, rows per sampled user, no duplicate,
every logged event still there). Results: bench/results/seed_history.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.stores.protocols import HistoryStore
from app.stores.records import Interaction
from bench.checks import status
from bench.report import RESULTS_DIR, markdown_table, write_report

log = logging.getLogger(__name__)
NAME = "seed_history"
EVENT_TYPES = np.array(["view", "cart", "purchase"])
SAMPLED_USERS = 200  # users whose whole history is read back and checked


@dataclass(frozen=True)
class Log:
    """A seed log (raw ids, grouped by user then time) and the events logged between two versions."""

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    events: np.ndarray
    logged: list[Interaction]  # posted to the store between v1 and v2
    returned: int  # how many of `logged` are also rows of v2's log

    def v2(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """v1's log plus the returned events, regrouped by user and time."""
        back = self.logged[: self.returned]
        users = np.concatenate([self.users, [e.user_id for e in back]])
        items = np.concatenate([self.items, [e.item_id for e in back]])
        stamps = np.concatenate([self.timestamps, [e.timestamp for e in back]])
        events = np.concatenate([self.events, [e.event or "" for e in back]])
        order = np.lexsort((stamps, users))
        return users[order], items[order], stamps[order], events[order]


def synthetic_log(rows: int, users: int, items: int, logged: int, seed: int) -> Log:
    """Shop-like: users drawn uniformly, items by a Zipf-like popularity, timestamps increasing."""
    rng = np.random.default_rng(seed)
    user = np.sort(rng.integers(0, users, rows))
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    item = rng.choice(items, rows, p=popularity / popularity.sum())
    stamps = 1_700_000_000 + np.arange(rows, dtype=np.int64)
    events = EVENT_TYPES[rng.integers(0, len(EVENT_TYPES), rows)]
    later = stamps[-1] + 1 + np.arange(logged, dtype=np.int64)  # the service's events come after
    who, what = rng.integers(0, users, logged), rng.choice(items, logged)
    kinds = ["click", "purchase"]
    posted = [
        Interaction(f"u{u}", f"p{i}", int(t), kinds[n % 2])
        for n, (u, i, t) in enumerate(zip(who, what, later, strict=True))
    ]
    return Log(
        np.char.add("u", user.astype(str)), np.char.add("p", item.astype(str)), stamps, events,
        posted, logged // 2,
    )  # fmt: skip


def open_store(kind: str, where: str | Path) -> HistoryStore:
    if kind == "sqlite":
        from app.stores.history_sqlite import SqliteHistoryStore

        return SqliteHistoryStore(Path(where) / "history.sqlite3")
    from app.stores.history_redis import RedisHistoryStore

    return RedisHistoryStore(str(where))


async def run_backend(kind: str, where: str | Path, data: Log) -> dict[str, Any]:
    """Seed v1, log events, re-seed v2; seconds and the checks of one backend."""
    store = open_store(kind, where)
    try:
        t0 = time.perf_counter()
        first = store.seed_from_arrays("v1", data.users, data.items, data.timestamps, data.events)
        first_s = time.perf_counter() - t0
        for start in range(0, len(data.logged), 1000):
            await store.append(data.logged[start : start + 1000])
        v2 = data.v2()
        t0 = time.perf_counter()
        second = store.seed_from_arrays("v2", *v2)
        second_s = time.perf_counter() - t0
        checks = await check_histories(store, data, v2)
    finally:
        await store.close()
    return {
        "first_seed": {"rows": int(first), "seconds": first_s, "rows_per_second": first / first_s},
        "reseed": {"rows": int(second), "seconds": second_s, "rows_per_second": second / second_s},
        "checks": checks
        | {
            "first_seed_added_every_row": int(first) == len(data.users),
            "reseed_skipped_exactly_the_returned_events": int(second) == len(v2[0]) - data.returned,
        },
    }


async def check_histories(store: HistoryStore, data: Log, v2: tuple[np.ndarray, ...]) -> dict[str, bool]:
    """Read back sampled users (and every user with a logged event): each holds v2's rows plus the
    events that did not come back, once each."""
    users, items, stamps, _ = v2
    expected: dict[str, list[tuple[str, int]]] = {}
    sampled = set(np.random.default_rng(1).choice(np.unique(users), SAMPLED_USERS, replace=False).tolist())
    sampled |= {e.user_id for e in data.logged}
    mask = np.isin(users, list(sampled))
    for user, item, ts in zip(users[mask].tolist(), items[mask].tolist(), stamps[mask].tolist(), strict=True):
        expected.setdefault(user, []).append((item, ts))
    for event in data.logged[data.returned :]:
        expected.setdefault(event.user_id, []).append((event.item_id, event.timestamp))
    same = True
    for user in sampled:
        got = sorted((h.item_id, h.timestamp) for h in await store.history(user, 100_000))
        same &= got == sorted(expected.get(user, []))
    logged_kept = True
    for event in data.logged:  # each logged event is still there with its own event type
        rows = await store.history(event.user_id, 100_000)
        logged_kept &= any(
            (h.item_id, h.timestamp, h.event) == (event.item_id, event.timestamp, event.event) for h in rows
        )
    return {"sampled_histories_exact": same, "every_logged_event_kept": logged_kept}


def render(payload: dict[str, Any], plot: str) -> str:
    cfg = payload["config"]
    rows = []
    for kind, result in payload["backends"].items():
        for phase in ("first_seed", "reseed"):
            r = result[phase]
            rows.append(
                [
                    kind,
                    phase.replace("_", " "),
                    f"{r['rows']:,}",
                    f"{r['seconds']:.1f}",
                    f"{r['rows_per_second']:,.0f}",
                ]
            )
    checks = [
        [kind, name, status(ok)]
        for kind, res in payload["backends"].items()
        for name, ok in res["checks"].items()
    ]
    return "\n\n".join([
        "# Seeding the history store from a version's whole log",
        f"Synthetic shop log: {cfg['rows']:,} interactions, {cfg['users']:,} users, {cfg['items']:,} items, "
        f"3 event types; {cfg['logged']:,} events logged between the two versions, {cfg['logged'] // 2:,} of "
        "them back in v2's log. Re-seed = v2 replaces v1's seed rows while the logged events stay.",
        markdown_table(["backend", "phase", "rows added", "seconds", "rows / s"], rows),
        f"![seconds per phase]({plot})",
        "## Checks",
        markdown_table(["backend", "check", "result"], checks),
        f"Machine: {payload['machine']}. Command: `{payload['command']}`.",
    ])  # fmt: skip


def plot_seconds(payload: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    phases = ("first_seed", "reseed")
    for b, (kind, result) in enumerate(payload["backends"].items()):
        xs = [p + b * 0.38 for p in range(len(phases))]
        ax.bar(xs, [result[p]["seconds"] for p in phases], width=0.36, label=kind)
    ax.set_xticks([p + 0.19 for p in range(len(phases))], ["first seed", "re-seed"])
    ax.set_ylabel("seconds")
    ax.set_title(f"Seeding {payload['config']['rows']:,} interactions")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.seed_history", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--logged", type=int, default=20_000)
    p.add_argument("--backends", nargs="+", choices=["sqlite", "redis"], default=["sqlite", "redis"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    data = synthetic_log(args.rows, args.users, args.items, args.logged, args.seed)
    backends: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="seed-history-") as tmp:
        for kind in args.backends:
            if kind == "sqlite":
                backends[kind] = asyncio.run(run_backend(kind, Path(tmp), data))
            else:
                from tests.redis_server import redis_server  # a loopback redis-server, stopped after

                with redis_server(Path(tmp) / "redis") as url:
                    backends[kind] = asyncio.run(run_backend(kind, url, data))
            log.info("%s: %s", kind, backends[kind])
    payload = {
        "benchmark": NAME,
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "backends": backends,
        "machine": f"{platform.machine()}, {platform.python_version()}, shared 2-core box",
        "command": (
            "python -m bench.seed_history " + " ".join(argv if argv is not None else sys.argv[1:])
        ).strip(),
    }
    png = plot_seconds(payload, Path(args.out) / f"{NAME}.png")
    write_report(NAME, payload, render(payload, png.name), Path(args.out))
    ok = all(all(r["checks"].values()) for r in backends.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
