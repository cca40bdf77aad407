"""Every model ranked the same way on the test users: the teacher, the students, the soft labels'
source and the classic peers (popularity, tuned ALS), with their agreement with the teacher.

Each is ranked over the whole catalog by training.evaluate.ranking.evaluate with the same test query
and exclusions, so the report compares like with like. The agreement uses core.agreement, the
functions the service's shadow report uses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from core.agreement import agreement
from training.config import PipelineConfig
from training.data.split import validation_split
from training.data.types import Interactions, Split
from training.evaluate.peers import TunedPeer, als_peer, implicit_missing
from training.evaluate.ranking import ScoreFn, TestHistory, evaluate, padded_histories
from training.evaluate.scoring import popularity_score_fn, student_score_fn, teacher_score_fn
from training.teacher.ensemble import TeacherPlusStudent
from training.trained import Trained

if TYPE_CHECKING:
    from training.student.model import MLPStudent
    from training.teacher.protocol import Teacher


log = logging.getLogger(__name__)


def tune_als(cfg: PipelineConfig, full: Split, eval_split: Split | None = None) -> TunedPeer:
    """ALS fitted on every train interaction of `full`, tuned on the validation items of `eval_split`
    (default: the evaluated sample, `eval.max_users`) and refitted for the test query
    (training.evaluate.peers.als_peer)."""
    e = cfg.eval
    if eval_split is None:
        eval_split = validation_split(full, e.max_users, cfg.seed)
    return als_peer(
        full, e.als.grid(), cfg.seed, cfg.threads or 0, e.test_history,
        e.k, e.recall_k, e.batch_size, eval_split=eval_split,
    )  # fmt: skip


def fit_peers(
    cfg: PipelineConfig, full: Split, split: Split, als: TunedPeer | None = None
) -> tuple[dict[str, tuple[Any, int]], dict[str, dict[str, Any]], dict[str, str]]:
    """The classic peers of `eval.peers`: {name: (score_fn, history_len)}, their tuning records, skips.

    Fitted on every train interaction of `full`; ALS is tuned on the validation items of `split`
    (the evaluated sample) and refitted for the test query (training.evaluate.peers.als_peer), or
    taken as `als` when it was tuned already (beside the teacher: training/schedule/side.py). A peer that
    cannot run here is skipped with the reason, never silently.
    """
    e = cfg.eval
    models: dict[str, tuple[Any, int]] = {}
    records: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for name in dict.fromkeys(e.peers):
        if name == "popularity":
            models[name] = (popularity_score_fn(full.item_popularity()), 1)
            continue
        if als is None and (why := implicit_missing()) is not None:
            log.warning("peer %s skipped: %s", name, why)
            skipped[name] = why
            continue
        peer = als or tune_als(cfg, full, split)
        models[name] = (peer.model.score_fn(), 1)
        records[name] = peer.record()
    return models, records, skipped


def reference_models(
    cfg: PipelineConfig, teacher: Teacher, scratch: MLPStudent | None
) -> dict[str, tuple[Any, int]]:
    """The models a report sets the student beside that are ready before it is: the teacher, the
    scratch student and the soft labels' source, each with the history length it was trained with."""
    models = {"teacher": (teacher_score_fn(teacher), teacher.history_len)}
    if scratch is not None:
        models["scratch"] = (student_score_fn(scratch), scratch.history_len)
    if (source := soft_label_source(cfg, teacher, scratch)) is not None:  # what the student learned from
        models[SOFT_LABEL_SOURCE] = (teacher_score_fn(source), source.history_len)
    return models


Ranked = tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]  # evaluate_models: metrics, top-k lists


def rank_references(cfg: PipelineConfig, full: Split, teacher: Teacher, scratch: MLPStudent | None) -> Ranked:
    """`reference_models` ranked on the test users exactly as `evaluate_all` ranks them, so they can be
    ranked while the student trains (training/schedule/side.py) and handed to it as `ranked`."""
    e = cfg.eval
    split = validation_split(full, e.max_users, cfg.seed)
    models = reference_models(cfg, teacher, scratch)
    return evaluate_models(split, models, e.k, e.recall_k, e.batch_size, test_history=e.test_history)


