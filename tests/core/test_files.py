"""core.files.open_atomic: readers see the old file or the whole new one, never half of it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.files import open_atomic
from core.manifest import read_latest, write_latest


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "events.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), open_atomic(target, "w") as fh:
        fh.write("half of the new")
        raise RuntimeError("disk gone")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.csv"]


def test_a_clean_write_replaces_the_file_readable_by_other_users(tmp_path: Path) -> None:
    target = tmp_path / "LATEST"
    write_latest(tmp_path, "v1")
    write_latest(tmp_path, "v2")
    assert read_latest(tmp_path) == "v2"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # the serving image runs as another user
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST"]


def test_sha256_file_known_answer(tmp_path: Path) -> None:
    from core.files import sha256_file

    (tmp_path / "abc").write_bytes(b"abc")
    assert sha256_file(tmp_path / "abc", chunk=2) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 test vector
    )
