"""The records the stores keep and return, shared by every implementation of each store Protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Event = Literal["click", "purchase"]
# unknown_user: a lookup teacher (embedding tables) has no vector for the request's user, so there
# is nothing to compare against (never a guess)
FailureKind = Literal["dropped", "error", "timeout", "unknown_user"]
# What a shadow comparison compares: the serving version's teacher with its student, or the candidate
# version's student with the serving version's student (app/engine/candidate.py).
PairKind = Literal["teacher_vs_student", "serving_vs_candidate"]
TEACHER_PAIR: PairKind = "teacher_vs_student"
CANDIDATE_PAIR: PairKind = "serving_vs_candidate"
_PAIR_SEP = ">"  # never in a version name (VERSION_PATTERN), so a failure key parses back


def failure_key(pair: str, control_version: str, treatment_version: str) -> str:
    """The version part of a shadow failure tally's key (`ComparisonStore.add_failures`): the serving
    version alone for teacher vs student (both sides are that version, the historical key), else
    "serving>candidate"."""
    if pair == TEACHER_PAIR:
        return control_version
    return f"{control_version}{_PAIR_SEP}{treatment_version}"


def parse_failure_key(key: str) -> tuple[PairKind, str, str]:
    """(pair, control version, treatment version) of a `failure_key`."""
    control, sep, treatment = key.partition(_PAIR_SEP)
    return (CANDIDATE_PAIR, control, treatment) if sep else (TEACHER_PAIR, key, key)


# Column order of the metric arrays `ComparisonStore.load` returns (and of the SQLite table).
METRIC_COLUMNS = ("overlap", "rbo", "kendall_tau", "ndcg")


@dataclass(frozen=True)
class Interaction:
    user_id: str
    item_id: str
    timestamp: int  # seconds since the epoch
    event: str | None = None


class FeedbackError(ValueError):
    """Feedback that cannot be accepted; `field` names the request field at fault (for the 422)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Served:
    """One answer as the caller saw it."""

    request_id: str
    experiment: str
    arm: str
    unit: str
    model_version: str
    items: tuple[str, ...]
    forced: bool = False
    ts: float = 0.0
    latency_ms: float | None = None  # batcher submit to result (the A/B latency guardrail)
    fallback: str | None = None  # "popular" when the answer fell back to the popular items
    error: bool = False  # the answer failed after its arm was assigned: no items, counted apart


@dataclass(frozen=True)
class FeedbackResult:
    request_id: str
    item_id: str
    event: Event
    arm: str
    duplicate: bool  # the same (request, item, event) was already recorded: counted once


# The keys of FeedbackStore.arm_counts (and of each arm in bucket_counts).
ARM_COUNT_KEYS = ("users", "requests", "impressions", "clicks", "purchases", "purchase_requests")
UNIT_SUM_COLUMNS = ("requests", "impressions", "clicks", "purchases", "purchase_requests")


@dataclass(frozen=True)
class UnitSums:
    """One arm's per-unit (user or session) totals, the input of the user-level A/B statistics.

    Row i is unit `units[i]`; every column is int64 [n_units], named by UNIT_SUM_COLUMNS.
    """

    units: np.ndarray  # str [n]
    requests: np.ndarray  # int64 [n]: answers served to the unit
    impressions: np.ndarray  # int64 [n]: items shown in them
    clicks: np.ndarray  # int64 [n]: distinct (answer, item) clicks
    purchases: np.ndarray  # int64 [n]: distinct (answer, item) purchases
    purchase_requests: np.ndarray  # int64 [n]: answers with at least one purchase

    def __len__(self) -> int:
        return len(self.units)

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]]) -> UnitSums:
        """From rows of (unit, *UNIT_SUM_COLUMNS), as both stores read them."""
        cols = list(zip(*rows, strict=True)) if rows else [()] * 6
        ints = [np.array(col, dtype=np.int64) for col in cols[1:]]
        return cls(np.array(cols[0], dtype=str), *ints)


