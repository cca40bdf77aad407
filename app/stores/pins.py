"""The version pin: an operator's "serve this version" that outlives restarts and that no LATEST poll
overrides, shared by every replica.

One place holds it, chosen by the settings (`open_pins`):
- `RECDISTILL_HISTORY_BACKEND=sqlite` (one replica): the file `PINNED` beside `LATEST` in the models
  folder, JSON `{"version", "pinned_at", "source"}`, written atomically (core.files).
- `RECDISTILL_HISTORY_BACKEND=redis` (replicas): the string key `<prefix>models:pinned` in the shared
  Redis, the same JSON. The models volume is read-only there, and one key every replica reads is the
  only way they agree; a `PINNED` file is then ignored (one source of truth, never two to reconcile).

A pin that cannot be read (corrupt file, Redis down) raises `PinUnreadable`: the caller keeps serving
what it serves rather than treating it as "no pin" and jumping to LATEST.

The admin-set candidate version (app.engine.candidate) is kept the same way, for the same reason
(every replica must agree on it and a restart must not lose it): the file `CANDIDATE` beside LATEST,
or the key `<prefix>models:candidate`, holding the same JSON (`pinned_at`: when it was set), opened
by `open_candidate_marks`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from core.errors import UserError
from core.files import write_bytes_atomic

PIN_FILE = "PINNED"
PIN_KEY = "models:pinned"  # under RECDISTILL_REDIS_PREFIX
CANDIDATE_FILE = "CANDIDATE"
CANDIDATE_KEY = "models:candidate"  # under RECDISTILL_REDIS_PREFIX
_VERSION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class PinError(UserError, RuntimeError):
    """The pin's storage failed (Redis unreachable, a file not writable); the message names where."""


class PinUnreadable(PinError):
    """The pin's storage answered with something that is not a pin, or did not answer; names where."""


@dataclass(frozen=True)
class Pin:
    version: str
    pinned_at: str  # ISO 8601, UTC
    source: str  # who set it: "cli", "admin", "rollback"

    @classmethod
    def now(cls, version: str, source: str) -> Pin:
        return cls(version, datetime.now(UTC).isoformat(timespec="seconds"), source)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def parse_pin(raw: str, where: str, what: str = "pin") -> Pin:
    """A stored pin (or candidate mark: `what`) from its JSON; PinUnreadable naming `where` when it is not one."""
    try:
        data: Any = json.loads(raw)
        pin = Pin(str(data["version"]), str(data.get("pinned_at", "")), str(data.get("source", "")))
    except (ValueError, TypeError, KeyError) as exc:
        raise PinUnreadable(f"{where}: not a {what} ({type(exc).__name__}: {exc})") from exc
    if not _VERSION_NAME.fullmatch(pin.version):
        raise PinUnreadable(f"{where}: {pin.version[:80]!r} is not a version folder name")
    return pin


class PinStore(Protocol):
    """Where the pin lives. Blocking calls: the service runs them in a worker thread."""

    where: str  # the file or key, for messages

    def get(self) -> Pin | None:
        """The pin, None when none is set; PinUnreadable when it cannot be read."""
        ...

    def set(self, pin: Pin) -> None:
        """Store the pin durably; PinError when the storage refuses."""
        ...

    def clear(self) -> None:
        """Remove the pin (none set is fine); PinError when the storage refuses."""
        ...


class FilePinStore:
    """`models/PINNED` (or `name`), beside LATEST (one replica, or replicas sharing a writable volume)."""

    def __init__(self, models_dir: Path, name: str = PIN_FILE, what: str = "pin"):
        self.path = Path(models_dir) / name
        self.where = str(self.path)
        self.what = what

    def get(self) -> Pin | None:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise PinUnreadable(f"{self.path}: unreadable ({type(exc).__name__}: {exc})") from exc
        return parse_pin(raw, self.where, self.what)

    def set(self, pin: Pin) -> None:
        try:
            write_bytes_atomic(self.path, (pin.to_json() + "\n").encode())
        except OSError as exc:
            raise PinError(f"{self.path}: cannot write the {self.what} ({exc.strerror or exc})") from exc

    def clear(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise PinError(f"{self.path}: cannot remove the {self.what} ({exc.strerror or exc})") from exc


class RedisPinStore:
    """`<prefix>models:pinned` (or `<prefix><key>`) in the Redis every replica shares."""

    def __init__(
        self,
        url: str,
        prefix: str = "recdistill:",
        timeout: float = 5.0,
        key: str = PIN_KEY,
        what: str = "pin",
    ):
        from app.stores.redis_client import import_redis, redact, sync_client

        self._errors = import_redis(url).RedisError
        self._r = sync_client(url, timeout)
        self.key = f"{prefix}{key}"
        self.where = f"{redact(url)} key {self.key}"
        self.what = what

    def get(self) -> Pin | None:
        try:
            raw = self._r.get(self.key)
        except self._errors as exc:
            raise PinUnreadable(f"{self.where}: {exc}") from exc
        return None if raw is None else parse_pin(raw, self.where, self.what)

    def set(self, pin: Pin) -> None:
        try:
            self._r.set(self.key, pin.to_json())
        except self._errors as exc:
            raise PinError(f"{self.where}: cannot write the {self.what}: {exc}") from exc

    def clear(self) -> None:
        try:
            self._r.delete(self.key)
        except self._errors as exc:
            raise PinError(f"{self.where}: cannot clear the {self.what}: {exc}") from exc


def open_pins(
    models_dir: Path, backend: str, redis_url: str | None, prefix: str, timeout: float = 5.0
) -> PinStore:
    """The pin store the settings select (see the module docstring): Redis with the redis backend.
    `timeout`: seconds a Redis call may take (the service passes a short one: `/v1/models` reads
    the pin, and must not hang on a Redis that stopped answering)."""
    if backend == "redis":
        assert redis_url is not None  # Settings refuses redis without a URL
        return RedisPinStore(redis_url, prefix, timeout)
    return FilePinStore(models_dir)


def open_candidate_marks(
    models_dir: Path, backend: str, redis_url: str | None, prefix: str, timeout: float = 5.0
) -> PinStore:
    """Where the admin-set candidate lives, chosen like the pin: `<prefix>models:candidate` with the
    redis backend, else the file `CANDIDATE` beside LATEST."""
    if backend == "redis":
        assert redis_url is not None  # Settings refuses redis without a URL
        return RedisPinStore(redis_url, prefix, timeout, key=CANDIDATE_KEY, what="candidate")
    return FilePinStore(models_dir, CANDIDATE_FILE, what="candidate")
