"""The signals themselves: each one an expression over what a GlassFlow deployment really exposes.

Inputs, and nothing else (docs/signals.md cites the upstream source of every meaning used here):

* GlassFlow's ``gfm_*`` series as the chart's OTel collector exposes them: **one series per
  replica** (pod), told apart by ``instance`` — or ``exported_instance`` behind a Prometheus that
  scrapes the collector with ``honor_labels: false``. Per-replica quantities group
  ``by (instance, exported_instance)``: whichever of the two carries the pod name, the groups are
  the pods.
* optionally kafka_exporter's ``kafka_consumergroup_lag`` (consumer group
  ``glassflow-consumer-group-<h8>``), and the NATS exporter's ``jetstream_*`` series the chart's
  collector re-exposes under ``<namespace>_``. Absent, every signal built on them is unknown.

What the metrics mean decides what a signal may claim (reference: glassflow/clickhouse-etl at
c13349c4): ``processing_duration_seconds{sink,total_preparation}`` is preparation only — the INSERT
is measured nowhere — so no signal here reads it as insert or busy time; the sink's cycle comes from
its flush rate instead. ``{ingestor,batch}`` is batch wall time ÷ records, one observation per batch,
backpressure waits included. ``sink_retries_total`` counts rows, not attempts.
"""

from __future__ import annotations

from collections.abc import Callable

from gftune.glassflow import topology as topo
from gftune.metrics.expr import (
    Aggregate,
    ClampMax,
    Const,
    Deriv,
    Either,
    Expr,
    Matcher,
    OrZero,
    Over,
    Quantile,
    Rate,
    Scalar,
    Selector,
)
from gftune.policy.signal_types import SignalContext, SignalDef

# One series per pod: the collector's instance label, renamed exported_instance by a Prometheus
# with honor_labels false (then instance is the collector's address, the same for all pods).
REPLICA = ("instance", "exported_instance")
# The label value breakdowns of per-replica signals are keyed by (the pod name).
REPLICA_BREAKDOWN = "replica"
# The components a dedup pod records under (filter, dedup, transform run in one pod).
DEDUP_POD_COMPONENTS = "filter|dedup|transform"
# The processing_duration_seconds components of a dedup pod's stages (one observation per batch).
DEDUP_POD_STAGES = "filter|dedup_filter|dedup_write|transform"
Build = Callable[[SignalContext], Expr | None]


def consumer_group(pipeline_id: str) -> str:
    """GlassFlow's Kafka consumer group for a pipeline: ``glassflow-consumer-group-<sha256[:8]>``."""
    return topo.consumer_group(pipeline_id)


# --- building blocks -----------------------------------------------------------------------------

def _pid(ctx: SignalContext, *more: Matcher) -> tuple[Matcher, ...]:
    return (("pipeline_id", "=", ctx.pipeline_id), *more)


def _sel(ctx: SignalContext, metric: str, *more: Matcher, suffix: str = "") -> Selector:
    return Selector(metric, _pid(ctx, *more), suffix)


def _rate(metric: str, *more: Matcher, suffix: str = "", by: tuple[str, ...] = ()) -> Build:
    return lambda ctx: Rate(_sel(ctx, metric, *more, suffix=suffix), by)


def _per_replica(metric: str, *more: Matcher, suffix: str = "") -> Build:
    return _rate(metric, *more, suffix=suffix, by=REPLICA)


def _mean(metric: str, *more: Matcher) -> Callable[[SignalContext], Expr]:
    def build(ctx: SignalContext) -> Expr:
        base = _sel(ctx, metric, *more)
        return Rate(base.with_suffix("_sum")) / Rate(base.with_suffix("_count"))
    return build


def _batch_quantile(q: float) -> Build:
    """A sink batch-size quantile. histogram_quantile interpolates inside the power-of-10 buckets
    (full batches of 2,000 read as p95 = 9,550); no batch exceeds sink.max_batch_size, so the
    estimate is capped there when the pipeline's value is known."""
    def build(ctx: SignalContext) -> Expr:
        estimate: Expr = Quantile(q, _sel(ctx, "sink_batch_size_records"))
        limit = ctx.number("sink.max_batch_size")
        return ClampMax(estimate, float(limit)) if limit else estimate
    return build


