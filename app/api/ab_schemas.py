"""The `/v1/ab/report` response, as documented in the OpenAPI schema.

Arms are keyed by name (today "student" and "teacher"); every number that cannot be computed yet
(too few users, no impressions) is null rather than NaN.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.rollout_schemas import ExperimentOut, Pair


class Rate(BaseModel):
    rate: float | None = Field(description="Events / trials over the arm's randomised answers")
    low: float | None = Field(description="Wilson 95% interval, per impression (descriptive only)")
    high: float | None


class ArmCounts(BaseModel):
    users: int = Field(description="Distinct randomised units (users or sessions)")
    requests: int
    impressions: int
    clicks: int
    purchases: int
    share: float = Field(description="Configured share of units")
    ctr: Rate
    conversion: Rate = Field(description="Answers with a purchase / answers")


class UnitRate(BaseModel):
    rate: float | None = Field(description="Sum of the numerator over users / sum of the denominator")
    se: float | None = Field(description="Delta-method standard error over users")
    low: float | None = Field(description="rate - 1.96 se, clipped to [0, 1]")
    high: float | None


class ArmPerUser(BaseModel):
    units: int = Field(description="Randomised units (users or sessions) with an answer")
    requests: int
    impressions: int
    clicks: int
    purchases: int
    purchase_requests: int
    metrics: dict[str, UnitRate] = Field(description="ctr, conversion, purchases_per_impression")


class PerImpression(BaseModel):
    """The old two-proportion z-test: every impression an independent trial. For comparison only."""

    diff: float | None
    low: float | None
    high: float | None
    z: float | None
    p_value: float | None


class Relative(BaseModel):
    lift: float | None = Field(description="treatment / control - 1 (= diff / control rate)")
    se: float | None = Field(None, description="se / control rate")
    low: float | None = Field(description="low / control rate: excludes 0 exactly when [low, high] does")
    high: float | None


Word = Literal["better", "worse", "not yet"]
VerdictWord = Literal[
    "better",
    "worse",
    "not yet",
    "stop: sample ratio mismatch",
    "stop: error rate",
    "stop: latency p99",
    "stop: popular-fallback share",
]


class Reading(BaseModel):
    """treatment - control over users with an interval, p-value, MDE and verdict from one rule."""

    diff: float | None
    low: float | None = Field(description="diff - c se")
    high: float | None = Field(description="diff + c se")
    z: float | None = Field(description="diff / se")
    p_value: float | None = Field(
        description="Always-valid p = min(1, 1/Λ) (fixed horizon: two-sided z-test)"
    )
    se: float | None = Field(description="Delta-method SE of the difference over users")
    relative: Relative
    mde: float | None = Field(description="(c + z_0.8) se: found with 80% power by now")
    mde_relative: float | None = Field(description="mde / control rate")
    verdict: Word


class CupedInfo(BaseModel):
    applied: bool = Field(description="Whether the reading uses CUPED (some users have a pre-period)")
    theta: float | None
    users_with_pre_period: list[int] = Field(description="[control, treatment]")
    variance_reduction: float | None = Field(description="1 - Var(diff with CUPED) / Var(diff without)")


class MetricComparison(Reading):
    """The always-valid reading (what the verdict uses; CUPED where applied), its fixed-horizon
    reading and the per-impression test (for comparison only)."""

    method: Literal["always_valid"]
    critical_value: float | None = Field(description="c of diff ± c se (1.96 for a fixed horizon)")
    mixing_scale: float | None = Field(description="τ of the normal mixture: planned_lift × pooled rate")
    cuped: CupedInfo
    fixed_horizon: Reading = Field(description="The plain z-test, right only when read once at a fixed size")
    per_impression: PerImpression


class Conclusion(BaseModel):
    users_per_hour: list[float] = Field(description="New users per hour so far, [control, treatment]")
    hours_left: float = Field(description="Until users_needed are in at that rate (0: they are)")
    at: float = Field(description="Epoch seconds of that moment")


class Verdict(BaseModel):
    metric: str = Field(description="The metric the verdict is read from")
    metric_definition: str
    control: str
    treatment: str
    verdict: VerdictWord = Field(
        description="better / worse: the always-valid interval of the primary metric's difference "
        "excludes 0; stop: a guardrail (or SRM) is significantly worse, whatever the primary metric says"
    )
    method: Literal["always_valid"]
    summary: str = Field(description="The verdict in words, quoting the numbers it is read from")
    alpha: float
    power: float
    planned_lift: float = Field(description="The relative effect the test is tuned for and sized on")
    cuped_applied: bool
    variance_reduction: float | None
    low: float | None
    high: float | None
    p_value: float | None
    relative: Relative
    mde: float | None
    mde_relative: float | None
    target_relative_effect: float = Field(
        description="The lift users_needed is for: ?lift=, else planned_lift"
    )
    users_needed: dict[str, int] | None = Field(
        description="Users per arm for the always-valid test to find target_relative_effect with this power"
    )
    more_users_needed: dict[str, int] | None
    expected_conclusion: Conclusion | None = Field(description="When, at the current traffic (while not yet)")
    stopped: bool
    stopped_at: float | None


class FixedHorizon(Reading):
    note: str
    users_needed: dict[str, int] | None = Field(
        description="The fixed-horizon sample size for target_relative_effect"
    )


class GuardrailTest(BaseModel):
    label: str
    diff: float | None = Field(description="treatment - control share of bad answers (over users)")
    low: float | None
    high: float | None
    p_value: float | None
    alpha: float = Field(description="α / 3: the three guardrails together hold α")
    status: Literal["ok", "worse", "no data"]
    pooled_p99_ms: float | None = None


class GuardrailArm(BaseModel):
    attempts: int
    errors: int
    error_rate: float | None
    fallbacks: int
    fallback_share: float | None
    latency_answers: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None


class Guardrails(BaseModel):
    arms: dict[str, GuardrailArm]
    tests: dict[str, GuardrailTest] = Field(description="error_rate, latency_p99, fallback_share")
    srm: dict[str, Any]
    stop: str | None = Field(description="The guardrail that stops the experiment, if any")


class Anonymous(BaseModel):
    served_by: str = Field(description="The arm that answers requests without user or session id")
    requests: int
    impressions: int
    clicks: int
    purchases: int
    ctr: Rate


class SampleRatioCheck(BaseModel):
    unit: str
    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float | None = Field(description="Pearson chi-square (the fixed-horizon reading)")
    dof: int
    p_value: float | None = Field(description="Of the chi-square: valid for one look only")
    always_valid_p: float | None = Field(description="Dirichlet-multinomial mixture: decides the mismatch")
    mismatch: bool
    warning: str | None


class ExperimentInfo(ExperimentOut):
    model_config = ConfigDict(extra="allow")
    since: datetime | float | None = Field(description="The window's start as given, if any")


class ABCoverage(BaseModel):
    served: int = Field(description="Answers served (every version and arm) since the experiment started")
    in_experiment: int = Field(description="Of them, the experiment's answers (forced ones left out)")
    coverage: float | None = Field(description="in_experiment / served")


class ABReport(BaseModel):
    experiment: ExperimentInfo
    pair: Pair = Field(description="control and treatment arms with their versions")
    coverage: ABCoverage
    arms: dict[str, ArmCounts] = Field(description="The randomised units' traffic per arm")
    anonymous: Anonymous = Field(description="Traffic with no unit to randomise: outside the comparison")
    comparison: dict[str, MetricComparison] = Field(
        description="Per metric, treatment - control (teacher - student, or candidate - serving), user-level"
    )
    teacher_vs_student: dict[str, MetricComparison] = Field(
        description="The same as comparison when arms is teacher_vs_student; empty otherwise"
    )
    per_user: dict[str, ArmPerUser]
    verdict: Verdict | None = Field(description="null while the experiment has no two arms")
    verdict_uses: Literal["always_valid"] = Field(description="Which reading the verdict is read from")
    fixed_horizon: FixedHorizon | None = Field(description="The primary metric's fixed-horizon reading")
    guardrails: Guardrails | None
    srm: SampleRatioCheck
