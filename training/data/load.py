"""The configured interactions: the only module that knows the sources (`data.source`).

A file (CSV/TSV/Parquet, streamed), MovieLens-100k from the cache, or the built-in synthetic shop,
then every `data.extra_paths` log appended. Each source module returns `Interactions` through
training/data/indexing.py, so what comes out is numbered the same way whichever it was.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from training.data.movielens import load_ml100k
from training.data.stream import append_files, stream_interactions
from training.data.synthetic import generate_synthetic
from training.data.tabular import read_items
from training.data.types import DataError, Interactions

if TYPE_CHECKING:
    from training.config import DataConfig


logger = logging.getLogger(__name__)


def _require_files(cfg: DataConfig) -> None:
    """DataError naming the missing file and the config key that named it, before anything is read."""
    if cfg.source == "file" and cfg.path is None:
        raise DataError("data.path is required when data.source = 'file'")
    named = [("data.path", cfg.path), ("data.items_path", cfg.items_path)] if cfg.source == "file" else []
    named += [(f"data.extra_paths[{i}]", path) for i, path in enumerate(cfg.extra_paths)]
    for key, path in named:
        if path is not None and not Path(path).is_file():
            relative = "" if Path(path).is_absolute() else f", relative to {Path.cwd()}"
            raise DataError(f"no such file (named by {key}{relative})", file=str(path))


def load_interactions(cfg: DataConfig, *, seed: int = 0) -> Interactions:
    """The configured source, then every `cfg.extra_paths` log appended in order.

    Files (the source and every extra log) are streamed `cfg.chunk_rows` rows at a time with
    `cfg.event_weights` applied, so small and large files take the same path (training/data/stream.py).
    `seed` is the pipeline seed; it is added to `cfg.synthetic.seed` so that the defaults (both 0)
    reproduce `generate_synthetic(cfg.synthetic)` exactly. File sources ignore it.
    """
    # Imported here: the loaders import DataError and RawLog from this module.
    _require_files(cfg)
    if cfg.source == "file":
        items = (
            read_items(cfg.items_path, cfg.item_columns, cfg.attribute_separator)
            if cfg.items_path is not None
            else None
        )
        log = stream_interactions(
            Path(cfg.path).stem,
            cfg.path,
            cfg.columns,
            items=items,
            extra_paths=cfg.extra_paths,
            chunk_rows=cfg.chunk_rows,
            event_weights=cfg.event_weights,
        )
    else:
        if cfg.source == "synthetic":
            synthetic = cfg.synthetic.model_copy(update={"seed": cfg.synthetic.seed + seed})
            log = generate_synthetic(synthetic)
        elif cfg.source == "ml-100k":
            log = load_ml100k(cfg.cache_dir)
        else:  # pragma: no cover - DataConfig's Literal rules this out
            raise DataError(f"unknown data.source {cfg.source!r}")
        if cfg.extra_paths:
            log = append_files(
                log, cfg.extra_paths, cfg.columns, chunk_rows=cfg.chunk_rows, event_weights=cfg.event_weights
            )
    logger.info(
        "loaded %s: %d users, %d items, %d interactions", log.name, log.n_users, log.n_items, len(log)
    )
    return log
