"""Prometheus metrics on a registry owned by the app (no process-global state). Requests are
counted and timed per endpoint (the route template, not the raw path, so user ids do not explode the
label set) by `app.main.EdgeMiddleware` through `Metrics.observe_request`."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Every metric the service exports, created on one registry per app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "recdistill_requests_total",
            "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "recdistill_request_latency_seconds",
            "HTTP request latency by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model = Info("recdistill_model", "The model version being served", registry=r)
        self.recommendations = Counter(
            "recdistill_recommendations_total",
            "Recommendations by arm and fallback",
            ["arm", "fallback"],
            registry=r,
        )
        self.batch_size = Histogram(
            "recdistill_inference_batch_size",
            "Requests per onnxruntime batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        # Their sums over a window: the inference thread's busy share of the window, and the share of
        # that busy time it was on a CPU (bench/service.py prints both beside every wrk run).
        self.batch_seconds = Histogram(
            "recdistill_inference_batch_seconds",
            "Wall seconds per inference batch on the worker thread",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_cpu = Counter(
            "recdistill_inference_cpu_seconds",
            "CPU seconds the inference worker thread spent in batches",
            registry=r,
        )
        self.reloads = Counter(
            "recdistill_model_reloads_total", "Model loads by outcome", ["outcome"], registry=r
        )
        self.events = Counter(
            "recdistill_events_total", "Interactions appended to the history store", registry=r
        )
        # The shared store (app/stores/outage.py): a degraded read is also counted in
        # recdistill_recommendations_total{fallback="history_unavailable"}.
        self.store_up = Gauge(
            "recdistill_store_up",
            "1 while the shared store's last read (or write) succeeded, 0 while it fails",
            ["operation"],
            registry=r,
        )
        self.store_errors = Counter(
            "recdistill_store_errors_total",
            "Shared store reads and writes that failed (a degraded answer or a 503)",
            ["operation"],
            registry=r,
        )
        for op in ("read", "write"):
            self.store_up.labels(op).set(1)
            self.store_errors.labels(op)
        self.served_dropped = Gauge(
            "recdistill_served_answers_dropped",
            "Served answers dropped since start from the A/B log's full buffer while the store could not be written",
            registry=r,
        )
        self.catalogue_generation = Gauge(
            "recdistill_catalogue_generation",
            "The live catalogue overlay's generation served here",
            registry=r,
        )
        self.catalogue_entries = Gauge(
            "recdistill_catalogue_entries",
            "Items with a catalogue override here, by kind",
            ["kind"],
            registry=r,
        )
        self.model.info({"version": "none"})
        # Labelled children, looked up once: `labels()` validates and hashes its labels on every
        # call, which is measurable per request on the event loop.
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._recommendation_series: dict[tuple[str, str], Any] = {}

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request and record its latency (called once per request by the middleware)."""
        key = (endpoint, method, status)
        series = self._request_series.get(key)
        if series is None:
            series = (self.requests.labels(endpoint, method, str(status)), self.latency.labels(endpoint))
            self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def count_recommendation(self, arm: str, fallback: str | None) -> None:
        key = (arm, fallback or "none")
        child = self._recommendation_series.get(key)
        if child is None:
            child = self._recommendation_series[key] = self.recommendations.labels(*key)
        child.inc()

    def observe_batch(self, wall_seconds: float, cpu_seconds: float) -> None:
        """One inference batch: its wall time on the worker thread and that thread's CPU time in it."""
        self.batch_seconds.observe(wall_seconds)
        self.batch_cpu.inc(cpu_seconds)

    def set_store_up(self, operation: str, up: bool) -> None:
        self.store_up.labels(operation).set(1 if up else 0)

    def count_store_error(self, operation: str) -> None:
        self.store_errors.labels(operation).inc()

    def set_catalogue(self, generation: int, counts: dict[str, int]) -> None:
        self.catalogue_generation.set(generation)
        for kind, n in counts.items():
            self.catalogue_entries.labels(kind).set(n)

    def set_model(self, version: str) -> None:
        self.model.info({"version": version})

    def render(self) -> bytes:
        return generate_latest(self.registry)
