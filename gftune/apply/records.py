"""Records around a stop: what a stop cost in records, so that a change that lost some never reads
as a plain success.

A stop drains the pipeline's internal streams; when the components cannot drain them within the stop
timeout, GlassFlow's operator forces the stop and sweeps what is left to the DLQ, counting each record
in ``gfm_operator_sweeped_messages_total{outcome="swept"}`` and not in
``gfm_dlq_records_written_total`` (glassflow-etl-k8s-operator ``internal/controller/messages_sweep.go``).
Around every stop apply reads the DLQ state route (``GET /api/v1/pipeline/{id}/dlq/state``,
``total_messages``: every record the DLQ ever received, whoever wrote it) and, with Prometheus, both
counters. :class:`RecordCounter` is the edge that reads; :mod:`gftune.apply.losses` judges what was read.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from gftune.client import ApiError
from gftune.metrics.expr import Aggregate, Selector
from gftune.metrics.sources import OK, UNKNOWN, MetricsError

Json = dict[str, Any]
SWEPT = "operator_sweeped_messages_total"
DLQ_WRITTEN = "dlq_records_written_total"


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
