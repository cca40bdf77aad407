"""The Redis client as the Redis-backed stores use it: optional import, a pinged connection, and URLs
with the password left out of every message."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from core.errors import UserError


class RedisUnavailable(UserError, RuntimeError):
    """Redis cannot be reached or the client is missing; the message names the URL (no password)."""


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def import_redis(url: str) -> Any:
    try:
        import redis
    except ImportError as exc:
        raise RedisUnavailable(
            f"{redact(url)}: the redis client is not installed (pip install 'recdistill[redis]')"
        ) from exc
    return redis


def sync_client(url: str, timeout: float) -> Any:
    """A pinged sync client; RedisUnavailable when the server does not answer."""
    redis = import_redis(url)
    client = redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RedisUnavailable(f"{redact(url)}: cannot reach redis: {exc}") from exc
    return client
