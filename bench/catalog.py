"""Publish a large synthetic model version for the service benchmarks, without training.

Latency and memory depend on the graphs' shapes (catalogue size, dims, layers), not on the
weights, so the benchmark exports freshly initialised teacher and student models of the real
architectures (training/teacher/two_tower.py, training/student/model.py, default configs) with the real exporter
(training/export/version.py) and publishes them atomically (training/export/publish.py). Training a 1M-item
teacher on this machine would take hours and measure nothing more.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.manifest import DatasetInfo, Manifest

log = logging.getLogger(__name__)

N_CATEGORIES = 50


@dataclass(frozen=True)
class Published:
    version_dir: Path
    seconds: float  # wall time to build, export and publish
    peak_rss_mb: float  # peak RSS of this (publishing) process so far
    student_parameters: int
    teacher_parameters: int


def publish_synthetic(
    models_dir: Path, n_items: int, n_users: int = 10_000, n_seed: int = 100_000, seed: int = 0
) -> Published:
    """Export untrained teacher + student over `n_items` random items and publish them as LATEST."""
    import torch  # the benchmark's publishing side only; the served app never imports torch

    from training.config import StudentConfig, TeacherConfig
    from training.export.publish import publish
    from training.export.version import export_side
    from training.student.model import MLPStudent, count_parameters
    from training.teacher.two_tower import TwoTowerTeacher

    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    category = rng.integers(0, N_CATEGORIES, n_items).astype(np.int32)
    price = rng.lognormal(3.0, 1.0, n_items).astype(np.float32)
    # Zipf-like popularity so the seeded histories look like a shop's.
    weights = 1.0 / np.arange(1, n_items + 1) ** 1.1
    seed_item = rng.choice(n_items, size=n_seed, p=weights / weights.sum()).astype(np.int64)
    seed_user = rng.integers(0, n_users, n_seed).astype(np.int64)
    seed_ts = np.arange(n_seed, dtype=np.int64)
    tcfg, scfg = TeacherConfig.model_validate({}), StudentConfig.model_validate({})  # the defaults
    teacher = TwoTowerTeacher(n_users, category, price, tcfg).eval()
    student = MLPStudent(n_items, scfg).eval()
    params = {"student": count_parameters(student), "teacher": count_parameters(teacher)}
    version = f"bench-{n_items}-{datetime.now(UTC):%Y%m%dT%H%M%S}"

    def build(stage: Path) -> Manifest:
        cards = {
            "student": export_side(student, "student", stage, opset=17, parameters=params["student"]),
            "teacher": export_side(teacher, "teacher", stage, opset=17, parameters=params["teacher"]),
        }
        np.save(stage / "items.npy", np.array([f"item{i}" for i in range(n_items)]), allow_pickle=False)
        np.save(stage / "users.npy", np.array([f"user{u}" for u in range(n_users)]), allow_pickle=False)
        np.save(stage / "item_category.npy", category, allow_pickle=False)
        (stage / "categories.json").write_text(json.dumps([f"cat{c}" for c in range(N_CATEGORIES)]))
        np.save(stage / "item_price.npy", price, allow_pickle=False)
        np.save(stage / "popularity.npy", np.bincount(seed_item, minlength=n_items).astype(np.float64))
        np.savez(stage / "seed_interactions.npz", user=seed_user, item=seed_item, timestamp=seed_ts)
        np.savez(stage / "holdout.npz", user=np.zeros(0, np.int64), item=np.zeros(0, np.int64))
        return Manifest(
            version=version,
            created_at=datetime.now(UTC),
            dataset=DatasetInfo(
                name=f"bench-synthetic-{n_items}",
                fingerprint=f"{seed:064d}",
                n_users=n_users,
                n_items=n_items,
                n_interactions=n_seed,
            ),
            config={"bench": "untrained teacher and student, default configs", "seed": seed},
            files={},
            student=cards["student"],
            teacher=cards["teacher"],
            seed_scope="log",  # the synthetic log is all seeded: nothing is held out of it
        )

    with torch.no_grad():
        version_dir = publish(Path(models_dir), version, build)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log.info("published %s (%d items) in %.1f s, peak RSS %.0f MB", version_dir, n_items, seconds, peak_mb)
    return Published(version_dir, seconds, peak_mb, params["student"], params["teacher"])