@dataclass(frozen=True)
class AnswerRows:
    """The answers of a window, one row each, forced ones left out (FeedbackStore.answer_rows): what
    the A/B statistics computed in Python read (per-unit sums, guardrails, the interval over time,
    CUPED's pre-period). Every column is [n], oldest answer first."""

    arm: np.ndarray  # str
    unit: np.ndarray  # str: "user:<id>", "session:<id>" or "anonymous"
    ts: np.ndarray  # float64, epoch seconds
    impressions: np.ndarray  # int64: items shown
    clicks: np.ndarray  # int64: distinct clicked items
    purchases: np.ndarray  # int64: distinct purchased items
    latency_ms: np.ndarray  # float64, NaN where not recorded
    fallback: np.ndarray  # bool: the answer was the popular fallback
    error: np.ndarray  # bool: the answer failed (no items)
    version: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))  # str: the model version

    def __post_init__(self) -> None:
        if len(self.version) != len(self.arm):  # rows built without versions: unknown ("")
            object.__setattr__(self, "version", np.full(len(self.arm), ""))

    def __len__(self) -> int:
        return len(self.arm)

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]]) -> AnswerRows:
        """From rows of (arm, unit, ts, impressions, clicks, purchases, latency_ms or None,
        fallback or None, error, model version), as both stores read them."""
        cols = list(zip(*rows, strict=True)) if rows else [()] * 10
        return cls(
            arm=np.array(cols[0], dtype=str),
            unit=np.array(cols[1], dtype=str),
            ts=np.array(cols[2], dtype=np.float64),
            impressions=np.array(cols[3], dtype=np.int64),
            clicks=np.array(cols[4], dtype=np.int64),
            purchases=np.array(cols[5], dtype=np.int64),
            latency_ms=np.array([np.nan if v is None else v for v in cols[6]], dtype=np.float64),
            fallback=np.array([bool(v) for v in cols[7]], dtype=bool),
            error=np.array([bool(v) for v in cols[8]], dtype=bool),
            version=np.array(cols[9], dtype=str),
        )

    def where(self, mask: np.ndarray) -> AnswerRows:
        """The rows where `mask` holds."""
        return AnswerRows(**{name: getattr(self, name)[mask] for name in self.__dataclass_fields__})


def _unit_sums(rows: AnswerRows) -> UnitSums:
    """Per unit of `rows` (sorted by unit): answers, impressions, clicks, purchases, answers with one."""
    units, index = np.unique(rows.unit, return_inverse=True)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=values, minlength=len(units)).astype(np.int64)

    return UnitSums(
        units,
        total(np.ones(len(rows))),
        total(rows.impressions),
        total(rows.clicks),
        total(rows.purchases),
        total((rows.purchases > 0).astype(np.float64)),
    )


def unit_sums_of(rows: AnswerRows) -> dict[str, UnitSums]:
    """Per arm, per randomised unit: the UnitSums of the answers that did not fail, anonymous ones
    left out (never randomised). The one aggregation behind FeedbackStore.unit_sums."""
    keep = rows.where(~rows.error & (rows.unit != "anonymous"))
    return {arm: _unit_sums(keep.where(keep.arm == arm)) for arm in np.unique(keep.arm).tolist()}


def unit_totals(rows: AnswerRows) -> UnitSums:
    """Per randomised unit, every arm together: a user's behaviour over a window (CUPED's pre-period)."""
    return _unit_sums(rows.where(~rows.error & (rows.unit != "anonymous")))


@dataclass(frozen=True)
class Comparison:
    request_id: str
    ts: float
    student_version: str
    teacher_version: str
    k: int
    overlap: float
    rbo: float
    kendall_tau: float | None
    ndcg: float
    student_latency_ms: float  # the serving student's answer
    teacher_latency_ms: float  # the other side: the teacher, or the candidate's student
    pair: str = TEACHER_PAIR  # PairKind; teacher_version holds the candidate's version for a candidate


