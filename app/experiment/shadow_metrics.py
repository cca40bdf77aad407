"""The shadow teacher's Prometheus series: jobs by outcome, agreement and latency histograms."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

AGREEMENT_BUCKETS = tuple(round(0.1 * i, 1) for i in range(-10, 11))  # -1.0 .. 1.0 (tau can be negative)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
METRIC_LABELS = {
    "overlap@k": "overlap",
    "rbo": "rbo",
    "kendall_tau": "kendall_tau",
    "ndcg_vs_teacher": "ndcg",
}


class ShadowMetrics:
    """Prometheus series of the shadow, created on the app's registry."""

    def __init__(self, registry: CollectorRegistry):
        self.jobs = Counter(
            "recdistill_shadow_jobs_total",
            "Shadow jobs by outcome (compared, dropped, error, timeout)",
            ["outcome"],
            registry=registry,
        )
        self.agreement = Histogram(
            "recdistill_shadow_agreement",
            "Teacher-vs-student agreement per shadowed request",
            ["metric"],
            buckets=AGREEMENT_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            "recdistill_shadow_latency_seconds",
            "Inference latency of each side on shadowed requests",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[int, str], Any] = {}

    def series(self, metric: Counter | Histogram, label: str) -> Any:
        """`metric.labels(label)`, looked up once: `labels()` validates and hashes on every call."""
        key = (id(metric), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(label)
        return child

    def job(self, outcome: str) -> None:
        """Count one job outcome (drops happen on the request path, so this must be cheap)."""
        self.series(self.jobs, outcome).inc()
