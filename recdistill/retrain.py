"""`recdistill retrain`: the retraining job as a shop runs it every night.

1. Collect: the base log (`data.path`, `data.extra_paths`) plus the events the service logged (the
   store the `RECDISTILL_*` settings select, read by app/stores/events_export.py exactly as
   `recdistill events export` reads it), written to `work_dir/retrain/events-<first>-<last>.csv` in
   the config's own columns and appended through `data.extra_paths`; and, when the live catalogue has
   registered products or changed a price or category, the item file with the overlay laid over it
   (training/data/overlay.py), so new products come with their metadata.
2. Warm-start from the served version (the pin, else LATEST): `warm_start` defaults to "served"
   here; `--set warm_start=<version>` names another, `--set warm_start=none` trains cold.
3. Gate as the pipeline does, plus the new student against the served one on the new holdout
   (exit 3, nothing published, the summary still printed).
4. Publish without moving LATEST and make the version the candidate exactly as `POST
   /admin/candidate` stores it (app/stores/pins.py: `models/CANDIDATE` or the Redis key), so every
   replica loads and shadows it within one poll; `--promote` moves LATEST instead.

Every logged event is taken in, not only those after the served version: the store holds the
service's own events only (never the log a version was seeded from), and a version trained on the
base log plus last night's events must also keep the nights before. `--since` cuts older events
when the base log itself has been refreshed to include them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("recdistill.retrain")
EVENTS_DIR = "retrain"  # under work_dir: the exported events and the overlaid item file


def _served_ids(models_dir: Path, version: str) -> tuple[np.ndarray, np.ndarray]:
    from core.manifest import load_manifest

    folder = models_dir / version
    manifest = load_manifest(folder)
    return tuple(
        np.load(folder / name, allow_pickle=False).astype(str)
        for name in (manifest.user_ids, manifest.item_ids)
    )  # type: ignore[return-value]


def collect_events(
    cfg: Any, settings: Any, args: argparse.Namespace, served: tuple[np.ndarray, np.ndarray]
) -> Any:
    """The service's events as an extra log in the config's columns; None when there is none.

    Returns core.manifest.EventsIn (rows, time range, users and items the served version lacks)."""
    import pandas as pd

    from app.stores.events_export import export_events, export_from_settings
    from core.manifest import EventsIn

    folder = Path(cfg.work_dir) / EVENTS_DIR
    raw = folder / "events-export.csv"
    if args.events:  # a shop that logs events elsewhere hands them over in the export's columns
        raw, source = Path(args.events), str(args.events)
    elif settings.history_backend == "sqlite":
        count, source = export_events(settings.history_db, raw, args.since), str(settings.history_db)
    else:
        count, source = export_from_settings(settings, raw, args.since)
    frame = pd.read_csv(raw, dtype=str, keep_default_na=False)
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in frame.columns]
    if missing:
        from core.errors import UserError

        raise UserError(
            f"{raw}: missing column(s) {missing}: expected the columns `recdistill events export` writes"
        )
    if args.events and args.since is not None:
        frame = frame[pd.to_numeric(frame["timestamp"]) >= args.since]
    log.info("%d events from %s", len(frame), source)
    if frame.empty:
        return None
    ts = pd.to_numeric(frame["timestamp"]).astype(np.int64)
    first, last = int(ts.min()), int(ts.max())
    c = cfg.data.columns
    out = pd.DataFrame({c.user: frame["user_id"], c.item: frame["item_id"], c.timestamp: frame["timestamp"]})
    if c.event:  # the service logs the type only when the client sent one
        out[c.event] = event_types(frame, cfg.data.event_weights, args.event_type)
    if c.weight:
        out[c.weight] = "1"
    path = folder / f"events-{first}-{last}.csv"
    from core.files import open_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    with open_atomic(path, "w", newline="") as fh:
        out.to_csv(fh, index=False)
    users, items = served
    return EventsIn(
        file=str(path), rows=len(frame), first=first, last=last, since=args.since,
        new_users=int((~np.isin(frame["user_id"].unique(), users)).sum()),
        new_items=int((~np.isin(frame["item_id"].unique(), items)).sum()),
    )  # fmt: skip


def untyped_event(event_weights: dict[str, float], chosen: str | None) -> str:
    """The type an event logged without one gets: `chosen` (--event-type), else the lowest-weighted
    type of `data.event_weights` (an untyped event counts as the weakest signal), else "event".
    UserError when `chosen` is not a type `data.event_weights` lists."""
    if chosen is not None:
        if event_weights and chosen not in event_weights:
            from core.errors import UserError

            raise UserError(f"--event-type {chosen!r}: data.event_weights has {sorted(event_weights)}")
        return chosen
    return min(event_weights, key=lambda t: (event_weights[t], t)) if event_weights else "event"


def event_types(frame: Any, event_weights: dict[str, float], chosen: str | None) -> Any:
    """The exported events' types, an empty one (the client sent none) replaced by `untyped_event`:
    the loader refuses an empty type when `data.columns.event` is set."""
    import pandas as pd

    types = frame["event"].str.strip() if "event" in frame.columns else pd.Series("", index=frame.index)
    return types.mask(types == "", untyped_event(event_weights, chosen))


def collect_items(cfg: Any, settings: Any) -> tuple[Path | None, int]:
    """The item file with the live catalogue laid over it (None: nothing to lay over, or a source
    that reads no item file); also how many products were registered there."""
    from app.stores.factory import open_catalogue
    from training.data.overlay import ItemUpdate, write_item_overlay

    if settings.history_backend == "sqlite" and not settings.state_db_path.is_file():
        return None, 0  # no service ever kept a catalogue here
    store = open_catalogue(settings)
    try:
        entries = store.snapshot().entries
    finally:
        store.close()
    updates = [
        ItemUpdate(e.item_id, e.category, e.price, dict(e.fields))
        for e in entries.values()
        if e.registered or e.category is not None or e.price is not None
    ]
    registered = sum(1 for e in entries.values() if e.registered)
    if not updates:
        return None, registered
    if cfg.data.source != "file":
        log.warning(
            "the catalogue overlay has %d entries, but data.source %r reads no item file",
            len(updates),
            cfg.data.source,
        )
        return None, registered
    out = Path(cfg.work_dir) / EVENTS_DIR / "items-overlay.csv"
    appended = write_item_overlay(cfg.data, updates, out)
    log.info("item file with the catalogue overlay: %s (%d items added)", out, appended)
    return out, registered


def _candidate_blocked(settings: Any) -> str | None:
    """The running experiment that serves the candidate (the candidate cannot change under it)."""
    from app.stores.factory import open_state_stores

    if settings.history_backend == "sqlite" and not settings.state_db_path.is_file():
        return None
    stores = open_state_stores(settings)
    try:
        running = [r for r in stores.experiments.list() if r.running and r.arms == "serving_vs_candidate"]
    finally:
        for store in stores:
            store.close()
    return running[0].name if running else None


def set_candidate(models_dir: Path, settings: Any, version: str) -> str:
    """Store `version` as every replica's candidate, as `POST /admin/candidate` does; returns where."""
    from app.stores.pins import Pin, open_candidate_marks

    url = settings.redis_url.get_secret_value() if settings.redis_url else None
    marks = open_candidate_marks(models_dir, settings.history_backend, url, settings.redis_prefix)
    marks.set(Pin.now(version, "retrain"))
    return marks.where


