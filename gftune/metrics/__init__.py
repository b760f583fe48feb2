"""Metric sources (Prometheus HTTP API, direct /metrics scrape) and metric naming detection."""

from gftune.metrics.naming import Naming, detect
from gftune.metrics.sources import (
    MetricsError,
    MetricSource,
    PrometheusSource,
    QueryResult,
    RangeResult,
    ScrapeSource,
    Snapshot,
    open_source,
)

__all__ = [
    "MetricSource", "MetricsError", "Naming", "PrometheusSource", "QueryResult", "RangeResult",
    "ScrapeSource", "Snapshot", "detect", "open_source",
]