def _per_field(numerator: Build, path: str) -> Build:
    def build(ctx: SignalContext) -> Expr | None:
        top, denominator = numerator(ctx), ctx.number(path)
        return top / denominator if top is not None and denominator else None
    return build


def _source_rate(ctx: SignalContext) -> Expr:
    return Rate(_sel(ctx, "kafka_records_read_total"))


def _sink_rate(ctx: SignalContext) -> Expr:
    return Rate(_sel(ctx, "clickhouse_records_written_total"))


# --- "no series" that means 0, because another series proves the component reports --------------

def _depth_reported(ctx: SignalContext) -> Expr:
    """0 wherever an ingestor samples stream depth (every ingestor replica does, every 10 s)."""
    return Aggregate("max", _sel(ctx, "stream_depth")) * 0.0


def _dedup_reported(ctx: SignalContext) -> Expr:
    """0 wherever a dedup pod counts messages."""
    return Rate(_sel(ctx, "processor_messages_total", ("component", "=~", DEDUP_POD_COMPONENTS))) * 0.0


def _ingestor_backpressure(ctx: SignalContext) -> Expr:
    return Either(Aggregate("max", _sel(ctx, "ingestor_backpressure_active")), _depth_reported(ctx))


def _dedup_backpressure(ctx: SignalContext) -> Expr:
    return Either(Aggregate("max", _sel(ctx, "component_backpressure_active", ("component", "=", "dedup"))),
                  _dedup_reported(ctx))


def _backpressure_share(component: str, reported: Callable[[SignalContext], Expr]) -> Build:
    """The busiest replica's share of time in finished backpressure episodes (the duration
    histogram observes an episode when it ends)."""
    def build(ctx: SignalContext) -> Expr:
        busiest = Over("max", Rate(_sel(ctx, "component_backpressure_duration_seconds",
                                        ("component", "=", component), suffix="_sum"), by=REPLICA))
        return Either(busiest, reported(ctx))
    return build


# --- Kafka lag (kafka_exporter) and NATS (prometheus-nats-exporter, through the collector) --------

def _lag_selector(ctx: SignalContext) -> Selector:
    return Selector("kafka_consumergroup_lag", (("consumergroup", "=", consumer_group(ctx.pipeline_id)),),
                    external=True)


def _lag(ctx: SignalContext) -> Expr:
    return Aggregate("sum", _lag_selector(ctx))


def _lag_growth(ctx: SignalContext) -> Expr:
    slope: Expr = Deriv(_lag_selector(ctx))
    # Counters of a time-scaled simulator are pre-divided so rates come out per model second; a
    # gauge is not, so its slope per wall second must be divided here.
    return slope / ctx.time_scale if ctx.time_scale != 1 else slope


def _partitions(ctx: SignalContext) -> Expr:
    # One lag series per partition the pipeline's consumer group reads: per pipeline, unlike
    # kafka_topic_partitions, which knows topics by name only (two clusters may share a name).
    return Aggregate("count", _lag_selector(ctx))


def _nats(metric: str, *matchers: Matcher) -> Selector:
    return Selector(metric, matchers, collected=True)


def _nats_sink_pending(ctx: SignalContext) -> Expr:
    consumer = topo.consumer_name("sink", ctx.pipeline_id)
    return Aggregate("sum", _nats("jetstream_consumer_num_pending", ("consumer_name", "=", consumer)))


def _nats_stream_messages(ctx: SignalContext) -> Expr:
    prefix = f"gfm-{topo.hash8(ctx.pipeline_id)}-"
    # every internal stream (…-out_<k>); not the DLQ
    return Aggregate("sum", _nats("jetstream_stream_total_messages", ("stream_name", "=~", f"{prefix}.*-out_[0-9]+")))


