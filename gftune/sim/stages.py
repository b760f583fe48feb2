"""The stages before the sink: Kafka ingestor replicas, the dedup pod (filter, dedup, stateless
transform) and the join. Each moves a fluid from its input to its output streams, as far as those
streams take it (DiscardNew), and records what the real component records.

* **Ingestor** (``clickhouse-etl:glassflow-api/internal/kafka/consumer.go:294-347``,
  ``internal/ingestor/processor.go``): a replica reads the partitions it is assigned (replicas beyond
  the partition count idle), publishes round-robin over all its subjects (so each output stream
  gets its share, ``gftune.glassflow.topology.stream_shares``) and, when a stream refuses a
  publish, retries only those messages and reads nothing new until the batch is done: the batch's
  wall time includes the wait. ``kafka_records_read`` and ``processing_duration{ingestor,batch}``
  (wall time ÷ records, one observation per Kafka batch) are recorded per finished batch.
* **Dedup pod** (``internal/processor/streaming_component.go``, ``cmd/glassflow/dedup_component.go``):
  batches of at most min(50 000, MaxAckPending = 4·B) messages, flushed at least every 100 ms; each
  stage records its duration for the whole batch. A full output stream is retried for the affected
  messages (``component_backpressure{dedup}``). Filter and transform failures go to the DLQ as
  ``dedup_overflow``.
* **Join** (``internal/join/temporal.go``): records no metric at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gftune.glassflow import instruments as ins
from gftune.glassflow.topology import (
    DEDUP_BATCH_MAX,
    DEDUP_MAX_WAIT,
    DEPTH_SAMPLE_INTERVAL,
    PENDING_ACK_STALL,
    max_ack_pending,
)
from gftune.sim.backpressure import Episodes
from gftune.sim.streams import JetStream
from gftune.sim.telemetry import Meter

_EPS = 1e-9

Json = dict[str, Any]
Outputs = list[tuple[JetStream, float]]  # (stream, share of the producer's output)


def output_limit(outputs: Outputs) -> float:
    """The most a producer can publish now: round-robin stops at the first full stream."""
    limit = math.inf
    for stream, share in outputs:
        if share > 0:
            limit = min(limit, stream.room() / share)
    return limit


def publish(outputs: Outputs, t: float, messages: float) -> None:
    for stream, share in outputs:
        stream.publish(t, messages * share)


@dataclass
class SourceState:
    source_id: str
    topic: str
    params: Json
    partitions: int
    record_bytes: float
    node: str = "ingestor"  # the topology node that reads it (ingestor, ingestor_left, otlp)
    signal: str = "kafka"  # the source type: kafka, otlp.logs, otlp.metrics, otlp.traces
    arrived: float = 0.0  # records produced to the topic since the model started
    rate_now: float = 0.0  # noise-free arrival rate at the last step
    replicas: int = 1
    cpu: float | None = None
    pods: list[IngestorReplica] = field(default_factory=list)  # replica i: its partitions, lag, meter

    @property
    def lag(self) -> float:
        return sum(p.lag for p in self.pods)


@dataclass
class IngestorReplica:
    index: int
    partitions: int  # Kafka partitions assigned to it (0: idle)
    lag: float = 0.0  # records waiting in its partitions
    arriving: float = 0.0  # this step's arrivals in its partitions (spread over the sub-steps)
    meter: Meter | None = None
    episodes: Episodes | None = None
    next_sample: float = math.inf

    def sample(self, outputs: Outputs, pipeline_id: str, now: float) -> None:
        """``internal/stream/sampler.go``: every 10 s, the depth of each stream behind its subjects,
        and the ratio only for a stream with MaxMsgs > 0."""
        while self.next_sample <= now + _EPS:
            self.next_sample += DEPTH_SAMPLE_INTERVAL
            if self.meter is None:
                continue
            for stream, _share in outputs:
                if not stream.sampled:
                    continue
                labels = (stream.name, pipeline_id)
                depth = stream.sampled_depth
                self.meter.set(ins.STREAM_DEPTH, labels, float(round(depth)))
                if math.isfinite(stream.max_msgs) and stream.max_msgs > 0:
                    self.meter.set(ins.STREAM_DEPTH_RATIO, labels, depth / stream.max_msgs)


def assign_partitions(partitions: int, replicas: int) -> list[int]:
    """Partitions per replica under the range/round-robin assignors: as even as possible."""
    return [partitions // replicas + (1 if i < partitions % replicas else 0) for i in range(replicas)]


@dataclass
class IngestorStep:
    """What one source's ingestor replicas do in a step."""

    pipeline_id: str
    rate: float  # records/s one replica processes (its CPU throttle included)
    batch_records: float  # a Kafka poll batch, at most
    parse_error: float  # fraction sent to the DLQ as parse_error
    record_bytes: float
    pending_limit: int = 4000  # PubAcks a replica may wait for: min(4000, 10000 / replicas)
    ack_latency: float = 0.001  # seconds until NATS acks a publish

    def run(self, replicas: list[IngestorReplica], outputs: Outputs, t: float, dt: float,
            dlq: DlqSink) -> float:
        """Read, publish, record; returns records read."""
        keep = 1.0 - self.parse_error
        # the async publisher's window: at most pending_limit PubAcks in flight, so a replica publishes
        # at most pending_limit / ack_latency per second; a window still full after 1 s is backpressure
        window = self.pending_limit / self.ack_latency * dt / keep if self.ack_latency > 0 and keep > 0 else math.inf
        stalled = self.ack_latency > PENDING_ACK_STALL
        wants = [min(r.lag, self.rate * dt) if r.partitions > 0 else 0.0 for r in replicas]
        windowed = [stalled and want > window + 1e-6 for want in wants]
        wants = [min(want, window) for want in wants]
        total = sum(wants)
        limit = output_limit(outputs)
        readable = limit / keep if keep > 0 else math.inf
        blocked = readable < total - 1e-6
        ratio = min(1.0, readable / total) if total > _EPS else 0.0
        read_total = 0.0
        for replica, want, held in zip(replicas, wants, windowed, strict=True):
            read = want * ratio
            replica.lag -= read
            read_total += read
            self._record(replica, t, dt, read, (blocked and want > _EPS) or held, dlq)
        publish(outputs, t, read_total * keep)
        return read_total

    def _record(self, replica: IngestorReplica, t: float, dt: float, read: float, blocked: bool,
                dlq: DlqSink) -> None:
        meter, pid = replica.meter, self.pipeline_id
        batch = min(self.batch_records, max(read, 1.0))
        if replica.episodes is not None:
            replica.episodes.step(meter, t, dt, blocked, read, batch)
        if read <= _EPS:
            return
        errors = read * self.parse_error
        if errors > _EPS:
            dlq.write(meter, "ingestor", "parse_error", errors)
        if meter is None:
            return
        meter.add(ins.KAFKA_RECORDS_READ, ("ingestor", pid), read)
        meter.add(ins.BYTES_PROCESSED, ("ingestor", "in", pid), read * self.record_bytes)
        meter.add(ins.BYTES_PROCESSED, ("ingestor", "out", pid), (read - errors) * self.record_bytes)
        per_record = dt / read if blocked else 1.0 / self.rate
        meter.observe(ins.PROCESSING_DURATION, ("ingestor", "batch", pid), per_record, read / batch)


