"""training/export/publish.py: a version staged, verified against its manifest and renamed whole, or nothing published."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from core.manifest import (
    DatasetInfo,
    Manifest,
    ManifestError,
    load_manifest,
    read_latest,
    verify_files,
    write_latest,
)
from tests.fixtures.export_stubs import N_ITEMS, N_USERS, stub_models
from training.export import graphs, publish, version


def _manifest(stage: Path, student: nn.Module, teacher: nn.Module) -> Manifest:
    s = version.export_side(student, "student", stage, opset=17, parameters=1)
    t = version.export_side(teacher, "teacher", stage, opset=17, parameters=2)
    np.save(stage / "items.npy", np.array([f"i{i}" for i in range(N_ITEMS)]))
    np.save(stage / "users.npy", np.array([f"u{i}" for i in range(N_USERS)]))
    np.save(stage / "item_category.npy", np.zeros(N_ITEMS, np.int32))
    (stage / "categories.json").write_text(json.dumps(["c"]))
    np.save(stage / "item_price.npy", np.ones(N_ITEMS, np.float32))
    np.save(stage / "popularity.npy", np.ones(N_ITEMS))
    np.savez(
        stage / "seed_interactions.npz",
        user=np.zeros(1, np.int64),
        item=np.zeros(1, np.int64),
        timestamp=np.zeros(1, np.int64),
    )
    np.savez(stage / "holdout.npz", user=np.zeros(1, np.int64), item=np.zeros(1, np.int64))
    return Manifest(
        version="placeholder",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        dataset=DatasetInfo(name="stub", fingerprint="f", n_users=N_USERS, n_items=N_ITEMS, n_interactions=1),
        config={},
        files={},
        student=s,
        teacher=t,
    )


def test_new_version_sorts_by_time() -> None:
    early = publish.new_version("fp", "{}", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = publish.new_version("fp", "{}", datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert early.startswith("20260102T030405Z-") and len(early) == len("20260102T030405Z-") + 8
    assert early < late


def test_publish_writes_a_verified_version_and_latest(tmp_path: Path) -> None:
    student, teacher = stub_models()
    final = publish.publish(tmp_path, "v1", lambda stage: _manifest(stage, student, teacher))
    assert final == tmp_path / "v1" and read_latest(tmp_path) == "v1"
    manifest = load_manifest(final)
    verify_files(final, manifest)
    assert manifest.version == "v1"
    assert {"student_topk.onnx", "teacher_user.onnx", "holdout.npz"} <= set(manifest.files)
    assert not list(tmp_path.glob(".staging-*"))
    with pytest.raises(publish.PublishError, match="already exists"):
        publish.publish(tmp_path, "v1", lambda stage: _manifest(stage, student, teacher))


def test_failed_parity_publishes_nothing_and_keeps_latest(tmp_path: Path) -> None:
    student, teacher = stub_models()
    publish.publish(tmp_path, "v1", lambda stage: _manifest(stage, student, teacher))
    before = sorted(p.name for p in tmp_path.iterdir())

    def build_and_fail(stage: Path) -> Manifest:
        _manifest(stage, student, teacher)  # everything staged, then the check fails
        raise graphs.ParityError("forced")

    with pytest.raises(graphs.ParityError):
        publish.publish(tmp_path, "v2", build_and_fail)
    assert read_latest(tmp_path) == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no v2, no .staging-v2


def test_a_staged_file_that_changes_after_listing_is_refused(tmp_path: Path, monkeypatch) -> None:
    """verify_files runs on the staged version before the rename: a corrupt stage never goes live."""
    student, teacher = stub_models()
    write_latest(tmp_path, "v0")
    real_list = publish.list_files

    def list_then_corrupt(folder: Path):
        entries = real_list(folder)
        (folder / "popularity.npy").write_bytes(b"corrupt")
        return entries

    monkeypatch.setattr(publish, "list_files", list_then_corrupt)
    with pytest.raises(ManifestError, match="popularity.npy"):
        publish.publish(tmp_path, "v1", lambda stage: _manifest(stage, student, teacher))
    assert read_latest(tmp_path) == "v0" and not (tmp_path / "v1").exists()
    assert not list(tmp_path.glob(".staging-*"))
