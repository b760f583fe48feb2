"""The model of one pipeline as GlassFlow runs it on Kubernetes: every replica a pod with its own
meter, one NATS stream per downstream replica (``gftune.glassflow.topology``), records a fluid.

Per step of ``dt`` sim seconds, downstream first: each sink replica flushes from its own stream
(``gftune.sim.sink``), then the join and the dedup pods move what their inputs hold into their
output streams, then the ingestors read Kafka and publish into theirs (``gftune.sim.stages``). A
stage whose output stream is full is refused (DiscardNew) and holds back: that is backpressure.
Going downstream first means each stage works on what its input held at the start of the step, and
a producer refills at once what its consumer freed, so a saturated stream stays full as it does in
GlassFlow.

The model's own truth (capacities, messages expired by ``maxAge``) is for ``gftune.sim.truth`` only;
what ``/metrics`` shows is what each pod's meter recorded (``gftune.sim.telemetry``).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gftune.glassflow import resources as res
from gftune.glassflow import topology as topo
from gftune.glassflow.durations import DurationError, parse_duration
from gftune.glassflow.quantities import QuantityError, parse_nats_bytes, parse_quantity
from gftune.sim import pods, profiles
from gftune.sim.backpressure import Episodes
from gftune.sim.capacity import Capacities, retryable, sink_workers
from gftune.sim.clickhouse_server import ClickHouseServer
from gftune.sim.params import DEFAULT_PARAMS, deep_merge, source_params
from gftune.sim.receiver import Receiver
from gftune.sim.sink import SinkReplica
from gftune.sim.stages import (
    DedupReplica,
    DedupStep,
    DlqSink,
    IngestorReplica,
    IngestorStep,
    SourceState,
    assign_partitions,
    run_join,
)
from gftune.sim.streams import JetStream
from gftune.sim.telemetry import Collector

Json = dict[str, Any]


def consumer_group(pipeline_id: str) -> str:
    return topo.consumer_group(pipeline_id)


def _cpu(block: Json) -> float | None:
    value = (block.get("limits") or {}).get("cpu") or (block.get("requests") or {}).get("cpu")
    try:
        return float(parse_quantity(value)) if value else None
    except QuantityError:
        return None


def _memory(block: Json) -> float | None:
    value = (block.get("limits") or {}).get("memory")
    try:
        return float(parse_quantity(value)) if value else None
    except QuantityError:
        return None


def _seconds(text: Any, default: float) -> float:
    try:
        return parse_duration(text, allow_days=True) / 1e9 if isinstance(text, str) and text else default
    except DurationError:
        return default


@dataclass
class StepEvents:
    oom: bool = False
    messages: list[str] = field(default_factory=list)


class PipelineModel(Capacities):
    """Fluid state, pods and their meters of one pipeline, in sim time."""

    def __init__(self, pipeline_id: str, doc: Json, resources: Json, params: Json | None, *,
                 seed: int = 0, t0: float = 0.0, dt: float = 1.0, collector: Collector | None = None,
                 receiver: Receiver | None = None, clickhouse: ClickHouseServer | None = None) -> None:
        self.pipeline_id = pipeline_id
        self.clickhouse = clickhouse  # the server the sink inserts into (its ProfileEvents)
        self.params = deep_merge(DEFAULT_PARAMS, params)
        self.dt = dt
        self.t = t0  # start of the next step
        digest = hashlib.sha256(f"{seed}:{pipeline_id}".encode()).digest()
        self.rng = random.Random(int.from_bytes(digest[:8], "big"))
        self.collector = collector if collector is not None else Collector()
        self.receiver = receiver  # the shared OTLP receiver process (OTLP sources only)
        self.dlq = DlqSink(pipeline_id)
        self.purged = 0.0  # records removed with the streams by terminate
        self.swept = 0.0  # records the operator's stop-time sweep moved to the DLQ
        self.dropped = 0.0  # records in streams a reconfiguration removed (fewer replicas)
        # the truth's record balance (pods' counters restart with them; these never do)
        self.totals = {"read": 0.0, "written": 0.0, "filtered": 0.0, "duplicates": 0.0}
        self.sources: list[SourceState] = []
        self.streams: dict[str, JetStream] = {}
        self.sinks: list[SinkReplica] = []
        self.dedups: dict[str, list[DedupReplica]] = {}
        self.pods_up = False
        self.dedup_keys: deque[list[float]] = deque()  # [chunk start time, keys]
        self.dedup_stored = 0.0
        self.sink_busy = 0.0
        self.sink_batch = 0.0
        self.sink_memory = 0.0
        self.insert_rate = 0.0
        self.fail_prob = 0.0  # retryable share of the INSERTs (error_rate and the insert budget)
        self._budget_fail = 0.0
        self._busy = 0.0
        self._busiest = 0.0  # messages/s into the busiest stream last step
        self._full = False  # a stream refused a publish last step
        self.configure(doc, resources)
        fill = float(self.params["transform"].get("initial_fill") or 0.0)
        if self.dedup_window and fill > 0 and math.isfinite(self.dedup_capacity_keys):
            # a store that has been filling for a while: keys spread evenly over the last window
            chunks = max(1, math.ceil(self.dedup_window / 60.0))
            keys = fill * self.dedup_capacity_keys / chunks
            for k in range(chunks):
                self.dedup_keys.append([t0 - self.dedup_window + (k + 0.5) * self.dedup_window / chunks, keys])
            self.dedup_stored = fill * self.dedup_capacity_keys

    # --- configuration ----------------------------------------------------------------------

    def configure(self, doc: Json, resources: Json) -> None:
        """(Re)derive pods and streams from the stored document and internal resources. Kafka lag,
        stream contents (of the streams that still exist), the dedup store and the DLQ are kept."""
        p = self.params
        self.doc, self.resources = doc, resources
        self.kafka = bool(res.kafka_sources(doc))
        self.join = res.join_enabled(doc)
        transforms = doc.get("transforms") or []
        self.dedup = any(t.get("type") == "dedup" for t in transforms)
        self.filter = any(t.get("type") == "filter" for t in transforms)
        self.stateless = any(t.get("type") == "stateless" for t in transforms)
        self.has_transform = self.dedup or self.filter or self.stateless
        windows = [_seconds((t.get("config") or {}).get("time_window"), 0.0) for t in transforms
                   if t.get("type") == "dedup"]
        self.dedup_window = max(windows) if windows else 0.0
        self.graph = topo.topology(doc, resources)

        stream_cfg = (resources.get("nats") or {}).get("stream") or {}
        max_msgs = stream_cfg.get("maxMsgs")
        self.max_msgs = float(max_msgs) if isinstance(max_msgs, int) and max_msgs > 0 else math.inf
        try:
            max_bytes = float(parse_nats_bytes(str(stream_cfg.get("maxBytes") or "0")))
        except QuantityError:
            max_bytes = 0.0
        self.max_bytes = max_bytes if max_bytes > 0 else math.inf
        self.max_age = _seconds(stream_cfg.get("maxAge"), 0.0) or math.inf

        self._configure_sources(doc, resources.get("ingestor") or {}, p)
        self.record_bytes = (sum(s.record_bytes for s in self.sources) / len(self.sources)) if self.sources else 512.0

        transform = resources.get("transform") or {}
        t_replicas = transform.get("replicas")
        self.transform_replicas = t_replicas if isinstance(t_replicas, int) else 1
        try:
            size = (transform.get("storage") or {}).get("size")
            self.dedup_storage_bytes = float(parse_quantity(size)) if size else math.inf
        except QuantityError:
            self.dedup_storage_bytes = math.inf
        key_bytes = float(p["transform"]["key_bytes"])
        self.dedup_capacity_keys = self.dedup_storage_bytes / key_bytes if key_bytes > 0 else math.inf

        sink = resources.get("sink") or {}
        s_replicas = sink.get("replicas")
        self.sink_replicas = s_replicas if isinstance(s_replicas, int) else 1
        self.sink_cpu = _cpu(sink)
        self.sink_memory_limit = _memory(sink) or math.inf
        self.workers = sink_workers(self.sink_cpu)
        sink_doc = doc.get("sink") or {}
        batch = sink_doc.get("max_batch_size")
        self.batch = float(batch) if isinstance(batch, int) and batch > 0 else 1.0
        delay = _seconds(sink_doc.get("max_delay_time"), topo.SINK_DEFAULT_MAX_DELAY)
        self.delay = delay if delay > 0 else topo.SINK_DEFAULT_MAX_DELAY
        sp = p["sink"]
        self.base_memory = float(parse_quantity(str(sp["base_memory"])))
        self.row_memory = float(sp["row_memory_bytes"] or 2 * self.record_bytes)
        self._configure_streams()
        if self.dedup_window and self.dedup_keys:
            self._expire_dedup(self.t)
        if self.pods_up:  # a live reconfiguration (a model patch): pods keep running, new ones start
            self._start_pods(self.t, keep=True)

    def _configure_sources(self, doc: Json, ingestor: Json, p: Json) -> None:
        old = {s.source_id: s for s in self.sources}
        nodes = {n.source_id: n for n in self.graph.nodes_of("ingestor")}
        self.sources = []
        for index, source in enumerate(doc.get("sources") or []):
            sid = source.get("source_id", f"source{index}")
            sparams = source_params(p, sid)
            profiles.check_profile(sparams["profile"])
            topic = source.get("topic") or sid
            state = old.get(sid) or SourceState(sid, topic, sparams, int(sparams["partitions"]),
                                                float(sparams["record_bytes"]))
            state.params, state.topic = sparams, topic
            state.signal = str(source.get("type") or "kafka")
            state.partitions = max(1, int(sparams["partitions"]))
            state.record_bytes = float(sparams["record_bytes"])
            node = nodes.get(sid)
            state.node = node.id if node is not None else "otlp"
            side = "base" if not self.join else ("left" if node is not None and node.source_index == 0 else "right")
            block = (ingestor.get(side) or {}) if self.kafka else {}
            replicas = block.get("replicas")
            state.replicas = replicas if isinstance(replicas, int) and replicas > 0 else 1
            state.cpu = _cpu(block)
            lag = state.lag
            running = {r.index: r for r in state.pods}
            if self.kafka:
                shares = assign_partitions(state.partitions, state.replicas)
                state.pods = [IngestorReplica(i, n, lag * n / state.partitions) for i, n in enumerate(shares)]
            else:  # OTLP: the receiver publishes what arrives (what it cannot waits client-side)
                state.pods = [IngestorReplica(0, 1, lag)]
            for replica in state.pods:  # a running pod keeps its meter (a partition change restarts nothing)
                if replica.index in running:
                    kept = running[replica.index]
                    replica.meter, replica.episodes, replica.next_sample = kept.meter, kept.episodes, kept.next_sample
            self.sources.append(state)

    def _configure_streams(self) -> None:
        old = self.streams
        self.streams = {}
        for s in self.graph.streams:
            stream = old.pop(s.name, None) or JetStream(s.name, s.sampled)
            stream.max_msgs, stream.max_bytes, stream.max_age = self.max_msgs, self.max_bytes, self.max_age
            stream.record_bytes = self.record_bytes
            self.streams[s.name] = stream
        for gone in old.values():
            self.dropped += gone.clear()
        old_sinks = {r.index: r for r in self.sinks}
        self.sinks = []
        for s in self.graph.inputs("sink"):
            replica = old_sinks.get(s.index) or SinkReplica(s.index, self.streams[s.name], self.t + self.delay)
            replica.stream = self.streams[s.name]
            self.sinks.append(replica)
        old_dedups = self.dedups
        self.dedups = {}
        for node in self.graph.nodes_of("dedup"):
            running = {r.index: r for r in old_dedups.get(node.id, [])}
            self.dedups[node.id] = [running.get(k) or DedupReplica(k) for k in range(node.replicas)]

    # --- pods --------------------------------------------------------------------------------

    def _start_pods(self, t: float, keep: bool = False) -> None:
        """Pods (re)started: fresh meters (counters from zero) unless ``keep`` (already running)."""
        pid = self.pipeline_id
        for source in self.sources if self.kafka else []:
            node = self.graph.node(source.node)
            for replica in source.pods:
                if keep and replica.meter is not None:
                    continue
                replica.meter = pods.meter(pid, node, replica.index, t)
                replica.episodes = Episodes("ingestor", pid)
                replica.next_sample = t + topo.DEPTH_SAMPLE_INTERVAL
        for node_id, replicas in self.dedups.items():
            node = self.graph.node(node_id)
            for replica in replicas:
                if not (keep and replica.meter is not None):
                    replica.meter = pods.meter(pid, node, replica.index, t)
                    replica.episodes = Episodes("dedup", pid)
        sink = self.graph.node("sink")
        for replica in self.sinks:
            if not (keep and replica.meter is not None):
                replica.meter = pods.meter(pid, sink, replica.index, t)
                replica.next_tick = t + self.delay
        self.pods_up = True

    def _meters(self) -> list[Any]:
        out = [r.meter for s in self.sources for r in s.pods]
        out += [r.meter for rs in self.dedups.values() for r in rs]
        out += [r.meter for r in self.sinks]
        return [m for m in out if m is not None]

    def stopped(self) -> None:
        """The operator deleted the pods: open episodes end at cleanup, unacked messages return to their
        streams, and the meters are gone (their series linger in the collector until they expire)."""
        for source in self.sources:
            for replica in source.pods:
                if replica.episodes is not None:
                    replica.episodes.stop(replica.meter, self.t)
                self._push(replica.meter)
                replica.meter, replica.episodes = None, None
        for replicas in self.dedups.values():
            for replica in replicas:
                if replica.episodes is not None:
                    replica.episodes.stop(replica.meter, self.t)
                self._push(replica.meter)
                replica.meter, replica.episodes = None, None
        for replica in self.sinks:
            replica.stop()
            replica.meter = None
        self.pods_up = False

    def _push(self, meter: Any) -> None:
        if meter is not None:  # the SDK's shutdown flushes the last values
            self.collector.push(meter, self.t)

    # --- the step -------------------------------------------------------------------------------

    def step(self, mode: str) -> StepEvents:
        """Advance one step of ``dt`` sim seconds from ``self.t``.

        ``mode``: ``run`` (everything flows), ``drain`` (Stopping: the ingestors have stopped, the
        rest drains and the sink flushes what it holds), ``off`` (no pod runs; Kafka lag grows).
        """
        dt, t = self.dt, self.t
        events = StepEvents()
        active = mode in ("run", "drain")
        if active and not self.pods_up:
            self._start_pods(t)
        self._arrivals(t, dt)
        # A consumer takes at most what its stream holds when a sub-step begins (its producer refills
        # only after it): sub-steps short enough that no stage's capacity in one exceeds its stream.
        n = self._substeps() if active else 1
        h = dt / n
        sends = 0.0
        before = {name: js.stored_total for name, js in self.streams.items()}
        self._full = False
        for i in range(n):
            sends += self._flow(t + i * h, h, mode)
        self._busiest = max((js.stored_total - before.get(name, 0.0) for name, js in self.streams.items()),
                            default=0.0) / dt
        self._sink_totals(sends, dt, mode == "drain", events)
        self.t = t + dt
        for source in self.sources if self.kafka and mode == "run" else []:
            outputs = self._outputs(source.node)
            for replica in source.pods:
                replica.sample(outputs, self.pipeline_id, self.t)
        for meter in self._meters():
            self.collector.push_due(meter, self.t)
        return events

    def _flow(self, t: float, h: float, mode: str) -> float:
        """One sub-step of the flow, downstream first; returns the sink's INSERTs."""
        for source in self.sources:
            for replica in source.pods:
                replica.lag += replica.arriving * h / self.dt
        for stream in self.streams.values():
            stream.expire(t)
        sends = 0.0
        if mode in ("run", "drain"):
            sends = self._step_sink(t, h, mode == "drain")
            for node in reversed(self.graph.nodes):
                if node.kind == "dedup":
                    self._step_dedup(node, t, h)
                elif node.kind == "join":
                    inputs = [self.streams[s.name] for s in self.graph.inputs("join") if s.index == 0]
                    ratio = float(self.params["join"]["output_ratio"])
                    run_join(inputs, self._outputs("join"), self.join_capacity(), ratio, t, h)
        if mode == "run":
            for stream in self.streams.values():
                stream.before_publish = stream.depth
            for source in self.sources:
                self._step_ingestor(source, t, h)
        for stream in self.streams.values():
            stream.end_step()
            self._full = self._full or stream.refused
        return sends

    def _substeps(self) -> int:
        """How many sub-steps this step needs: the most a stage moves in one must fit its input stream.
        What a stage moves is bounded by its capacity and, in practice, by the flow: the arrivals, or
        what moved through the busiest stream last step (a catch-up raises it step by step), unless a
        stream is full."""
        limit = min((s.limit() for s in self.streams.values()), default=math.inf)
        if not math.isfinite(limit) or limit <= 0:
            return 1
        fastest = self.sink_replica_capacity(fail_prob=0.0)
        if self.has_transform:
            fastest = max(fastest, self.transform_capacity() / max(1, self.transform_replicas))
        if self.join:
            fastest = max(fastest, self.join_capacity())
        arriving = sum(r.arriving for s in self.sources for r in s.pods) / self.dt
        # a full stream's producer refills whatever is freed: its consumer may run at full capacity
        flow = fastest if self._full else min(fastest, max(arriving, self._busiest))
        return max(1, min(8, math.ceil(1.5 * flow * self.dt / limit)))

    def _outputs(self, node_id: str) -> list[tuple[JetStream, float]]:
        return [(self.streams[s.name], s.share) for s in self.graph.outputs(node_id)]

    def _arrivals(self, t: float, dt: float) -> None:
        """This step's arrivals per replica (``arriving``), reaching the partitions over the sub-steps."""
        for source in self.sources:
            source.rate_now = profiles.rate_at(source.params["profile"], t)
            noise = float(source.params.get("noise") or 0.0)
            factor = 1.0 + (max(-3.0, min(3.0, self.rng.gauss(0.0, 1.0))) * noise if noise else 0.0)
            arrived = max(0.0, source.rate_now * factor) * dt
            source.arrived += arrived
            partitions = max(1, sum(r.partitions for r in source.pods))
            for replica in source.pods:
                replica.arriving = arrived * replica.partitions / partitions

    def _step_ingestor(self, source: SourceState, t: float, dt: float) -> None:
        outputs = self._outputs(source.node)
        if not self.kafka:  # the OTLP receiver publishes what the streams take
            replica = source.pods[0]
            moved = min([replica.lag] + [s.room() / share for s, share in outputs if share > 0])
            arrived = replica.arriving * dt / self.dt
            replica.lag -= moved
            for stream, share in outputs:
                stream.publish(t, moved * share)
            self.totals["read"] += moved
            if self.receiver is not None and self.pods_up:
                self.receiver.record(self.pipeline_id, source.signal, t, arrived, moved, source.record_bytes,
                                     float(source.params.get("records_per_request") or 1.0), replica.lag)
            return
        ip = self.params["ingestor"]
        step = IngestorStep(self.pipeline_id, self.ingestor_replica_rate(source), float(ip["batch_records"]),
                            float(source.params.get("parse_error_fraction") or 0.0), source.record_bytes,
                            topo.pending_publish_limit(source.replicas), float(self.params["nats"]["ack_latency"]))
        self.totals["read"] += step.run(source.pods, outputs, t, dt, self.dlq)

    def _step_dedup(self, node: topo.Node, t: float, dt: float) -> None:
        tp = self.params["transform"]
        _, costs = self.transform_record_cost()
        if self.dedup:
            self._expire_dedup(t)
        room = max(0.0, self.dedup_capacity_keys - self.dedup_stored) if self.dedup else math.inf
        step = DedupStep(self.pipeline_id, costs, float(tp["filter_pass"]), float(tp["filter_error_fraction"]),
                         float(tp["duplicate_fraction"]), float(tp["transform_error_fraction"]), room,
                         self.batch, self.record_bytes)
        inputs = sorted(self.graph.inputs(node.id), key=lambda s: s.index)
        step.run(self.dedups[node.id], [self.streams[s.name] for s in inputs], self._outputs(node.id), t, dt, self.dlq)
        self.totals["filtered"] += step.filtered
        self.totals["duplicates"] += step.duplicates_out
        if step.stored_keys > 0:
            if self.dedup_keys and self.dedup_keys[-1][0] > t - 60.0:
                self.dedup_keys[-1][1] += step.stored_keys
            else:
                self.dedup_keys.append([t, step.stored_keys])
            self.dedup_stored += step.stored_keys

    def _step_sink(self, t: float, h: float, draining: bool) -> float:
        cfg = self.sink_config()
        self.fail_prob = sum(p for name, p in cfg.fail.items() if retryable(name))
        written = sends = busy = 0.0
        for replica in self.sinks:
            written += replica.step(cfg, t, h, draining)
            sends += replica.sends
            busy += replica.busy
        self.totals["written"] += written
        self._busy += busy
        return sends

    def _sink_totals(self, sends: float, dt: float, draining: bool, events: StepEvents) -> None:
        """Once a step: the insert rate against ClickHouse's budget, busy time, memory."""
        self.sink_busy, self._busy = self._busy / dt, 0.0
        self.insert_rate = sends / dt
        self.sink_batch = self.batch if sends > 0 else 0.0
        budget = float(self.params["clickhouse"]["insert_budget"])
        target = max(0.0, 1.0 - budget / self.insert_rate) if budget > 0 and self.insert_rate > 0 else 0.0
        self._budget_fail = 0.5 * self._budget_fail + 0.5 * target  # damped: overload builds up over a few steps
        # the pull consumer prefetches B x workers per replica on top of the batch it builds
        self.sink_memory = self.base_memory + self.batch * self.workers * self.row_memory
        if self.sink_memory > self.sink_memory_limit and not draining:
            events.oom = True
            events.messages.append(
                f"sink OOM: {self.sink_memory / 2**20:.0f}Mi needed for batches of {self.batch:.0f} x "
                f"{self.workers} workers, limit {self.sink_memory_limit / 2**20:.0f}Mi")

    def _expire_dedup(self, t: float) -> None:
        horizon = t - self.dedup_window
        while self.dedup_keys and self.dedup_keys[0][0] < horizon:
            self.dedup_stored -= self.dedup_keys.popleft()[1]
        self.dedup_stored = max(0.0, self.dedup_stored)

    # --- lifecycle hooks -------------------------------------------------------------------------

    def all_streams(self) -> list[JetStream]:
        return list(self.streams.values())

    @property
    def expired(self) -> float:
        """Messages ``maxAge`` removed from the streams: lost, and no metric says so."""
        return sum(s.expired for s in self.streams.values())

    @property
    def lost(self) -> float:
        return self.expired + self.dropped

    def drained(self) -> bool:
        """Every stream is empty: what a graceful stop waits for."""
        return all(stream.depth <= 1e-6 for stream in self.streams.values())

    def purge(self) -> None:
        """Terminate removes the NATS streams and whatever they held (counted as purged)."""
        for stream in self.streams.values():
            self.purged += stream.clear()

    def sweep(self) -> list[tuple[str, str, float]]:
        """The operator's stop-time sweep: every stream emptied; ``(stream, consuming component,
        messages)`` for each."""
        out = []
        kinds = {n.id: n.kind for n in self.graph.nodes}
        for s in self.graph.streams:
            held = self.streams[s.name].clear()
            self.swept += held
            out.append((s.name, kinds.get(s.consumer, s.consumer), held))
        return out

    def drain_dlq(self) -> list[tuple[str, str, float]]:
        new, self.dlq.new = self.dlq.new, []
        return new
