"""How a pipeline runs on Kubernetes: pods, NATS streams, subjects, load shares, consumer names.

Facts read from GlassFlow's operator and components (commits in ``docs/upstream.md``):

* **Nodes** (``glassflow-etl-k8s-operator:internal/pipelinegraph/builder.go``): ``ingestor``
  (``ingestor_left``/``ingestor_right`` in a join, by source index 0/1), ``dedup`` (``dedup_left``/
  ``dedup_right``: one per join side that has dedup, filter or stateless on), ``join`` and ``sink``.
  The dedup node exists whenever dedup, filter or stateless is configured
  (``clickhouse-etl:glassflow-api/internal/orchestrator/k8s.go`` ``buildPipelineSpec``).
* **Streams** (``…/pipelinegraph/graph.go`` ``buildStreams``): a producer with R_N replicas feeding a
  consumer with R_D replicas gets R_D streams ``gfm-<h8>-<node>-out_<k>`` and S = max(R_N, R_D)
  subjects ``<prefix>.<s>``; subject s belongs to stream s mod R_D. Every stream has the pipeline's
  limits, DiscardNew and WorkQueue retention.
* **Publishing** (``clickhouse-etl:glassflow-api/internal/ingestor/processor.go`` ``getSubject``):
  with S > 1 every producer replica publishes round-robin over all S subjects (FNV-1a-64 of the dedup
  key instead when the topic has dedup), so stream k carries |{s < S : s mod R_D = k}| / S of the load.
* **Consumption**: sink or dedup replica k reads ``…_k`` with a durable consumer ``gf-nats-si-<h8>``
  / ``gf-nats-di-<h8>``, MaxAckPending 4·B, MaxDeliver 10, AckWait 30 s; the join reads ``…_0`` of
  each side (``clickhouse-etl:glassflow-api/internal/service/sink_runner.go``,
  ``cmd/glassflow/dedup_component.go``, ``internal/service/join_runner.go``).
* **Depth sampling** (``clickhouse-etl:glassflow-api/internal/service/ingestor_runner.go``): every
  ingestor replica samples the streams behind its own subjects, i.e. only ``ingestor*-out_*``.

Everything here is pure: the simulator builds its world from it and the tuner reads the same facts.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from gftune.glassflow import resources as res

Json = dict[str, Any]

# --- timings and limits of the components (clickhouse-etl:glassflow-api/internal/constants.go) -----------

PUSH_INTERVAL = 10.0  # s: every component's OTel periodic reader (pkg/observability/meter.go)
DEPTH_SAMPLE_INTERVAL = 10.0  # s: IngestorStreamDepthSampleInterval; the first sample 10 s after start
METRIC_EXPIRATION = 300.0  # s: the collector's prometheus exporter default metric_expiration
NAK_DELAY = 5.0  # s: NatsConsumerNakDelay
ACK_WAIT = 30.0  # s: NatsConsumerAckWait
MAX_DELIVER = 10  # NatsConsumerMaxDeliver
SINK_DEFAULT_MAX_DELAY = 60.0  # s: SinkDefaultBatchMaxDelayTime (a max_delay_time of 0)
DEDUP_BATCH_MAX = 50_000  # DefaultDedupComponentBatchSize
DEDUP_MAX_WAIT = 0.1  # s: DefaultDedupMaxWaitTime
BACKPRESSURE_BACKOFF = (0.05, 5.0)  # s: IngestorBackpressureInitialDelay, ...MaxDelay (doubling)
PUBLISHER_MAX_PENDING_ACKS = 4000  # PublisherMaxPendingAcks
NATS_MAX_BUFFERED_MSGS = 10_000  # NATSMaxBufferedMsgs
PENDING_ACK_STALL = 1.0  # s: PublisherAsyncMaxRetryWait: a full pending window that long is backpressure
DUPLICATE_WINDOW = 120.0  # s: the JetStream default duplicate window the streams keep (Nats-Msg-Id)

SERVICES = ("ingestor", "dedup", "join", "sink")


# --- names -------------------------------------------------------------------------------------------------

def hash8(pipeline_id: str) -> str:
    """First 8 hex characters of sha256(pipeline_id) (``…/pipelinegraph/graph.go`` generatePipelineHash)."""
    return hashlib.sha256(pipeline_id.encode()).hexdigest()[:8]


def consumer_group(pipeline_id: str) -> str:
    """The Kafka consumer group of a pipeline, shared by both topics of a join."""
    return f"glassflow-consumer-group-{hash8(pipeline_id)}"


def dlq_stream(pipeline_id: str) -> str:
    return f"gfm-{hash8(pipeline_id)}-DLQ"


def stream_prefix(pipeline_id: str, node: str) -> str:
    """``gfm-<h8>-<node>-out``: the streams' prefix and the subjects' prefix of a producer node."""
    node = node.replace(".", "_").replace(" ", "_").replace("/", "_")
    return f"gfm-{hash8(pipeline_id)}-{node}-out"[:256]


CONSUMER_KINDS = {"sink": "si", "dedup": "di", "join_left": "jl", "join_right": "jr"}


def consumer_name(kind: str, pipeline_id: str) -> str:
    """The durable NATS consumer: ``gf-nats-si-<h8>`` (sink), ``-di-`` (dedup), ``-jl-``/``-jr-`` (join)."""
    return f"gf-nats-{CONSUMER_KINDS[kind]}-{hash8(pipeline_id)}"


def job(pipeline_id: str, service: str) -> str:
    """The collector's ``job`` of a component pod: ``<service.namespace>/<service.name>`` with the
    operator's default auto namespaces (``pipeline-<id>``)."""
    return f"pipeline-{pipeline_id}/{service}"


