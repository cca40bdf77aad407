"""The import's look at quality: a seeded sample of validation users ranked by the teacher and by
popularity, in seconds, before anything trains.

A wrong id mapping passes every shape check: `item_ids` sorted while the rows stay in the model's
order, or a module's own 1-based ids read against 0-based rows, import as "ok" and then distil a
student from noise. It shows here as a teacher no better than popularity, so the import says so
loudly, with both figures, instead of a student that quietly learns nothing. The sample is ranked
as the validation stage ranks (training/evaluate/ranking.py: history = train items, target = the
validation item, train items excluded), over the whole catalogue.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from training.config import PipelineConfig
from training.data.split import leave_last_out, validation_split
from training.data.types import Interactions
from training.evaluate.ranking import ndcg_gains, rank_targets
from training.evaluate.scoring import popularity_score_fn, teacher_score_fn

log = logging.getLogger(__name__)

SAMPLE_USERS = 2000  # enough to tell a mapped teacher from a shuffled one; seconds on a 12k catalogue
CLEAR_MARGIN_SE = 2.0  # "clearly above": the mean paired difference beyond two standard errors


def sample_quality(teacher: Any, data: Interactions, cfg: PipelineConfig) -> dict[str, Any]:
    """NDCG@k of the teacher and of popularity on the same sampled validation users, and whether the
    teacher is clearly above (the paired per-user difference's mean > 2 standard errors)."""
    split = leave_last_out(data, cfg.data.min_interactions)
    sample = validation_split(split, SAMPLE_USERS, cfg.seed)
    k, n = cfg.eval.k, len(sample.valid_users)
    if n == 0:
        return {"users": 0, "k": k, "clearly_above": None}
    ranks, _ = rank_targets(teacher_score_fn(teacher), sample, "valid", teacher.history_len, k)
    pop_ranks, _ = rank_targets(popularity_score_fn(split.item_popularity()), sample, "valid", 1, k)
    ours, pop = ndcg_gains(ranks, k), ndcg_gains(pop_ranks, k)
    diff = ours - pop
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {
        "users": n,
        "k": k,
        "teacher_ndcg": float(ours.mean()),
        "popularity_ndcg": float(pop.mean()),
        "difference_se": se,
        "clearly_above": bool(diff.mean() > CLEAR_MARGIN_SE * se and diff.mean() > 0),
    }


def quality_line(q: dict[str, Any]) -> str:
    """The sample's figures on one line (the import's report)."""
    if not q.get("users"):
        return "sample: no validation users to score (every user has fewer than data.min_interactions)"
    verdict = "clearly above" if q["clearly_above"] else "NOT clearly above"
    return (
        f"sample of {q['users']} validation users: NDCG@{q['k']} teacher {q['teacher_ndcg']:.4f}, "
        f"popularity {q['popularity_ndcg']:.4f}; {verdict} (difference "
        f"{q['teacher_ndcg'] - q['popularity_ndcg']:+.4f}, standard error {q['difference_se']:.4f})"
    )


def quality_warning(q: dict[str, Any]) -> str | None:
    """The loud warning when the teacher is not clearly above popularity, else None."""
    if q.get("clearly_above") is not False:
        return None
    return (
        f"WARNING: the teacher is not clearly above popularity on {q['users']} sampled validation users "
        f"(NDCG@{q['k']} teacher {q['teacher_ndcg']:.4f}, popularity {q['popularity_ndcg']:.4f}, "
        f"standard error of the difference {q['difference_se']:.4f}): a student distilled from "
        "it is unlikely to beat popularity. Most often the id mapping is wrong: item_ids must name the item of each row of "
        "the item matrix, in row order, and the history holds those rows (docs/own-teacher.md)"
    )


def log_quality(q: dict[str, Any]) -> None:
    """The sample's figures in the log; the warning as a WARNING."""
    log.info("teacher import: %s", quality_line(q))
    if (warning := quality_warning(q)) is not None:
        log.warning("%s", warning)
