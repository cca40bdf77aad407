"""The service's commands (`serve`, `events export`): they import `app` and `core` only, never `training`
or torch, so they run in the torch-free serving image."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    from app.server import serve

    serve(Path(args.models), args.host, args.port)  # a bad RECDISTILL_* setting: SettingsError, exit 2
    return 0


def cmd_events_export(args: argparse.Namespace) -> int:
    from app.stores.events_export import export_events

    result = export_events(Path(args.db), Path(args.out))
    print(f"events written to {args.out}" + (f" ({result})" if result is not None else ""))
    return 0


def user_errors() -> tuple[type[BaseException], ...]:
    """The service's exceptions that mean bad input or configuration, not a bug."""
    from app.config import SettingsError

    return (SettingsError,)
