"""The records the stores keep and return, shared by every implementation of each store Protocol."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Event = Literal["click", "purchase"]
# unknown_user: a lookup teacher (embedding tables) has no vector for the request's user, so there
# is nothing to compare against (never a guess)
FailureKind = Literal["dropped", "error", "timeout", "unknown_user"]
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


@dataclass(frozen=True)
class FeedbackResult:
    request_id: str
    item_id: str
    event: Event
    arm: str
    duplicate: bool  # the same (request, item, event) was already recorded: counted once


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
    student_latency_ms: float
    teacher_latency_ms: float


@dataclass(frozen=True)
class ComparisonRows:
    """Columns of the comparisons in a time window, ready for numpy aggregation."""

    student_version: np.ndarray  # str [n]
    teacher_version: np.ndarray  # str [n]
    metrics: dict[str, np.ndarray]  # float64 [n] per METRIC_COLUMNS; kendall_tau NaN when undefined
    student_latency_ms: np.ndarray  # float64 [n]
    teacher_latency_ms: np.ndarray  # float64 [n]
    failures: dict[tuple[str, str], int]  # (student_version, kind) -> count

    def __len__(self) -> int:
        return len(self.student_version)

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]], failures: dict[tuple[str, str], int]) -> ComparisonRows:
        """From rows of (student_version, teacher_version, *METRIC_COLUMNS, student_latency_ms,
        teacher_latency_ms), as both stores read them; a None metric (undefined tau) becomes NaN."""
        cols = list(zip(*rows, strict=True)) if rows else [()] * 8
        num = [np.array([np.nan if v is None else v for v in col], np.float64) for col in cols[2:]]
        return cls(
            student_version=np.array(cols[0], dtype=str),
            teacher_version=np.array(cols[1], dtype=str),
            metrics=dict(zip(METRIC_COLUMNS, num[:4], strict=True)),
            student_latency_ms=num[4],
            teacher_latency_ms=num[5],
            failures=failures,
        )
