"""Records around a stop: what a stop cost in records, so that a change that lost some never reads
as a plain success.

A stop drains the pipeline's internal streams; when the components cannot drain them within the stop
timeout, GlassFlow's operator forces the stop and sweeps what is left to the DLQ, counting each record
in ``gfm_operator_sweeped_messages_total{outcome="swept"}`` and not in
``gfm_dlq_records_written_total`` (glassflow-etl-k8s-operator ``internal/controller/messages_sweep.go``).
Around every stop apply reads the DLQ state route (``GET /api/v1/pipeline/{id}/dlq/state``,
``total_messages``: every record the DLQ ever received, whoever wrote it) and, with Prometheus, both
counters. The pure part (:func:`losses`, :func:`describe`, :func:`outcome_with_losses`) judges what was
read; :class:`RecordCounter` is the edge that reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gftune.client import ApiError
from gftune.metrics.expr import Aggregate, Selector
from gftune.metrics.sources import OK, UNKNOWN, MetricsError

Json = dict[str, Any]
SWEPT = "operator_sweeped_messages_total"
DLQ_WRITTEN = "dlq_records_written_total"
WITH_LOSSES = "applied with losses"


def _delta(entry: Mapping[str, Any], name: str) -> float | None:
    before, after = entry.get(f"{name}_before"), entry.get(f"{name}_after")
    if isinstance(before, int | float) and isinstance(after, int | float):
        return max(0.0, float(after) - float(before))
    return None


def losses(records: Sequence[Mapping[str, Any]]) -> float:
    """Records that left the pipeline for the DLQ during its stops (the larger of the DLQ route's growth
    and the sweep counter's)."""
    total = 0.0
    for entry in records:
        total += max(_delta(entry, "dlq") or 0.0, _delta(entry, "swept") or 0.0)
    return total


def describe(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per stop: the DLQ total before → after, the sweep and the components' DLQ writes."""
    lines = []
    for entry in records:
        parts = []
        dlq = _delta(entry, "dlq")
        parts.append(f"DLQ {int(entry['dlq_before'])} → {int(entry['dlq_after'])} (+{int(dlq)})" if dlq is not None
                     else "DLQ state not read" + (f" ({entry['detail']})" if entry.get("detail") else ""))
        swept = _delta(entry, "swept")
        if swept is not None:
            parts.append(f"{int(swept)} swept by the operator's forced stop" if swept else "nothing swept")
        written = _delta(entry, "written")
        if written is not None:
            parts.append(f"{int(written)} written to the DLQ by the components")
        lines.append(f"around {entry.get('step', 'the stop')}: " + ", ".join(parts))
    return lines


def outcome_with_losses(outcome: str | None, records: Sequence[Mapping[str, Any]]) -> str | None:
    """A change that lost records is at best "applied with losses", never "verified" or "applied"."""
    if outcome in ("verified", "applied") and losses(records) > 0:
        return WITH_LOSSES
    return outcome


class RecordCounter:
    """Reads the counters around a stop: the DLQ state route, and with Prometheus the sweep and DLQ
    counters of the pipeline (an instant query each; a direct scrape would need two scrapes a window
    apart, so there the route alone counts)."""

    def __init__(self, client: Any, metrics: Any) -> None:
        self.client = client
        self.metrics = metrics if getattr(metrics, "kind", None) == "prometheus" else None

    async def read(self, pipeline_id: str) -> Json:
        found: Json = {}
        try:
            state = await self.client.dlq_state(pipeline_id)
            found["dlq"] = int(state.get("total_messages") or 0)
        except ApiError as exc:
            if exc.not_found:
                found["dlq"] = 0  # no DLQ stream yet: nothing in it
            else:
                found["detail"] = str(exc)
        if self.metrics is not None:
            found.update(await asyncio.to_thread(self._counters, pipeline_id))
        return found

    def _counters(self, pipeline_id: str) -> Json:
        found: Json = {}
        try:
            snapshot = self.metrics.snapshot(window_s=60.0, now=datetime.now(UTC))
        except MetricsError:
            return found
        for key, metric, matchers in (("swept", SWEPT, (("outcome", "=", "swept"),)), ("written", DLQ_WRITTEN, ())):
            result = snapshot.instant(Aggregate("sum", Selector(metric, (("pipeline_id", "=", pipeline_id),
                                                                           *matchers))))
            if result.status == OK:
                found[key] = sum(result.finite().values())
            elif result.status == UNKNOWN:
                found[key] = 0.0  # no series yet: the counter has not moved
        return found