def _nats_sink_redelivered(ctx: SignalContext) -> Expr:
    consumer = topo.consumer_name("sink", ctx.pipeline_id)
    return Aggregate("sum", _nats("jetstream_consumer_num_redelivered", ("consumer_name", "=", consumer)))


# --- the transform (dedup pod) -------------------------------------------------------------------

def _transform_kinds(ctx: SignalContext) -> list[str]:
    types = [t.get("type") for t in (ctx.doc or {}).get("transforms") or [] if isinstance(t, dict)]
    return [kind for kind in ("filter", "dedup", "stateless") if kind in types]


_COMPONENT = {"filter": "filter", "dedup": "dedup", "stateless": "transform"}


def _transform_in(ctx: SignalContext) -> Expr:
    """Every message the dedup pod's first step looked at, whatever became of it (filter, dedup
    and transform run in that order in one pod)."""
    kinds = _transform_kinds(ctx)
    matcher: Matcher = (("component", "=", _COMPONENT[kinds[0]]) if kinds
                        else ("component", "=~", DEDUP_POD_COMPONENTS))
    return Rate(_sel(ctx, "processor_messages_total", matcher))


def _transform_out(ctx: SignalContext) -> Expr:
    kinds = _transform_kinds(ctx)
    component = _COMPONENT[kinds[-1] if kinds else "stateless"]
    return Rate(_sel(ctx, "processor_messages_total", ("component", "=", component), ("status", "=", "success")))


# --- stage busy time: what each histogram really measures ------------------------------------------

def _ingestor_busy(ctx: SignalContext) -> Expr:
    """{ingestor,batch} observes batch wall time ÷ records once per batch, so its _sum is not busy
    time: busy ≈ rate(_sum) × records per batch (rate(records) ÷ rate(_count)). A mean of per-batch
    averages, and it counts backpressure waits as busy."""
    duration = _sel(ctx, "processing_duration_seconds", ("component", "=", "ingestor"), ("stage", "=", "batch"))
    return Rate(duration.with_suffix("_sum")) * _source_rate(ctx) / Rate(duration.with_suffix("_count"))


def _transform_busy(ctx: SignalContext) -> Expr:
    """The dedup pod's stages observe whole batches: their sums are busy seconds, without the
    reading and publishing around them (a lower bound)."""
    return Rate(_sel(ctx, "processing_duration_seconds", ("component", "=~", DEDUP_POD_STAGES), suffix="_sum"))


def _utilization(busy: Callable[[SignalContext], Expr], stage: str) -> Build:
    def build(ctx: SignalContext) -> Expr | None:
        replicas = ctx.replicas(stage)
        return busy(ctx) / float(replicas) if replicas else None
    return build


# --- the sink: flushes, preparation, and the cycle they leave for the insert ----------------------

def _preparation(ctx: SignalContext, suffix: str) -> Selector:
    return _sel(ctx, "processing_duration_seconds", ("component", "=", "sink"), ("stage", "=", "total_preparation"),
                suffix=suffix)


def _prepare_busy(ctx: SignalContext) -> Expr:
    """Preparation seconds per second of the busiest sink replica (F·T_prep): a lower bound on its
    busy fraction, since the INSERT is not in it."""
    return Over("max", Rate(_preparation(ctx, "_sum"), by=REPLICA))


def _prepare_seconds(ctx: SignalContext) -> Expr:
    return Rate(_preparation(ctx, "_sum")) / Rate(_preparation(ctx, "_count"))


def _cycle_seconds(ctx: SignalContext) -> Expr:
    """1 / flush rate of the fastest-flushing replica: a saturated replica's flush cycle T."""
    return Over("min", Const(1.0) / Rate(_sel(ctx, "sink_batch_size_records", suffix="_count"), by=REPLICA))


def _sink_capacity(ctx: SignalContext) -> Expr | None:
    """min_k C_k ÷ share_k with C_k the rows a saturated replica writes: the busiest replica's net
    rows/s over the largest stream share (the stream with the largest share saturates first)."""
    if ctx.doc is None:
        return None
    share = max_sink_share(ctx)
    busiest = Over("max", Rate(_sel(ctx, "clickhouse_records_written_total"), by=REPLICA))
    return busiest / share


