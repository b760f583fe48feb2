"""The signal library: named, documented measurements of one pipeline.

A signal is a metric expression (:mod:`gftune.metrics.expr`) with a name, a unit and a meaning,
built per pipeline from what a GlassFlow deployment really exposes (:mod:`gftune.policy.library`
defines them; docs/signals.md says what each one means and when it is valid). Policies name signals
(``signal: sink_batch_fill``) instead of writing PromQL, so one policy works in both naming modes,
under any namespace, behind Prometheus or by direct scrape. Every reading carries the exact query
it came from, for the evidence.

Some signals need facts about the pipeline (``sink.max_batch_size``, replica counts): they come
from a :class:`SignalContext`, built from the live pipeline (what the metrics reflect), or from
git when the pipeline does not exist yet.

``tests/policy/test_docs.py`` checks docs/signals.md lists every signal defined here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from gftune.metrics.expr import Expr, Labels
from gftune.metrics.snapshots import OK, STALE, UNKNOWN, Snapshot
from gftune.policy.library import REPLICA, REPLICA_BREAKDOWN, SIGNAL_LIST, consumer_group
from gftune.policy.signal_types import SignalContext, SignalDef, SignalReading

SIGNALS: dict[str, SignalDef] = {s.name: s for s in SIGNAL_LIST}


def signal_expr(name: str, ctx: SignalContext) -> Expr | None:
    """The expression of a library signal for one pipeline (None if a needed fact is missing)."""
    return SIGNALS[name].build(ctx)


def breakdown_key(labels: Labels, label: str) -> str:
    """The value a breakdown is keyed by; for ``replica``, the pod name: ``exported_instance`` behind
    a Prometheus with honor_labels false, else ``instance``."""
    found = dict(labels)
    if label == REPLICA_BREAKDOWN:
        return next((found[name] for name in reversed(REPLICA) if found.get(name)), "")
    return found.get(label, "")


def reading_from(name: str, unit: str, result: Any, window_s: float, at: datetime,
                 breakdown_label: str | None = None) -> SignalReading:
    """Reduce a :class:`~gftune.metrics.sources.QueryResult` to one number (or unknown)."""
    finite = result.finite()
    breakdown: dict[str, float] = {}
    if breakdown_label:
        for labels, value in finite.items():
            key = breakdown_key(labels, breakdown_label)
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
    "throughput": "Throughput", "backpressure": "Backpressure and backlog (GlassFlow, kafka_exporter, NATS exporter)",
    "sink": "Sink: flushes, preparation and cycle", "replicas": "Sink, per replica (the sizing's inputs)",
    "errors": "Errors, retries and the DLQ", "dedup": "Dedup pod",
    "stages": "Ingestor and dedup pod busy time",
    "clickhouse": "The sink's busy time from the ClickHouse server's own metrics (optional)",
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


__all__ = ["SIGNALS", "STALE", "SignalContext", "SignalDef", "SignalReading", "breakdown_key", "consumer_group",
           "read_signals", "read_with", "signal_expr"]
