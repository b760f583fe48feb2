"""The signal library: named, documented measurements of one pipeline.

A signal is a metric expression (:mod:`gftune.metrics.expr`) with a name, a unit and a meaning,
built per pipeline from GlassFlow's ``gfm`` metrics (reference §5) and kafka_exporter's consumer
lag. Policies name signals (``signal: sink_source_ratio``) instead of writing PromQL, so one
policy works in both naming modes, under any namespace, and in direct-scrape mode. Every reading
carries the exact query it came from, for the evidence.

Some signals need facts about the pipeline (``sink.max_batch_size``, replica counts): they come
from a :class:`SignalContext`, built from the live pipeline (what the metrics reflect), or from
git when the pipeline does not exist yet.

Per-stage capacity follows DS2: ``processing_duration_seconds`` sums are busy seconds, so
``records processed / busy seconds`` is the *true* processing rate of one busy replica, and
``busy seconds / replicas`` is the busy fraction (utilisation) of the stage.

docs/signals.md is the user-facing reference; ``tests/policy/test_signals.py`` checks it lists
every signal defined here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gftune.desired import paths
from gftune.metrics.expr import Aggregate, ClampMax, Const, Deriv, Expr, Matcher, OrZero, Quantile, Rate, Selector
from gftune.metrics.snapshots import OK, STALE, UNKNOWN, Snapshot

# Stage -> how its work shows up in processing_duration_seconds (component label values, regex).
# Dedup records its stages under component dedup_filter / dedup_write (reference §5.2).
STAGE_COMPONENTS = {
    "ingestor": "ingestor",
    "transform": "transform|filter|dedup_filter|dedup_write|dedup",
    "sink": "sink",
}
# Which processing_duration_seconds stage label is the stage's whole per-batch work.
STAGE_BUSY_STAGES = {
    "ingestor": "batch",
    "transform": ".*",
    "sink": "total_preparation",
}


def consumer_group(pipeline_id: str) -> str:
    """GlassFlow's Kafka consumer group for a pipeline: ``glassflow-consumer-group-<sha256[:8]>``."""
    return "glassflow-consumer-group-" + hashlib.sha256(pipeline_id.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class SignalContext:
    """What a signal may need to know about the pipeline besides its id."""

    pipeline_id: str
    doc: dict[str, Any] | None = None  # the v3 document in effect (live GET body, else git)
    time_scale: float = 1.0  # a simulator's clock speed: gauge slopes per wall second are this x too big

    def field(self, path: str) -> Any:
        return paths.get(self.doc, path) if self.doc is not None else None

    def number(self, path: str) -> float | None:
        value = self.field(path)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def replicas(self, stage: str) -> int | None:
        """Replica count of a stage (the server default 1 when the document leaves it out)."""
        if self.doc is None:
            return None
        resources = self.doc.get("resources") or {}
        if stage == "ingestor":
            sources = resources.get("sources") or []
            if not sources:
                return 1
            counts = [s.get("replicas") or 1 for s in sources if isinstance(s, dict)]
            return int(sum(counts)) if counts else 1
        if stage == "transform":
            transforms = resources.get("transform") or []
            first = transforms[0] if transforms and isinstance(transforms[0], dict) else {}
            return int(first.get("replicas") or 1)
        if stage == "sink":
            return int((resources.get("sink") or {}).get("replicas") or 1)
        return None


@dataclass(frozen=True)
class SignalDef:
    name: str
    unit: str
    meaning: str
    build: Callable[[SignalContext], Expr | None]
    breakdown: str | None = None  # label to break the value down by (dlq_rate by reason)
    needs: str = ""  # pipeline facts the signal needs, said when they are missing
    group: str = ""


@dataclass(frozen=True)
class SignalReading:
    name: str
    value: float | None  # None = unknown, never silently 0
    unit: str
    query: str
    window_s: float
    at: datetime
    status: str  # "ok" | "unknown" | "stale"
    detail: str = ""
    breakdown: dict[str, float] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.status == OK and self.value is not None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "query": self.query,
                "window_s": self.window_s, "at": self.at.isoformat(), "status": self.status,
                "detail": self.detail, "breakdown": dict(self.breakdown)}