class DlqSink:
    """The DLQ publish: ``gfm_dlq_records_written_total`` on the writer's meter, the records to the
    pipeline's DLQ stream (collected by the model)."""

    def __init__(self, pipeline_id: str) -> None:
        self.pipeline_id = pipeline_id
        self.new: list[tuple[str, str, float]] = []
        self.written: dict[tuple[str, str], float] = {}

    def write(self, meter: Meter | None, component: str, reason: str, records: float) -> None:
        if records <= _EPS:
            return
        if meter is not None:
            meter.add(ins.DLQ_RECORDS_WRITTEN, (component, reason, self.pipeline_id), records)
        self.new.append((component, reason, records))
        key = (component, reason)
        self.written[key] = self.written.get(key, 0.0) + records


@dataclass
class DedupReplica:
    index: int
    meter: Meter | None = None
    episodes: Episodes | None = None


@dataclass
class DedupStep:
    """The dedup pod's stages for one step; ``costs`` are seconds per record per stage."""

    pipeline_id: str
    costs: dict[str, float]  # "filter" | "dedup_lookup" | "dedup_commit" | "stateless"
    filter_pass: float
    filter_errors: float
    duplicates: float
    transform_errors: float
    key_room: float  # new keys the store can still take
    sink_batch: float  # B, for MaxAckPending
    record_bytes: float
    stored_keys: float = field(default=0.0)  # out: new keys stored this step
    filtered: float = field(default=0.0)  # out: records the filter dropped this step
    duplicates_out: float = field(default=0.0)  # out: duplicates dropped this step

    def keep(self) -> float:
        keep = 1.0
        if "filter" in self.costs:
            keep *= self.filter_pass * (1.0 - self.filter_errors)
        if "dedup_lookup" in self.costs:
            keep *= 1.0 - self.duplicates
        if "stateless" in self.costs:
            keep *= 1.0 - self.transform_errors
        return keep

    def new_keys(self) -> float:
        """Keys stored per record taken."""
        if "dedup_lookup" not in self.costs:
            return 0.0
        keep = self.filter_pass * (1.0 - self.filter_errors) if "filter" in self.costs else 1.0
        return keep * (1.0 - self.duplicates)

    def run(self, replicas: list[DedupReplica], inputs: list[JetStream], outputs: Outputs, t: float, dt: float,
            dlq: DlqSink) -> None:
        per_record = sum(self.costs.values())
        rate = 1.0 / per_record if per_record > 0 else math.inf
        available = [s.ready_count for s in inputs]
        wants = [min(a, rate * dt) for a in available]
        total = sum(wants)
        if total <= _EPS:
            for replica in replicas:
                if replica.episodes is not None:
                    replica.episodes.step(replica.meter, t, dt, False, 0.0, 1.0)
            return
        keep, keys = self.keep(), self.new_keys()
        limit = output_limit(outputs)
        by_output = limit / keep if keep > 0 else math.inf
        by_store = self.key_room / keys if keys > 0 else math.inf  # a full store holds new keys back
        blocked = by_output < total - 1e-6
        ratio = min(1.0, by_output / total, by_store / total)
        out_total = 0.0
        for replica, stream, want, avail in zip(replicas, inputs, wants, available, strict=True):
            take = want * ratio
            stream.remove(take)
            backlog = avail - take > 1.0
            out_total += self._record(replica, t, dt, take, backlog, blocked and want > _EPS, dlq)
        self.stored_keys = total * ratio * keys
        publish(outputs, t, out_total)

    def _record(self, replica: DedupReplica, t: float, dt: float, take: float, backlog: bool, blocked: bool,
                dlq: DlqSink) -> float:
        meter, pid = replica.meter, self.pipeline_id
        cap = min(DEDUP_BATCH_MAX, max_ack_pending(int(self.sink_batch)))
        batch = cap if backlog else min(cap, max(1.0, take / dt * DEDUP_MAX_WAIT))
        batch = max(1.0, min(batch, take)) if take > _EPS else 1.0
        if replica.episodes is not None:
            replica.episodes.step(meter, t, dt, blocked, take, batch)
        if take <= _EPS:
            return 0.0
        batches = take / batch
        passed = take
        stages = (("filter", "filter", "filter"), ("dedup_lookup", "dedup_filter", "lookup"),
                  ("dedup_commit", "dedup_write", "commit"), ("stateless", "transform", "transform"))
        if meter is not None:
            for key, component, stage in stages:
                if key in self.costs:
                    meter.observe(ins.PROCESSING_DURATION, (component, stage, pid), self.costs[key] * batch, batches)
        if "filter" in self.costs:
            errors = passed * self.filter_errors
            kept = (passed - errors) * self.filter_pass
            self.filtered += passed - errors - kept
            self._count(meter, "filter", passed, kept, {"success": kept, "filtered": passed - errors - kept,
                                                         "error": errors})
            dlq.write(meter, "dedup", "dedup_overflow", errors)
            passed = kept
        if "dedup_lookup" in self.costs:
            unique = passed * (1.0 - self.duplicates)
            self.duplicates_out += passed - unique
            self._count(meter, "dedup", passed, unique, {"success": unique, "duplicate": passed - unique})
            passed = unique
        if "stateless" in self.costs:
            errors = passed * self.transform_errors
            self._count(meter, "transform", passed, passed - errors, {"success": passed - errors, "error": errors})
            dlq.write(meter, "dedup", "dedup_overflow", errors)
            passed -= errors
        return passed

    def _count(self, meter: Meter | None, component: str, into: float, out: float, statuses: dict[str, float]) -> None:
        if meter is None:
            return
        pid, rb = self.pipeline_id, self.record_bytes
        for status, value in statuses.items():
            meter.add(ins.PROCESSOR_MESSAGES, (component, status, pid), value)
        meter.add(ins.BYTES_PROCESSED, (component, "in", pid), into * rb)
        meter.add(ins.BYTES_PROCESSED, (component, "out", pid), out * rb)


def run_join(inputs: list[JetStream], outputs: Outputs, rate: float, output_ratio: float, t: float,
             dt: float) -> None:
    """The join: one replica reading ``…_0`` of each side, as fast as ``rate`` and its output allow."""
    available = sum(s.ready_count for s in inputs)
    if available <= _EPS:
        return
    by_output = output_limit(outputs) / output_ratio if output_ratio > 0 else math.inf
    take = min(available, rate * dt, by_output)
    for stream in inputs:
        stream.remove(take * stream.ready_count / available)
    publish(outputs, t, take * output_ratio)
