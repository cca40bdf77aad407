"""Every version of one seed ranked on day 1's holdout, the same users and queries for all.

Each version's student is run as served (its ONNX user graph and item vectors,
training/evaluate/served.py): day 0's (what served on day 1, and its refit twin), the warm and the
cold day-1 retrains, and each warm retrain of the chain. An item a version does not know is its
miss. For the products new on day 1 (first bought among the events): how many of them appear in
any test user's top 10 (their coverage in answers), how many answers hold one, and HR@10 on the
users whose test item is one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.retrain.days import Days
from training.config import PipelineConfig
from training.data.types import Interactions, Split
from training.evaluate.ranking import rank_targets, summarize
from training.evaluate.served import served_score_fn
from training.warm.remap import index_map

K = 10


def day1_data(days: Days) -> tuple[PipelineConfig, Interactions, Split]:
    """Day 1 as every retrain of the seed loads it (day 0 + the events, the whole item file)."""
    from training.config_file import load_config
    from training.pipeline import load_data

    sets = [
        "data.source=file",
        f"data.path={days.day0_log}",
        f"data.items_path={days.items}",
        f"data.extra_paths=['{days.events}']",
    ]
    cfg = load_config(Path("configs/shop.toml"), sets)
    data, split = load_data(cfg)
    return cfg, data, split


def new_items(data: Interactions, day0_version: Path) -> np.ndarray:
    """int64: day 1's item indices that day 0's version does not know."""
    known = np.load(day0_version / "items.npy", allow_pickle=False).astype(str)
    return np.flatnonzero(index_map(known, data.catalog.item_ids) < 0)


def rank_version(
    version_dir: Path, cfg: PipelineConfig, data: Interactions, split: Split, new: np.ndarray
) -> dict[str, Any]:
    """The version's student on day 1's holdout: metrics, and what it does with the new products."""
    score, history_len = served_score_fn(version_dir, data.catalog.item_ids)
    e = cfg.eval
    ranks, top = rank_targets(score, split, "test", history_len, K, e.batch_size, e.test_history)
    metrics = summarize(ranks, top, split.n_items, K, e.recall_k)
    is_new = np.zeros(split.n_items, dtype=bool)
    is_new[new] = True
    new_target = is_new[split.test_items]
    return {
        "version": version_dir.name,
        "student": {k: v for k, v in metrics.items() if k != "users"},
        "users": int(metrics["users"]),
        "new_products": {
            "items": int(len(new)),
            "in_some_top10": int(len(np.intersect1d(np.unique(top), new))),
            "answers_with_one": int(is_new[top].any(axis=1).sum()),
            "test_users_buying_one": int(new_target.sum()),
            "hr@10_on_those": float(np.mean(ranks[new_target] < K)) if new_target.any() else None,
        },
    }


def measure_seed(days: Days, folder: Path, steps: dict[str, dict[str, Any]], day1: tuple) -> dict[str, Any]:
    """Each published step's version ranked on day 1 (`day1`: day1_data's result, loaded once per log)."""
    cfg, data, split = day1
    day0 = steps.get("day0", {})
    if not day0.get("version"):
        return {}
    models = {"refit": folder / "models-refit"}
    new = new_items(data, folder / "models" / day0["version"])
    out = {}
    for name, step in steps.items():
        if step.get("version"):
            out[name] = rank_version(
                models.get(name, folder / "models") / step["version"], cfg, data, split, new
            )
    return out