# --- building blocks -----------------------------------------------------------------------------

def _pid(ctx: SignalContext, *more: Matcher) -> tuple[Matcher, ...]:
    return (("pipeline_id", "=", ctx.pipeline_id), *more)


def _rate(metric: str, *more: Matcher, suffix: str = "", by: tuple[str, ...] = ()) -> Callable[[SignalContext], Expr]:
    return lambda ctx: Rate(Selector(metric, _pid(ctx, *more), suffix), by)


def _gauge(metric: str, op: str = "max", *more: Matcher) -> Callable[[SignalContext], Expr]:
    return lambda ctx: Aggregate(op, Selector(metric, _pid(ctx, *more)))


def _quantile(q: float, metric: str, *more: Matcher) -> Callable[[SignalContext], Expr]:
    return lambda ctx: Quantile(q, Selector(metric, _pid(ctx, *more)))


def _batch_quantile(q: float) -> Callable[[SignalContext], Expr]:
    """A sink batch-size quantile. histogram_quantile interpolates inside the power-of-10 buckets
    (full batches of 2,000 read as p95 = 9,550); no batch exceeds sink.max_batch_size, so the
    estimate is capped there when the pipeline's value is known."""
    def build(ctx: SignalContext) -> Expr:
        estimate = _quantile(q, "sink_batch_size_records")(ctx)
        limit = ctx.number("sink.max_batch_size")
        return ClampMax(estimate, float(limit)) if limit else estimate
    return build


def _mean(metric: str, *more: Matcher) -> Callable[[SignalContext], Expr]:
    def build(ctx: SignalContext) -> Expr:
        base = Selector(metric, _pid(ctx, *more))
        return Rate(base.with_suffix("_sum")) / Rate(base.with_suffix("_count"))
    return build


def _source_rate(ctx: SignalContext) -> Expr:
    return Rate(Selector("kafka_records_read_total", _pid(ctx)))


def _sink_rate(ctx: SignalContext) -> Expr:
    return Rate(Selector("clickhouse_records_written_total", _pid(ctx)))


def _busy(stage: str) -> Callable[[SignalContext], Expr]:
    def build(ctx: SignalContext) -> Expr:
        return Rate(Selector("processing_duration_seconds",
                             _pid(ctx, ("component", "=~", STAGE_COMPONENTS[stage]),
                                  ("stage", "=~", STAGE_BUSY_STAGES[stage])), "_sum"))
    return build


def _transform_kinds(ctx: SignalContext) -> list[str]:
    types = [t.get("type") for t in (ctx.doc or {}).get("transforms") or [] if isinstance(t, dict)]
    return [kind for kind in ("filter", "dedup", "stateless") if kind in types]


def _transform_in(ctx: SignalContext) -> Expr:
    """Every message the transform's first step looked at, whatever became of it."""
    kinds = _transform_kinds(ctx)
    if not kinds:
        return Rate(Selector("processor_messages_total", _pid(ctx, ("component", "=~", "filter|dedup|transform"))))
    first = kinds[0]
    component = {"filter": "filter", "dedup": "dedup", "stateless": "transform"}[first]
    taken: Expr = Rate(Selector("processor_messages_total", _pid(ctx, ("component", "=", component))))
    if first == "dedup":
        # keys that no longer fit the dedup store go to the DLQ instead of being counted
        taken = taken + OrZero(Rate(Selector("dlq_records_written_total",
                                             _pid(ctx, ("reason", "=", "dedup_overflow")))))
    return taken


def _transform_out(ctx: SignalContext) -> Expr:
    kinds = _transform_kinds(ctx)
    last = kinds[-1] if kinds else "stateless"
    component = {"filter": "filter", "dedup": "dedup", "stateless": "transform"}[last]
    return Rate(Selector("processor_messages_total",
                         _pid(ctx, ("component", "=", component), ("status", "=", "success"))))


