"""Bodies of the rollout routes (candidate, experiments) and the report shapes the dashboard reads:
`/v1/experiments`, the pair every report names, `/v1/shadow/report` and the `candidate` of `/v1/models`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.api.schemas import VERSION_PATTERN, _Body
from app.api.types import JsonFloat

ArmsKind = Literal["teacher_vs_student", "serving_vs_candidate"]
CandidateSource = Literal["setting", "shared"]  # app.engine.candidate.CandidateSource
CANDIDATE_SOURCE = (
    "Where the candidate came from: shared (POST /admin/candidate, stored beside the pin for every "
    "replica) or setting (RECDISTILL_CANDIDATE_VERSION, the default while none is stored); null: none"
)
ExperimentName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")]


class CandidateRequest(_Body):
    version: str = Field(..., pattern=VERSION_PATTERN, description="A version folder under models_dir")


class CandidateResponse(BaseModel):
    candidate: str | None = Field(description="The candidate version now (null: none)")
    previous: str | None = Field(description="The candidate before this call")
    serving: str | None = Field(description="The serving version, for comparison")
    candidate_source: CandidateSource | None = Field(None, description=CANDIDATE_SOURCE)


class ExperimentRequest(_Body):
    name: ExperimentName = Field(description="Unique for good: a stopped experiment's name is not reused")
    arms: ArmsKind = Field(
        "teacher_vs_student",
        description="teacher_vs_student: the serving version's teacher against its student; "
        "serving_vs_candidate: the candidate version's student against the serving one's (needs a candidate)",
    )
    teacher_share: JsonFloat | None = Field(None, ge=0.0, le=1.0, description="Share of units on the teacher")
    candidate_share: JsonFloat | None = Field(
        None, ge=0.0, le=1.0, description="Share of units on the candidate"
    )
    planned_lift: JsonFloat | None = Field(
        None,
        gt=0.0,
        le=10.0,
        description="The relative CTR change the experiment is planned to detect (0.05: 5%); it tunes "
        "the always-valid test (found fastest near it) and the users-needed figure. Default 0.15",
    )


class ArmSide(BaseModel):
    arm: str = Field(
        description="The arm's name in answers and reports: student, teacher, serving, candidate"
    )
    side: Literal["student", "teacher"] = Field(description="Which model of the version answers")
    version: str | None = Field(description="The model version of that side")


class Pair(BaseModel):
    """The two sides a report compares, with their versions."""

    kind: ArmsKind
    control: ArmSide
    treatment: ArmSide
    name: str = Field(description='e.g. "serving v1 vs candidate v2"')


class ExperimentOut(BaseModel):
    name: str
    arms: ArmsKind
    pair: Pair = Field(description="The arms with the versions they served when the experiment started")
    treatment_share: float = Field(description="The teacher's or the candidate's share of units")
    teacher_share: float | None = Field(description="treatment_share when arms is teacher_vs_student")
    candidate_share: float | None = Field(description="treatment_share when arms is serving_vs_candidate")
    started_at: datetime
    stopped_at: datetime | None
    reset_at: datetime | None = Field(description="Last reset: answers and feedback before it were deleted")
    running: bool
    source: Literal["api", "settings"] = Field(
        description="POST /admin/experiments, or RECDISTILL_EXPERIMENT_*"
    )
    planned_lift: float = Field(description="The relative effect the always-valid test is tuned for")


class ExperimentList(BaseModel):
    running: str | None = Field(description="The running experiment's name; null while none runs")
    experiments: list[ExperimentOut] = Field(description="Oldest start first")


class ExperimentReset(BaseModel):
    experiment: ExperimentOut
    deleted_answers: int


class Coverage(BaseModel):
    """What share of the traffic a report covers."""

    served: int = Field(
        description="Answers the shadow could sample in the window (the control version's student, with "
        "items, no fallback), per pair from its first comparison on"
    )
    sampled: int = Field(
        description="Answers sent to the comparison: compared + dropped + timed out + errors"
    )
    compared: int
    dropped: int = Field(description="Not run: the queue was full or the CPU budget spent")
    timed_out: int
    coverage: float | None = Field(description="compared / served; null before any answer")


class Summary(BaseModel):
    n: int
    mean: float | None
    p10: float | None
    p50: float | None
    p90: float | None


class ShadowBlock(Coverage):
    count: int = Field(description="Comparisons (= compared)")
    error: int
    timeout: int
    unknown_user: int = Field(
        0, description="Not compared: a lookup teacher (embedding tables) has no vector for the user"
    )
    errors: int = Field(description="error + timeout")
    metrics: dict[str, Summary] = Field(
        description="overlap@k, rbo, kendall_tau, ndcg_vs_teacher (vs the treatment)"
    )
    latency_ms: dict[str, Summary] = Field(description="student: the serving answer; teacher: the other side")
    latency_ratio: Summary


class ShadowPairBlock(ShadowBlock):
    pair: Pair
    student_version: str = Field(description="The serving student's version (= pair.control.version)")
    teacher_version: str = Field(description="The other side's version (= pair.treatment.version)")
    counted_from: float | None = Field(None, description="Epoch seconds of the pair's first comparison")


class ShadowReport(ShadowBlock):
    """The top-level figures count every pair together (how much was compared); each pair's own
    agreement and latency are in `by_version`: read those, a blend of two pairs describes neither."""

    shadow_rate: float
    pair: Pair | None = Field(description="What the shadow compares now: the candidate when one is loaded")
    since: str | None
    by_version: list[ShadowPairBlock] = Field(description="One block per pair, each with its coverage")


class ModelsResponse(BaseModel):
    """The served version's manifest summary (version, created_at, dataset, n_items, item_fields,
    student, teacher, metrics, ...) and what is served and why; `candidate` beside it."""

    model_config = ConfigDict(extra="allow")
    version: str
    served_version: str | None
    served_because: Literal["pinned", "latest", "requested", "fallback"]
    pinned: dict[str, Any] | None
    latest: str | None
    pin_error: str | None
    item_fields: list[str] = Field(description='What a request may name in "fields"')
    candidate: dict[str, Any] | None = Field(
        description="The candidate version's summary (same keys as the served version's), null: none"
    )
    candidate_error: str | None = Field(description="Why the last candidate asked for was refused")
    candidate_source: CandidateSource | None = Field(description=CANDIDATE_SOURCE)
