"""The service's commands (`serve`, `events export`, `catalogue export`): they import `app` and `core`
only, never `training` or torch, so they run in the torch-free serving image."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    from app.server import serve

    serve(Path(args.models), args.host, args.port)  # a bad RECDISTILL_* setting: SettingsError, exit 2
    return 0


def cmd_events_export(args: argparse.Namespace) -> int:
    """`--db FILE`: that SQLite history; otherwise the store the RECDISTILL_* settings select (the
    SQLite RECDISTILL_HISTORY_DB, or the Redis of RECDISTILL_HISTORY_BACKEND=redis)."""
    from app.stores.events_export import export_events, export_from_settings

    if args.db:
        count, source = export_events(Path(args.db), Path(args.out), args.since), args.db
    else:
        from app.config import load_settings

        count, source = export_from_settings(load_settings(), Path(args.out), args.since)
    print(f"{count} events from {source} written to {args.out}")
    return 0


def cmd_catalogue_export(args: argparse.Namespace) -> int:
    """The catalogue as the service knows it (the served version, or `--version`, with the live
    overlay of the store RECDISTILL_* selects) as the item file of the next retrain."""
    from app.config import load_settings
    from app.stores.catalogue_export import export_catalogue
    from recdistill.models import served_version

    models = Path(args.models)
    version = args.version or served_version(models)
    count, registered = export_catalogue(load_settings(models_dir=models), version, Path(args.out))
    print(f"{count} items of version {version} ({registered} registered) written to {args.out}")
    return 0


def user_errors() -> tuple[type[BaseException], ...]:
    """Bad input besides core.errors.UserError (settings, versions, pins): redis's own errors."""
    try:
        from redis import RedisError
    except ImportError:
        return ()
    return (RedisError,)
