"""The FastAPI app: `create_app(settings)` wires settings, the model store, the history store, the
micro-batcher, the experiment and metrics onto `app.state` inside the lifespan (nothing loads at
import time).

The request path is `app.api.request`: resolve once, answer through `batcher.submit(query)` (off the
event loop), then the `app.state.after_answer` hooks (the served log and the shadow teacher).

`uvicorn app.main:app` works through a module `__getattr__` that builds the app from the
environment on first access; importing this module builds nothing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api import catalogue_routes, experiment_routes, rollout_routes, routes, version_routes
from app.api.docs import install_docs
from app.api.errors import http_error_handler, store_unavailable_handler, validation_error_handler
from app.api.middleware import EdgeMiddleware
from app.api.openapi import install_openapi
from app.config import Settings
from app.engine.batching import MicroBatcher
from app.engine.candidate import CandidateSlot
from app.engine.catalogue_live import LiveCatalogue, entry_counts, follow_catalogue
from app.engine.loading import read_seed
from app.engine.model import LoadedModel
from app.engine.model_store import ModelStore, watch_latest
from app.engine.recommender import limit_blas_threads, recommend_batch
from app.experiment.services import follow_experiments, open_experiment
from app.experiment.shadow import ShadowMetrics
from app.metrics import Metrics
from app.stores.factory import open_catalogue, open_history
from app.stores.history_guard import GuardedHistoryStore
from app.stores.outage import StoreHealth, storage_errors
from app.stores.pins import open_candidate_marks, open_pins
from app.stores.protocols import HistoryStore
from app.ui.pages import install_ui
from app.ui.traffic import TrafficRing

log = logging.getLogger(__name__)


def _seed_history(history: HistoryStore) -> Callable[[LoadedModel], None]:
    def seed(model: LoadedModel) -> None:
        arrays = read_seed(model)  # ManifestError here refuses the version
        if arrays is None:
            return
        added = history.seed_from_arrays(model.version, *arrays)  # a storage error: logged, 0
        if added:
            log.info("seeded %d interactions from version %s", added, model.version)

    return seed


def _freeze_heap(model: LoadedModel) -> None:
    """Move everything alive now (modules, the app, the model's id maps) out of the cyclic GC's view.

    A full (generation 2) collection walks every tracked object: measured 38 ms with a 100k-item
    model loaded, and it runs on the event loop whenever the allocation counters trigger it, which
    showed up in the p99 under load (bench/service.py). Frozen objects are still freed by reference
    counting; only cycles among them would stay, and a loaded model has none. Called after start-up and after each model swap.
    """
    gc.freeze()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    loop = asyncio.get_running_loop()
    health: StoreHealth = app.state.store_health
    redis = settings.history_backend == "redis"
    history = GuardedHistoryStore(  # SQLite, or Redis shared by replicas (RECDISTILL_HISTORY_BACKEND)
        open_history(settings),
        health,
        read_timeout_s=settings.store_read_timeout_ms / 1000 if redis else None,
        write_timeout_s=settings.store_write_timeout_ms / 1000,
    )
    catalogue = LiveCatalogue(open_catalogue(settings), health)  # the live overlay, polled below
    catalogue.listeners.append(lambda s: metrics.set_catalogue(s.generation, entry_counts(s)))
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    shared = (settings.models_dir, settings.history_backend, redis_url, settings.redis_prefix)
    pin_timeout = settings.store_read_timeout_ms / 1000  # /v1/models reads the pin: never a long wait
    store = ModelStore(
        settings.models_dir,
        settings.intra_op_threads,
        before_swap=_seed_history(history) if settings.seed_history else None,
        retrieval=settings.retrieval,
        pins=open_pins(*shared, timeout=pin_timeout),
    )
    store.listeners.append(lambda m: metrics.set_model(m.version))
    store.listeners.append(lambda m: setattr(app, "openapi_schema", None))  # item fields per version
    store.listeners.append(lambda m: metrics.reloads.labels("loaded").inc())
    store.listeners.append(catalogue.prepare)  # the new version's catalogue view, off the request path
    store.refusal_listeners.append(lambda v, r: metrics.reloads.labels("refused").inc())
    batcher: MicroBatcher[Any, Any] = MicroBatcher(
        recommend_batch, settings.batch_max_size, settings.batch_max_wait_ms / 1000
    )
    batcher.batch_sizes = metrics.batch_size.observe
    batcher.batch_times = metrics.observe_batch
    restore_blas = limit_blas_threads()
    batcher.start()
    candidate = CandidateSlot(
        settings.models_dir,
        settings.intra_op_threads,
        settings.retrieval,
        marks=open_candidate_marks(*shared, timeout=pin_timeout),  # beside the pin: the file or the Redis key
        default=settings.candidate_version,
    )
    experiment = open_experiment(app, store, candidate)  # state db, shadow, the after-answer hook
    metrics.served_dropped.set_function(lambda: experiment.feedback.dropped)
    app.state.history, app.state.store, app.state.batcher = history, store, batcher
    app.state.candidate = candidate
    app.state.catalogue = catalogue
    candidate.listeners.append(catalogue.prepare)
    tasks: list[asyncio.Task[None]] = []
    if settings.ui:  # the overview's last hour of traffic, sampled off the request path
        app.state.traffic = TrafficRing(metrics, settings.ui_sample_seconds)
        tasks.append(loop.create_task(app.state.traffic.run(), name="recdistill-traffic-sampler"))
    try:
        await loop.run_in_executor(None, catalogue.refresh)
        await loop.run_in_executor(None, store.load_initial)
        # The stored candidate, else the setting's; refused: logged, /v1/models says why (candidate_error)
        await loop.run_in_executor(None, candidate.poll)
        await loop.run_in_executor(None, experiment.start_default)
        gc.freeze()  # see _freeze_heap
        store.listeners.append(_freeze_heap)
        if settings.reload_poll_seconds > 0:
            tasks.append(
                loop.create_task(
                    watch_latest(store, settings.reload_poll_seconds, also=(candidate.poll,)),
                    name="recdistill-latest-watcher",
                )
            )
        if settings.catalogue_poll_seconds > 0:
            tasks.append(
                loop.create_task(
                    follow_catalogue(catalogue, settings.catalogue_poll_seconds),
                    name="recdistill-catalogue-poller",
                )
            )
        if settings.history_backend == "redis" and settings.experiment_refresh_seconds > 0:
            tasks.append(
                loop.create_task(
                    follow_experiments(experiment, settings.experiment_refresh_seconds),
                    name="recdistill-experiment-follower",
                )
            )
        yield
    finally:
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        gc.unfreeze()  # what this app froze becomes collectable again (tests build many apps)
        await batcher.close()
        await history.close()
        restore_blas()
        await loop.run_in_executor(None, experiment.close)
        catalogue.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the model is loaded by the lifespan, not here."""
    settings = settings or Settings()
    logging.getLogger("app").setLevel(settings.log_level.upper())
    # FastAPI's native OpenTelemetry probes the global providers (and the environment) on every
    # request; the service exports Prometheus metrics instead, so it is off (measured on the loop).
    app = FastAPI(
        title="recdistill",
        version="0.1.0",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # app.api.docs serves /docs from local assets instead of a CDN
        redoc_url=None,  # ReDoc has no maintained package shipping its assets: not served
    )
    app.add_exception_handler(RequestValidationError, validation_error_handler)  # NaN-safe 422s
    app.add_exception_handler(StarletteHTTPException, http_error_handler)  # 405s list every method
    for error in storage_errors():  # the shared store failed: 503 + Retry-After, never a 500
        app.add_exception_handler(error, store_unavailable_handler)
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.after_answer = []  # async hooks on every Answer (app.api.request); the lifespan adds some
    app.state.after_failure = []  # hooks on every answer that failed after its arm was assigned
    app.state.shadow_metrics = ShadowMetrics(app.state.metrics.registry)
    app.state.store = ModelStore(settings.models_dir)  # replaced in the lifespan; empty until then
    app.state.candidate = CandidateSlot(settings.models_dir)  # likewise
    app.state.catalogue = (
        LiveCatalogue()
    )  # likewise: the trained catalogue until the lifespan opens the store
    app.state.store_health = StoreHealth(
        _store_where(settings),
        settings.store_retry_seconds,
        on_change=app.state.metrics.set_store_up,
        on_failure=app.state.metrics.count_store_error,
    )
    app.include_router(routes.router)
    app.include_router(experiment_routes.router)
    app.include_router(version_routes.router)
    app.include_router(rollout_routes.router)
    app.include_router(catalogue_routes.router)
    if settings.ui:
        install_ui(app)  # /ui: the dashboard (app/ui/)
    install_openapi(app, settings)  # the settings' limits in /openapi.json
    install_docs(app)  # /docs with Swagger UI's files from swagger-ui-bundle, no CDN
    app.add_middleware(
        EdgeMiddleware,
        metrics=app.state.metrics,
        limit=settings.max_body_bytes,
        fast_routes={("POST", "/v1/recommend"): routes.recommend},
    )
    return app


def _store_where(settings: Settings) -> str:
    """The shared store named for messages and readiness (never a password)."""
    if settings.history_backend == "redis" and settings.redis_url is not None:
        from app.stores.redis_client import redact

        return f"redis {redact(settings.redis_url.get_secret_value())}"
    return f"sqlite {settings.history_db.parent}"


def __getattr__(name: str) -> FastAPI:
    """`uvicorn app.main:app`: build the app from the environment on first access (lazily)."""
    if name == "app":
        return create_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
