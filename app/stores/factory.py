"""Open the stores the settings select: SQLite files (one replica, the default) or one shared Redis
(`RECDISTILL_HISTORY_BACKEND=redis`; the `redis` extra). Each returns the store's Protocol."""

from __future__ import annotations

from typing import NamedTuple

from app.config import Settings
from app.stores.protocols import (
    CatalogueStore,
    ComparisonStore,
    ExperimentStore,
    FeedbackStore,
    HistoryStore,
)


class StateStores(NamedTuple):
    feedback: FeedbackStore
    comparisons: ComparisonStore
    experiments: ExperimentStore


def open_history(settings: Settings) -> HistoryStore:
    """The history store: SQLite at history_db, or Redis shared by replicas."""
    if settings.history_backend == "redis":
        from app.stores.history_redis import RedisHistoryStore

        assert settings.redis_url is not None  # Settings refuses redis without a URL
        return RedisHistoryStore(settings.redis_url.get_secret_value(), settings.redis_prefix)
    from app.stores.history_sqlite import SqliteHistoryStore

    return SqliteHistoryStore(settings.history_db, settings.history_synchronous)


def open_state_stores(settings: Settings) -> StateStores:
    """The served-answer/feedback log, the shadow comparisons and the named experiments: the SQLite
    state db, or Redis."""
    if settings.history_backend == "redis":
        from app.stores.comparisons_redis import RedisComparisonStore
        from app.stores.experiments_redis import RedisExperimentStore
        from app.stores.feedback_redis import RedisFeedbackStore

        assert settings.redis_url is not None
        url, prefix = settings.redis_url.get_secret_value(), settings.redis_prefix
        timeout = settings.store_write_timeout_ms / 1000  # a lost Redis: a bounded wait, then a 503
        return StateStores(
            RedisFeedbackStore(url, prefix, timeout=timeout),
            RedisComparisonStore(url, prefix, timeout),
            RedisExperimentStore(url, prefix, timeout),
        )
    from app.stores.comparisons_sqlite import SqliteComparisonStore
    from app.stores.experiments_sqlite import SqliteExperimentStore
    from app.stores.feedback_sqlite import SqliteFeedbackStore

    path = settings.state_db_path
    return StateStores(
        SqliteFeedbackStore(path, synchronous=settings.history_synchronous),
        SqliteComparisonStore(path),
        SqliteExperimentStore(path, settings.history_synchronous),
    )


def open_catalogue(settings: Settings) -> CatalogueStore:
    """The live catalogue overlay: the SQLite state db, or Redis. Its client times out like a write
    (RECDISTILL_STORE_WRITE_TIMEOUT_MS), so an admin change or a poll never hangs on a lost store."""
    timeout = settings.store_write_timeout_ms / 1000
    if settings.history_backend == "redis":
        from app.stores.catalogue_redis import RedisCatalogueStore

        assert settings.redis_url is not None
        return RedisCatalogueStore(settings.redis_url.get_secret_value(), settings.redis_prefix, timeout)
    from app.stores.catalogue_sqlite import SqliteCatalogueStore

    return SqliteCatalogueStore(settings.state_db_path, settings.history_synchronous)