def max_sink_share(ctx: SignalContext) -> float:
    """The largest share of the traffic one sink replica's stream gets (topology: round-robin or key
    hashing over max(R_producer, R_sink) subjects, subject s to stream s mod R_sink)."""
    shares = sink_shares(ctx)
    return max(shares) if shares else 1.0


def sink_shares(ctx: SignalContext) -> list[float]:
    """Each sink replica's share of the sink's input, by replica index."""
    doc = dict(ctx.doc or {})
    doc.setdefault("pipeline_id", ctx.pipeline_id)
    graph = topo.topology(doc)
    streams = sorted(graph.inputs("sink"), key=lambda s: s.index)
    return [s.share for s in streams] or [1.0]


def _error_rate(ctx: SignalContext) -> Expr:
    """Every kind of sink or DLQ trouble per second. Those counters appear only once something
    happened, so each is ``or 0``, added to the sink's write rate times 0: known (0) while the sink
    reports, unknown when the pipeline reports nothing at all."""
    total: Expr = _sink_rate(ctx) * 0.0
    for metric in ("sink_retries_total", "sink_errors_by_classification_total", "dlq_records_written_total"):
        total = total + OrZero(Rate(_sel(ctx, metric)))
    return total


def _sig(name: str, unit: str, meaning: str, build: Build, group: str, **extra: str) -> SignalDef:
    return SignalDef(name, unit, meaning, build, group=group, **extra)


SATURATED_ONLY = " Valid only while a backlog keeps the sink saturated (docs/signals.md)."

