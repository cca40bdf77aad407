"""Prometheus metrics on a registry owned by the app (no process-global state), and the ASGI
middleware that counts requests and times them per endpoint (the route template, not the raw path,
so user ids do not explode the label set)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        self.reloads = Counter(
            "recdistill_model_reloads_total", "Model loads by outcome", ["outcome"], registry=r
        )
        self.events = Counter(
            "recdistill_events_total", "Interactions appended to the history store", registry=r
        )
        self.model.info({"version": "none"})

    def set_model(self, version: str) -> None:
        self.model.info({"version": version})

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): count and time every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
