"""The job's wall-clock budget (`budget_minutes`), shared between the stages as they go.

The teacher may use `teacher_budget_share` of it; the students share what is left after the teacher
and its soft labels, less `budget_reserve_share` kept for evaluation and export, each as it starts
its cost-weighted part of what is left (`student_cost`). A scratch student trained beside the teacher
(training/schedule/side.py) gets its part as if the teacher used its whole share (`scratch_share`).
"""

from __future__ import annotations

from training.config import PipelineConfig

# A distilled epoch also scores the soft-label candidates (top_m + n_sampled per example) and
# their KL and ranking terms. Converged on Amazon Beauty (configs/shop.toml) the distilled student
# took 874 s against the scratch student's 512 s (bench/results/quality_amazon-beauty_converged.md),
# so a distilled student is given twice a scratch student's share of the students' budget.
DISTILLED_COST = 2.0


def student_cost(distilled: bool) -> float:
    """A student's weight in the students' budget: distilled (soft labels) or scratch."""
    return DISTILLED_COST if distilled else 1.0


def stage_seconds(limit: float | None, budget: float | None) -> float | None:
    """The tighter of a stage's own cap and its share of the budget (None = no limit)."""
    if budget is None:
        return limit
    budget = max(budget, 0.0)
    return budget if limit is None else min(limit, budget)


def budgeted(cfg: PipelineConfig, elapsed: float = 0.0) -> PipelineConfig:
    """cfg with the teacher's max_train_seconds cut to `teacher_budget_share` of `cfg.budget_minutes`."""
    if cfg.budget_minutes is None:
        return cfg
    out = cfg.model_copy(deep=True)
    out.teacher.max_train_seconds = stage_seconds(
        cfg.teacher.max_train_seconds, cfg.teacher_budget_share * cfg.budget_minutes * 60.0 - elapsed
    )
    return out


def students_pool(cfg: PipelineConfig, elapsed: float) -> float | None:
    """Seconds of `cfg.budget_minutes` left for the students after `elapsed`, less the reserve for
    evaluation and export (None: no budget). `train_students` shares it out."""
    if cfg.budget_minutes is None:
        return None
    return max(cfg.budget_minutes * 60.0 * (1.0 - cfg.budget_reserve_share) - elapsed, 0.0)


def scratch_share(cfg: PipelineConfig, elapsed: float, distilled: list[bool]) -> float | None:
    """The scratch student's seconds when it trains beside the teacher: its cost-weighted part of the
    students' pool as it would be if the teacher used its whole share (None: no budget). `distilled`:
    each student of the plan, distilled or not."""
    if cfg.budget_minutes is None:
        return None
    pool = students_pool(cfg, elapsed + cfg.teacher_budget_share * cfg.budget_minutes * 60.0) or 0.0
    weights = [student_cost(d) for d in distilled]
    return pool * student_cost(False) / sum(weights)