def _processed(stage: str) -> Callable[[SignalContext], Expr]:
    """Records a stage takes in per second."""
    if stage == "ingestor":
        return _source_rate
    if stage == "sink":
        return _sink_rate
    return _transform_in


def _true_rate(stage: str) -> Callable[[SignalContext], Expr]:
    return lambda ctx: _processed(stage)(ctx) / _busy(stage)(ctx)


def _utilization(stage: str) -> Callable[[SignalContext], Expr | None]:
    def build(ctx: SignalContext) -> Expr | None:
        replicas = ctx.replicas(stage)
        if not replicas:
            return None
        return _busy(stage)(ctx) / float(replicas)
    return build


def _per_field(numerator: Callable[[SignalContext], Expr], path: str) -> Callable[[SignalContext], Expr | None]:
    def build(ctx: SignalContext) -> Expr | None:
        denominator = ctx.number(path)
        if not denominator:
            return None
        return numerator(ctx) / denominator
    return build


def _prepare_busy(ctx: SignalContext) -> Expr:
    return Rate(Selector("processing_duration_seconds",
                         _pid(ctx, ("component", "=", "sink"), ("stage", "=", "schema_mapping")), "_sum"))


def _error_rate(ctx: SignalContext) -> Expr:
    """Every kind of sink or DLQ trouble per second. Those counters appear only once something
    happened, so each is ``or 0``, added to the sink's write rate times 0: known (0) while the sink
    reports, unknown when the pipeline reports nothing at all."""
    total: Expr = _sink_rate(ctx) * 0.0
    for metric in ("sink_retries_total", "sink_errors_by_classification_total", "dlq_records_written_total"):
        total = total + OrZero(Rate(Selector(metric, _pid(ctx))))
    return total


def _lag(ctx: SignalContext) -> Expr:
    return Aggregate("sum", Selector("kafka_consumergroup_lag",
                                     (("consumergroup", "=", consumer_group(ctx.pipeline_id)),), external=True))


def _lag_growth(ctx: SignalContext) -> Expr:
    slope: Expr = Deriv(Selector("kafka_consumergroup_lag",
                                 (("consumergroup", "=", consumer_group(ctx.pipeline_id)),), external=True))
    # Counters of a time-scaled simulator are pre-divided so rates come out per model second; a
    # gauge is not, so its slope per wall second must be divided here.
    return slope / ctx.time_scale if ctx.time_scale != 1 else slope


def _partitions(ctx: SignalContext) -> Expr:
    # One lag series per partition the pipeline's consumer group reads: per pipeline, unlike
    # kafka_topic_partitions, which knows topics by name only (two clusters may share a name).
    return Aggregate("count", Selector("kafka_consumergroup_lag",
                                       (("consumergroup", "=", consumer_group(ctx.pipeline_id)),), external=True))