def evaluate_all(
    cfg: PipelineConfig,
    data: Interactions,
    split: Split,
    trained: Trained,
    als: TunedPeer | None = None,
    ranked: Ranked | None = None,
) -> dict[str, Any]:
    """Test metrics for every model, agreement with the teacher, the sweep, and scatter pairs.

    `als`: the ALS peer when already tuned (see `fit_peers`); `ranked`: models already ranked
    (`rank_references`), taken as they are.
    """
    e = cfg.eval
    full, split = split, validation_split(split, e.max_users, cfg.seed)  # eval.max_users: a seeded sample
    models = reference_models(cfg, trained.teacher, trained.scratch)
    models = {
        "teacher": models.pop("teacher"),
        "student": (student_score_fn(trained.student), trained.student.history_len),
    } | models
    peers, peer_records, peers_skipped = fit_peers(cfg, full, split, als)
    models |= peers
    done_metrics, done_tops = ranked or ({}, {})
    todo = {name: model for name, model in models.items() if name not in done_metrics}
    metrics, tops = evaluate_models(split, todo, e.k, e.recall_k, e.batch_size, test_history=e.test_history)
    metrics = {name: (done_metrics | metrics)[name] for name in models}  # the report's order
    tops = {name: (done_tops | tops)[name] for name in models}
    agreement = {
        name: mean_agreement(tops[name], tops["teacher"], e.k)
        for name in tops
        if name not in ("teacher", SOFT_LABEL_SOURCE)
    }
    sweep = []
    for temperature, model in trained.sweep:
        swept, _ = evaluate_models(
            split, {"s": (student_score_fn(model), model.history_len)}, e.k, e.recall_k, e.batch_size,
            test_history=e.test_history,
        )  # fmt: skip
        sweep.append({"temperature": temperature, "metrics": swept["s"]})
    scatter = score_pairs(
        models["teacher"][0], models["student"][0], split,
        trained.teacher.history_len, trained.student.history_len, e.scatter_users, seed=cfg.seed,
        test_history=e.test_history,
    )  # fmt: skip
    return {
        "test": metrics, "agreement": agreement, "sweep": sweep, "scatter": scatter,
        "test_users": len(split.test_users), "test_history": e.test_history,
        "peers": peer_records, "peers_skipped": peers_skipped, "reported_users": split.test_users,
    }  # fmt: skip


# The test-metrics row of the soft labels' source when it is not the teacher itself.
SOFT_LABEL_SOURCE = "teacher+scratch"


def soft_label_source(cfg: PipelineConfig, teacher: Teacher, scratch: MLPStudent | None) -> Teacher | None:
    """The model the soft labels came from when it is not the teacher (`distill.soft_labels_from =
    "teacher+scratch"`: the sum of the teacher and the uncalibrated scratch student, as
    `ensemble_soft_labels` builds it), so the report sets the student beside what it learned from."""
    if cfg.distill.soft_labels_from != "teacher+scratch" or scratch is None:
        return None
    return TeacherPlusStudent(teacher, scratch.uncalibrated())  # type: ignore[return-value]


def mean_agreement(student_top: np.ndarray, teacher_top: np.ndarray, k: int) -> dict[str, float | None]:
    """Per-user core.agreement metrics averaged over users (kendall_tau over users where defined).

    None where no user defines the metric (JSON has no NaN).
    """
    rows = [agreement(s.tolist(), t.tolist(), k) for s, t in zip(student_top, teacher_top, strict=True)]
    out: dict[str, float | None] = {}
    for key in ("overlap@k", "rbo", "kendall_tau", "ndcg_vs_teacher"):
        values = [float(v) for r in rows if (v := r[key]) is not None]
        out[key.replace("@k", f"@{k}")] = float(np.mean(values)) if values else None
    out["users"] = float(len(rows))
    return out


def evaluate_models(
    split: Split,
    models: Mapping[str, tuple[ScoreFn, int]],
    k: int,
    recall_k: int,
    batch_size: int,
    stage: str = "test",
    test_history: TestHistory = "train+valid",
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Full-ranking metrics per model and each model's top-k lists (for agreement).

    `models` maps a name to (score_fn, history_len): each model sees the history length it was
    trained with; `test_history` is the test query (training.evaluate.ranking.evaluate).
    """
    metrics: dict[str, dict[str, float]] = {}
    tops: dict[str, np.ndarray] = {}
    for name, (score_fn, history_len) in models.items():
        result = evaluate(
            score_fn, split, stage, history_len, k, recall_k, batch_size,  # type: ignore[arg-type]
            return_topk=True, test_history=test_history,
        )  # fmt: skip
        assert isinstance(result, tuple)  # return_topk=True
        metrics[name], tops[name] = result
        log.info("%s %s: %s", stage, name, {m: round(v, 4) for m, v in metrics[name].items()})
    return metrics, tops


def score_pairs(
    teacher_fn: ScoreFn,
    student_fn: ScoreFn,
    split: Split,
    teacher_len: int,
    student_len: int,
    n_users: int,
    items_per_user: int = 50,
    seed: int = 0,
    test_history: TestHistory = "train+valid",
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher and student scores of the same (user, item) pairs, for the scatter plot.

    Per sampled test user (its test query, as `test_history` says): the teacher's top-10 items plus
    random items, so both the head (where agreement matters) and the bulk of the catalog show.
    """
    rng = np.random.default_rng(seed)
    if len(split.test_users) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    rows = rng.choice(len(split.test_users), size=min(n_users, len(split.test_users)), replace=False)
    users = split.test_users[rows]
    then = split.valid_items[rows] if test_history == "train+valid" else None
    t = teacher_fn(users, padded_histories(split, users, teacher_len, then))
    s = student_fn(users, padded_histories(split, users, student_len, then))
    top = np.argsort(-t, axis=1)[:, :10]
    rand = rng.integers(0, split.n_items, size=(len(users), items_per_user))
    cols = np.concatenate([top, rand], axis=1)
    return np.take_along_axis(t, cols, 1).ravel(), np.take_along_axis(s, cols, 1).ravel()
