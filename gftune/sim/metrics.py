"""``/metrics``: what the Helm chart's OTel collector exposes on ``:9090``.

The ``gfm_*`` series of every component pod and of the operator come from their meters through the
collector (``gftune.sim.telemetry``, ``gftune.sim.pods``), named in one of the two styles of
``gftune.glassflow.instruments`` (``collector`` by default, ``documented`` as GlassFlow's docs write
them). The API's own request metrics go the same way (its process, ``job="glassflow/glassflow-api"``).

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

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gftune.glassflow.instruments import (
    DEFAULT_NAMING,
    HTTP_REQUEST_COUNT,
    HTTP_REQUEST_DURATION,
    NAMING_STYLES,
)
from gftune.glassflow.topology import consumer_group
from gftune.sim import nats_exporter
from gftune.sim.telemetry import Collector as OtelCollector
from gftune.sim.telemetry import Meter, Resource

if TYPE_CHECKING:
    from gftune.sim.store import Store

NAMING_MODES = NAMING_STYLES
API_RESOURCE = Resource("glassflow/glassflow-api", None, (("service_version", "v3.1.0"),))


class HttpStats:
    """The API process's meter: ``http_server_request_count_total`` and ``…_duration_seconds`` per request
    (``internal/api/middlewares.go``). The API sets no instance id, so its series carry
    ``job="<namespace>/glassflow-api"`` and no ``instance``
    (``charts:charts/glassflow-etl/templates/api-configmap.yaml``). Unlike GlassFlow's 10-s push, every
    scrape shows the requests served so far: tests count the requests a client sent from it."""

    def __init__(self, started: float = 0.0) -> None:
        self.meter = Meter(API_RESOURCE, started)
        self.lock = threading.Lock()

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        labels = (method, path, str(status))
        with self.lock:
            self.meter.add(HTTP_REQUEST_COUNT, labels, 1.0)
            self.meter.observe(HTTP_REQUEST_DURATION, labels, seconds)

    def push(self, collector: OtelCollector, now: float) -> None:
        with self.lock:
            collector.push(self.meter, now)


class SimCollector(Collector):
    def __init__(self, store: Store, http: HttpStats, *, namespace: str = "glassflow", naming: str = DEFAULT_NAMING,
                 time_scale: float = 1.0, nats_exporter: bool = False) -> None:
        if naming not in NAMING_MODES:
            raise ValueError(f"naming must be one of {', '.join(NAMING_MODES)}, got {naming!r}")
        self.store = store
        self.http = http
        self.namespace = namespace
        self.prefix = f"{namespace}_gfm_" if namespace else "gfm_"
        self.naming = naming
        self.scale = 1.0 / float(time_scale)
        self.nats_exporter = nats_exporter

    def collect(self) -> Iterator[Metric]:
        rows = self.store.rows_snapshot()
        with self.store.lock:
            self.http.push(self.store.collector, self.store.now())
            yield from self._model_families(rows)
            yield from self.store.collector.families(self.namespace, self.naming, self.scale)
            if self.nats_exporter:
                yield from nats_exporter.families(rows, self.namespace)

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
