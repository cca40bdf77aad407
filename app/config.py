"""Service settings: one pydantic-settings class read from `RECDISTILL_*` environment variables.

Validators fail fast at start-up so a bad deployment never reaches its first request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import UserError
from core.names import closest

log = logging.getLogger(__name__)


class Settings(BaseSettings):
    """Everything the service can be told; defaults suit `recdistill serve` on a laptop."""

    model_config = SettingsConfigDict(env_prefix="RECDISTILL_", extra="ignore", frozen=True)

    models_dir: Path = Path("models")
    # The history store lives outside models/ (which holds published artifacts only).
    history_db: Path = Path(".recdistill/history.sqlite3")
    # FULL: every acknowledged event is fsynced into the WAL before the 2xx (survives power loss,
    # not only kill -9). NORMAL+WAL survives a process crash but may lose the last commits on power loss.
    history_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    seed_history: bool = True  # seed the store from a version's log (seed_interactions) on first load
    # Many replicas behind a load balancer: "redis" keeps histories, served answers, feedback and shadow comparisons
    # in one shared Redis (app/stores/history_redis.py, app/stores/state_redis.py); needs the `redis` extra.
    history_backend: Literal["sqlite", "redis"] = "sqlite"
    redis_url: SecretStr | None = None  # e.g. redis://:password@redis:6379/0 (a secret: it may hold one)
    redis_prefix: str = Field(default="recdistill:", min_length=1, max_length=64)

    max_k: int = Field(default=1000, ge=1)
    max_history: int = Field(
        default=1000, ge=1000
    )  # request `history` length; the contract says at least 1,000
    max_batch_requests: int = Field(default=256, ge=1)  # requests per POST /v1/recommend/batch
    max_events: int = Field(default=1000, ge=1)  # events per POST /v1/events
    max_body_bytes: int = Field(default=1 << 20, ge=1024)  # larger bodies get 413

    intra_op_threads: int = Field(default=1, ge=1, le=64)  # onnxruntime intra-op threads per session
    # "manifest": the student answers from the ANN index its manifest names (exact when it names none);
    # "exact": always the exact top-k graph, the index is not even loaded (an operator's switch when an
    # index misbehaves, and the baseline for bench/scale.py --version-dir).
    retrieval: Literal["manifest", "exact"] = "manifest"
    batch_max_size: int = Field(default=64, ge=1, le=4096)
    # 0: batches form while the previous one runs; a wait only adds latency (app/engine/batching.py)
    batch_max_wait_ms: float = Field(default=0.0, ge=0.0, le=50.0)

    reload_poll_seconds: float = Field(default=0.0, ge=0.0)  # 0: do not watch models/LATEST
    admin_token: SecretStr | None = None  # no default: the admin API is off until this is set
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Teacher in shadow and the A/B experiment (app/experiment/shadow.py, app/experiment/assignment.py).
    shadow_rate: float = Field(default=0.0, ge=0.0, le=1.0)  # share of student answers re-run by the teacher
    shadow_queue_size: int = Field(default=32, ge=1, le=100_000)  # full queue: the shadow job is dropped
    shadow_timeout_ms: float = Field(default=250.0, gt=0.0)  # from enqueue to teacher answer
    shadow_threads: int = Field(default=1, ge=1, le=16)  # shadow workers, each ORT run on one intra-op thread
    # "process": the teacher runs in child processes at idle CPU priority (SCHED_IDLE), so the primary
    # never pays for it; "thread": in the server process (competes with the primary for CPU).
    shadow_isolation: Literal["process", "thread"] = "process"
    # Cores the teacher processes may use together (token bucket); past it jobs are dropped (counted).
    # 0.1: ~20-30 comparisons/s at 100k items under full load, -1% req/s (0.25 cost -5%; measured with bench/service.py)
    shadow_cpu_budget: float = Field(default=0.1, gt=0.0, le=64.0)
    experiment_name: str = Field(default="student-vs-teacher", min_length=1, max_length=128)
    # Not a secret (it only decorrelates experiments), but explicit: changing it reshuffles every user.
    experiment_salt: str = Field(default="recdistill-ab-2026-1", min_length=1, max_length=256)
    experiment_teacher_share: float = Field(default=0.0, ge=0.0, le=1.0)  # 0: everyone on the student
    # Shadow comparisons, served-answer log, feedback and the named experiments (SQLite backend);
    # default: state.sqlite3 beside history_db.
    state_db: Path | None = None
    # A version loaded beside the serving one (app/engine/candidate.py): the shadow compares its
    # student with the serving answer; an experiment with arms "serving_vs_candidate" serves it.
    # The default only: a candidate set through POST /admin/candidate is stored beside the pin and wins.
    candidate_version: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
    # How often a replica re-reads the running experiment from the shared state (redis backend; with
    # SQLite the one replica changes it itself). 0: never.
    experiment_refresh_seconds: float = Field(default=2.0, ge=0.0)

    # The live catalogue overlay (app/engine/catalogue_live.py): how often a replica compares the
    # overlay's generation in the shared state with its own (one GET or SELECT) and reloads it when it
    # changed. A change made through this replica applies here at once. 0: never poll.
    catalogue_poll_seconds: float = Field(default=1.0, ge=0.0)
    # When the shared store fails (app/stores/outage.py): a user_id request waits at most this long
    # for its history, then is answered from the popular order (`fallback: "history_unavailable"`).
    store_read_timeout_ms: float = Field(default=250.0, gt=0.0, le=60_000.0)
    # A write (event, admin change) waits at most this long, then answers 503 with Retry-After.
    store_write_timeout_ms: float = Field(default=2000.0, gt=0.0, le=60_000.0)
    # After a failure, calls fail fast for this long before the store is tried again (also the
    # Retry-After of the 503s, rounded up to whole seconds).
    store_retry_seconds: float = Field(default=1.0, gt=0.0, le=60.0)

    # The dashboard at /ui (app/ui/): pages, their JSON helpers and the per-minute traffic ring.
    ui: bool = True
    # How often the traffic ring snapshots the request counters (the overview's rates and percentiles).
    ui_sample_seconds: float = Field(default=10.0, ge=1.0, le=300.0)

    @property
    def state_db_path(self) -> Path:
        return self.state_db if self.state_db is not None else self.history_db.with_name("state.sqlite3")

    @field_validator("admin_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (or unset to disable admin)")
        return value

    @model_validator(mode="after")
    def _redis_needs_url(self) -> Settings:
        if self.history_backend == "redis" and self.redis_url is None:
            raise ValueError("RECDISTILL_HISTORY_BACKEND=redis needs RECDISTILL_REDIS_URL")
        return self

    @model_validator(mode="after")
    def _paths_are_distinct(self) -> Settings:
        if self.history_db.resolve().parent == self.models_dir.resolve():
            raise ValueError(
                "RECDISTILL_HISTORY_DB must not live directly inside RECDISTILL_MODELS_DIR (published artifacts only)"
            )
        return self


ENV_PREFIX = "RECDISTILL_"
# RECDISTILL_* variables that are not settings of the service: read by the test and build scripts.
NOT_SETTINGS = frozenset(
    {
        "RECDISTILL_ML100K_CACHE",  # the MovieLens-100k cache the tests use (scripts/test-deps.sh)
        "RECDISTILL_REQUIRE_ALL_TESTS",  # a skipped test fails the run (.ci/run, tests/conftest.py)
        "RECDISTILL_VENV_BIN",  # scripts/test-deps.sh
        "RECDISTILL_SKIP_DOCKER_TEST",  # .ci/run
        "RECDISTILL_IMAGE",  # scripts/docker-test.sh, with the three below
        "RECDISTILL_READY_SECS",
        "RECDISTILL_ENGINE",
        "RECDISTILL_PYTHON",
    }
)


class SettingsError(UserError, ValueError):
    """Settings that cannot start the service; the message is one line naming each variable at fault."""


def settings_error_line(exc: ValidationError) -> str:
    """pydantic's multi-line report as one line: `RECDISTILL_X: what is wrong (got ...)`; errors of
    the whole object (a validator that checks two settings together) name their variables already."""
    parts = []
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["loc"]:
            name = ENV_PREFIX + ".".join(str(p) for p in error["loc"]).upper()
            got = error.get("input")
            secret = "token" in name.lower() or "url" in name.lower()
            shown = "" if secret or isinstance(got, dict) else f" (got {str(got)[:80]!r})"
            parts.append(f"{name}: {message}{shown}")
        else:
            parts.append(message)
    return "; ".join(parts)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per `RECDISTILL_*` name in `environ` that is no setting (a typo such as
    RECDISTILL_SHADOWRATE would otherwise be ignored without a word), naming the closest setting."""
    fields = [name.upper() for name in Settings.model_fields]
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper[len(ENV_PREFIX) :] in fields or upper in NOT_SETTINGS:
            continue
        # Compared without the prefix every name shares, which would make any two names look alike.
        match = closest(upper[len(ENV_PREFIX) :], fields)
        lines.append(
            f"{name}: not a setting, ignored" + (f" (did you mean {ENV_PREFIX}{match}?)" if match else "")
        )
    return lines


def load_settings(**overrides: object) -> Settings:
    """`Settings` from the environment (plus explicit overrides); SettingsError, one line, on bad input.
    An unknown `RECDISTILL_*` variable is a warning, not an error: the service still starts."""
    for line in unknown_variables(os.environ):
        log.warning(line)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(settings_error_line(exc)) from None