SIGNAL_LIST: list[SignalDef] = [
    # throughput
    _sig("source_rate", "records/s", "Records the ingestors read from Kafka per second (all replicas).",
         _source_rate, "throughput"),
    _sig("sink_rate", "records/s", "Rows the sink inserted and acked per second (all replicas; net of "
         "redeliveries).", _sink_rate, "throughput"),
    _sig("sink_source_ratio", "ratio", "sink_rate / source_rate: below 1 the sink trails what is read.",
         lambda ctx: _sink_rate(ctx) / _source_rate(ctx), "throughput"),
    _sig("kafka_input_rate", "records/s", "Records producers write to the topic: source_rate + consumer_lag_growth "
         "(kafka_exporter). Under backpressure the ingestor reads only what fits downstream, so this, not "
         "source_rate, is the arrival.", lambda ctx: _source_rate(ctx) + _lag_growth(ctx), "throughput"),
    _sig("sink_input_ratio", "ratio", "sink_rate / kafka_input_rate: below 1 the pipeline does not keep up with "
         "its topic (needs kafka_exporter).", lambda ctx: _sink_rate(ctx) / (_source_rate(ctx) + _lag_growth(ctx)),
         "throughput"),
    _sig("transform_rate", "records/s", "Messages the dedup pod's first step (filter, dedup or transform) takes "
         "per second, whatever their outcome.", _transform_in, "throughput"),
    _sig("transform_selectivity", "ratio", "Share of the dedup pod's input its last step passes on (status "
         "success); dedup, filters and failures drop the rest.",
         lambda ctx: _transform_out(ctx) / _transform_in(ctx), "throughput"),
    # backpressure and backlog
    _sig("ingestor_backpressure", "0/1", "1 while an ingestor replica is in a backpressure episode (the last "
         "value it pushed; short episodes can be missed). The gauge exists only after the first episode: "
         "0 while the ingestors report stream depth.", _ingestor_backpressure, "backpressure"),
    _sig("dedup_backpressure", "0/1", "1 while a dedup pod cannot publish because its output stream is full: "
         "the sink behind it is saturated. 0 while the dedup pod reports.", _dedup_backpressure, "backpressure"),
    _sig("backpressure_share", "ratio", "Share of time the busiest ingestor replica spent in backpressure "
         "episodes that ended in the window (about one episode per Kafka batch under sustained saturation). 0 "
         "while the ingestors report stream depth.", _backpressure_share("ingestor", _depth_reported),
         "backpressure"),
    _sig("dedup_backpressure_share", "ratio", "Share of time the busiest dedup pod spent in backpressure episodes "
         "that ended in the window: its output stream, the sink's input, was full. 0 while the dedup pod "
         "reports.", _backpressure_share("dedup", _dedup_reported), "backpressure"),
    _sig("backpressure_episode_seconds", "s", "Mean length of the ingestor backpressure episodes that ended in "
         "the window.", _mean("ingestor_backpressure_duration_seconds"), "backpressure"),
    _sig("backpressure_episode_rate", "1/s", "Ingestor backpressure episodes starting per second.",
         _rate("ingestor_backpressure_events_total"), "backpressure"),
    _sig("stream_depth", "messages", "Messages in the streams the ingestors sample (only those right behind an "
         "ingestor; each counted once: max by stream), delivered-but-unacked ones included.",
         lambda ctx: Over("sum", Aggregate("max", _sel(ctx, "stream_depth"), ("stream",))), "backpressure"),
    _sig("stream_depth_ratio", "ratio", "Fullest sampled stream: messages / MaxMsgs (absent without MaxMsgs). "
         "Up to ~0.5 is a busy healthy consumer (MaxAckPending 4·B of MaxMsgs 8·B); well above it, a backlog.",
         lambda ctx: Aggregate("max", _sel(ctx, "stream_depth_ratio")), "backpressure"),
    _sig("stream_depth_batches", "batches", "Messages in the fullest sampled stream, in max_batch_size units. A "
         "consumer holds at most 4 batches in flight (MaxAckPending 4·B), so well above that (6 = a default "
         "8·B stream 75% full) is a backlog, with or without MaxMsgs.",
         _per_field(lambda ctx: Aggregate("max", _sel(ctx, "stream_depth")), "sink.max_batch_size"), "backpressure",
         needs="sink.max_batch_size"),
    _sig("consumer_lag", "records", "Kafka consumer-group lag of the pipeline (kafka_exporter).", _lag,
         "backpressure"),
    _sig("consumer_lag_growth", "records/s", "How fast the Kafka consumer-group lag grows (deriv; "
         "kafka_exporter).", _lag_growth, "backpressure"),
    _sig("kafka_partitions", "partitions", "Partitions the pipeline's consumer group reads (kafka_exporter's lag "
         "series, one per partition).", _partitions, "backpressure"),
    _sig("nats_sink_pending", "messages", "Messages waiting for the sink's consumers, not yet delivered "
         "(NATS exporter, -jsz=all): the sink's backlog, also behind dedup or join.", _nats_sink_pending,
         "backpressure"),
    _sig("nats_stream_messages", "messages", "Messages in all the pipeline's internal streams (NATS exporter), "
         "including the ones no ingestor samples.", _nats_stream_messages, "backpressure"),
    _sig("nats_sink_redelivered", "messages", "Sink messages delivered more than once and not yet acked "
         "(NATS exporter): NAKs and AckWait expiries; MaxDeliver drops show nowhere else.",
         _nats_sink_redelivered, "backpressure"),
    # sink
    _sig("sink_batch_p50", "records", "Median sink flush size (histogram_quantile over power-of-10 buckets, "
         "capped at sink.max_batch_size).", _batch_quantile(0.5), "sink"),
    _sig("sink_batch_p95", "records", "95th percentile sink flush size (coarse: power-of-10 buckets; capped at "
         "sink.max_batch_size).", _batch_quantile(0.95), "sink"),
    _sig("sink_batch_mean", "records", "Mean messages per sink flush, redeliveries included (exact: rate of _sum / "
         "rate of _count).", _mean("sink_batch_size_records"), "sink"),
    _sig("sink_batch_fill", "ratio", "sink_batch_mean / sink.max_batch_size: about 1 while saturated; an "
         "unsaturated sink flushes mostly on its ticker.", _per_field(_mean("sink_batch_size_records"),
                                                                      "sink.max_batch_size"), "sink",
         needs="sink.max_batch_size"),
    _sig("sink_batch_p95_fill", "ratio", "sink_batch_p95 / sink.max_batch_size.",
         _per_field(_batch_quantile(0.95), "sink.max_batch_size"), "sink", needs="sink.max_batch_size"),
    _sig("sink_flush_rate", "flushes/s", "Sink flushes per second, all replicas (each an INSERT attempt per "
         "schema version).", _rate("sink_batch_size_records", suffix="_count"), "sink"),
    _sig("sink_row_bytes", "bytes", "Mean size of one message in sink flushes.",
         lambda ctx: Rate(_sel(ctx, "sink_batch_size_bytes", suffix="_sum"))
         / Rate(_sel(ctx, "sink_batch_size_records", suffix="_sum")), "sink"),
    _sig("sink_prepare_seconds", "s", "Mean preparation time per flush (total_preparation: mapping, DLQ of "
         "unmappable rows, PrepareBatch, Append; not the INSERT).", _prepare_seconds, "sink"),
    _sig("sink_cycle_seconds", "s", "Flush cycle T of the fastest-flushing replica (1 / its flush rate)."
         + SATURATED_ONLY, _cycle_seconds, "sink"),
    _sig("sink_insert_seconds", "s", "Insert + ack + refill per flush: sink_cycle_seconds - sink_prepare_seconds."
         + SATURATED_ONLY, lambda ctx: _cycle_seconds(ctx) - _prepare_seconds(ctx), "sink"),
    _sig("sink_prepare_busy", "s/s", "Preparation seconds per second of the busiest sink replica: a lower bound "
         "on its busy fraction (the INSERT is measured nowhere).", _prepare_busy, "sink"),
    _sig("sink_insert_share", "ratio", "1 - sink_prepare_busy: the share of a saturated replica's cycle spent "
         "inserting and acking. High with full batches: batch-bound." + SATURATED_ONLY,
         lambda ctx: Const(1.0) - _prepare_busy(ctx), "sink"),
    _sig("sink_capacity", "records/s", "Pipeline sink capacity: the busiest replica's net rows/s divided by the "
         "largest share of the input one replica gets." + SATURATED_ONLY, _sink_capacity, "sink",
         needs="the pipeline document (replica counts)"),
    # per sink replica (breakdown by pod): the sizing's inputs
    _sig("sink_replica_flush_rate", "flushes/s", "Flushes per second of each sink replica (F_k).",
         _per_replica("sink_batch_size_records", suffix="_count"), "replicas", breakdown=REPLICA_BREAKDOWN),
    _sig("sink_replica_rows", "records/s", "Messages flushed per second by each sink replica, redeliveries "
         "included (C_k while saturated).", _per_replica("sink_batch_size_records", suffix="_sum"), "replicas",
         breakdown=REPLICA_BREAKDOWN),
    _sig("sink_replica_written", "records/s", "Rows each sink replica inserted and acked per second (net C_k "
         "while saturated).", _per_replica("clickhouse_records_written_total"), "replicas",
         breakdown=REPLICA_BREAKDOWN),
    _sig("sink_replica_prepare_busy", "s/s", "Preparation seconds per second of each sink replica (F_k x "
         "T_prep).", lambda ctx: Rate(_preparation(ctx, "_sum"), REPLICA), "replicas", breakdown=REPLICA_BREAKDOWN),
    _sig("sink_replica_mapping_busy", "s/s", "schema_mapping seconds per second of each sink replica: the part of "
         "preparation its worker pool (GOMAXPROCS - 2) shares.",
         _per_replica("processing_duration_seconds", ("component", "=", "sink"), ("stage", "=", "schema_mapping"),
                      suffix="_sum"), "replicas", breakdown=REPLICA_BREAKDOWN),
    # errors
    _sig("sink_retry_rate", "records/s", "Rows NAKed after a retryable INSERT error, per second (rows, not "
         "attempts: redelivered after 5 s, at most 10 deliveries, nothing counted at the 10th).",
         _rate("sink_retries_total", ("outcome", "=", "retry")), "errors"),
    _sig("sink_retry_share", "ratio", "Share of the rows the sink flushes that are NAKed after a retryable INSERT "
         "error (rows, not attempts); 0 while the sink flushes and none failed.",
         lambda ctx: OrZero(Rate(_sel(ctx, "sink_retries_total", ("outcome", "=", "retry"))))
         / Rate(_sel(ctx, "sink_batch_size_records", suffix="_sum")), "errors"),
    _sig("sink_nack_rate", "records/s", "Messages the sink NAKed per second (retryable preparation or INSERT "
         "errors).", _rate("sink_nack_messages_total"), "errors"),
    _sig("sink_exhausted_rate", "records/s", "Rows sent to the DLQ per second after a permanent or unknown INSERT "
         "error (outcome=exhausted: no retry happened; TOO_MANY_PARTS is unknown).",
         _rate("sink_retries_total", ("outcome", "=", "exhausted")), "errors"),
    _sig("sink_terminal_error_rate", "batches/s", "Failed sink preparations or INSERTs classified permanent "
         "(schema, type, auth) per second: +1 per failed batch.",
         _rate("sink_errors_by_classification_total", ("classification", "=", "permanent")), "errors"),
    _sig("sink_unknown_error_rate", "batches/s", "Failed sink batches classified unknown per second (handled like "
         "permanent: DLQ), by error_name.", _rate("sink_errors_by_classification_total",
                                                   ("classification", "=", "unknown"), by=("error_name",)),
         "errors", breakdown="error_name"),
    _sig("sink_retryable_error_rate", "batches/s", "Failed sink batches classified retryable per second.",
         _rate("sink_errors_by_classification_total", ("classification", "=", "retryable")), "errors"),
    _sig("dlq_rate", "records/s", "Records written to the DLQ per second, broken down by reason.",
         _rate("dlq_records_written_total", by=("reason",)), "errors", breakdown="reason"),
    _sig("error_rate", "1/s", "Sink retried or rejected rows + failed sink batches + DLQ records per second; 0 "
         "when none happened (the signals above are unknown then: their series appear with the first event).",
         _error_rate, "errors"),
    # dedup pod
    _sig("dedup_duration_mean", "s", "Mean dedup stage time per batch (key lookup, or key commit).",
         _mean("processing_duration_seconds", ("component", "=~", "dedup_filter|dedup_write")), "dedup"),
    _sig("transform_failure_rate", "records/s", "Records the dedup pod's filter or stateless transform failed on, "
         "sent to the DLQ per second (reason dedup_overflow: the name is misleading).",
         _rate("dlq_records_written_total", ("reason", "=", "dedup_overflow")), "dedup"),
    # stage busy time
    _sig("ingestor_busy", "replica-s/s", "Approximate busy replica-seconds per second of the ingestors: "
         "rate(batch _sum) x records per batch. Counts backpressure waits as busy.", _ingestor_busy, "stages"),
    _sig("ingestor_true_rate", "records/s per replica", "Records one busy ingestor replica reads per busy second "
         "(source_rate / ingestor_busy). Without backpressure only.",
         lambda ctx: _source_rate(ctx) / _ingestor_busy(ctx), "stages"),
    _sig("ingestor_utilization", "ratio", "ingestor_busy / ingestor replicas (backpressure waits count as busy).",
         _utilization(_ingestor_busy, "ingestor"), "stages", needs="ingestor replicas"),
    _sig("transform_busy", "replica-s/s", "Busy replica-seconds per second of the dedup pods' stages (a lower "
         "bound: reading and publishing are not in it).", _transform_busy, "stages"),
    _sig("transform_true_rate", "records/s per replica", "transform_rate / transform_busy: an upper bound on one "
         "dedup pod's rate (its busy time is a lower bound).",
         lambda ctx: _transform_in(ctx) / _transform_busy(ctx), "stages"),
    _sig("transform_utilization", "ratio", "transform_busy / dedup replicas (a lower bound).",
         _utilization(_transform_busy, "transform"), "stages", needs="transform replicas"),
]


