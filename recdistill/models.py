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
from app.stores.pins import Pin, PinError, PinStore, open_pins


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


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str))


def cmd_list(args: argparse.Namespace) -> int:
    models = Path(args.models)
    pin = _pins(models).get()
    rows = versions.list_versions(models, _latest(models), pin.version if pin else None)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"no versions under {models}")
        return 0
    header = f"{'version':<24} {'created_at':<26} {'dataset':<12} {'ndcg@10 T':>10} {'ndcg@10 S':>10}"
    print(header + f" {'parameters T/S':>19} {'MB':>8}  flags")
    for r in rows:
        flags = " ".join(f for f, on in (("LATEST", r["latest"]), ("PINNED", r["pinned"])) if on)
        if r["error"]:
            print(f"{r['version']:<24} unreadable: {r['error']}  {flags}".rstrip())
            continue
        p, ndcg = r["parameters"], r["ndcg@10"]
        print(
            f"{r['version']:<24} {r['created_at']:<26} {r['dataset']:<12} {_num(ndcg['teacher']):>10} "
            f"{_num(ndcg['student']):>10} {p['teacher']:>9,}/{p['student']:<9,} "
            f"{r['bytes']['total'] / 1e6:>8.2f}  {flags}".rstrip()
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    _print_json(versions.show(Path(args.models), args.version))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    d = versions.diff(Path(args.models), args.a, args.b)
    if args.json:
        _print_json(d)
        return 0
    a, b = d["a"], d["b"]
    print(f"{'':<32} {a:>14} {b:>14} {'delta':>12}")
    print(f"{'created_at':<32} {d['created_at'][a][:19]:>14} {d['created_at'][b][:19]:>14}")
    if not d["same_dataset"]:
        print("datasets differ (fingerprints): metrics are not directly comparable")
    for section in ("test", "agreement", "parameters", "bytes"):
        for key, row in d[section].items():
            digits = 0 if section in ("parameters", "bytes") else 4
            delta = row["delta"]
            shown = "-" if delta is None else f"{delta:+.{digits}f}"
            print(
                f"{section + ' ' + key:<32} {_num(row[a], digits):>14} {_num(row[b], digits):>14} {shown:>12}"
            )
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    models = Path(args.models)
    versions.promote(models, args.version)
    pin = _pins(models).get()
    note = f" (pinned to {pin.version}: served once unpinned)" if pin else ""
    print(f"LATEST -> {args.version}{note}")
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    models = Path(args.models)
    versions.verify(models, args.version)
    store = _pins(models)
    store.set(Pin.now(args.version, "cli"))
    print(f"pinned {args.version} ({store.where})")
    return 0


def cmd_unpin(args: argparse.Namespace) -> int:
    models = Path(args.models)
    store = _pins(models)
    pin = store.get()
    store.clear()
    was = f" (was {pin.version})" if pin else " (none was set)"
    print(f"unpinned{was}; serving follows LATEST = {_latest(models)}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Pin the version published before the current one (the pin, else LATEST)."""
    models = Path(args.models)
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
    """Bad input: an unknown or refused version, a bad setting, a pin that cannot be read or reached."""
    from app.config import SettingsError
    from app.stores.redis_client import RedisUnavailable

    return (versions.VersionError, SettingsError, PinError, RedisUnavailable, OSError)
