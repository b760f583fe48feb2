"""``/metrics``: the ``gfm_*`` instruments (reference §5.2) as the Helm OTel collector exposes them.

Names are ``<namespace>_gfm_<instrument>``. Two naming modes:

* ``documented``: the names of the GlassFlow docs (``..._ingestor_backpressure_active``,
  ``..._stream_depth`` and ``..._stream_depth_ratio``);
* ``collector``: what the collector's normalisation produces (§5.4): ``..._backpressure_active_ratio``,
  ``..._stream_depth_ratio`` holds the absolute depth, ``..._stream_depth_ratio_per_second`` the ratio.

Time scale: counter-like series (counters, histogram ``_bucket``/``_sum``/``_count``) are divided by
``time_scale`` so that ``rate()`` over wall-clock seconds equals the model's per-sim-second rates.
Gauges are shown as they are.

Besides the gfm families, the consumer lag of each pipeline's Kafka consumer group is exposed the way
kafka_exporter shows it (``kafka_consumergroup_lag``, ``kafka_topic_partitions``): not a GlassFlow
metric, but what users have next to it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gftune.sim.model import DURATION_BUCKETS, Histogram, consumer_group

if TYPE_CHECKING:
    from gftune.sim.store import Store

NAMING_MODES = ("documented", "collector")

# model counter key -> (instrument name without prefix, label names of the key, help)
COUNTERS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "kafka_records_read": ("kafka_records_read_total", ("component",), "Records read from Kafka"),
    "clickhouse_records_written": ("clickhouse_records_written_total", ("component",), "Records written to ClickHouse"),
    "dlq_records_written": ("dlq_records_written_total", ("component", "reason"), "Records written to the DLQ"),
    "processor_messages": ("processor_messages_total", ("component", "status"), "Messages processed by a component"),
    "bytes_processed": ("bytes_processed_total", ("component", "direction"), "Bytes processed"),
    "sink_errors_by_classification": ("sink_errors_by_classification_total", ("classification", "error_name"),
                                      "Sink errors by classification"),
    "sink_nack_messages": ("sink_nack_messages_total", (), "Messages NAKed by the sink"),
    "sink_retries": ("sink_retries_total", ("outcome",), "Sink insert retries"),
    "ingestor_backpressure_events": ("ingestor_backpressure_events_total", (), "Ingestor backpressure episodes"),
    "component_backpressure_events": ("component_backpressure_events_total", ("component",),
                                      "Component backpressure episodes"),
}
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "processing_duration_seconds": ("processing_duration_seconds", ("component", "stage"),
                                    "Processing duration per batch or message"),
    "sink_batch_size_records": ("sink_batch_size_records", (), "Records per sink batch"),
    "sink_batch_size_bytes": ("sink_batch_size_bytes", (), "Bytes per sink batch"),
    "ingestor_backpressure_duration_seconds": ("ingestor_backpressure_duration_seconds", (),
                                               "Length of ingestor backpressure episodes"),
    "component_backpressure_duration_seconds": ("component_backpressure_duration_seconds", ("component",),
                                                "Length of component backpressure episodes"),
}


def gauge_names(naming: str) -> dict[str, str]:
    if naming == "collector":
        return {"ingestor_backpressure_active": "ingestor_backpressure_active_ratio",
                "component_backpressure_active": "component_backpressure_active_ratio",
                "stream_depth": "stream_depth_ratio",
                "stream_depth_ratio": "stream_depth_ratio_per_second"}
    return {k: k for k in ("ingestor_backpressure_active", "component_backpressure_active", "stream_depth",
                           "stream_depth_ratio")}


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
    def __init__(self, store: Store, http: HttpStats, *, namespace: str = "glassflow", naming: str = "documented",
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
        scale, prefix = self.scale, self.prefix
        counters = {key: CounterMetricFamily(prefix + name, doc, labels=(*labels, "pipeline_id"))
                    for key, (name, labels, doc) in COUNTERS.items()}
        histograms = {key: HistogramMetricFamily(prefix + name, doc, labels=(*labels, "pipeline_id"))
                      for key, (name, labels, doc) in HISTOGRAMS.items()}
        names = gauge_names(self.naming)
        bp = GaugeMetricFamily(prefix + names["ingestor_backpressure_active"], "Ingestor backpressure (1 active)",
                               labels=("pipeline_id",))
        cbp = GaugeMetricFamily(prefix + names["component_backpressure_active"], "Component backpressure (1 active)",
                                labels=("pipeline_id", "component"))
        depth = GaugeMetricFamily(prefix + names["stream_depth"], "Messages in the stream",
                                  labels=("pipeline_id", "stream"))
        ratio = GaugeMetricFamily(prefix + names["stream_depth_ratio"], "Stream messages / MaxMsgs",
                                  labels=("pipeline_id", "stream"))
        lag = GaugeMetricFamily("kafka_consumergroup_lag", "Consumer group lag (as kafka_exporter shows it)",
                                labels=("consumergroup", "partition", "topic"))
        partitions = GaugeMetricFamily("kafka_topic_partitions", "Partitions of the topic (as kafka_exporter shows it)",
                                       labels=("topic",))
        topics_seen: set[str] = set()
        for row in rows:
            model = row.model
            pid = row.pipeline_id
            for (key, labels), value in model.counters.items():
                counters[key].add_metric((*labels, pid), value * scale)
            for (key, labels), hist in model.histograms.items():
                buckets, _count, total = hist.cumulative()
                histograms[key].add_metric((*labels, pid), [(le, v * scale) for le, v in buckets], total * scale)
            gauges = model.gauges()
            if model.kafka:
                bp.add_metric((pid,), gauges["ingestor_backpressure_active"])
                for stream_name, value in gauges["streams"]:
                    depth.add_metric((pid, stream_name), value)
                    if gauges["max_msgs"] != float("inf"):
                        ratio.add_metric((pid, stream_name), value / gauges["max_msgs"])
                group = consumer_group(pid)
                for source in model.sources:
                    per_partition = source.lag / source.partitions
                    for partition in range(source.partitions):
                        lag.add_metric((group, str(partition), source.topic), per_partition)
                    if source.topic not in topics_seen:
                        topics_seen.add(source.topic)
                        partitions.add_metric((source.topic,), source.partitions)
            for component, active in gauges["component_backpressure_active"].items():
                cbp.add_metric((pid, component), active)
        yield from counters.values()
        yield from histograms.values()
        yield from (bp, cbp, depth, ratio, lag, partitions)

    def _http_families(self) -> Iterator[Metric]:
        labels = ("method", "path", "status")
        count = CounterMetricFamily(self.prefix + "http_server_request_count_total", "API requests", labels=labels)
        duration = HistogramMetricFamily(self.prefix + "http_server_request_duration_seconds",
                                         "API request duration", labels=labels)
        with self.http.lock:
            for key, value in self.http.counts.items():
                count.add_metric(key, value * self.scale)
            for key, hist in self.http.durations.items():
                buckets, _count, total = hist.cumulative()
                duration.add_metric(key, [(le, v * self.scale) for le, v in buckets], total * self.scale)
        yield count
        yield duration