def pod_name(statefulset: str, ordinal: int) -> str:
    """``ingestor-0-1``, ``sink-2``: StatefulSet pods (auto namespaces: no ``gf-<id>-`` prefix)."""
    return f"{statefulset}-{ordinal}"


_ORDINAL = re.compile(r"-(\d+)$")


def pod_ordinal(pod: str) -> int | None:
    """The replica index of a pod name (``sink-3`` and ``gf-<id>-sink-3`` -> 3)."""
    found = _ORDINAL.search(pod)
    return int(found.group(1)) if found else None


# --- sizes ---------------------------------------------------------------------------------------------------

def gomaxprocs(cpu_limit: float | None, node_cpus: int = 8) -> int:
    """GOMAXPROCS in a container: the CPU limit rounded up (Go >= 1.25), else the node's CPUs."""
    if cpu_limit is None or cpu_limit <= 0:
        return node_cpus
    return max(1, math.ceil(cpu_limit - 1e-9))


def sink_workers(cpu_limit: float | None, node_cpus: int = 8) -> int:
    """The sink's mapping worker pool: max(1, GOMAXPROCS - 2) (``internal/sink/clickhouse.go``)."""
    return max(1, gomaxprocs(cpu_limit, node_cpus) - 2)


def sink_prefetch(max_batch_size: int, workers: int) -> int:
    """``PullMaxMessages``: what the sink's pull consumer keeps fetched ahead, B x workers."""
    return max_batch_size * workers


def max_ack_pending(max_batch_size: int) -> int:
    """MaxAckPending of the sink and dedup consumers: 4 x B."""
    return 4 * max_batch_size


def default_max_msgs(max_batch_size: int) -> int:
    """The stream MaxMsgs the API stores when none is given: 8 x B (``models/resources.go``)."""
    return res.HELM_DEFAULTS.default_max_msgs(max_batch_size)


