"""Readings over the pipeline's recent history (Prometheus only): a stage's capacity measured at the
moments it was not blocked, DS2's "true processing rate" (Kalavri et al., OSDI '18).

The ingestor's capacity per replica is records per busy second (``ingestor_true_rate``), valid only
without backpressure: GlassFlow's ``{ingestor,batch}`` time counts the waits. While the sink is the
bottleneck that capacity is not established *now*, but the ingestor usually ran clean before the
load grew. Prometheus keeps that past: a subquery over the last hour (at most since the pipeline's
last change, which may have changed the ingestor) keeps the samples where neither the share of time
in backpressure nor the gauge was above 0, and takes their median (robust to a noisy sample, and to a
few samples at the edges of an episode). A direct scrape has two scrapes a window apart and no past:
there the reading is unknown, and the sizing says so.

The input is read over the metrics window (5m), which after a step holds minutes of the old input:
the average understates the new one, and a stage sized for it (the sink behind ingestors that will
push all of the new input) comes out short. ``kafka_input_rate_recent`` reads it again over the last
two minutes (the built-in symptoms' ``for:``), and the sizing takes the larger of the two; when it
takes the recent one, a saturated ingestor's read rate (its capacity) is read over the same two
minutes (``source_rate_recent``).

These readings are not in the signal library (``SIGNALS``): a policy cannot hold a condition on them,
only the sizing reads them (:func:`gftune.policy.fit.scale_to_fit`), through
:meth:`gftune.policy.views.MetricsView.recent` with the lookback it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gftune.metrics.expr import Expr, LocalUnsupported, ScrapePair, Selector, Vector, format_window
from gftune.metrics.naming import Naming
from gftune.policy.signal_types import SignalContext, SignalDef
from gftune.policy.signals import SIGNALS

HISTORY_S = 3600.0  # model seconds of history the sizing looks back at most
STEP_S = 30.0  # model seconds between two samples of the subquery
MIN_CLEAN_S = 300.0  # clean samples must cover at least a metrics window
RECENT_INPUT_S = 120.0  # model seconds: the built-in symptoms' for:, over which the input is read again


@dataclass(frozen=True)
class Clean(Expr):
    """``fn((value > 0 and on() (blocker == 0) ...)[span:step])``: a value over the last ``span``
    seconds, at the moments every blocker was 0 (a blocker without series leaves no sample)."""

    fn: str  # quantile_over_time | count_over_time
    value: Expr
    blockers: tuple[Expr, ...]
    span_s: float  # wall seconds (time-scaled)
    step_s: float
    q: float | None = None

    def promql(self, naming: Naming, window_s: float) -> str:
        inner = f"({self.value.promql(naming, window_s)}) > 0"
        for blocker in self.blockers:
            inner = f"({inner}) and on() (({blocker.promql(naming, window_s)}) == 0)"
        sub = f"({inner})[{format_window(self.span_s)}:{format_window(self.step_s)}]"
        return f"{self.fn}({self.q:g}, {sub})" if self.q is not None else f"{self.fn}({sub})"

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        raise LocalUnsupported("a stage's history needs a Prometheus source: a direct scrape holds two scrapes a "
                               "window apart, no past")


def _clean_ingestor(fn: str, q: float | None = None) -> Callable[[SignalContext], Expr]:
    def build(ctx: SignalContext) -> Expr:
        scale = ctx.time_scale or 1.0
        blockers = (SIGNALS["backpressure_share"].build(ctx),
                    SIGNALS["ingestor_backpressure"].build(ctx))
        value = SIGNALS["ingestor_true_rate"].build(ctx)
        assert value is not None and all(b is not None for b in blockers)
        return Clean(fn, value, tuple(b for b in blockers if b is not None), ctx.lookback_s / scale,
                     STEP_S / scale, q)
    return build


@dataclass(frozen=True)
class Windowed(Expr):
    """An expression over a range of its own (``window_s`` wall seconds) instead of the snapshot's
    metrics window: e.g. the input over the last minutes only, after a step within the window."""

    expr: Expr
    window_s: float  # wall seconds (time-scaled)

    def promql(self, naming: Naming, window_s: float) -> str:
        return self.expr.promql(naming, self.window_s)

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        raise LocalUnsupported("a reading over a window other than the metrics window needs a Prometheus source: a "
                               "direct scrape holds two scrapes a window apart")

    def gauges(self) -> list[Selector]:
        return self.expr.gauges()


def _recent(signal: str) -> Callable[[SignalContext], Expr]:
    def build(ctx: SignalContext) -> Expr:
        expr = SIGNALS[signal].build(ctx)
        assert expr is not None
        return Windowed(expr, ctx.lookback_s / (ctx.time_scale or 1.0))
    return build


HISTORY: dict[str, SignalDef] = {s.name: s for s in (
    SignalDef("kafka_input_rate_recent", "records/s",
              "kafka_input_rate (source_rate + consumer_lag_growth) over the last lookback only (the symptom's "
              "for:, 2m) rather than the metrics window: an input that rose within the window is averaged "
              "down there. Prometheus only.", _recent("kafka_input_rate"), group="history"),
    SignalDef("source_rate_recent", "records/s",
              "source_rate over the last lookback only: what a saturated ingestor reads since the step the "
              "input took, not averaged with what it read before. Prometheus only.", _recent("source_rate"),
              group="history"),
    SignalDef("ingestor_clean_rate", "records/s per replica",
              "Median ingestor_true_rate over the lookback (at most 1h, since the last change) at the moments "
              "without backpressure (share and gauge 0), sampled every 30s. Prometheus only.",
              _clean_ingestor("quantile_over_time", 0.5), group="history"),
    SignalDef("ingestor_clean_samples", "samples",
              "How many 30s samples of the lookback the ingestor spent without backpressure (the count behind "
              "ingestor_clean_rate). Prometheus only.", _clean_ingestor("count_over_time"), group="history"),
)}