_SIGNALS: list[SignalDef] = [
    # throughput
    SignalDef("source_rate", "records/s", "Records the ingestor reads from Kafka per second.",
              _source_rate, group="throughput"),
    SignalDef("sink_rate", "records/s", "Records the sink writes to ClickHouse per second.",
              _sink_rate, group="throughput"),
    SignalDef("sink_source_ratio", "ratio", "sink_rate / source_rate: below 1 the sink trails the source.",
              lambda ctx: _sink_rate(ctx) / _source_rate(ctx), group="throughput"),
    SignalDef("kafka_input_rate", "records/s",
              "Records producers write to the topic: source_rate + consumer_lag_growth. Under backpressure the "
              "ingestor reads only what fits downstream, so this, not source_rate, is the true input.",
              lambda ctx: _source_rate(ctx) + _lag_growth(ctx), group="throughput"),
    SignalDef("sink_input_ratio", "ratio",
              "sink_rate / kafka_input_rate: below 1 the pipeline does not keep up with its topic.",
              lambda ctx: _sink_rate(ctx) / (_source_rate(ctx) + _lag_growth(ctx)), group="throughput"),
    SignalDef("transform_rate", "records/s",
              "Messages the transform (dedup, filter, stateless) processes per second, whatever their outcome.",
              _processed("transform"), group="throughput"),
    SignalDef("transform_selectivity", "ratio",
              "Share of the transform's input it passes on (status success); dedup and filters drop the rest.",
              lambda ctx: _transform_out(ctx) / _transform_in(ctx), group="throughput"),
    # backpressure and buffering
    SignalDef("ingestor_backpressure", "0/1",
              "1 while the ingestor is blocked because the NATS stream is full (gfm_ingestor_backpressure_active).",
              _gauge("ingestor_backpressure_active"), group="backpressure"),
    SignalDef("backpressure_episode_seconds", "s",
              "Mean length of the ingestor backpressure episodes that ended in the window.",
              _mean("ingestor_backpressure_duration_seconds"), group="backpressure"),
    SignalDef("backpressure_episode_p95", "s", "95th percentile of ingestor backpressure episode length.",
              _quantile(0.95, "ingestor_backpressure_duration_seconds"), group="backpressure"),
    SignalDef("backpressure_episode_rate", "1/s", "Ingestor backpressure episodes starting per second.",
              _rate("ingestor_backpressure_events_total"), group="backpressure"),
    SignalDef("component_backpressure", "0/1", "1 while any component reports backpressure.",
              _gauge("component_backpressure_active"), group="backpressure"),
    SignalDef("stream_depth", "messages", "Messages waiting in the pipeline's NATS stream.",
              _gauge("stream_depth"), group="backpressure"),
    SignalDef("stream_depth_ratio", "ratio", "stream depth / stream maxMsgs (1 = full).",
              _gauge("stream_depth_ratio"), group="backpressure"),
    SignalDef("consumer_lag", "records", "Kafka consumer-group lag of the pipeline (kafka_exporter).",
              _lag, group="backpressure"),
    SignalDef("consumer_lag_growth", "records/s", "How fast the Kafka consumer-group lag grows (deriv).",
              _lag_growth, group="backpressure"),
    SignalDef("kafka_partitions", "partitions",
              "Partitions the pipeline's consumer group reads (kafka_exporter's lag series, one per partition).",
              _partitions, group="backpressure"),
    # sink batching
    SignalDef("sink_batch_p50", "records", "Median sink batch size (histogram_quantile over power-of-10 buckets, "
              "capped at sink.max_batch_size).", _batch_quantile(0.5), group="sink"),
    SignalDef("sink_batch_p95", "records", "95th percentile sink batch size (coarse: buckets are powers of 10; "
              "capped at sink.max_batch_size).", _batch_quantile(0.95), group="sink"),
    SignalDef("sink_batch_mean", "records", "Mean sink batch size (exact: rate of _sum / rate of _count).",
              _mean("sink_batch_size_records"), group="sink"),
    SignalDef("sink_batch_fill", "ratio", "sink_batch_mean / sink.max_batch_size: near 1 the sink is batch-bound.",
              _per_field(_mean("sink_batch_size_records"), "sink.max_batch_size"),
              needs="sink.max_batch_size", group="sink"),
    SignalDef("sink_batch_p95_fill", "ratio", "sink_batch_p95 / sink.max_batch_size.",
              _per_field(_batch_quantile(0.95), "sink.max_batch_size"),
              needs="sink.max_batch_size", group="sink"),
    SignalDef("sink_insert_rate", "inserts/s", "Batches (ClickHouse INSERTs) the sink writes per second.",
              _rate("sink_batch_size_records", suffix="_count"), group="sink"),
    SignalDef("sink_prepare_busy", "worker-s/s",
              "Seconds per second the sink spends preparing records (schema_mapping): the part its workers share.",
              lambda ctx: _prepare_busy(ctx), group="stages"),
    SignalDef("sink_insert_share", "ratio",
              "Share of the sink's busy time spent inserting (and retrying), not preparing records: "
              "1 - sink_prepare_busy / sink_busy. High with full small batches: batch-bound.",
              lambda ctx: Const(1.0) - _prepare_busy(ctx) / _busy("sink")(ctx), group="sink"),
    SignalDef("sink_row_bytes", "bytes", "Mean size of one record in sink batches.",
              lambda ctx: Rate(Selector("sink_batch_size_bytes", _pid(ctx), "_sum"))
              / Rate(Selector("sink_batch_size_records", _pid(ctx), "_sum")), group="sink"),
    # errors
    SignalDef("sink_retry_rate", "1/s", "Sink retries of retryable ClickHouse errors per second.",
              _rate("sink_retries_total", ("outcome", "=", "retry")), group="errors"),
    SignalDef("sink_exhausted_rate", "1/s", "Sink batches that exhausted their retries per second (data-loss risk).",
              _rate("sink_retries_total", ("outcome", "=", "exhausted")), group="errors"),
    SignalDef("sink_terminal_error_rate", "1/s",
              "Sink errors classified permanent (terminal: schema or type mismatch) per second.",
              _rate("sink_errors_by_classification_total", ("classification", "=~", "permanent|terminal")),
              group="errors"),
    SignalDef("sink_retryable_error_rate", "1/s", "Sink errors classified retryable per second.",
              _rate("sink_errors_by_classification_total", ("classification", "=", "retryable")), group="errors"),
    SignalDef("dlq_rate", "records/s", "Records written to the DLQ per second, broken down by reason.",
              _rate("dlq_records_written_total", by=("reason",)), breakdown="reason", group="errors"),
    SignalDef("error_rate", "1/s",
              "Sink retries (any outcome) + sink errors (any classification) + DLQ records per second; 0 when none "
              "happened (the signals above are unknown then: their series appear with the first event).",
              _error_rate, group="errors"),
    # dedup
    SignalDef("dedup_duration_p95", "s", "95th percentile of dedup stage processing time (lookup and commit).",
              _quantile(0.95, "processing_duration_seconds", ("component", "=~", "dedup_filter|dedup_write")),
              group="dedup"),
    SignalDef("dedup_duration_mean", "s", "Mean dedup stage processing time per batch.",
              _mean("processing_duration_seconds", ("component", "=~", "dedup_filter|dedup_write")), group="dedup"),
    SignalDef("dedup_overflow_rate", "records/s", "Records sent to the DLQ because dedup storage overflowed.",
              _rate("dlq_records_written_total", ("reason", "=", "dedup_overflow")), group="dedup"),
]
for _stage in ("ingestor", "transform", "sink"):
    _SIGNALS += [
        SignalDef(f"{_stage}_busy", "replica-s/s",
                  f"Busy replica-seconds per second of the {_stage} (sum of processing_duration_seconds).",
                  _busy(_stage), group="stages"),
        SignalDef(f"{_stage}_true_rate", "records/s per replica",
                  f"DS2 true processing rate of one busy {_stage} replica: records processed / busy seconds.",
                  _true_rate(_stage), group="stages"),
        SignalDef(f"{_stage}_utilization", "ratio",
                  f"Busy fraction of the {_stage}: busy replica-seconds per second / replicas.",
                  _utilization(_stage), needs=f"{_stage} replicas", group="stages"),
    ]