def cmd_retrain(args: argparse.Namespace) -> int:
    from app.config import load_settings
    from recdistill.models import served_version
    from recdistill.offline import _load_config, _progress
    from recdistill.retrain_summary import Intake, refused_summary, retrain_summary
    from training.config import WARM_START_SERVED
    from training.distributed import session
    from training.evaluate.gates import GateError
    from training.pipeline import Publication, run_pipeline

    t0 = time.perf_counter()
    cfg = _load_config(args)
    if "warm_start" not in cfg.model_fields_set:
        cfg.warm_start = WARM_START_SERVED
    models = Path(cfg.models_dir)
    settings = load_settings(models_dir=models)
    served = served_version(models)
    if cfg.warm_start == WARM_START_SERVED:
        cfg.warm_start = served
    events = collect_events(cfg, settings, args, _served_ids(models, served))
    if events is not None:
        cfg.data.extra_paths = [*cfg.data.extra_paths, Path(events.file)]
    items, registered = collect_items(cfg, settings)
    if items is not None:
        cfg.data.items_path = items
    intake = Intake(served=served, events=events, items_file=items, registered=registered)
    publication = Publication(set_latest=args.promote, served=models / served, events=events)
    try:
        with session(cfg.device, cfg.threads):
            result = run_pipeline(cfg, progress=_progress(args), publication=publication)
    except GateError as exc:
        print(refused_summary(cfg, intake, exc, time.perf_counter() - t0))
        print(
            "recdistill retrain: not published (--set publish.require_gates=false publishes anyway)",
            file=sys.stderr,
        )
        return 3
    assert result is not None  # a single process is rank 0
    candidate = None
    if not args.promote:
        if blocked := _candidate_blocked(settings):
            candidate = f"not set: experiment {blocked!r} serves the candidate; stop it first"
        else:
            candidate = f"set ({set_candidate(models, settings, result.version_dir.name)})"
    print(retrain_summary(cfg, intake, result, candidate, time.perf_counter() - t0))
    return 0


def user_errors() -> tuple[type[BaseException], ...]:
    """Bad input besides core.errors.UserError: redis's own errors (an unreachable store)."""
    from recdistill.service import user_errors as service_errors

    return service_errors()
