"""Prometheus metrics of the signal service (served by BentoML's ``/metrics``).

Created lazily, once per process: BentoML workers set ``PROMETHEUS_MULTIPROC_DIR`` before the
service is instantiated, and ``prometheus_client`` must be imported after that to write the
multiprocess files BentoML's ``/metrics`` collects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class ServingMetrics:
    latency: Any  # Histogram: endpoint, code
    signals: Any  # Counter: endpoint, action, status
    errors: Any  # Counter: endpoint, code, field
    staleness: Any  # Gauge: series_id (seconds since the features' event time)
    model_info: Any  # Gauge = 1: model_version, model_name, source, run_id
    #: the labels of the model reported now (a reload sets the previous one to 0)
    serving: dict[str, str] = field(default_factory=dict)

    def observe(self, endpoint: str, code: int, seconds: float) -> None:
        self.latency.labels(endpoint=endpoint, code=str(code)).observe(seconds)

    def signal(self, endpoint: str, action: str, status: str) -> None:
        self.signals.labels(endpoint=endpoint, action=action, status=status).inc()

    def error(self, endpoint: str, code: int, field: str) -> None:
        self.errors.labels(endpoint=endpoint, code=str(code), field=field[:64]).inc()

    def feature_age(self, series_id: str, seconds: float) -> None:
        self.staleness.labels(series_id=series_id).set(seconds)

    def model(self, version: str, name: str, source: str, run_id: str) -> None:
        labels = {"model_version": version, "model_name": name, "source": source,
                  "run_id": run_id}
        if self.serving and self.serving != labels:
            self.model_info.labels(**self.serving).set(0)
        self.model_info.labels(**labels).set(1)
        self.serving.clear()
        self.serving.update(labels)


_METRICS: ServingMetrics | None = None


def serving_metrics() -> ServingMetrics:
    """The process-wide metrics (created on first use)."""
    global _METRICS
    if _METRICS is None:
        from prometheus_client import Counter, Gauge, Histogram

        _METRICS = ServingMetrics(
            latency=Histogram(
                "candlecast_request_duration_seconds",
                "Time to answer /signal and /predict, by endpoint and HTTP status.",
                ["endpoint", "code"], buckets=LATENCY_BUCKETS,
            ),
            signals=Counter(
                "candlecast_signals",
                "Answers of /signal and /predict by action and status (ok | stale).",
                ["endpoint", "action", "status"],
            ),
            errors=Counter(
                "candlecast_request_errors",
                "Refused requests by endpoint, HTTP status and offending field.",
                ["endpoint", "code", "field"],
            ),
            staleness=Gauge(
                "candlecast_feature_age_seconds",
                "Age of the latest online features read for a series (now - event time).",
                ["series_id"], multiprocess_mode="mostrecent",
            ),
            model_info=Gauge(
                "candlecast_model_info",
                "The model being served (value 1).",
                ["model_version", "model_name", "source", "run_id"], multiprocess_mode="max",
            ),
        )
    return _METRICS
