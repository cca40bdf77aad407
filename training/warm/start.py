"""The warm-started models, and the settings a warm run trains them with.

Each model is built fresh over the new data (seeded: its new rows are the cold initialisation),
then every weight of the version's checkpoint is copied in: id tables through the merged id maps
(training/warm/remap.py), everything else as is. A checkpoint whose architecture differs from the
configured one (another `teacher.dim`, say) cannot be continued: WarmStartError says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import WARM_START_NONE, WARM_START_SERVED, PipelineConfig
from training.data.types import Catalog, Interactions, Split
from training.student.model import MLPStudent
from training.teacher.fit import teacher_for
from training.teacher.two_tower import TwoTowerTeacher
from training.warm.checkpoints import WarmSource, WarmStartError, open_version
from training.warm.remap import index_map, remap_item_table, remap_table
from training.warm.replay import trained_counts

log = logging.getLogger(__name__)

# The settings that shape a model's weights: a checkpoint continues only under the same ones.
TEACHER_SHAPE = (
    "dim",
    "history_len",
    "encoder",
    "n_layers",
    "n_heads",
    "use_user_id",
    "score",
    "tie_item_embeddings",
)
STUDENT_SHAPE = ("dim", "history_len", "hidden")
ITEM_TABLES = ("item_emb.weight", "out_item_emb.weight")


@dataclass
class WarmStart:
    """A version opened for a warm start, with the new data's ids mapped onto its own."""

    source: WarmSource
    item_map: np.ndarray  # int64 [n_items]: each new item index's index in the version, -1 new
    user_map: np.ndarray  # int64 [n_users]
    tag_initialised: dict[str, int] = field(default_factory=dict)  # role -> new items started from tags

    @cached_property
    def trained(self) -> np.ndarray:
        """int64 [n_users]: how many of each user's oldest interactions the version trained on
        (replay.py); read from the version's log the first time a replaying student asks."""
        return trained_counts(self.source, self.user_map)

    @property
    def new_items(self) -> int:
        return int((self.item_map < 0).sum())

    @property
    def new_users(self) -> int:
        return int((self.user_map < 0).sum())

    def summary(self) -> dict[str, Any]:
        """What the report and the manifest say about the start."""
        return {
            "from": self.source.version,
            "new_items": self.new_items,
            "new_users": self.new_users,
            "new_items_from_tags": dict(self.tag_initialised),
        }


def plan_warm_start(source: WarmSource, data: Interactions) -> WarmStart:
    """The version's id maps against the data's: which users and items are new."""
    warm = WarmStart(
        source, index_map(source.item_ids, data.catalog.item_ids), index_map(source.user_ids, data.user_ids)
    )
    log.info(
        "warm start from %s: %d of %d items and %d of %d users are new",
        source.version, warm.new_items, data.n_items, warm.new_users, data.n_users,
    )  # fmt: skip
    return warm


def warm_config(cfg: PipelineConfig) -> PipelineConfig:
    """cfg for a warm run's stages: each model's lr scaled, its epochs and patience capped (`warm`)."""
    out = cfg.model_copy(deep=True)
    w = cfg.warm
    for stage, epochs, scale in (
        (out.teacher, w.epochs, w.lr_scale * w.teacher_lr_scale),
        (out.student, w.student_epochs or w.epochs, w.lr_scale),
    ):
        stage.lr = stage.lr * scale
        stage.epochs = min(stage.epochs, epochs)
        stage.patience = min(stage.patience, w.patience)
    return out


def _check_shape(role: str, saved: dict, configured: dict, keys: tuple[str, ...], version: str) -> None:
    differ = [f"{k} {saved.get(k)!r} -> {configured[k]!r}" for k in keys if saved.get(k) != configured[k]]
    if differ:
        raise WarmStartError(
            f"warm_start {version!r}: the {role} was trained with other settings ({', '.join(differ)}); "
            "its weights cannot be continued: train cold (--set warm_start=none)"
        )


def _copy_rest(role: str, old: dict, new: dict, done: set[str], version: str) -> None:
    for key, value in old.items():
        if key in done:
            continue
        if key not in new or new[key].shape != value.shape:
            raise WarmStartError(
                f"warm_start {version!r}: the {role}'s {key} does not fit the configured model"
            )
        new[key] = value


