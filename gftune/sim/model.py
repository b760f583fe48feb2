"""The fluid model of one pipeline: Kafka -> ingestor -> NATS -> [join] -> [transform] -> NATS -> sink.

Records are a fluid (floats), advanced in fixed sim-time steps by :meth:`PipelineModel.step`. Per
step, upstream first: arrivals join the Kafka lag, each stage takes what its capacity allows from
its input stream and publishes into the next one as far as that stream has room (backpressure),
and the sink turns what it takes into batches and inserts.

Stage facts (reference §9 of anchors-tuning, the scaling guide and the seed's symptom table):

* **Ingestor**: one replica per Kafka partition at most (extra replicas idle). Per-replica rate is
  fixed (I/O bound) and does not grow with CPU above ``cpu_need``, but is throttled proportionally
  below it (``limits.cpu: 250m`` with ``cpu_need: 1`` gives 25%).
* **NATS stream**: ``maxMsgs`` (0 -> the stored default 8 x batch, -1 unlimited), ``maxBytes``
  (0/-1 unlimited), ``maxAge``. Acked messages leave the stream (work-queue semantics); a message
  the sink has fetched stays stored, unacked, until its batch is inserted. The depth (what NATS
  reports as the stream's messages) is therefore the backlog plus the sink's in-flight messages,
  and both are real records: fetching moves a message from one to the other, only publishing and
  acking change the depth. A producer stops publishing when the depth would exceed
  ``backpressure_threshold x maxMsgs`` (the backpressure gauge); a limit that is hit anyway
  (``maxBytes``, ``maxAge``) discards the oldest messages (DiscardOld) and counts them lost.
* **Transform** (dedup/filter/stateless in one deployment) and **join**: fixed per-replica rate;
  dedup lookups slow down as the dedup store fills, and keys that no longer fit go to the DLQ
  (``dedup_overflow``).
* **Sink**: ``workers = max(1, ceil(limits.cpu) - 2)`` (Go >= 1.25 rounds a fractional CPU limit
  *up* for GOMAXPROCS); one batch cycle takes ``attempts x (a + b x B) + (attempts - 1) x backoff
  + p x B / workers``; the effective batch is ``B`` when backlogged, else the smallest batch that
  keeps up but at least ``arrivals x max_delay_time``. Inserts above the ClickHouse insert budget
  fail with a retryable error, like an ``error_rate`` fault does; a batch that fails ``max_retries
  + 1`` times goes to the DLQ (``retry_exhausted``). Sink memory is ``base + B_eff x workers x row
  bytes``; over ``limits.memory`` the sink is OOM-killed and the pipeline goes ``Failed``.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gftune.glassflow import resources as res
from gftune.glassflow.durations import DurationError, parse_duration
from gftune.glassflow.quantities import QuantityError, parse_nats_bytes, parse_quantity
from gftune.sim import profiles
from gftune.sim.params import DEFAULT_PARAMS, deep_merge, source_params

Json = dict[str, Any]

# Histogram buckets of reference §5.3.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BACKPRESSURE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
BATCH_RECORDS_BUCKETS = (1, 10, 100, 1000, 10000, 100000)
BATCH_BYTES_BUCKETS = (1024, 10240, 102400, 1048576, 10485760, 104857600)

# Relative cost of the transform's stages (their share of one record's processing time).
_TRANSFORM_WEIGHTS = {"dedup_lookup": 0.4, "dedup_commit": 0.3, "filter": 0.15, "stateless": 0.15}


def hash8(pipeline_id: str) -> str:
    return hashlib.sha256(pipeline_id.encode()).hexdigest()[:8]


def stream_name(pipeline_id: str, suffix: str) -> str:
    return f"gfm-{hash8(pipeline_id)}-{suffix}"[:32]


def consumer_group(pipeline_id: str) -> str:
    return f"glassflow-consumer-group-{hash8(pipeline_id)}"


def sink_workers(cpu_limit: float | None) -> int:
    """``GOMAXPROCS - 2`` (min 1). GOMAXPROCS follows the CPU limit rounded up (Go 1.25)."""
    if cpu_limit is None:
        return 1
    return max(1, math.ceil(cpu_limit - 1e-9) - 2)


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


class Histogram:
    """A fluid histogram: fractional observation counts per bucket, plus the sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0.0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float, count: float = 1.0) -> None:
        if count <= 0:
            return
        self.counts[bisect.bisect_left(self.bounds, value)] += count
        self.total += value * count

    def cumulative(self) -> tuple[list[tuple[str, float]], float, float]:
        out, running = [], 0.0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((_le(bound), running))
        running += self.counts[-1]
        out.append(("+Inf", running))
        return out, running, self.total


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() and bound >= 1 else repr(float(bound))


