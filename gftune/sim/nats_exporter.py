"""The NATS exporter's JetStream series, as the Helm chart's collector re-exposes them (an option).

The chart runs ``natsio/prometheus-nats-exporter:0.17.3`` with ``-jsz=all`` against the NATS
servers' monitoring port; the collector's ``prometheus`` receiver scrapes it every 15 s
(``job_name: nats-exporter``) and its ``prometheus`` exporter re-exposes the series under the
release namespace (``charts:charts/glassflow-etl/templates/otel-collector-configmap.yaml``,
``…/prometheus-nats-exporter-deployment.yaml``). Names, kinds and label names are those of the
exporter at v0.17.3 (``nats-io/prometheus-nats-exporter:collector/jsz.go``): every series is a gauge,
``jetstream_server_*`` with the server labels, ``jetstream_stream_*`` adding the stream labels and
``jetstream_consumer_*`` adding the consumer labels.

Label *values* that describe the NATS deployment (server id and name, cluster, leaders) are
inferred from the chart (a 3-server cluster ``<release>-nats``, monitoring through the headless
service); each pipeline stream has one durable consumer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from gftune.glassflow import topology as topo

SERVER_LABELS = ("server_id", "server_name", "cluster", "domain", "meta_leader", "is_meta_leader")
STREAM_LABELS = (*SERVER_LABELS, "account", "account_id", "stream_name", "stream_leader", "is_stream_leader",
                 "stream_raft_group")
CONSUMER_LABELS = (*STREAM_LABELS, "consumer_name", "consumer_leader", "is_consumer_leader", "consumer_desc")
JOB, INSTANCE = "nats-exporter", "glassflow-prometheus-nats-exporter.glassflow.svc.cluster.local:80"
SERVER = ("http://glassflow-nats-headless.glassflow.svc.cluster.local:8222", "glassflow-nats-0", "glassflow-nats",
          "", "glassflow-nats-0", "true")
ACCOUNT = ("$G", "$G")

_SERVER = {"jetstream_server_jetstream_disabled": "JetStream disabled or not",
           "jetstream_server_total_streams": "Total number of streams in JetStream",
           "jetstream_server_total_consumers": "Total number of consumers in JetStream",
           "jetstream_server_total_messages": "Total number of stored messages in JetStream",
           "jetstream_server_total_message_bytes": "Total number of bytes stored in JetStream"}
_STREAM = {"jetstream_stream_total_messages": "Total number of messages from a stream",
           "jetstream_stream_total_bytes": "Total stored bytes from a stream",
           "jetstream_stream_first_seq": "First sequence from a stream",
           "jetstream_stream_last_seq": "Last sequence from a stream",
           "jetstream_stream_consumer_count": "Total number of consumers from a stream",
           "jetstream_stream_subject_count": "Total number of subjects in a stream",
           "jetstream_stream_limit_bytes": "The maximum configured storage limit (in bytes) for a JetStream stream"}
_CONSUMER = {"jetstream_consumer_delivered_consumer_seq": "Latest sequence number of a stream consumer",
             "jetstream_consumer_delivered_stream_seq": "Latest sequence number of a stream",
             "jetstream_consumer_num_ack_pending": "Number of pending acks from a consumer",
             "jetstream_consumer_num_redelivered": "Number of redelivered messages from a consumer",
             "jetstream_consumer_num_waiting": "Number of inflight fetch requests from a pull consumer",
             "jetstream_consumer_num_pending": "Number of pending messages from a consumer",
             "jetstream_consumer_ack_floor_stream_seq": "Number of ack floor stream seq from a consumer",
             "jetstream_consumer_ack_floor_consumer_seq": "Number of ack floor consumer seq from a consumer"}
_CONSUMER_KIND = {"sink": "sink", "dedup": "dedup"}


def families(rows: Iterable[Any], namespace: str) -> Iterator[Metric]:
    """The exporter's JetStream gauges for every pipeline's streams, with the collector's prefix."""
    prefix = f"{namespace}_" if namespace else ""
    labels = ("job", "instance")
    server = {n: GaugeMetricFamily(prefix + n, h, labels=(*SERVER_LABELS, *labels)) for n, h in _SERVER.items()}
    stream = {n: GaugeMetricFamily(prefix + n, h, labels=(*STREAM_LABELS, *labels)) for n, h in _STREAM.items()}
    consumer = {n: GaugeMetricFamily(prefix + n, h, labels=(*CONSUMER_LABELS, *labels)) for n, h in _CONSUMER.items()}
    totals = {"streams": 0.0, "consumers": 0.0, "messages": 0.0, "bytes": 0.0}
    for row in rows:
        model = row.model
        kinds = {n.id: n.kind for n in model.graph.nodes}
        held = {r.stream.name: r for r in model.sinks}
        for spec in model.graph.streams:
            js = model.streams[spec.name]
            depth = round(js.depth)
            last = round(js.stored_total)
            first = last - depth + 1
            stream_values = (*SERVER, *ACCOUNT, spec.name, SERVER[1], "true", "", JOB, INSTANCE)
            for name, value in (("jetstream_stream_total_messages", depth),
                                ("jetstream_stream_total_bytes", round(js.depth * js.record_bytes)),
                                ("jetstream_stream_first_seq", first), ("jetstream_stream_last_seq", last),
                                ("jetstream_stream_consumer_count", 1),
                                ("jetstream_stream_subject_count", len(spec.subjects) if depth else 0),
                                ("jetstream_stream_limit_bytes", js.max_bytes if js.max_bytes != float("inf") else -1)):
                stream[name].add_metric(stream_values, float(value))
            kind = kinds.get(spec.consumer, "")
            durable = _durable(kind, spec, model.pipeline_id)
            redelivering = sum(d[2] for d in js.delayed)
            replica = held.get(spec.name)
            ack_pending = round((replica.buffer if replica is not None else 0.0) + redelivering)
            pending = max(0, depth - ack_pending - round(sum(s[1] for s in js.stuck)))
            consumer_values = (*stream_values[:-2], durable, SERVER[1], "true", "", JOB, INSTANCE)
            delivered = last - pending
            for name, value in (("jetstream_consumer_delivered_consumer_seq", delivered),
                                ("jetstream_consumer_delivered_stream_seq", delivered),
                                ("jetstream_consumer_num_ack_pending", ack_pending),
                                ("jetstream_consumer_num_redelivered", round(redelivering)),
                                ("jetstream_consumer_num_waiting", 1 if model.pods_up and not pending else 0),
                                ("jetstream_consumer_num_pending", pending),
                                ("jetstream_consumer_ack_floor_stream_seq", first - 1),
                                ("jetstream_consumer_ack_floor_consumer_seq", first - 1)):
                consumer[name].add_metric(consumer_values, float(value))
            totals["streams"] += 1
            totals["consumers"] += 1
            totals["messages"] += depth
            totals["bytes"] += round(js.depth * js.record_bytes)
        if row.dlq.exists:  # the pipeline's DLQ stream: no limits, read through the API only
            totals["streams"] += 1
            totals["messages"] += round(row.dlq.unconsumed)
    server_values = (*SERVER, JOB, INSTANCE)
    server["jetstream_server_jetstream_disabled"].add_metric(server_values, 0.0)
    server["jetstream_server_total_streams"].add_metric(server_values, totals["streams"])
    server["jetstream_server_total_consumers"].add_metric(server_values, totals["consumers"])
    server["jetstream_server_total_messages"].add_metric(server_values, totals["messages"])
    server["jetstream_server_total_message_bytes"].add_metric(server_values, totals["bytes"])
    yield from server.values()
    yield from stream.values()
    yield from consumer.values()


def _durable(kind: str, spec: topo.Stream, pipeline_id: str) -> str:
    if kind == "join":
        return topo.consumer_name("join_left" if "_left-" in spec.name or spec.producer.endswith("_left")
                                  else "join_right", pipeline_id)
    return topo.consumer_name(_CONSUMER_KIND.get(kind, "sink"), pipeline_id)