def warm_teacher(
    warm: WarmStart, split: Split, catalog: Catalog, cfg: PipelineConfig
) -> TwoTowerTeacher | None:
    """Our teacher over the new data, from the version's teacher; None when the version has none."""
    payload = warm.source.load("teacher")
    if payload is None:
        return None
    _check_shape(
        "teacher", payload["config"], cfg.teacher.model_dump(mode="json"), TEACHER_SHAPE, warm.source.version
    )
    torch.manual_seed(cfg.seed)
    model = teacher_for(split, catalog, cfg.teacher)
    old, new = payload["state_dict"], model.state_dict()
    done = set()
    for key in ITEM_TABLES:
        if key in old:
            new[key], warm.tag_initialised["teacher"] = remap_item_table(
                old[key], warm.item_map, new[key], catalog
            )
            done.add(key)
    if "user_emb.weight" in old:  # a new user starts as the unknown-user row the teacher trained
        fresh = new["user_emb.weight"].clone()
        fresh[torch.from_numpy(np.flatnonzero(warm.user_map < 0))] = old["user_emb.weight"][-1]
        new["user_emb.weight"] = remap_table(old["user_emb.weight"], warm.user_map, fresh)
        done.add("user_emb.weight")
    for key, names, now in (
        ("cat_emb.weight", payload.get("categories", []), catalog.categories),
        ("attr_emb.weight", payload.get("attributes", []), catalog.attributes),
    ):
        new[key] = remap_table(
            old[key], index_map(np.array(names, dtype=str), np.array(now, dtype=str)), new[key]
        )
        done.add(key)
    _copy_rest("teacher", old, new, done, warm.source.version)
    model.load_state_dict(new)
    return model


def warm_student(warm: WarmStart, role: str, catalog: Catalog, cfg: PipelineConfig) -> MLPStudent | None:
    """A student ("student" or "scratch") over the new catalog from the version's; None when it has none.

    The version's score bias (its popularity calibration) is not carried: the warm run calibrates again.
    """
    payload = warm.source.load(role)
    if payload is None:
        return None
    _check_shape(
        role, payload["config"], cfg.student.model_dump(mode="json"), STUDENT_SHAPE, warm.source.version
    )
    torch.manual_seed(cfg.seed)
    model = MLPStudent(catalog.n_items, cfg.student)
    old, new = payload["state_dict"], model.state_dict()
    new["item_emb.weight"], warm.tag_initialised[role] = remap_item_table(
        old["item_emb.weight"], warm.item_map, new["item_emb.weight"], catalog
    )
    _copy_rest(role, old, new, {"item_emb.weight"}, warm.source.version)
    model.load_state_dict(shrunk_toward_fresh(new, model.state_dict(), cfg.warm.shrink))
    return model


def shrunk_toward_fresh(
    warm: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor], shrink: float
) -> dict[str, torch.Tensor]:
    """Each float weight as `shrink * warm + (1 - shrink) * fresh` (its seeded fresh initialisation).

    Shrink and perturb (Ash & Adams, "On Warm-Starting Neural Network Training", NeurIPS 2020): a
    network continued from its own weights generalises worse than one trained afresh on the same data;
    moving the weights part of the way back towards an initialisation keeps what they learnt and
    restores what fresh training has. shrink = 1 is the plain warm start."""
    if shrink >= 1.0:
        return warm
    return {
        key: shrink * value + (1.0 - shrink) * fresh[key] if value.is_floating_point() else value
        for key, value in warm.items()
    }


def open_warm_start(cfg: PipelineConfig, data: Interactions) -> WarmStart | None:
    """The version `cfg.warm_start` names under `cfg.models_dir`, mapped onto `data`; None: cold."""
    if cfg.warm_start == WARM_START_NONE:
        return None
    if cfg.warm_start == WARM_START_SERVED:
        raise WarmStartError(
            "warm_start = 'served' names the version the service serves: run `recdistill pipeline` or "
            "`recdistill retrain`, which read the pin where the service keeps it, or name the version"
        )
    return plan_warm_start(open_version(Path(cfg.models_dir), cfg.warm_start), data)
