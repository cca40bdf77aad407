"""A warm start on the tiny shop: a cold version, then a run on its log plus new users and products
that starts from its checkpoints (module fixture: two tiny pipelines, ~20 s)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine.loading import load_version
from core.manifest import CHECKPOINTS_DIR, load_manifest, verify_files
from training.config import PipelineConfig
from training.config_file import load_config
from training.pipeline import PipelineResult, load_data, run_pipeline
from training.warm.checkpoints import WarmStartError, open_version
from training.warm.start import open_warm_start, plan_warm_start, warm_config, warm_student, warm_teacher

TINY = Path(__file__).resolve().parents[3] / "configs" / "tiny.toml"
FAST = ["eval.peers=['popularity']", "distill.train_scratch=false"]


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PipelineResult, PipelineResult, Path]:
    root = tmp_path_factory.mktemp("warm")
    base = [f"models_dir={root / 'models'}", f"work_dir={root / 'work'}", *FAST]
    cold = run_pipeline(load_config(TINY, base), progress=False)
    assert cold is not None
    events = root / "events.csv"
    known = np.load(cold.version_dir / "items.npy").tolist()
    rows = [f"newbie,{item},{2_000_000_000 + i}" for i, item in enumerate([*known[:5], "sku-new"])]
    events.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    warm_sets = [*base, f"warm_start={cold.version_dir.name}", f"data.extra_paths=['{events}']"]
    warm = run_pipeline(load_config(TINY, warm_sets), progress=False)
    assert warm is not None
    return root, cold, warm, events


def _cfg(root: Path, events: Path, *more: str) -> PipelineConfig:
    return load_config(
        TINY,
        [
            f"models_dir={root / 'models'}",
            f"work_dir={root / 'work'}",
            *FAST,
            f"data.extra_paths=['{events}']",
            *more,
        ],
    )


def test_a_published_version_names_its_checkpoints_apart_from_the_files_the_service_reads(versions) -> None:
    _, cold, _, _ = versions
    manifest = load_manifest(cold.version_dir)
    assert set(manifest.checkpoints) == {"teacher", "student"}  # no scratch: train_scratch = false
    assert not any(name.startswith(f"{CHECKPOINTS_DIR}/") for name in manifest.files)
    for entry in manifest.checkpoints.values():
        assert (cold.version_dir / entry.file).stat().st_size == entry.bytes
    assert manifest.warm_start_from is None


def test_the_warm_version_records_its_start_and_serves(versions) -> None:
    _, cold, warm, _ = versions
    manifest = load_manifest(warm.version_dir)
    assert manifest.warm_start_from == cold.version_dir.name
    assert warm.warm is not None and (warm.warm.new_items, warm.warm.new_users) == (1, 1)
    verify_files(warm.version_dir, manifest)
    model = load_version(warm.version_dir, 1)  # the service loads it; it never opens a checkpoint
    assert model.n_items == manifest.dataset.n_items == cold.manifest.dataset.n_items + 1
    report = json.loads((warm.version_dir / "report.json").read_text())
    assert report["warm_start"]["from"] == cold.version_dir.name
    assert "Warm-started from" in (warm.version_dir / "report.md").read_text()


def test_warm_models_carry_every_old_row_to_its_new_index(versions) -> None:
    root, cold, _, events = versions
    cfg = _cfg(root, events)
    data, split = load_data(cfg)
    warm = plan_warm_start(open_version(Path(cfg.models_dir), cold.version_dir.name), data)
    assert warm.new_items == 1 and warm.new_users == 1
    old = torch.load(cold.version_dir / "checkpoints" / "student.pt", weights_only=True)["state_dict"]
    student = warm_student(warm, "student", data.catalog, cfg)
    assert student is not None
    old_ids = np.load(cold.version_dir / "items.npy").tolist()
    for new_index, item in [(0, data.catalog.item_ids[0]), (7, data.catalog.item_ids[7])]:
        assert torch.equal(student.item_emb.weight[new_index], old["item_emb.weight"][old_ids.index(item)])
    assert torch.equal(student.item_emb.weight[-1], old["item_emb.weight"][-1])  # the padding row
    teacher = warm_teacher(warm, split, data.catalog, cfg)
    assert teacher is not None and teacher.n_users == data.n_users
    old_t = torch.load(cold.version_dir / "checkpoints" / "teacher.pt", weights_only=True)["state_dict"]
    newbie = data.user_ids.tolist().index("newbie")
    assert torch.equal(
        teacher.user_emb.weight[newbie], old_t["user_emb.weight"][-1]
    )  # starts as the unknown user


def test_shrink_moves_each_warm_student_weight_that_share_back_to_its_fresh_initialisation(versions) -> None:
    root, cold, _, events = versions
    data, _ = load_data(_cfg(root, events))
    warm = plan_warm_start(open_version(root / "models", cold.version_dir.name), data)
    plain = warm_student(warm, "student", data.catalog, _cfg(root, events))
    shrunk = warm_student(warm, "student", data.catalog, _cfg(root, events, "warm.shrink=0.25"))
    assert plain is not None and shrunk is not None
    torch.manual_seed(_cfg(root, events).seed)  # the fresh initialisation warm_student draws
    fresh = type(plain)(data.catalog.n_items, _cfg(root, events).student).state_dict()
    for key, value in shrunk.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.25 * plain.state_dict()[key] + 0.75 * fresh[key])
    assert not torch.equal(shrunk.item_emb.weight, plain.item_emb.weight)


def test_a_checkpoint_of_another_shape_is_refused_with_what_changed(versions) -> None:
    root, cold, _, events = versions
    cfg = _cfg(root, events, "student.dim=16")
    data, _ = load_data(cfg)
    warm = plan_warm_start(open_version(Path(cfg.models_dir), cold.version_dir.name), data)
    with pytest.raises(WarmStartError, match=r"dim 8 -> 16.*warm_start=none"):
        warm_student(warm, "student", data.catalog, cfg)


def test_a_version_without_checkpoints_or_with_a_changed_one_is_refused(versions, tmp_path: Path) -> None:
    root, cold, _, _ = versions
    import shutil

    copy = tmp_path / "models" / "v"
    shutil.copytree(cold.version_dir, copy)
    with (copy / "checkpoints" / "student.pt").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(WarmStartError, match="does not match its sha256"):
        open_version(tmp_path / "models", "v")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["checkpoints"] = {}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WarmStartError, match="published without checkpoints"):
        open_version(tmp_path / "models", "v")
    with pytest.raises(WarmStartError, match="no published version"):
        open_version(tmp_path / "models", "nope")


def test_served_is_for_the_command_to_resolve_and_warm_settings_scale_each_stage(versions) -> None:
    root, _, _, events = versions
    cfg = _cfg(
        root, events, "warm_start=served", "warm.lr_scale=0.5", "warm.teacher_lr_scale=3", "warm.epochs=2",
        "warm.student_epochs=null",
    )  # fmt: skip
    data, _ = load_data(cfg)
    with pytest.raises(WarmStartError, match="recdistill retrain"):
        open_warm_start(cfg, data)
    warm = warm_config(cfg)
    assert (warm.teacher.lr, warm.student.lr) == (cfg.teacher.lr * 0.5 * 3, cfg.student.lr * 0.5)
    assert (warm.teacher.epochs, warm.student.epochs) == (2, 2)
    own = warm_config(_cfg(root, events, "warm.epochs=2", "warm.student_epochs=5", "warm.patience=2"))
    assert (own.teacher.epochs, own.student.epochs) == (2, min(5, cfg.student.epochs))
    assert (own.teacher.patience, own.student.patience) == (
        min(2, cfg.teacher.patience),
        min(2, cfg.student.patience),
    )
    assert open_warm_start(_cfg(root, events), data) is None  # warm_start = "none": cold


def test_a_warm_student_with_replay_takes_every_pair_its_version_never_trained_on(
    versions, monkeypatch
) -> None:
    from training.fit.examples import build_pairs
    from training.student import distill
    from training.warm import replay

    root, cold, _, events = versions
    cfg = warm_config(_cfg(root, events, "warm.replay=0.5", "warm.student_epochs=1"))
    data, split = load_data(cfg)
    warm = plan_warm_start(open_version(root / "models", cold.version_dir.name), data)
    seed_users = np.load(cold.version_dir / "seed_interactions.npz")["user"]
    old_users = np.load(cold.version_dir / "users.npy").tolist()
    newbie = data.user_ids.tolist().index("newbie")
    for user in (0, 5, newbie):
        known = data.user_ids[user] in old_users
        logged = int((seed_users == old_users.index(data.user_ids[user])).sum()) if known else 0
        assert warm.trained[user] == max(logged - 2, 0)
    drawn: list[np.ndarray] = []

    def spy(fresh: np.ndarray, share: float):
        drawn.append(fresh)
        assert share == 0.5
        return replay.replay_order(fresh, share)

    monkeypatch.setattr(distill, "replay_order", spy)
    student = warm_student(warm, "student", data.catalog, cfg)
    distill.fit_student(
        split, cfg, None, root / "replay-work", progress=False, init=student, trained=warm.trained
    )
    pairs = build_pairs(split, cfg.student.history_len)
    position = pairs.pos - split.train_indptr[pairs.user]
    assert drawn and np.array_equal(drawn[0], position >= warm.trained[pairs.user])
    assert drawn[0][pairs.user == newbie].all() and 0 < drawn[0].sum() < len(drawn[0])
