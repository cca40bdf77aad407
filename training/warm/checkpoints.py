"""What a version carries for the next run to continue from, and reading it back checked.

Every version the pipeline publishes keeps, under `checkpoints/`, the weights of the models it
trained: `teacher.pt` (ours only: an imported teacher is imported again), `student.pt` and
`scratch.pt` when trained. The manifest names each with its sha256 in `checkpoints`, apart from
`files`: the service never reads, hashes or ships them (it never imports torch), and the serving
image does not grow (models are a volume). The teacher's checkpoint also keeps the category and
attribute vocabularies its tables index, so a later run can map those rows by name; the item and
user ids are the version's own `items.npy` and `users.npy`.

Optimiser state is not kept: the weights kept are the best epoch's (or their moving average), which
no optimiser state belongs to, and Adam re-estimates its moments within the first epoch of a warm run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from core.files import open_atomic, sha256_file
from core.manifest import CHECKPOINTS_DIR, Checkpoint, Manifest, ManifestError, file_entry, load_manifest
from training.data.types import Catalog
from training.student.model import student_checkpoint
from training.teacher.two_tower import TwoTowerTeacher, teacher_checkpoint
from training.trained import Trained


class WarmStartError(UserError, ValueError):
    """A version that cannot be warm-started from; the message says which and what to do instead."""


def _save(payload: dict, path: Path) -> Checkpoint:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_atomic(path, "wb") as fh:
        torch.save(payload, fh)
    entry = file_entry(path)
    return Checkpoint(file=f"{CHECKPOINTS_DIR}/{path.name}", sha256=entry.sha256, bytes=entry.bytes)


def write_checkpoints(stage: Path, trained: Trained, catalog: Catalog) -> dict[str, Checkpoint]:
    """The trained models' checkpoints under `stage/checkpoints/`, for the manifest's `checkpoints`."""
    folder = Path(stage) / CHECKPOINTS_DIR
    out = {}
    if isinstance(trained.teacher, TwoTowerTeacher):  # ours; an imported teacher is imported again
        payload = teacher_checkpoint(trained.teacher, catalog.category, catalog.price)
        payload["categories"] = list(catalog.categories)
        payload["attributes"] = list(catalog.attributes)
        out["teacher"] = _save(payload, folder / "teacher.pt")
    out["student"] = _save(student_checkpoint(trained.student), folder / "student.pt")
    if trained.scratch is not None:
        out["scratch"] = _save(student_checkpoint(trained.scratch), folder / "scratch.pt")
    return out


@dataclass(frozen=True)
class WarmSource:
    """A published version opened for a warm start: its id maps and its verified checkpoints."""

    version: str
    path: Path
    manifest: Manifest
    item_ids: np.ndarray  # str [n_items]: the version's item index -> raw id
    user_ids: np.ndarray  # str [n_users]
    checkpoints: dict[str, Path]  # role -> verified file

    def load(self, role: str) -> dict | None:
        """The checkpoint payload of `role` ("teacher", "student", "scratch"), None when the version has none."""
        path = self.checkpoints.get(role)
        return None if path is None else torch.load(path, map_location="cpu", weights_only=True)


def open_version(models_dir: Path, version: str) -> WarmSource:
    """`models_dir/version` with its id maps, every checkpoint checked against its sha256.

    WarmStartError when the version is missing, unreadable, published without checkpoints (before
    warm starts existed) or a checkpoint does not match the manifest: the run should not start from
    weights nobody can vouch for.
    """
    path = Path(models_dir) / version
    cold = "train cold instead (--set warm_start=none)"
    if not (path / "manifest.json").is_file():
        raise WarmStartError(f"warm_start {version!r}: no published version at {path}; {cold}")
    try:
        manifest = load_manifest(path)
    except ManifestError as exc:
        raise WarmStartError(f"warm_start {version!r}: {exc}") from exc
    if not manifest.checkpoints:
        raise WarmStartError(f"warm_start {version!r}: {path} was published without checkpoints; {cold}")
    files = {}
    for role, entry in manifest.checkpoints.items():
        file = path / entry.file
        if not file.is_file() or sha256_file(file) != entry.sha256:
            raise WarmStartError(
                f"warm_start {version!r}: {file} is missing or does not match its sha256; {cold}"
            )
        files[role] = file
    ids = {}
    for name in (manifest.item_ids, manifest.user_ids):
        try:
            ids[name] = np.load(path / name, allow_pickle=False).astype(str)
        except (OSError, ValueError) as exc:
            raise WarmStartError(f"warm_start {version!r}: {path / name}: {exc}") from exc
    return WarmSource(version, path, manifest, ids[manifest.item_ids], ids[manifest.user_ids], files)