@dataclass(frozen=True)
class ComparisonRows:
    """Columns of the comparisons in a time window, ready for numpy aggregation."""

    student_version: np.ndarray  # str [n]
    teacher_version: np.ndarray  # str [n]
    metrics: dict[str, np.ndarray]  # float64 [n] per METRIC_COLUMNS; kendall_tau NaN when undefined
    student_latency_ms: np.ndarray  # float64 [n]
    teacher_latency_ms: np.ndarray  # float64 [n]
    failures: dict[tuple[str, str], int]  # (failure_key(...), kind) -> count
    pair: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))  # str [n]: PairKind
    ts: np.ndarray = field(default_factory=lambda: np.zeros(0))  # float64 [n]: epoch seconds, oldest first

    def __post_init__(self) -> None:
        if len(self.pair) != len(self.student_version):  # rows built without pairs: teacher vs student
            object.__setattr__(self, "pair", np.full(len(self.student_version), TEACHER_PAIR))
        if len(self.ts) != len(self.student_version):  # rows built without times: unknown (NaN)
            object.__setattr__(self, "ts", np.full(len(self.student_version), np.nan))

    def __len__(self) -> int:
        return len(self.student_version)

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Sequence[Any]],
        failures: dict[tuple[str, str], int],
        ts: Sequence[float] | None = None,
    ) -> ComparisonRows:
        """From rows of (student_version, teacher_version, *METRIC_COLUMNS, student_latency_ms,
        teacher_latency_ms[, pair]), as both stores read them, and each row's time; a None metric
        (undefined tau) becomes NaN; a row without a pair (written before pairs existed) is teacher
        vs student."""
        rows = [tuple(r) if len(r) == 9 else (*r, TEACHER_PAIR) for r in rows]
        cols = list(zip(*rows, strict=True)) if rows else [()] * 9
        num = [np.array([np.nan if v is None else v for v in col], np.float64) for col in cols[2:8]]
        return cls(
            student_version=np.array(cols[0], dtype=str),
            teacher_version=np.array(cols[1], dtype=str),
            metrics=dict(zip(METRIC_COLUMNS, num[:4], strict=True)),
            student_latency_ms=num[4],
            teacher_latency_ms=num[5],
            failures=failures,
            pair=np.array(cols[8], dtype=str),
            ts=np.array([] if ts is None else ts, np.float64),
        )


class ExperimentExists(ValueError):
    """An experiment of that name is already stored (names are never reused: reset it instead)."""


@dataclass(frozen=True)
class ExperimentRecord:
    """A named experiment as the shared state keeps it; its served answers carry its name.

    The report's window is [started_at, stopped_at); a reset deletes the experiment's answers and
    feedback and stamps reset_at, so the experiment starts counting again from nothing.
    """

    name: str
    arms: str  # "teacher_vs_student" | "serving_vs_candidate" (app.experiment.assignment.ArmsKind)
    treatment_share: float  # the teacher's or the candidate's share of units
    salt: str
    started_at: float
    stopped_at: float | None = None
    reset_at: float | None = None
    control_version: str | None = None  # the serving version when it started
    treatment_version: str | None = None  # the candidate version when it started (version arms only)
    source: str = "api"  # "api" (POST /admin/experiments) or "settings" (RECDISTILL_EXPERIMENT_*)
    planned_lift: float | None = (
        None  # the relative effect the always-valid test is tuned for (None: default)
    )

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExperimentRecord:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class CatalogueEntry:
    """An operator's word on one item, laid over what the served version was trained with (the live
    catalogue overlay, app/engine/catalogue.py). It applies to every version that knows the item.

    `price` and `category` None: the trained value stands. `fields`: extra catalogue columns (title,
    url, ...) by name. `registered`: an item the operator added before any version knew it; kept so
    that `recdistill catalogue export` hands its metadata to the next retrain.
    """

    item_id: str
    available: bool = True  # False: never served, by any arm, the shadow or /v1/compare
    price: float | None = None
    category: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    registered: bool = False
    updated_at: float = 0.0  # epoch seconds of the last change

    @property
    def empty(self) -> bool:
        """Nothing overridden and not registered: the entry can be deleted."""
        return (
            self.available
            and self.price is None
            and self.category is None
            and not self.fields
            and not self.registered
        )

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "fields": dict(self.fields)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CatalogueEntry:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class CatalogueSnapshot:
    """Every catalogue entry, read together with the generation they make up."""

    generation: int  # 0: never updated
    entries: dict[str, CatalogueEntry]


# Given an item id and its stored entry (None: none), the entry to store (None: delete it). It may
# raise to abort the whole update; a store may call it more than once (a retried transaction).
CatalogueChange = Callable[[str, CatalogueEntry | None], CatalogueEntry | None]