SIGNALS: dict[str, SignalDef] = {s.name: s for s in _SIGNALS}


def signal_expr(name: str, ctx: SignalContext) -> Expr | None:
    """The expression of a library signal for one pipeline (None if a needed fact is missing)."""
    return SIGNALS[name].build(ctx)


def reading_from(name: str, unit: str, result: Any, window_s: float, at: datetime,
                 breakdown_label: str | None = None) -> SignalReading:
    """Reduce a :class:`~gftune.metrics.sources.QueryResult` to one number (or unknown)."""
    finite = result.finite()
    breakdown: dict[str, float] = {}
    if breakdown_label:
        for labels, value in finite.items():
            key = dict(labels).get(breakdown_label, "")
            breakdown[key] = breakdown.get(key, 0.0) + value
    if result.status != OK or not finite:
        status = result.status if result.status != OK else UNKNOWN
        return SignalReading(name, None, unit, result.query, window_s, at, status,
                             result.detail or "no data", breakdown)
    value = sum(finite.values()) if breakdown_label or len(finite) > 1 else next(iter(finite.values()))
    return SignalReading(name, value, unit, result.query, window_s, at, OK, result.detail, breakdown)


def read_with(snapshot: Snapshot, ctx: SignalContext, names: Iterable[str]) -> dict[str, SignalReading]:
    """Read library signals from an open snapshot (one scrape pair / one instant for all of them)."""
    readings: dict[str, SignalReading] = {}
    for name in names:
        definition = SIGNALS.get(name)
        if definition is None:
            readings[name] = SignalReading(name, None, "", "", snapshot.window_s, snapshot.at, UNKNOWN,
                                           f"no signal named {name!r} in the library")
            continue
        expr = definition.build(ctx)
        if expr is None:
            readings[name] = SignalReading(name, None, definition.unit, "", snapshot.window_s, snapshot.at,
                                           UNKNOWN, f"needs {definition.needs or 'pipeline facts'}, "
                                           "which the pipeline does not have")
            continue
        result = snapshot.instant(expr)
        readings[name] = reading_from(name, definition.unit, result, snapshot.window_s, snapshot.at,
                                      definition.breakdown)
    return readings


