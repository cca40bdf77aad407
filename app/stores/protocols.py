"""One Protocol per store: what the service needs from it, whichever backend keeps the data.

SQLite (one replica, the default) and Redis (`RECDISTILL_HISTORY_BACKEND=redis`, shared by replicas)
implement each; `app.stores.factory` picks them from the settings. tests/app/stores/test_contracts.py
runs the same test class against both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from app.stores.records import (
    AnswerRows,
    CatalogueChange,
    CatalogueSnapshot,
    Comparison,
    ComparisonRows,
    Event,
    ExperimentRecord,
    FailureKind,
    FeedbackResult,
    Interaction,
    Served,
    UnitSums,
)


class HistoryStore(Protocol):
    """The users' interaction histories, by raw ids. The async methods are safe to await on the loop."""

    async def history(self, user_id: str, limit: int) -> list[Interaction]:
        """The user's `limit` most recent interactions, most recent last."""
        ...

    async def append(self, events: Sequence[Interaction]) -> None:
        """Store events durably; return only once they would survive a crash."""
        ...

    async def seed(
        self,
        version: str,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        timestamps: Sequence[int],
        events: Sequence[str | None] | None = None,
    ) -> int:
        """Replace the seed interactions with this version's (once per version); return rows added.

        Logged events stay; a seed row equal to a logged event (user, item, timestamp) is skipped as
        often as that event was logged. `events`: each row's event type (None or "": none)."""
        ...

    def seed_from_arrays(
        self,
        version: str,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        timestamps: np.ndarray,
        events: np.ndarray | None = None,
    ) -> int:
        """`seed` from the model's arrays, blocking (the model loader's thread calls it). A storage
        error is logged and 0 returned: the version is then served without the seed."""
        ...

    async def close(self) -> None: ...


class FeedbackStore(Protocol):
    """The served-answer log and the feedback given on served answers, for the A/B report."""

    dropped: int  # answers dropped from the full buffer of a long outage (app/stores/served_log.py)

    def log_served(self, served: Served) -> None:
        """O(1) and no I/O (the request path calls it); the answer is stored by a writer thread."""
        ...

    def lookup(self, request_id: str) -> Served | None:
        """The answer served under `request_id`, buffered or stored; None when there is none."""
        ...

    def flush(self) -> int:
        """Store every buffered answer now; return how many were stored."""
        ...

    def add_feedback(self, request_id: str, item_id: str, event: Event) -> FeedbackResult:
        """Validate against the served answer (FeedbackError naming the field), store durably, return."""
        ...

    def arm_counts(
        self, experiment: str, since: float | None = None, until: float | None = None
    ) -> dict[str, dict[str, int]]:
        """Per arm: users, requests, impressions, clicks, purchases, purchase_requests (forced and
        failed answers left out), over the experiment's answers served in [since, until)."""
        ...

    def bucket_counts(
        self, experiment: str, bucket_seconds: int, since: float | None = None, until: float | None = None
    ) -> dict[int, dict[str, dict[str, int]]]:
        """`arm_counts` per time bucket: {bucket start (epoch seconds, a multiple of bucket_seconds):
        {arm: counts}}, only buckets with answers. An answer's feedback counts in the answer's bucket;
        `users` are distinct within the bucket."""
        ...

    def unit_sums(
        self, experiment: str, since: float | None = None, until: float | None = None
    ) -> dict[str, UnitSums]:
        """Per arm, per randomised unit (user or session): the totals of `arm_counts`, one row per unit
        sorted by unit id. Forced requests, failed ones and "anonymous" ones (never randomised) are
        left out (`records.unit_sums_of` over `answer_rows`)."""
        ...

    def answer_rows(
        self, experiment: str | None, since: float | None = None, until: float | None = None
    ) -> AnswerRows:
        """Every answer of the experiment (None: of every experiment, and of none) served in
        [since, until), failed ones included and forced ones left out, one row each, oldest first."""
        ...

    def served_counts(self, since: float | None = None, until: float | None = None) -> dict[str, int]:
        """Answers served in [since, until) per model version, every experiment and arm included
        (failed ones left out)."""
        ...

    def delete_experiment(self, experiment: str) -> int:
        """Delete the experiment's served answers and their feedback; return the answers deleted."""
        ...

    def close(self) -> None:
        """Stop the writer and store what is buffered: a clean restart loses nothing."""
        ...


class ComparisonStore(Protocol):
    """Shadow comparisons (student vs teacher answer) and shadow failure counts, for the shadow report."""

    def add(self, comparisons: Iterable[Comparison]) -> None: ...

    def add_failures(self, counts: dict[tuple[str, FailureKind], int], ts: float | None = None) -> None:
        """Record failure counts keyed by (student_version, kind) at `ts` (default: now)."""
        ...

    def load(self, since: float | None = None) -> ComparisonRows:
        """Every comparison and failure count from `since` on (epoch seconds; None: all), oldest first."""
        ...

    def close(self) -> None: ...


class ExperimentStore(Protocol):
    """Named experiments (arms, share, start and stop times), shared by every replica."""

    def create(self, record: ExperimentRecord) -> None:
        """Store a new experiment; ExperimentExists when the name is taken."""
        ...

    def get(self, name: str) -> ExperimentRecord | None: ...

    def list(self) -> list[ExperimentRecord]:
        """Every experiment, oldest start first."""
        ...

    def update(self, record: ExperimentRecord) -> None:
        """Replace the stored experiment of `record.name` (stop, reset)."""
        ...

    def close(self) -> None: ...


class CatalogueStore(Protocol):
    """The live catalogue overlay (availability, price, category, extra fields, registered items),
    shared by every replica. Blocking calls: the service runs them off the event loop."""

    def generation(self) -> int:
        """A number that grows with every update (0: never updated): what each replica polls."""
        ...

    def snapshot(self) -> CatalogueSnapshot:
        """Every entry, with the generation they make up (read in one consistent step)."""
        ...

    def update(self, item_ids: Sequence[str], change: CatalogueChange) -> int:
        """Atomically, for each item: read its entry, store what `change` returns (None: delete);
        then bump the generation and return it. Durable before it returns. An exception from
        `change` aborts the whole update: nothing is stored."""
        ...

    def close(self) -> None: ...
