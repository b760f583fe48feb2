"""Metric views: the signal readings of one pipeline, as the evaluation asks for them.

:class:`MetricsView` is what :func:`gftune.policy.evaluate.evaluate` reads: live metrics through a
:class:`SnapshotView`, or recorded values through a :class:`FixtureView` (policy unit tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from gftune.metrics.expr import Raw
from gftune.metrics.snapshots import OK, UNKNOWN, Snapshot
from gftune.policy.history import HISTORY
from gftune.policy.language import OPS, Condition
from gftune.policy.signals import SIGNALS, SignalContext, SignalReading, reading_from, signal_expr


@dataclass(frozen=True)
class Held:
    """A condition evaluated over its ``for:`` duration."""

    met: bool | None  # None = unknown
    value: float | None  # the latest value
    query: str
    detail: str = ""
    # how long (model seconds) the condition has held without a break up to now, within what was read;
    # None when it does not hold now. A condition that holds now, but for less than its ``for:``, is
    # *holding*: established once held_s reaches ``for:`` (:mod:`gftune.policy.ridealong`).
    held_s: float | None = None


def held_since(series: Iterable[Sequence[tuple[float, float]]], check: Callable[[float], bool]) -> float | None:
    """The time from which every finite point of every series satisfies ``check``, up to its latest
    point: the start of the trailing run. None when the latest point of a series does not satisfy it
    (or there is no point). Pure."""
    start: float | None = None
    for points in series:
        finite = [p for p in points if math.isfinite(p[1])]
        if not finite or not check(finite[-1][1]):
            return None
        run_start = finite[-1][0]
        for t, v in reversed(finite):
            if not check(v):
                break
            run_start = t
        start = run_start if start is None else max(start, run_start)
    return start


def _held_s(series: Sequence[Sequence[tuple[float, float]]], check: Callable[[float], bool],
            scale: float) -> float | None:
    since = held_since(series, check)
    if since is None:
        return None
    latest = max(points[-1][0] for points in series if points)
    return (latest - since) * scale


class MetricsView(Protocol):
    """Signal readings for one pipeline: live (a snapshot) or recorded (a policy-test fixture)."""

    at: datetime

    def reading(self, name: str) -> SignalReading: ...

    def promql(self, text: str) -> SignalReading: ...

    def recent(self, name: str, lookback_s: float) -> SignalReading:
        """A history reading (:mod:`gftune.policy.history`) over the last ``lookback_s`` model seconds."""
        ...

    def held(self, condition: Condition, threshold: float) -> Held: ...


class SnapshotView:
    """Live metrics of one pipeline from a :class:`~gftune.metrics.sources.Snapshot`."""

    def __init__(self, snapshot: Snapshot, ctx: SignalContext, *, time_scale: float = 1.0) -> None:
        self.snapshot = snapshot
        self.ctx = ctx
        self.time_scale = time_scale
        self.at = snapshot.at
        self._cache: dict[str, SignalReading] = {}

    def _expr(self, condition: Condition) -> Any:
        if condition.promql is not None:
            return Raw(condition.promql, self.ctx.pipeline_id)
        return signal_expr(str(condition.signal), self.ctx)

    def reading(self, name: str) -> SignalReading:
        if name not in self._cache:
            definition = SIGNALS[name]
            expr = definition.build(self.ctx)
            if expr is None:
                self._cache[name] = SignalReading(name, None, definition.unit, "", self.snapshot.window_s, self.at,
                                                  UNKNOWN, f"needs {definition.needs}, which the pipeline lacks")
            else:
                self._cache[name] = reading_from(name, definition.unit, self.snapshot.instant(expr),
                                                 self.snapshot.window_s, self.at, definition.breakdown)
        return self._cache[name]

    def recent(self, name: str, lookback_s: float) -> SignalReading:
        key = f"recent:{name}:{lookback_s:g}"
        if key not in self._cache:
            definition = HISTORY[name]
            expr = definition.build(replace(self.ctx, lookback_s=lookback_s))
            assert expr is not None
            self._cache[key] = reading_from(name, definition.unit, self.snapshot.instant(expr), lookback_s, self.at)
        return self._cache[key]

    def promql(self, text: str) -> SignalReading:
        key = f"promql:{text}"
        if key not in self._cache:
            self._cache[key] = reading_from("promql", "", self.snapshot.instant(Raw(text, self.ctx.pipeline_id)),
                                            self.snapshot.window_s, self.at)
        return self._cache[key]

    def held(self, condition: Condition, threshold: float) -> Held:
        expr = self._expr(condition)
        if expr is None:
            return Held(None, None, "", f"signal {condition.signal} needs facts the pipeline lacks")
        result = self.snapshot.over(expr, condition.for_s / self.time_scale)
        values = [v for points in result.series.values() for _, v in points]
        finite = [v for v in values if math.isfinite(v)]
        latest = None
        for points in result.series.values():
            good = [p for p in points if math.isfinite(p[1])]
            if good and (latest is None or good[-1][0] >= latest[0]):
                latest = good[-1]
        value = latest[1] if latest else None
        if not finite:
            return Held(None, None, result.query, result.detail or "no data over the duration")
        check = OPS[condition.op]
        held_s = _held_s(list(result.series.values()), lambda v: check(v, threshold), self.time_scale)
        if not all(check(v, threshold) for v in finite):
            return Held(False, value, result.query,
                        f"not held throughout (range {min(finite):.4g}..{max(finite):.4g})", held_s)
        if not result.complete:
            return Held(False, value, result.query, result.detail or "not held for the whole duration", held_s)
        return Held(True, value, result.query, result.detail, held_s)


class FixtureView:
    """Recorded signal values (policy unit tests): scalars, or series of ``[seconds, value]``."""

    def __init__(self, signals: Mapping[str, Any], series: Mapping[str, Any] | None = None, *,
                 at: datetime | None = None, promql: Mapping[str, Any] | None = None) -> None:
        self.signals = dict(signals)
        self.series = {k: [(float(t), float(v)) for t, v in pts] for k, pts in (series or {}).items()}
        self.promql_values = dict(promql or {})
        self.lookbacks: dict[str, float] = {}
        self.at = at or datetime(2026, 1, 1, tzinfo=UTC)

    def _reading(self, name: str, value: Any, unit: str) -> SignalReading:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return SignalReading(name, None, unit, "fixture", 0.0, self.at, UNKNOWN, "no data in the fixture")
        if isinstance(value, Mapping):  # {reason: value} breakdowns
            breakdown = {str(k): float(v) for k, v in value.items()}
            return SignalReading(name, sum(breakdown.values()), unit, "fixture", 0.0, self.at, OK, "", breakdown)
        return SignalReading(name, float(value), unit, "fixture", 0.0, self.at, OK)

    def reading(self, name: str) -> SignalReading:
        unit = SIGNALS[name].unit if name in SIGNALS else ""
        if name in self.series and name not in self.signals:
            points = self.series[name]
            return self._reading(name, points[-1][1] if points else None, unit)
        return self._reading(name, self.signals.get(name), unit)

    def promql(self, text: str) -> SignalReading:
        return self._reading("promql", self.promql_values.get(text), "")

    def recent(self, name: str, lookback_s: float) -> SignalReading:
        """A history reading from the fixture's ``signals`` (the lookback asked for is recorded)."""
        self.lookbacks[name] = lookback_s
        return self._reading(name, self.signals.get(name), HISTORY[name].unit if name in HISTORY else "")

    def held(self, condition: Condition, threshold: float) -> Held:
        name = condition.signal or ""
        check = OPS[condition.op]
        if condition.promql is not None or name not in self.series:
            reading = self.promql(condition.promql) if condition.promql is not None else self.reading(name)
            if not reading.known:
                return Held(None, None, "fixture", "no data in the fixture")
            met = check(reading.value, threshold)
            return Held(met, reading.value, "fixture", "a scalar fixture value counts as constant over the duration",
                        condition.for_s if met else None)
        points = self.series[name]
        if not points:
            return Held(None, None, "fixture", "empty series")
        span = points[-1][0] - points[0][0]
        value = points[-1][1]
        held_s = _held_s([points], lambda v: check(v, threshold), 1.0)
        recent = [(t, v) for t, v in points if t >= points[-1][0] - condition.for_s - 1e-9]  # as query_range reads
        if not all(check(v, threshold) for _, v in recent):
            return Held(False, value, "fixture series", "not held throughout the series", held_s)
        if span + 1e-9 < condition.for_s:
            return Held(False, value, "fixture series", f"series covers {span:g}s of {condition.for_s:g}s", held_s)
        return Held(True, value, "fixture series", "", held_s)