def pending_publish_limit(ingestor_replicas: int) -> int:
    """The ingestor's async publish window: min(4000, 10000 / replicas) PubAcks in flight."""
    return min(PUBLISHER_MAX_PENDING_ACKS, NATS_MAX_BUFFERED_MSGS // max(1, ingestor_replicas))


def subject_count(producer_replicas: int, consumer_replicas: int) -> int:
    return max(producer_replicas, consumer_replicas)


def stream_shares(producer_replicas: int, consumer_replicas: int) -> list[float]:
    """The share of a producer's output each of the consumer's streams gets (round-robin or uniform
    key hashing over S subjects, subject s -> stream s mod R_D). E.g. 3 -> 2: [2/3, 1/3]."""
    subjects = subject_count(producer_replicas, consumer_replicas)
    counts = [0] * max(1, consumer_replicas)
    for s in range(subjects):
        counts[s % len(counts)] += 1
    return [c / subjects for c in counts]


# --- the graph of one pipeline ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    id: str  # graph node id: ingestor, ingestor_left, dedup_right, join, sink, otlp
    kind: str  # ingestor | dedup | join | sink | otlp
    service: str  # the collector's service.name (job suffix); "" for the virtual otlp node
    statefulset: str  # ingestor-0, dedup-1, join, sink; "" for otlp
    replicas: int
    source_index: int | None = None  # the Kafka source (spec stream) an ingestor or dedup node serves
    source_id: str | None = None

    def pods(self) -> list[str]:
        return [pod_name(self.statefulset, k) for k in range(self.replicas)] if self.statefulset else []


@dataclass(frozen=True)
class Stream:
    name: str  # gfm-<h8>-<producer>-out_<index>
    producer: str  # node id
    consumer: str  # node id
    index: int  # k: read by consumer replica k (the join reads index 0 only)
    subjects: tuple[str, ...]
    share: float  # of the producer's output
    hash_routed: bool  # subject chosen by FNV-1a-64(dedup key) instead of round-robin
    sampled: bool  # reported by the producer's gfm_stream_depth (streams right behind an ingestor)


@dataclass(frozen=True)
class Topology:
    pipeline_id: str
    nodes: tuple[Node, ...]
    streams: tuple[Stream, ...]

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def nodes_of(self, kind: str) -> list[Node]:
        return [n for n in self.nodes if n.kind == kind]

    def inputs(self, node_id: str) -> list[Stream]:
        return [s for s in self.streams if s.consumer == node_id]

    def outputs(self, node_id: str) -> list[Stream]:
        return [s for s in self.streams if s.producer == node_id]

    def sampled(self) -> list[Stream]:
        return [s for s in self.streams if s.sampled]


def _replicas(block: Any) -> int:
    value = block.get("replicas") if isinstance(block, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _kafka_sources(doc: Json) -> list[Json]:
    return res.kafka_sources(doc)


def _transform_types(doc: Json, source_id: str | None = None) -> set[str]:
    return {t.get("type") for t in doc.get("transforms") or [] if isinstance(t, dict)
            and (source_id is None or t.get("type") != "dedup" or t.get("source_id") == source_id)}


def topology(doc: Json, resources: Json | None = None) -> Topology:
    """The nodes and streams of a pipeline (a v3 document) in Kubernetes mode.

    ``resources`` is the internal shape of ``GET /resources`` (``pipeline_resources``); without it
    the document's own ``resources`` block is used. Absent replica counts are 1.
    """
    pid = str(doc.get("pipeline_id", ""))
    internal = resources if resources is not None else res.v3_to_internal(doc)
    ingestor_blocks = internal.get("ingestor") or {}
    sink_replicas = _replicas(internal.get("sink"))
    dedup_replicas = _replicas(internal.get("transform"))
    join_replicas = _replicas(internal.get("join"))
    nodes: list[Node] = []
    streams: list[Stream] = []
    kafka = _kafka_sources(doc)
    types = _transform_types(doc)
    any_transform = bool(types & {"dedup", "filter", "stateless"})

    def link(producer: Node, consumer: Node, consumer_streams: int, *, hashed: bool) -> None:
        prefix = stream_prefix(pid, producer.id)
        subjects = subject_count(producer.replicas, consumer_streams)
        shares = stream_shares(producer.replicas, consumer_streams)
        for k in range(consumer_streams):
            streams.append(Stream(
                name=f"{prefix}_{k}", producer=producer.id, consumer=consumer.id, index=k,
                subjects=tuple(f"{prefix}.{s}" for s in range(subjects) if s % consumer_streams == k),
                share=shares[k], hash_routed=hashed, sampled=producer.kind == "ingestor"))

    sink = Node("sink", "sink", "sink", "sink", sink_replicas)
    if not kafka:  # OTLP source: a virtual node the shared receiver publishes for
        otlp = Node("otlp", "otlp", "", "", dedup_replicas if any_transform else sink_replicas)
        nodes.append(otlp)
        upstream = otlp
        if any_transform:
            dedup = Node("dedup", "dedup", "dedup", "dedup-0", dedup_replicas, 0)
            nodes.append(dedup)
            link(otlp, dedup, dedup.replicas, hashed=False)
            upstream = dedup
        nodes.append(sink)
        link(upstream, sink, sink.replicas, hashed=False)
        return Topology(pid, tuple(nodes), tuple(streams))

    if res.join_enabled(doc):
        join = Node("join", "join", "join", "join", join_replicas)
        side_outputs: list[Node] = []
        for index, source in enumerate(kafka[:2]):
            side = "left" if index == 0 else "right"
            sid = source.get("source_id")
            ingestor = Node(f"ingestor_{side}", "ingestor", "ingestor", f"ingestor-{index}",
                            _replicas(ingestor_blocks.get(side)), index, sid)
            nodes.append(ingestor)
            has_dedup = "dedup" in {t.get("type") for t in doc.get("transforms") or []
                                    if isinstance(t, dict) and t.get("source_id") == sid}
            if has_dedup or types & {"filter", "stateless"}:
                dedup = Node(f"dedup_{side}", "dedup", "dedup", f"dedup-{index}", dedup_replicas, index, sid)
                nodes.append(dedup)
                link(ingestor, dedup, dedup.replicas, hashed=has_dedup)
                side_outputs.append(dedup)
            else:
                side_outputs.append(ingestor)
        nodes.append(join)
        for producer in side_outputs:
            # one stream per join replica, but the join reads _0 of each side (join_runner.go): the API
            # allows one join replica, PUT /resources can set more
            link(producer, join, join.replicas,
                 hashed=producer.kind == "ingestor" and _hashed(doc, producer.source_id))
        nodes.append(sink)
        link(join, sink, sink.replicas, hashed=False)
        return Topology(pid, tuple(nodes), tuple(streams))

    source = kafka[0]
    sid = source.get("source_id")
    ingestor = Node("ingestor", "ingestor", "ingestor", "ingestor-0", _replicas(ingestor_blocks.get("base")), 0, sid)
    nodes.append(ingestor)
    upstream = ingestor
    if any_transform:
        dedup = Node("dedup", "dedup", "dedup", "dedup-0", dedup_replicas, 0, sid)
        nodes.append(dedup)
        link(ingestor, dedup, dedup.replicas, hashed=_hashed(doc, sid))
        upstream = dedup
    nodes.append(sink)
    link(upstream, sink, sink.replicas, hashed=upstream.kind == "ingestor" and _hashed(doc, sid))
    return Topology(pid, tuple(nodes), tuple(streams))


def _hashed(doc: Json, source_id: str | None) -> bool:
    """The ingestor routes by the dedup key only when its own topic has dedup configured."""
    return any(isinstance(t, dict) and t.get("type") == "dedup" and t.get("source_id") == source_id
               for t in doc.get("transforms") or [])