# --- the ClickHouse server's own metrics (optional: metrics.clickhouse in gftune.yaml) -------------
#
# ClickHouse's built-in Prometheus endpoint (<prometheus> in the server config; ClickHouse Cloud has
# one too) exposes every ProfileEvent as a counter ``ClickHouseProfileEvents_<Event>``
# (src/Server/PrometheusMetricsWriter.cpp; events in src/Common/ProfileEvents.cpp): ``InsertQuery``
# +1 per INSERT, ``InsertQueryTimeMicroseconds`` the INSERTs' elapsed time on the server. With them
# the INSERT GlassFlow does not measure is measured, and a sink that keeps up has a known busy time:
# preparation (GlassFlow, per replica) + flushes x the mean INSERT time. Caveat: the counters are
# server-wide, so other writers' INSERTs blend into the mean (clickhouse_insert_share says how
# much of the server's INSERT traffic the pipeline's flushes are). Not configured, these signals are
# unknown (gftune.metrics.naming: CLICKHOUSE_NOT_CONFIGURED).

def _clickhouse(event: str) -> Selector:
    return Selector(event, clickhouse=True)


def _clickhouse_inserts(ctx: SignalContext) -> Expr:
    return Rate(_clickhouse("InsertQuery"))


def _clickhouse_insert_seconds(ctx: SignalContext) -> Expr:
    """The mean server time of one INSERT: InsertQueryTimeMicroseconds per InsertQuery."""
    return Rate(_clickhouse("InsertQueryTimeMicroseconds")) * 1e-6 / _clickhouse_inserts(ctx)


