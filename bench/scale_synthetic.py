"""The version bench.scale measures when no `--version-dir` is given: an untrained synthetic
catalogue (bench/catalog.py) and a copy of it with an ANN index built by the exporter's own step
(training/export/ann.py); with `--pipeline`, the real pipeline first runs at that size.

Also the student's user vectors from a version's exported user graph, which the index is tuned on
and bench/scale.py's float32 reference is computed from.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import request_bodies

log = logging.getLogger(__name__)


def student_user_vectors(
    version_dir: Path, histories: list[list[int]], history_len: int, pad: int
) -> np.ndarray:
    """The student's user vectors for index histories, from its exported user graph (onnxruntime)."""
    import onnxruntime as ort

    from core.manifest import HISTORY_INPUT, USER_VECTOR_OUTPUT, load_manifest

    manifest = load_manifest(version_dir)
    sess = ort.InferenceSession(
        str(version_dir / manifest.student.user.file), providers=["CPUExecutionProvider"]
    )
    rows = np.full((len(histories), history_len), pad, np.int64)
    for r, hist in enumerate(histories):
        tail = hist[-history_len:]
        rows[r, history_len - len(tail) :] = tail
    out = [
        sess.run([USER_VECTOR_OUTPUT], {HISTORY_INPUT: rows[s : s + 1024]})[0]
        for s in range(0, len(rows), 1024)
    ]
    return np.concatenate(out)


def publish_ann_copy(exact_dir: Path, models_dir: Path, args: argparse.Namespace) -> tuple[Path, float]:
    """Publish `exact_dir`'s artifacts (hard links) plus an ANN index as a new version in models_dir."""
    from core.manifest import load_manifest
    from training.export.ann import build_retrieval
    from training.export.publish import publish

    manifest = load_manifest(exact_dir)
    items = np.load(exact_dir / manifest.student.item_vectors, allow_pickle=False)
    bodies = request_bodies(exact_dir, args.recall_users + args.recall_users // 2, seed=args.seed + 1)
    index = {
        str(x): i for i, x in enumerate(np.load(exact_dir / manifest.item_ids, allow_pickle=False).tolist())
    }
    histories = [[index[x] for x in b["history"]] for b in bodies]
    queries = student_user_vectors(
        exact_dir, histories, manifest.student.history_len, manifest.student.padding_value
    )

    def build(stage: Path) -> Any:
        for name in manifest.files:
            try:
                os.link(exact_dir / name, stage / name)
            except OSError:
                shutil.copy2(exact_dir / name, stage / name)
        retrieval = build_retrieval(
            stage,
            items,
            queries[: args.recall_users],
            queries[args.recall_users :],
            kind=args.kind,
            hnsw_m=args.hnsw_m,
            ef_construction=args.ef_construction,
            threads=args.build_threads,
            seed=args.seed,
        )
        return manifest.model_copy(update={"retrieval": retrieval, "created_at": datetime.now(UTC)})

    start = time.perf_counter()
    version_dir = publish(models_dir, f"{manifest.version}-{args.kind}", build)
    return version_dir, time.perf_counter() - start


def run_pipeline_at_scale(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The real offline job on a synthetic shop of args.items items, trained briefly, with an index."""
    from training.config_file import load_config
    from training.pipeline import run_pipeline

    overrides = [
        f"models_dir={work / 'models-pipeline'}",
        f"work_dir={work / 'work-pipeline'}",
        f"data.synthetic.n_items={args.items}",
        f"data.synthetic.n_users={args.pipeline_users}",
        f"data.synthetic.n_interactions={args.pipeline_interactions}",
        f"teacher.max_train_seconds={args.train_seconds}",
        f"student.max_train_seconds={args.train_seconds}",
        "teacher.epochs=1",
        "student.epochs=1",
        "distill.train_scratch=false",
        f"export.retrieval={args.kind}",
        f"export.hnsw_m={args.hnsw_m}",
        f"export.ef_construction={args.ef_construction}",
        f"export.ann_threads={args.build_threads}",
        *args.set,
    ]
    cfg = load_config(Path("configs/synthetic.toml"), overrides)
    start = time.perf_counter()
    result = run_pipeline(cfg, progress=False)
    if result is None:  # only a non-main distributed rank returns nothing; this runs in one process
        raise RuntimeError("the pipeline published nothing")
    return {
        "seconds": time.perf_counter() - start,
        "stages": result.seconds,
        "version": result.version_dir.name,
        "retrieval": result.manifest.retrieval.model_dump(mode="json"),
        "overrides": overrides,
    }


def synthetic_version(work: Path, args: argparse.Namespace, payload: dict[str, Any]) -> Path:
    """Publish the untrained catalogue and its ANN copy; the copy (same artifacts plus the index) is
    then measured on both paths like any other version."""
    from bench.catalog import publish_synthetic

    if args.pipeline:
        log.info("pipeline at %d items", args.items)
        payload["pipeline"] = run_pipeline_at_scale(work, args)
    published = publish_synthetic(work / "models-exact", args.items, seed=args.seed)
    ann_dir, ann_seconds = publish_ann_copy(published.version_dir, work / "models-ann", args)
    payload["publish_seconds"] = {"exact": published.seconds, "ann": ann_seconds}
    return ann_dir
