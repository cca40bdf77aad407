"""`recdistill models ...`: the published versions, LATEST and the pin, from the command line.

A service command: it imports `app` and `core` only (never `training` or torch). The pin lives where
the service's settings put it (`app.stores.pins`): `models/PINNED`, or with
`RECDISTILL_HISTORY_BACKEND=redis` the Redis key every replica reads, so run it with the replicas'
`RECDISTILL_*` environment. Running services pick a change up within `RECDISTILL_RELOAD_POLL_SECONDS`
(or at once on `POST /admin/reload`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from app.config import load_settings
from app.engine import versions
from app.engine.model_store import ReloadRefused, latest_version
from app.stores.pins import Pin, PinStore, open_pins
from recdistill.model_views import diff_lines, list_lines, show_lines, state


def _pins(models_dir: Path) -> PinStore:
    settings = load_settings(models_dir=models_dir)  # SettingsError (one line, exit 2) on a bad setting
    url = settings.redis_url.get_secret_value() if settings.redis_url else None
    return open_pins(models_dir, settings.history_backend, url, settings.redis_prefix)


def _latest(models_dir: Path) -> str | None:
    try:
        return latest_version(models_dir)
    except ReloadRefused as exc:
        raise versions.VersionError(str(exc)) from exc


def served_version(models_dir: Path) -> str:
    """The version the replicas serve: the pin, else LATEST; VersionError when there is neither."""
    pin = _pins(models_dir).get()
    version = pin.version if pin is not None else _latest(models_dir)
    if version is None:
        raise versions.VersionError(f"{models_dir}: nothing published (no pin, no LATEST)")
    return version


def _folder(args: argparse.Namespace) -> Path:
    """--models, which must be a folder: a typo would otherwise read as "no versions"."""
    models = Path(args.models)
    if not models.is_dir():
        raise versions.VersionError(
            f"{models}: no such folder (--models names the folder versions are published to)"
        )
    return models


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str))


def cmd_list(args: argparse.Namespace) -> int:
    models = _folder(args)
    pin = _pins(models).get()
    rows = versions.list_versions(models, _latest(models), pin.version if pin else None)
    if args.json:
        _print_json(rows)
    elif not rows:
        print(f"no versions under {models} (`recdistill pipeline` publishes one)")
    else:
        print("\n".join(list_lines(rows)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    models = _folder(args)
    summary = versions.show(models, args.version)
    if args.json:
        _print_json(summary)
        return 0
    pin = _pins(models).get()
    flags = state(_latest(models) == args.version, pin is not None and pin.version == args.version)
    print("\n".join(show_lines(summary, models / args.version, flags)))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    d = versions.diff(_folder(args), args.a, args.b)
    if args.json:
        _print_json(d)
    else:
        print("\n".join(diff_lines(d, everything=args.all)))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    models = _folder(args)
    versions.promote(models, args.version)
    pin = _pins(models).get()
    note = f" (pinned to {pin.version}: served once unpinned)" if pin else ""
    print(f"LATEST -> {args.version}{note}")
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    models = _folder(args)
    versions.verify(models, args.version)
    store = _pins(models)
    store.set(Pin.now(args.version, "cli"))
    print(f"pinned {args.version} ({store.where})")
    return 0


def cmd_unpin(args: argparse.Namespace) -> int:
    models = _folder(args)
    store = _pins(models)
    pin = store.get()
    store.clear()
    was = f" (was {pin.version})" if pin else " (none was set)"
    print(f"unpinned{was}; serving follows LATEST = {_latest(models)}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Pin the version published before the current one (the pin, else LATEST)."""
    models = _folder(args)
    store = _pins(models)
    pin = store.get()
    current = pin.version if pin else _latest(models)
    if current is None:
        raise versions.VersionError(f"{models / 'LATEST'}: nothing published, nothing to roll back from")
    previous = versions.previous_version(models, current)
    versions.verify(models, previous)
    store.set(Pin.now(previous, "rollback"))
    print(f"pinned {previous} (rolled back from {current}; `recdistill models unpin` follows LATEST again)")
    return 0


def user_errors() -> tuple[type[BaseException], ...]:
    """Bad input besides core.errors.UserError (an unknown version, a bad setting, a pin that cannot be
    read or reached are UserErrors): a models folder or LATEST that cannot be read or written."""
    return (OSError,)