@dataclass
class Stream:
    """One JetStream stream between two stages."""

    name: str
    reported: bool  # sampled into gfm_stream_depth by the ingestor
    backlog: float = 0.0  # messages not yet delivered to the consumer
    inflight: float = 0.0  # messages the consumer has fetched and not yet acked (batches being built/inserted)

    @property
    def depth(self) -> float:
        """Messages stored in the stream, as NATS counts them: a message leaves only when acked."""
        return self.backlog + self.inflight


@dataclass
class SourceState:
    source_id: str
    topic: str
    params: Json
    partitions: int
    record_bytes: float
    lag: float = 0.0
    arrived: float = 0.0  # records produced to the topic since the model started
    rate_now: float = 0.0  # noise-free arrival rate at the last step
    replicas: int = 1
    cpu: float | None = None
    stream: Stream | None = None
    backpressure: bool = False
    bp_since: float = 0.0


@dataclass
class StepEvents:
    oom: bool = False
    messages: list[str] = field(default_factory=list)


class PipelineModel:
    """Fluid state and cumulative metric values of one pipeline, in sim time."""

    def __init__(self, pipeline_id: str, doc: Json, resources: Json, params: Json | None, *,
                 seed: int = 0, t0: float = 0.0, dt: float = 1.0) -> None:
        self.pipeline_id = pipeline_id
        self.params = deep_merge(DEFAULT_PARAMS, params)
        self.dt = dt
        self.t = t0  # start of the next step
        digest = hashlib.sha256(f"{seed}:{pipeline_id}".encode()).digest()
        self.rng = random.Random(int.from_bytes(digest[:8], "big"))
        self.counters: dict[tuple[str, tuple[str, ...]], float] = {}
        self.histograms: dict[tuple[str, tuple[str, ...]], Histogram] = {}
        self.lost = 0.0  # records dropped by a full stream (DiscardOld)
        self.purged = 0.0  # records removed with the streams by terminate
        self.swept = 0.0  # records the operator's stop-time sweep moved to the DLQ
        self.dlq_new: list[tuple[str, str, float]] = []  # (component, reason, records) since last drained
        self.sources: list[SourceState] = []
        self.dedup_keys: deque[list[float]] = deque()  # [chunk start time, keys]
        self.dedup_stored = 0.0
        self.sink_backpressured = False
        self.sink_busy = 0.0
        self.sink_batch = 0.0
        self.sink_memory = 0.0
        self.insert_rate = 0.0
        self.fail_prob = 0.0
        self.component_bp: dict[str, list[float]] = {}  # component -> [active, since]
        self._budget_fail = 0.0  # share of insert attempts refused for exceeding the insert budget
        self._exhausted_acc = 0.0
        self._sink_arrivals: float | None = None  # records/s that reached the sink's stream last step
        self._sink_backlog_before = 0.0
        self.join_stream: Stream | None = None
        self.transform_stream: Stream | None = None
        self.configure(doc, resources)
        fill = float(self.params["transform"].get("initial_fill") or 0.0)
        if self.dedup_window and fill > 0 and math.isfinite(self.dedup_capacity_keys):
            # a store that has been filling for a while: keys spread evenly over the last window,
            # so they expire gradually while new ones arrive
            chunks = max(1, math.ceil(self.dedup_window / 60.0))
            keys = fill * self.dedup_capacity_keys / chunks
            for k in range(chunks):
                self.dedup_keys.append([t0 - self.dedup_window + (k + 0.5) * self.dedup_window / chunks, keys])
            self.dedup_stored = fill * self.dedup_capacity_keys

    # --- configuration ----------------------------------------------------------------------

    def configure(self, doc: Json, resources: Json) -> None:
        """(Re)derive the configuration from the stored document and internal resources.

        Fluid state (Kafka lag, stream backlogs, dedup store) and counters are kept.
        """
        p = self.params
        self.doc = doc
        self.resources = resources
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

        stream_cfg = (resources.get("nats") or {}).get("stream") or {}
        max_msgs = stream_cfg.get("maxMsgs")
        self.max_msgs = float(max_msgs) if isinstance(max_msgs, int) and max_msgs > 0 else math.inf
        try:
            max_bytes = float(parse_nats_bytes(str(stream_cfg.get("maxBytes") or "0")))
        except QuantityError:
            max_bytes = 0.0
        self.max_bytes = max_bytes if max_bytes > 0 else math.inf
        self.max_age = _seconds(stream_cfg.get("maxAge"), 0.0) or math.inf
        self.bp_threshold = float(p["stream"]["backpressure_threshold"])

        ingestor = resources.get("ingestor") or {}
        old = {s.source_id: s for s in self.sources}
        self.sources = []
        doc_sources = doc.get("sources") or []
        join = doc.get("join") or {}
        sides = {(join.get("left_source") or {}).get("source_id"): "left",
                 (join.get("right_source") or {}).get("source_id"): "right"}
        for index, source in enumerate(doc_sources):
            sid = source.get("source_id", f"source{index}")
            sparams = source_params(p, sid)
            profiles.check_profile(sparams["profile"])
            topic = source.get("topic") or sid
            state = old.get(sid) or SourceState(sid, topic, sparams, int(sparams["partitions"]),
                                                float(sparams["record_bytes"]))
            state.params, state.topic = sparams, topic
            state.partitions = max(1, int(sparams["partitions"]))
            state.record_bytes = float(sparams["record_bytes"])
            block = ingestor.get(sides.get(sid, "base") if self.join else "base") or {}
            if not self.kafka:
                block = {}
            replicas = block.get("replicas")
            state.replicas = replicas if isinstance(replicas, int) else 1
            state.cpu = _cpu(block)
            if state.stream is None:
                state.stream = Stream(stream_name(self.pipeline_id, topic), reported=self.kafka)
            self.sources.append(state)
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
        delay = _seconds(sink_doc.get("max_delay_time"), 60.0)
        self.delay = delay if delay > 0 else 60.0  # "0s" means 60s
        sp = p["sink"]
        self.base_memory = float(parse_quantity(str(sp["base_memory"])))
        self.row_memory = float(sp["row_memory_bytes"] or 2 * self.record_bytes)

        self.streams_in = [s.stream for s in self.sources]
        if self.join and self.join_stream is None:
            self.join_stream = Stream(stream_name(self.pipeline_id, "joined"), False)
        if self.has_transform and self.transform_stream is None:
            self.transform_stream = Stream(stream_name(self.pipeline_id, "transformed"), False)
        if self.dedup_window and self.dedup_keys:
            self._expire_dedup(self.t)

    # --- capacities (records per sim second, noise-free) ------------------------------------

    def ingestor_replica_rate(self, source: SourceState, cpu: float | None = None) -> float:
        ip = self.params["ingestor"]
        cpu = source.cpu if cpu is None else cpu
        need = float(ip["cpu_need"])
        throttle = 1.0 if cpu is None or need <= 0 else min(1.0, cpu / need)
        return float(ip["per_replica_rate"]) * throttle

    def ingestor_capacity(self, source: SourceState) -> float:
        if not self.kafka:
            return math.inf
        return min(source.replicas, source.partitions) * self.ingestor_replica_rate(source)

    def transform_record_cost(self, fill: float | None = None) -> tuple[float, dict[str, float]]:
        """Seconds of one replica per record, and its split by stage."""
        tp = self.params["transform"]
        base = 1.0 / float(tp["per_replica_rate"])
        present = {k: w for k, w in _TRANSFORM_WEIGHTS.items()
                   if (k.startswith("dedup") and self.dedup) or (k == "filter" and self.filter)
                   or (k == "stateless" and self.stateless)}
        scale = sum(present.values()) or 1.0
        costs = {k: base * w / scale for k, w in present.items()}
        if "dedup_lookup" in costs:
            fill = self.dedup_fill() if fill is None else fill
            costs["dedup_lookup"] *= 1.0 + float(tp["lookup_slowdown"]) * min(1.0, fill) ** 2
        return sum(costs.values()), costs

    def transform_capacity(self, fill: float | None = None) -> float:
        cost, _ = self.transform_record_cost(fill)
        return self.transform_replicas / cost

    def join_capacity(self) -> float:
        return float(self.params["join"]["rate"])

    def sink_cycle(self, batch: float, fail_prob: float | None = None,
                   workers: int | None = None) -> tuple[float, float]:
        """(seconds per batch cycle, expected insert attempts per batch)."""
        sp = self.params["sink"]
        f = self.fail_prob if fail_prob is None else fail_prob
        retries = int(sp["max_retries"])
        attempts = sum(f ** k for k in range(retries + 1))
        insert = float(sp["insert_overhead"]) + float(sp["insert_per_row"]) * batch
        prepare = float(sp["prepare_per_row"]) * batch / (workers or self.workers)
        return attempts * insert + (attempts - 1) * float(sp["retry_backoff"]) + prepare, attempts

    def sink_replica_capacity(self, batch: float | None = None, fail_prob: float | None = None,
                              workers: int | None = None) -> float:
        batch = self.batch if batch is None else batch
        cycle, _ = self.sink_cycle(batch, fail_prob, workers)
        return batch / cycle

    def effective_batch(self, per_replica_rate: float, batch: float | None = None, delay: float | None = None,
                        fail_prob: float | None = None, workers: int | None = None) -> float:
        """The batch the sink forms when it is not backlogged: enough to keep up, and at least what
        arrives within ``max_delay_time``; never above ``max_batch_size``."""
        batch = self.batch if batch is None else batch
        delay = self.delay if delay is None else delay
        if per_replica_rate <= 0:
            return 0.0
        cycle0, _ = self.sink_cycle(0.0, fail_prob, workers)  # per-batch fixed time
        cycle1, _ = self.sink_cycle(1.0, fail_prob, workers)
        per_row = cycle1 - cycle0
        if per_replica_rate * per_row >= 1.0:
            return batch
        keep_up = per_replica_rate * cycle0 / (1.0 - per_replica_rate * per_row)
        return min(batch, max(per_replica_rate * delay, keep_up, 1.0))

    def dedup_fill(self) -> float:
        if not self.dedup or not math.isfinite(self.dedup_capacity_keys) or self.dedup_capacity_keys <= 0:
            return 0.0
        return self.dedup_stored / self.dedup_capacity_keys

    # --- metric helpers ---------------------------------------------------------------------

    def _inc(self, name: str, labels: tuple[str, ...], value: float) -> None:
        if value:
            key = (name, labels)
            self.counters[key] = self.counters.get(key, 0.0) + value

    def _hist(self, name: str, labels: tuple[str, ...], bounds: tuple[float, ...]) -> Histogram:
        key = (name, labels)
        hist = self.histograms.get(key)
        if hist is None:
            hist = self.histograms[key] = Histogram(bounds)
        return hist

    def _dlq(self, component: str, reason: str, records: float) -> None:
        if records > 0:
            self._inc("dlq_records_written", (component, reason), records)
            self.dlq_new.append((component, reason, records))

    def _set_bp(self, component: str, active: bool, t: float) -> None:
        state = self.component_bp.setdefault(component, [0.0, t])
        if active and not state[0]:
            state[0], state[1] = 1.0, t
            self._inc("component_backpressure_events", (component,), 1.0)
        elif not active and state[0]:
            state[0] = 0.0
            self._hist("component_backpressure_duration_seconds", (component,), BACKPRESSURE_BUCKETS) \
                .observe(t - state[1])

    # --- the step -------------------------------------------------------------------------------

    def step(self, mode: str) -> StepEvents:
        """Advance one step of ``dt`` sim seconds from ``self.t``.

        ``mode``: ``run`` (everything flows), ``drain`` (Stopping: the ingestor has stopped, the
        rest drains), ``off`` (no component runs; Kafka lag grows).

        Two passes: first, downstream to upstream, how much each consumer can take this step (its
        capacity, bounded by the room in its output stream plus what *its* consumer frees meanwhile);
        then, upstream to downstream, the flow itself. A producer held back by a full stream thus
        keeps the stream at the backpressure threshold, as a continuous system would.
        """
        dt, t = self.dt, self.t
        events = StepEvents()
        running = mode == "run"
        active = mode in ("run", "drain")
        self._arrivals(t, dt)

        # pass 1: what each consumer can take (records this step)
        sink_streams = self._sink_streams()
        sink_plan = self._plan_sink(sink_streams, dt, active)
        next_pot = sink_plan["pot"]
        transform_pot = 0.0
        if self.has_transform and self.transform_stream is not None:
            keep = self._transform_keep()
            cost, _ = self.transform_record_cost()
            cap = (self.transform_replicas / cost) * dt if active else 0.0
            room = self._room(self.transform_stream) + next_pot
            transform_pot = min(cap, room / keep if keep > 0 else math.inf)
            transform_cap = cap
            next_pot = transform_pot
        join_pot = 0.0
        if self.join and self.join_stream is not None:
            ratio = float(self.params["join"]["output_ratio"])
            cap = self.join_capacity() * dt if active else 0.0
            room = self._room(self.join_stream) + next_pot
            join_pot = min(cap, room / ratio if ratio > 0 else math.inf)
            join_cap = cap
            next_pot = join_pot

        # pass 2: the flow, upstream first
        total_rate = sum(s.rate_now for s in self.sources) or 1.0
        for source in self.sources:
            share = source.rate_now / total_rate if len(self.sources) > 1 else 1.0
            self._step_ingestor(source, dt, running, self._room(source.stream) + next_pot * share)
        upstream = self.streams_in
        if self.join and self.join_stream is not None:
            available = sum(s.backlog for s in upstream)
            take = min(available, join_pot)
            self._set_bp("join", active and take < min(available, join_cap) - 1e-9, t + dt)
            self._take_evenly(upstream, take)
            ratio = float(self.params["join"]["output_ratio"])
            self.join_stream.backlog += take * ratio
            self._inc("bytes_processed", ("join", "in"), take * self.record_bytes)
            self._inc("bytes_processed", ("join", "out"), take * ratio * self.record_bytes)
            upstream = [self.join_stream]
        if self.has_transform and self.transform_stream is not None:
            self._step_transform(upstream, t, dt, active, transform_pot, transform_cap)
            upstream = [self.transform_stream]
        self._step_sink(upstream, sink_plan, dt, running, events)
        for stream in self.all_streams():
            self._discard(stream, self.record_bytes)
        if self.kafka:  # the gauge follows the depth ratio it is derived from; a stopped ingestor holds nothing back
            for source in self.sources:
                self._set_source_bp(source, running and self._held_back(source.stream), t + dt)
        self.t = t + dt
        return events

    def _arrivals(self, t: float, dt: float) -> None:
        for source in self.sources:
            source.rate_now = profiles.rate_at(source.params["profile"], t)
            noise = float(source.params.get("noise") or 0.0)
            factor = 1.0 + (max(-3.0, min(3.0, self.rng.gauss(0.0, 1.0))) * noise if noise else 0.0)
            arrived = max(0.0, source.rate_now * factor) * dt
            source.lag += arrived
            source.arrived += arrived

    def _sink_streams(self) -> list[Stream]:
        if self.has_transform and self.transform_stream is not None:
            return [self.transform_stream]
        if self.join and self.join_stream is not None:
            return [self.join_stream]
        return list(self.streams_in)

    def _transform_keep(self) -> float:
        tp = self.params["transform"]
        keep = float(tp["filter_pass"]) if self.filter else 1.0
        if self.dedup:
            keep *= 1.0 - float(tp["duplicate_fraction"])
        return keep

    def expected_sink_rate(self) -> float:
        """Noise-free arrivals at the sink if nothing upstream held them back."""
        rate = sum(s.rate_now * (1.0 - float(s.params.get("parse_error_fraction") or 0.0)) for s in self.sources)
        if self.join:
            rate *= float(self.params["join"]["output_ratio"])
        if self.has_transform:
            rate *= self._transform_keep()
        return rate

    def _step_ingestor(self, source: SourceState, dt: float, running: bool, room: float) -> None:
        stream = source.stream
        can = self.ingestor_capacity(source) * dt if running else 0.0
        read = min(source.lag, can, room)
        source.lag -= read
        parse_errors = read * float(source.params.get("parse_error_fraction") or 0.0)
        out = read - parse_errors
        stream.backlog += out
        if not self.kafka:
            return
        self._inc("kafka_records_read", ("ingestor",), read)
        self._inc("bytes_processed", ("ingestor", "in"), read * source.record_bytes)
        self._inc("bytes_processed", ("ingestor", "out"), out * source.record_bytes)
        self._dlq("ingestor", "schema_mismatch", parse_errors)
        rate = self.ingestor_replica_rate(source)
        if read > 0 and rate > 0:
            batch = float(self.params["ingestor"]["batch_records"])
            self._hist("processing_duration_seconds", ("ingestor", "batch"), DURATION_BUCKETS) \
                .observe(batch / rate, read / batch)

    def _held_back(self, stream: Stream | None) -> bool:
        """The ingestor's backpressure check: the stream's depth ratio has reached the threshold."""
        if stream is None or math.isinf(self.max_msgs):
            return False
        return stream.depth / self.max_msgs >= self.bp_threshold - 1e-9

    def _set_source_bp(self, source: SourceState, limited: bool, t: float) -> None:
        if limited and not source.backpressure:
            source.backpressure, source.bp_since = True, t
            self._inc("ingestor_backpressure_events", (), 1.0)
        elif not limited and source.backpressure:
            source.backpressure = False
            self._hist("ingestor_backpressure_duration_seconds", (), BACKPRESSURE_BUCKETS).observe(t - source.bp_since)
        self._set_bp("ingestor", any(s.backpressure for s in self.sources), t)

    def _room(self, stream: Stream | None) -> float:
        """How much a producer may still publish before it holds back (backpressure)."""
        if stream is None or math.isinf(self.max_msgs):
            return math.inf
        return max(0.0, self.bp_threshold * self.max_msgs - stream.depth)

    def _discard(self, stream: Stream, record_bytes: float) -> None:
        """DiscardOld: a stream over a hard limit loses its oldest messages.

        The backlog goes first (a fluid has no order; this keeps the sink's batches whole), then
        messages in flight, which the sink then never gets to ack.
        """
        limit = min(self.max_msgs, self.max_bytes / record_bytes if record_bytes > 0 else math.inf)
        over = stream.depth - limit
        if over > 0:
            from_backlog = min(over, stream.backlog)
            from_inflight = min(over - from_backlog, stream.inflight)
            stream.backlog -= from_backlog
            stream.inflight -= from_inflight
            self.lost += from_backlog + from_inflight

    def _take_evenly(self, streams: list[Stream], amount: float) -> None:
        total = sum(s.backlog for s in streams)
        if total <= 0:
            return
        for s in streams:
            s.backlog = max(0.0, s.backlog - amount * (s.backlog / total))

    def _expire_dedup(self, t: float) -> None:
        horizon = t - self.dedup_window
        while self.dedup_keys and self.dedup_keys[0][0] < horizon:
            self.dedup_stored -= self.dedup_keys.popleft()[1]
        self.dedup_stored = max(0.0, self.dedup_stored)

    def _step_transform(self, upstream: list[Stream], t: float, dt: float, active: bool, pot: float,
                        cap: float) -> None:
        tp = self.params["transform"]
        available = sum(s.backlog for s in upstream)
        take = min(available, pot)
        self._set_bp("dedup", active and take < min(available, cap) - 1e-9, t + dt)
        self._take_evenly(upstream, take)
        if take <= 0:
            return
        _cost, costs = self.transform_record_cost()
        rb = self.record_bytes
        self._inc("bytes_processed", ("dedup", "in"), take * rb)
        batch = float(tp["batch_records"])
        stage_labels = {"dedup_lookup": ("dedup_filter", "lookup"), "dedup_commit": ("dedup_write", "commit"),
                        "filter": ("filter", "filter"), "stateless": ("transform", "transform")}
        for stage, per_record in costs.items():
            self._hist("processing_duration_seconds", stage_labels[stage], DURATION_BUCKETS) \
                .observe(per_record * batch, take / batch)
        passed = take
        if self.filter:
            kept = passed * float(tp["filter_pass"])
            self._inc("processor_messages", ("filter", "success"), kept)
            self._inc("processor_messages", ("filter", "filtered"), passed - kept)
            passed = kept
        if self.dedup:
            unique = passed * (1.0 - float(tp["duplicate_fraction"]))
            self._inc("processor_messages", ("dedup", "duplicate"), passed - unique)
            self._expire_dedup(t)
            stored = min(unique, max(0.0, self.dedup_capacity_keys - self.dedup_stored))
            if stored > 0:
                if self.dedup_keys and self.dedup_keys[-1][0] > t - 60.0:
                    self.dedup_keys[-1][1] += stored
                else:
                    self.dedup_keys.append([t, stored])
                self.dedup_stored += stored
            self._inc("processor_messages", ("dedup", "success"), stored)
            self._dlq("dedup", "dedup_overflow", unique - stored)  # keys that no longer fit in the store
            passed = stored
        if self.stateless:
            self._inc("processor_messages", ("transform", "success"), passed)
        self.transform_stream.backlog += passed
        self._inc("bytes_processed", ("dedup", "out"), passed * rb)

    def _plan_sink(self, streams: list[Stream], dt: float, active: bool) -> Json:
        """The sink's batch and cycle for this step, and how much it can take."""
        replicas = max(1, self.sink_replicas)
        err = float(self.params["clickhouse"]["error_rate"])
        self.fail_prob = min(0.999, 1.0 - (1.0 - err) * (1.0 - self._budget_fail))
        backlog = sum(s.backlog for s in streams)
        arrivals = self._sink_arrivals or self.expected_sink_rate()  # nothing arrived yet: what will
        per_replica = arrivals / replicas
        backlogged = backlog > 1e-6
        if backlogged:
            batch = self.batch
        else:  # a margin so that noise does not make it fall behind every other step
            batch = self.effective_batch(per_replica * 1.1)
        if math.isfinite(self.max_msgs):  # a batch cannot outgrow what the stream lets through
            batch = min(batch, max(1.0, self.bp_threshold * self.max_msgs / (2 * replicas)))
        batch = max(batch, 1.0)
        cycle, attempts = self.sink_cycle(batch)
        pot = replicas * batch / cycle * dt if active else 0.0
        # unacked messages each replica holds: half a batch being built plus what arrives during an
        # insert (at full speed when backlogged), at most a batch per worker
        rate = batch / cycle if backlogged else per_replica
        hold = replicas * min(batch / 2.0 + rate * cycle, batch * self.workers)
        if math.isfinite(self.max_msgs):  # what it fetches never crowds the producers out of the stream
            hold = min(hold, self.bp_threshold * self.max_msgs / 2.0)
        return {"replicas": replicas, "batch": batch, "cycle": cycle, "attempts": attempts, "pot": pot,
                "per_replica": per_replica, "hold": hold}

    def _step_sink(self, upstream: list[Stream], plan: Json, dt: float, running: bool, events: StepEvents) -> None:
        ch = self.params["clickhouse"]
        sp = self.params["sink"]
        batch, cycle, attempts = plan["batch"], plan["cycle"], plan["attempts"]
        backlog = sum(s.backlog for s in upstream)
        self._sink_arrivals = max(0.0, backlog - self._sink_backlog_before) / dt
        stored = backlog + sum(s.inflight for s in upstream)
        # Running, the sink keeps its partial batches in flight; stopping, it flushes them
        hold = min(plan["hold"], stored) if running else 0.0
        take = min(stored - hold, plan["pot"])  # inserted (or given up) and acked this step
        if stored > 0:
            for s in upstream:
                share = s.depth / stored
                s.inflight = hold * share
                s.backlog = max(0.0, (stored - take) * share - s.inflight)
        self._sink_backlog_before = sum(s.backlog for s in upstream)
        rb = self.record_bytes
        self.sink_batch = batch if take > 0 else 0.0
        self.sink_busy = (take / batch) * cycle / dt
        self.sink_memory = self.base_memory + batch * self.workers * self.row_memory if running else 0.0
        if running and self.sink_memory > self.sink_memory_limit:
            events.oom = True
            events.messages.append(
                f"sink OOM: {self.sink_memory / 2**20:.0f}Mi needed for batches of {batch:.0f} x "
                f"{self.workers} workers, limit {self.sink_memory_limit / 2**20:.0f}Mi")
        if take <= 0:
            self.insert_rate = 0.0
            return
        batches = take / batch
        self.insert_rate = batches * attempts / dt
        budget = float(ch["insert_budget"])
        target = max(0.0, 1.0 - budget / self.insert_rate) if budget > 0 else 0.0
        self._budget_fail = 0.5 * self._budget_fail + 0.5 * target  # damped: overload builds up over a few steps
        retries = int(sp["max_retries"])
        f = self.fail_prob
        retried = batches * sum(f ** k for k in range(1, retries + 1))
        failed_attempts = retried + batches * f ** (retries + 1)
        # exhausted batches are whole batches: accumulate the expectation, give up on whole ones
        self._exhausted_acc += batches * f ** (retries + 1)
        exhausted_batches = math.floor(self._exhausted_acc)
        self._exhausted_acc -= exhausted_batches
        exhausted = min(take, exhausted_batches * batch)
        delivered = take - exhausted
        permanent = delivered * float(ch["permanent_error_fraction"])
        written = delivered - permanent
        self._inc("clickhouse_records_written", ("sink",), written)
        self._inc("bytes_processed", ("sink", "in"), take * rb)
        self._inc("bytes_processed", ("sink", "out"), written * rb)
        self._inc("processor_messages", ("sink", "success"), written)
        self._inc("processor_messages", ("sink", "error"), exhausted + permanent)
        self._inc("processor_messages", ("sink", "retry"), retried * batch)
        self._inc("sink_nack_messages", (), retried * batch)
        self._inc("sink_retries", ("retry",), retried)
        self._inc("sink_retries", ("exhausted",), exhausted_batches)
        if failed_attempts > 0:
            self._inc("sink_errors_by_classification", ("retryable", str(ch["error_name"])), failed_attempts)
        if permanent > 0:
            name = str(ch["permanent_error_name"])
            self._inc("sink_errors_by_classification", ("permanent", name), permanent)  # one per rejected row
            self._dlq("sink", f"sink_rejection_{name}", permanent)
        self._dlq("sink", "retry_exhausted", exhausted)
        self._hist("sink_batch_size_records", (), BATCH_RECORDS_BUCKETS).observe(batch, batches)
        self._hist("sink_batch_size_bytes", (), BATCH_BYTES_BUCKETS).observe(batch * rb, batches)
        prepare = float(sp["prepare_per_row"]) * batch / self.workers
        self._hist("processing_duration_seconds", ("sink", "total_preparation"), DURATION_BUCKETS) \
            .observe(cycle, batches)
        self._hist("processing_duration_seconds", ("sink", "schema_mapping"), DURATION_BUCKETS) \
            .observe(prepare, batches)
        self._hist("processing_duration_seconds", ("sink", "per_message"), DURATION_BUCKETS) \
            .observe(cycle / batch, take)

    # --- lifecycle hooks -------------------------------------------------------------------------

    def all_streams(self) -> list[Stream]:
        streams = list(self.streams_in)
        if self.join_stream is not None:
            streams.append(self.join_stream)
        if self.transform_stream is not None:
            streams.append(self.transform_stream)
        return streams

    def drained(self) -> bool:
        """Every stream is empty: what a graceful stop waits for."""
        return all(stream.depth <= 1e-6 for stream in self.all_streams())

    def purge(self) -> None:
        """Terminate removes the NATS streams and whatever they held (counted as purged)."""
        for stream in self.all_streams():
            self.purged += stream.depth
            stream.backlog = stream.inflight = 0.0

    def sweep(self) -> list[tuple[str, str, float]]:
        """The operator's stop-time sweep: every stream emptied; ``(stream, consuming component,
        messages)`` for each."""
        out = []
        consumer = "join" if self.join else "dedup" if self.has_transform else "sink"
        for stream in self.all_streams():
            if stream is self.join_stream:
                consumer = "dedup" if self.has_transform else "sink"
            elif stream is self.transform_stream:
                consumer = "sink"
            out.append((stream.name, consumer, stream.depth))
            self.swept += stream.depth
            stream.backlog = stream.inflight = 0.0
        return out

    def stopped(self) -> None:
        """No consumer holds messages once the components are down (NATS redelivers what was
        unacked); backpressure ends."""
        for stream in self.all_streams():
            stream.backlog += stream.inflight
            stream.inflight = 0.0
        for source in self.sources:
            if source.backpressure:
                self._set_source_bp(source, False, self.t)
        for component in list(self.component_bp):
            self._set_bp(component, False, self.t)

    def drain_dlq(self) -> list[tuple[str, str, float]]:
        new, self.dlq_new = self.dlq_new, []
        return new

    # --- gauges -----------------------------------------------------------------------------------

    def gauges(self) -> Json:
        return {
            "ingestor_backpressure_active": 1.0 if any(s.backpressure for s in self.sources) else 0.0,
            "component_backpressure_active": {c: v[0] for c, v in self.component_bp.items()},
            "streams": [(s.stream.name, s.stream.depth) for s in self.sources if s.stream and s.stream.reported],
            "max_msgs": self.max_msgs,
        }
