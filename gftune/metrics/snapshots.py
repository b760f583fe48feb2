"""What the signal library and the policy evaluation read: a :class:`Snapshot` of the metrics at one
moment, answering instant and "over the last N seconds" queries of :mod:`gftune.metrics.expr`
expressions, and the statuses of an answer. Only types: the sources that take snapshots (Prometheus,
a direct scrape) are :mod:`gftune.metrics.sources`, at the edge.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from gftune.metrics.expr import Expr, Vector
from gftune.metrics.naming import Naming

OK = "ok"
UNKNOWN = "unknown"
STALE = "stale"
ERROR = "error"  # the server refused the query: not "no data", a query that cannot be answered

Progress = Callable[[str], None]


class MetricsError(Exception):
    """The metric source cannot be used at all (unreachable, not Prometheus, not a /metrics page)."""


@dataclass(frozen=True)
class QueryResult:
    """One instant evaluation. ``status`` is ok, unknown (no data / NaN), stale (old gauge) or error
    (Prometheus refused the query, or it answers with a string or a range vector, not numbers)."""

    query: str  # the PromQL sent, or the local computation in scrape mode
    vector: Vector
    status: str
    detail: str = ""

    def finite(self) -> Vector:
        return {labels: value for labels, value in self.vector.items() if math.isfinite(value)}


@dataclass(frozen=True)
class RangeResult:
    """Values of an expression over the last ``for`` seconds, per label set."""

    query: str
    series: dict[Any, list[tuple[float, float]]]
    complete: bool  # the points cover the requested duration (scrape mode: both scrapes)
    detail: str = ""


class Snapshot(Protocol):
    kind: str  # "prometheus" | "scrape"
    naming: Naming
    at: datetime
    window_s: float

    def instant(self, expr: Expr) -> QueryResult: ...

    def over(self, expr: Expr, for_s: float) -> RangeResult: ...


class MetricSource(Protocol):
    description: str

    def snapshot(self, *, window_s: float, now: datetime | None = None,
                 progress: Progress | None = None) -> Snapshot: ...

    def close(self) -> None: ...
