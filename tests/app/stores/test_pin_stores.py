"""The pin stores: the models/PINNED file and the Redis key pass the same contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.stores.pins import (
    CANDIDATE_FILE,
    PIN_FILE,
    FilePinStore,
    Pin,
    PinError,
    PinStore,
    PinUnreadable,
    RedisPinStore,
    open_candidate_marks,
)
from tests.redis_server import redis_server


class PinStoreContract:
    """Every PinStore: empty, set, overwrite, clear; a stored pin that is not one is refused."""

    def corrupt(self, store: PinStore, raw: bytes) -> None:
        raise NotImplementedError

    def test_round_trip(self, store: PinStore) -> None:
        assert store.get() is None
        store.set(Pin("v1", "2026-12-01T10:00:00+00:00", "cli"))
        assert store.get() == Pin("v1", "2026-12-01T10:00:00+00:00", "cli")
        store.set(Pin.now("v2", "admin"))
        pin = store.get()
        assert pin is not None and (pin.version, pin.source) == ("v2", "admin")
        store.clear()
        assert store.get() is None
        store.clear()  # clearing twice is fine

    @pytest.mark.parametrize(
        "raw", [b"not json", b'{"nope": 1}', b'{"version": "../etc"}', b"[1, 2]", b"\xff\xfe"]
    )
    def test_garbage_is_unreadable_not_empty(self, store: PinStore, raw: bytes) -> None:
        self.corrupt(store, raw)
        with pytest.raises(PinUnreadable):
            store.get()


class TestFilePins(PinStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> FilePinStore:
        return FilePinStore(tmp_path)

    def corrupt(self, store: PinStore, raw: bytes) -> None:
        assert isinstance(store, FilePinStore)
        store.path.write_bytes(raw)

    def test_the_file_sits_beside_latest(self, tmp_path: Path) -> None:
        FilePinStore(tmp_path).set(Pin.now("v1", "cli"))
        assert (tmp_path / PIN_FILE).is_file()


class TestRedisPins(PinStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[RedisPinStore]:
        with redis_server(tmp_path / "redis") as url:
            yield RedisPinStore(url, "t:")

    def corrupt(self, store: PinStore, raw: bytes) -> None:
        assert isinstance(store, RedisPinStore)
        store._r.set(store.key, raw.decode(errors="replace"))

    def test_redis_down_is_unreadable_not_no_pin(self, tmp_path: Path) -> None:
        with redis_server(tmp_path / "redis") as url:
            store = RedisPinStore(url, "t:", timeout=1.0)
            store.set(Pin.now("v1", "cli"))
        with pytest.raises(PinUnreadable, match="t:models:pinned"):  # the server is gone
            store.get()
        with pytest.raises(PinError, match="cannot write the pin"):
            store.set(Pin.now("v2", "cli"))


class TestCandidateMarks(PinStoreContract):
    """The admin-set candidate is kept by the same stores under its own file and key."""

    @pytest.fixture(params=["sqlite", "redis"])
    def store(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PinStore]:
        if request.param == "sqlite":
            yield open_candidate_marks(tmp_path, "sqlite", None, "t:")
            return
        with redis_server(tmp_path / "redis") as url:
            yield open_candidate_marks(tmp_path, "redis", url, "t:")

    def corrupt(self, store: PinStore, raw: bytes) -> None:
        if isinstance(store, FilePinStore):
            store.path.write_bytes(raw)
        else:
            assert isinstance(store, RedisPinStore)
            store._r.set(store.key, raw.decode(errors="replace"))

    def test_the_candidate_never_touches_the_pin(self, store: PinStore, tmp_path: Path) -> None:
        store.set(Pin.now("v2", "admin"))
        assert store.where.endswith(CANDIDATE_FILE) or store.where.endswith("t:models:candidate")
        assert not (tmp_path / PIN_FILE).exists()
        self.corrupt(store, b"nope")
        with pytest.raises(PinUnreadable, match="not a candidate"):
            store.get()
