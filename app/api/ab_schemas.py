"""The `/v1/ab/report` response, as documented in the OpenAPI schema.

Arms are keyed by name (today "student" and "teacher"); every number that cannot be computed yet
(too few users, no impressions) is null rather than NaN.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.rollout_schemas import ExperimentOut, Pair


class Rate(BaseModel):
    rate: float | None = Field(description="Events / trials over every answer of the arm")
    low: float | None = Field(description="Wilson 95% interval, per impression (descriptive only)")
    high: float | None


class ArmCounts(BaseModel):
    users: int = Field(description="Distinct randomised units (users or sessions); anonymous left out")
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
    lift: float | None = Field(description="treatment / control - 1")
    se: float | None = Field(description="Delta-method SE of the lift")
    low: float | None
    high: float | None


class MetricComparison(BaseModel):
    """treatment - control over users: the interval and the test share one SE, so p < 0.05 exactly
    when 0 lies outside [low, high]."""

    diff: float | None
    low: float | None = Field(description="diff - 1.96 se")
    high: float | None = Field(description="diff + 1.96 se")
    z: float | None = Field(description="diff / se")
    p_value: float | None = Field(description="Two-sided")
    se: float | None = Field(description="Delta-method SE of the difference over users")
    relative: Relative
    mde: float | None = Field(description="(z_0.975 + z_0.8) se: detectable with 80% power now")
    mde_relative: float | None = Field(description="mde / control rate")
    verdict: Literal["better", "worse", "not yet"]
    per_impression: PerImpression | None = None


class Verdict(BaseModel):
    metric: str = Field(description="The metric the verdict is read from")
    control: str
    treatment: str
    verdict: Literal["better", "worse", "not yet"] = Field(
        description="better / worse: the 95% interval of the difference excludes 0 (and no SRM)"
    )
    summary: str = Field(description="The verdict in words")
    alpha: float
    power: float
    mde: float | None
    mde_relative: float | None
    target_relative_effect: float
    users_needed: dict[str, int] | None = Field(
        description="Users per arm to detect target_relative_effect with this power (when not yet)"
    )
    more_users_needed: dict[str, int] | None


class SampleRatioCheck(BaseModel):
    unit: str
    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float | None
    dof: int
    p_value: float | None
    mismatch: bool
    warning: str | None


class ExperimentInfo(ExperimentOut):
    model_config = ConfigDict(extra="allow")
    since: datetime | float | None = Field(description="The window's start as given, if any")


class ABCoverage(BaseModel):
    served: int = Field(description="Answers served (every version and arm) since the experiment started")
    in_experiment: int = Field(description="Of them, answers in the randomised split (forced ones left out)")
    coverage: float | None = Field(description="in_experiment / served")


class ABReport(BaseModel):
    experiment: ExperimentInfo
    pair: Pair = Field(description="control and treatment arms with their versions")
    coverage: ABCoverage
    arms: dict[str, ArmCounts]
    comparison: dict[str, MetricComparison] = Field(
        description="Per metric, treatment - control (teacher - student, or candidate - serving), user-level"
    )
    teacher_vs_student: dict[str, MetricComparison] = Field(
        description="The same as comparison when arms is teacher_vs_student; empty otherwise"
    )
    per_user: dict[str, ArmPerUser]
    verdict: Verdict | None = Field(description="null while the experiment has no two arms")
    srm: SampleRatioCheck