def _sink_replica_busy(ctx: SignalContext) -> Expr:
    """Per sink replica: preparation seconds per second + flushes per second x the mean INSERT time."""
    flushes = Rate(_sel(ctx, "sink_batch_size_records", suffix="_count"), by=REPLICA)
    return Rate(_preparation(ctx, "_sum"), REPLICA) + flushes * Scalar(_clickhouse_insert_seconds(ctx))


CLICKHOUSE_SIGNALS: list[SignalDef] = [
    _sig("clickhouse_insert_rate", "inserts/s", "INSERT queries per second on the ClickHouse server, every writer's "
         "(ClickHouseProfileEvents_InsertQuery; metrics.clickhouse).", _clickhouse_inserts, "clickhouse"),
    _sig("clickhouse_insert_seconds", "s", "Mean server time of one INSERT: InsertQueryTimeMicroseconds / "
         "InsertQuery (server-wide: other writers' INSERTs blend in; metrics.clickhouse).",
         _clickhouse_insert_seconds, "clickhouse"),
    _sig("clickhouse_insert_share", "ratio", "sink_flush_rate / clickhouse_insert_rate: the share of the server's "
         "INSERTs that are this pipeline's flushes (1: the mean INSERT time is the sink's own).",
         lambda ctx: Rate(_sel(ctx, "sink_batch_size_records", suffix="_count")) / _clickhouse_inserts(ctx),
         "clickhouse"),
    _sig("sink_busy", "replica-s/s", "Busy replica-seconds per second of the sink: preparation + flushes x "
         "clickhouse_insert_seconds, summed over the replicas (metrics.clickhouse). Valid with or without a "
         "backlog.", lambda ctx: Over("sum", _sink_replica_busy(ctx)), "clickhouse"),
    _sig("sink_utilization", "ratio", "Busy fraction of the busiest sink replica: its preparation + its flushes x "
         "clickhouse_insert_seconds (metrics.clickhouse). Valid with or without a backlog.",
         lambda ctx: Over("max", _sink_replica_busy(ctx)), "clickhouse"),
]
SIGNAL_LIST += CLICKHOUSE_SIGNALS