def context_for(pipeline_id: str, live: Any = None, desired_spec: dict[str, Any] | None = None, *,
                time_scale: float = 1.0) -> SignalContext:
    """The facts signals need: from the live pipeline when it exists, else from git."""
    doc = getattr(live, "pipeline", None) if live is not None and getattr(live, "exists", False) else None
    return SignalContext(pipeline_id, doc if isinstance(doc, dict) else desired_spec, time_scale)


def read_signals(snapshot: Snapshot, pipeline_id: str, names: Iterable[str], *, live: Any = None,
                 time_scale: float = 1.0) -> dict[str, SignalReading]:
    """Read named signals of one pipeline from a snapshot the caller took (``time_scale`` is
    ``config.time_scale``)."""
    return read_with(snapshot, context_for(pipeline_id, live, time_scale=time_scale), names)


_GROUP_TITLES = {
    "throughput": "Throughput", "backpressure": "Backpressure, buffering and Kafka lag", "sink": "Sink batching",
    "errors": "Errors, retries and the DLQ", "dedup": "Deduplication",
    "stages": "Per-stage busy time and true processing rate (DS2)",
}
_EXAMPLE = SignalContext("<id>", {
    "sources": [{"type": "kafka", "source_id": "orders", "topic": "orders"}],
    "transforms": [{"type": "dedup", "source_id": "orders"}], "sink": {"max_batch_size": 1000},
    "resources": {"sources": [{"source_id": "orders", "replicas": 2}],
                  "transform": [{"source_id": "orders", "replicas": 1}], "sink": {"replicas": 1}}})


def markdown_reference(window_s: float = 300.0) -> str:
    """The signal tables of docs/signals.md (a test keeps the document in step with this library)."""
    from gftune.metrics.naming import Naming

    naming = Naming("glassflow", "documented")
    lines: list[str] = []
    for group, title in _GROUP_TITLES.items():
        lines += [f"### {title}", "", "| signal | unit | meaning | PromQL (documented names, 5m window) |",
                  "|---|---|---|---|"]
        for signal in (s for s in SIGNALS.values() if s.group == group):
            expr = signal.build(_EXAMPLE)
            query = expr.promql(naming, window_s).replace("|", "\\|") if expr is not None else ""
            meaning = signal.meaning.replace("|", "\\|")
            lines.append(f"| `{signal.name}` | {signal.unit} | {meaning} | `{query}` |")
        lines.append("")
    return "\n".join(lines)


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


__all__ = ["SIGNALS", "STALE", "SignalContext", "SignalDef", "SignalReading", "consumer_group", "read_signals",
           "read_with", "signal_expr"]
