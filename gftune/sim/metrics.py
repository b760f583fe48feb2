"""``/metrics``: what the Helm chart's OTel collector exposes on ``:9090``.

The ``gfm_*`` series of every component pod and of the operator come from their meters through the
collector (``gftune.sim.telemetry``, ``gftune.sim.pods``), named in one of the two styles of
``gftune.glassflow.instruments`` (``collector`` by default, ``documented`` as GlassFlow's docs write
them). The API's own request metrics are exposed directly.

Time scale: counter-like series (counters, histogram ``_bucket``/``_sum``/``_count``) are divided by
``time_scale`` so that ``rate()`` over wall-clock seconds equals the model's per-sim-second rates.
Gauges are shown as they are.

Besides GlassFlow's series, the consumer lag of each pipeline's Kafka consumer group is exposed the
way kafka_exporter shows it (``kafka_consumergroup_lag``, ``kafka_topic_partitions``): not a
GlassFlow metric, but what users have next to it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gftune.glassflow.instruments import (
    DEFAULT_NAMING,
    DURATION_BUCKETS,
    HTTP_REQUEST_COUNT,
    HTTP_REQUEST_DURATION,
    NAMING_STYLES,
)
from gftune.glassflow.topology import consumer_group
from gftune.sim.telemetry import Histogram

if TYPE_CHECKING:
    from gftune.sim.store import Store

NAMING_MODES = NAMING_STYLES


class HttpStats:
    """The API's own request metrics (``http_server_request_count_total`` and ``..._duration_seconds``)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], float] = {}
        self.durations: dict[tuple[str, str, str], Histogram] = {}
        self.lock = threading.Lock()

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        key = (method, path, str(status))
        with self.lock:
            self.counts[key] = self.counts.get(key, 0.0) + 1.0
            hist = self.durations.get(key)
            if hist is None:
                hist = self.durations[key] = Histogram(DURATION_BUCKETS)
            hist.observe(seconds)


class SimCollector(Collector):
    def __init__(self, store: Store, http: HttpStats, *, namespace: str = "glassflow", naming: str = DEFAULT_NAMING,
                 time_scale: float = 1.0) -> None:
        if naming not in NAMING_MODES:
            raise ValueError(f"naming must be one of {', '.join(NAMING_MODES)}, got {naming!r}")
        self.store = store
        self.http = http
        self.namespace = namespace
        self.prefix = f"{namespace}_gfm_" if namespace else "gfm_"
        self.naming = naming
        self.scale = 1.0 / float(time_scale)

    def collect(self) -> Iterator[Metric]:
        rows = self.store.rows_snapshot()
        with self.store.lock:
            yield from self._model_families(rows)
            yield from self.store.collector.families(self.namespace, self.naming, self.scale)
        yield from self._http_families()

    def _model_families(self, rows: list[Any]) -> Iterator[Metric]:
        """Not GlassFlow's: the consumer lag as kafka_exporter shows it next to it."""
        lag = GaugeMetricFamily("kafka_consumergroup_lag", "Consumer group lag (as kafka_exporter shows it)",
                                labels=("consumergroup", "partition", "topic"))
        partitions = GaugeMetricFamily("kafka_topic_partitions", "Partitions of the topic (as kafka_exporter shows it)",
                                       labels=("topic",))
        topics_seen: set[str] = set()
        for row in rows:
            model = row.model
            if not model.kafka:
                continue
            group = consumer_group(row.pipeline_id)
            for source in model.sources:
                partition = 0
                for replica in source.pods:  # each replica's lag spread over its own partitions
                    for _ in range(replica.partitions):
                        lag.add_metric((group, str(partition), source.topic), replica.lag / replica.partitions)
                        partition += 1
                if source.topic not in topics_seen:
                    topics_seen.add(source.topic)
                    partitions.add_metric((source.topic,), source.partitions)
        yield from (lag, partitions)

    def _http_families(self) -> Iterator[Metric]:
        labels = ("method", "path", "status")
        count = CounterMetricFamily(HTTP_REQUEST_COUNT.exposed(self.namespace, self.naming), "API requests",
                                    labels=labels)
        duration = HistogramMetricFamily(HTTP_REQUEST_DURATION.exposed(self.namespace, self.naming),
                                         "API request duration", labels=labels)
        with self.http.lock:
            for key, value in self.http.counts.items():
                count.add_metric(key, value * self.scale)
            for key, hist in self.http.durations.items():
                duration.add_metric(key, [(le, v * self.scale) for le, v in hist.cumulative()], hist.total * self.scale)
        yield count
        yield duration
