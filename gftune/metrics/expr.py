"""A small expression language for signals: rendered as PromQL, or evaluated on two scrapes.

The signal library must work against a Prometheus server *and* against a bare ``/metrics``
endpoint. Rather than interpreting arbitrary PromQL locally, each signal is built from the few
shapes it needs (sum of rates, histogram quantile, gauge aggregate, slope, arithmetic). Every node
renders the exact PromQL a user could paste into Prometheus, and evaluates the same arithmetic on
a :class:`ScrapePair` with :mod:`gftune.metrics.prommath`.

Vectors are ``{labels: value}`` with labels a sorted tuple of ``(name, value)`` pairs, so the
label matching of binary operators works like PromQL's default one-to-one matching.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gftune.metrics import prommath
from gftune.metrics.naming import CLICKHOUSE_EVENTS, CLICKHOUSE_NOT_CONFIGURED, Naming

Labels = tuple[tuple[str, str], ...]
Vector = dict[Labels, float]
Matcher = tuple[str, str, str]  # (label, op, value), op in "=", "!=", "=~", "!~"


class LocalUnsupported(Exception):
    """The expression cannot be computed from scrapes (raw PromQL needs a Prometheus server)."""


class NotConfigured(LocalUnsupported):
    """The expression reads an optional source that is not configured (the ClickHouse server's metrics)."""


def labels_of(mapping: dict[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


def format_window(seconds: float) -> str:
    """A PromQL range: ``300s``, or milliseconds when the (time-scaled) window is fractional."""
    millis = max(1, round(seconds * 1000))
    if millis % 1000 == 0:
        return f"{millis // 1000}s"
    return f"{millis}ms"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- scraped data --------------------------------------------------------------------------------

@dataclass
class Scrape:
    """One scrape of a ``/metrics`` endpoint: samples by name, and when it was taken."""

    at: float  # unix seconds
    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    def names(self) -> set[str]:
        return set(self.samples)

    def series(self, name: str, matchers: tuple[Matcher, ...]) -> dict[Labels, float]:
        out: dict[Labels, float] = {}
        for labels, value in self.samples.get(name, ()):
            if all(_match(labels.get(label, ""), op, want) for label, op, want in matchers):
                out[labels_of(labels)] = value
        return out


@dataclass
class ScrapePair:
    """Two scrapes a window apart: rates come from both, gauges are read at either."""

    before: Scrape
    after: Scrape

    @property
    def elapsed(self) -> float:
        return self.after.at - self.before.at


def _match(actual: str, op: str, want: str) -> bool:
    if op == "=":
        return actual == want
    if op == "!=":
        return actual != want
    found = re.fullmatch(want, actual) is not None
    return found if op == "=~" else not found


# --- nodes ---------------------------------------------------------------------------------------

class Expr:
    """A node. ``promql`` renders it; ``local`` evaluates it on a scrape pair.

    ``at`` selects the scrape that instantaneous parts (gauges) are read from: ``"after"`` (the
    newest) or ``"before"``. Range parts (rates) always use both scrapes.
    """

    def promql(self, naming: Naming, window_s: float) -> str:
        raise NotImplementedError

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        raise NotImplementedError

    def gauges(self) -> list[Selector]:
        """Instantaneous selectors inside this node (their freshness decides "stale")."""
        return []

    def instantaneous(self) -> bool:
        """True when the value can differ between the two scrapes (it reads a gauge)."""
        return bool(self.gauges())

    # arithmetic sugar for the signal library
    def __truediv__(self, other: Expr | float) -> Expr:
        return BinOp("/", self, _lift(other))

    def __mul__(self, other: Expr | float) -> Expr:
        return BinOp("*", self, _lift(other))

    def __sub__(self, other: Expr | float) -> Expr:
        return BinOp("-", self, _lift(other))

    def __add__(self, other: Expr | float) -> Expr:
        return BinOp("+", self, _lift(other))


def _lift(value: Expr | float) -> Expr:
    return value if isinstance(value, Expr) else Const(float(value))


@dataclass(frozen=True)
class Selector:
    """A series selector over a logical gfm metric (or an external one, e.g. kafka_exporter's)."""

    metric: str
    matchers: tuple[Matcher, ...] = ()
    suffix: str = ""  # "_bucket", "_sum", "_count" of a histogram
    external: bool = False  # not under <namespace>_gfm_ (e.g. kafka_exporter's kafka_consumergroup_lag)
    # Re-exposed by the chart's OTel collector under "<namespace>_" but not a gfm metric: the NATS
    # exporter's jetstream_* series (the collector scrapes prometheus-nats-exporter and prefixes them).
    collected: bool = False
    # A ProfileEvents counter of the ClickHouse server (ClickHouseProfileEvents_<metric>), from its own
    # Prometheus endpoint: only where the user configured it (naming.clickhouse), with its matchers.
    clickhouse: bool = False

    def name(self, naming: Naming) -> str:
        if self.clickhouse:
            if naming.clickhouse is None:
                raise NotConfigured(CLICKHOUSE_NOT_CONFIGURED)
            return CLICKHOUSE_EVENTS + self.metric + self.suffix
        if self.collected:
            base = f"{naming.namespace}_{self.metric}" if naming.namespace else self.metric
        else:
            base = self.metric if self.external else naming.metric(self.metric)
        return base + self.suffix

    def promql(self, naming: Naming) -> str:
        name = self.name(naming)
        matchers = (*self.matchers, *(naming.clickhouse or ())) if self.clickhouse else self.matchers
        inner = ",".join(f"{label}{op}{_quote(value)}" for label, op, value in matchers)
        return f"{name}{{{inner}}}" if inner else name

    def scraped_name(self, naming: Naming) -> str:
        """The sample name in a direct scrape parsed by prometheus_client: its text parser appends
        ``_total`` to a counter's samples that lack it, as ClickHouse's do. (A scrape is of one
        server: the Prometheus matchers do not apply.)"""
        return self.name(naming) + ("_total" if self.clickhouse else "")

    def with_suffix(self, suffix: str) -> Selector:
        return Selector(self.metric, self.matchers, suffix, self.external, self.collected, self.clickhouse)


def _group(vector: Vector, by: tuple[str, ...], agg: Callable[[list[float]], float]) -> Vector:
    groups: dict[Labels, list[float]] = {}
    for labels, value in vector.items():
        kept = tuple((k, v) for k, v in labels if k in by)
        groups.setdefault(kept, []).append(value)
    return {labels: agg(values) for labels, values in groups.items()}


def _by(by: tuple[str, ...]) -> str:
    return f" by ({', '.join(by)})" if by else ""


def _rates(pair: ScrapePair, name: str, matchers: tuple[Matcher, ...]) -> Vector:
    before = pair.before.series(name, matchers)
    after = pair.after.series(name, matchers)
    start, end = pair.before.at, pair.after.at
    out: Vector = {}
    for labels, value in after.items():
        if labels in before:
            rate = prommath.extrapolated_rate([(start, before[labels]), (end, value)], start, end)
            if not math.isnan(rate):
                out[labels] = rate
    return out


@dataclass(frozen=True)
class Rate(Expr):
    """``sum by (by) (rate(selector[window]))``."""

    selector: Selector
    by: tuple[str, ...] = ()

    def promql(self, naming: Naming, window_s: float) -> str:
        return f"sum{_by(self.by)} (rate({self.selector.promql(naming)}[{format_window(window_s)}]))"

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        rates = _rates(pair, self.selector.scraped_name(naming), self.selector.matchers)
        return _group(rates, self.by, sum) if rates else {}


@dataclass(frozen=True)
class Quantile(Expr):
    """``histogram_quantile(q, sum by (le, by) (rate(selector_bucket[window])))``."""

    q: float
    selector: Selector  # the histogram's base name, without _bucket
    by: tuple[str, ...] = ()

    def promql(self, naming: Naming, window_s: float) -> str:
        bucket = self.selector.with_suffix("_bucket").promql(naming)
        by = ("le", *self.by)
        return (f"histogram_quantile({self.q:g}, sum{_by(by)} "
                f"(rate({bucket}[{format_window(window_s)}])))")

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        bucket = self.selector.with_suffix("_bucket")
        rates = _rates(pair, bucket.name(naming), bucket.matchers)
        summed = _group(rates, ("le", *self.by), sum)
        groups: dict[Labels, list[tuple[float, float]]] = {}
        for labels, value in summed.items():
            le = dict(labels).get("le")
            if le is None:
                continue
            rest = tuple((k, v) for k, v in labels if k != "le")
            groups.setdefault(rest, []).append((float(le), value))
        out: Vector = {}
        for labels, buckets in groups.items():
            value = prommath.bucket_quantile(self.q, buckets)
            if not math.isnan(value):
                out[labels] = value
        return out


_AGGREGATES: dict[str, Callable[[list[float]], float]] = {
    "sum": sum, "max": max, "min": min, "avg": lambda values: sum(values) / len(values),
    "count": lambda values: float(len(values)),
}


@dataclass(frozen=True)
class Aggregate(Expr):
    """``max by (by) (selector)`` over a gauge (or ``count`` of series)."""

    op: str
    selector: Selector
    by: tuple[str, ...] = ()

    def promql(self, naming: Naming, window_s: float) -> str:
        return f"{self.op}{_by(self.by)} ({self.selector.promql(naming)})"

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        scrape = pair.after if at == "after" else pair.before
        values = scrape.series(self.selector.name(naming), self.selector.matchers)
        return _group(values, self.by, _AGGREGATES[self.op]) if values else {}

    def gauges(self) -> list[Selector]:
        return [self.selector]


@dataclass(frozen=True)
class Over(Expr):
    """``op by (by) (expr)``: an aggregation over an expression's series, e.g. the busiest replica
    (``max (sum by (instance) (rate(...)))``) or the deepest stream (``max by (stream) (gauge)``)."""

    op: str
    expr: Expr
    by: tuple[str, ...] = ()

    def promql(self, naming: Naming, window_s: float) -> str:
        return f"{self.op}{_by(self.by)} ({self.expr.promql(naming, window_s)})"

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        values = {labels: value for labels, value in self.expr.local(pair, naming, at).items()
                  if not math.isnan(value)}
        return _group(values, self.by, _AGGREGATES[self.op]) if values else {}

    def gauges(self) -> list[Selector]:
        return self.expr.gauges()


@dataclass(frozen=True)
class Either(Expr):
    """``(left) or (right)``: the left side where it has series, else the right one. Used where a
    missing series means zero *because another series proves the component reports*: GlassFlow's
    backpressure gauge does not exist before the first episode, so on a pipeline whose stream depth
    is reported, ``active or (depth * 0)`` is 0, not unknown."""

    left: Expr
    right: Expr

    def promql(self, naming: Naming, window_s: float) -> str:
        return f"({self.left.promql(naming, window_s)}) or ({self.right.promql(naming, window_s)})"

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        return self.left.local(pair, naming, at) or self.right.local(pair, naming, at)

    def gauges(self) -> list[Selector]:
        return [*self.left.gauges(), *self.right.gauges()]


@dataclass(frozen=True)
class Deriv(Expr):
    """``sum by (by) (deriv(selector[window]))``: how fast a gauge (e.g. consumer lag) grows."""

    selector: Selector
    by: tuple[str, ...] = ()

    def promql(self, naming: Naming, window_s: float) -> str:
        return f"sum{_by(self.by)} (deriv({self.selector.promql(naming)}[{format_window(window_s)}]))"

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        name = self.selector.name(naming)
        before = pair.before.series(name, self.selector.matchers)
        after = pair.after.series(name, self.selector.matchers)
        slopes: Vector = {}
        for labels, value in after.items():
            if labels in before:
                slope = prommath.deriv([(pair.before.at, before[labels]), (pair.after.at, value)])
                if not math.isnan(slope):
                    slopes[labels] = slope
        return _group(slopes, self.by, sum) if slopes else {}


@dataclass(frozen=True)
class Const(Expr):
    value: float

    def promql(self, naming: Naming, window_s: float) -> str:
        return f"{self.value:g}"

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        return {(): self.value}


@dataclass(frozen=True)
class Scalar(Expr):
    """``scalar(expr)``: the value of a one-series result, to combine with every series of another
    (NaN, so unknown, unless there is exactly one series)."""

    expr: Expr

    def promql(self, naming: Naming, window_s: float) -> str:
        return f"scalar({self.expr.promql(naming, window_s)})"

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        values = list(self.expr.local(pair, naming, at).values())
        return {(): values[0] if len(values) == 1 else math.nan}

    def gauges(self) -> list[Selector]:
        return self.expr.gauges()


_OPS: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b != 0 else (math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)),
}


@dataclass(frozen=True)
class BinOp(Expr):
    """``(left) op (right)`` with PromQL's one-to-one label matching; a constant side broadcasts."""

    op: str
    left: Expr
    right: Expr

    def promql(self, naming: Naming, window_s: float) -> str:
        return f"({self.left.promql(naming, window_s)}) {self.op} ({self.right.promql(naming, window_s)})"

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        left = self.left.local(pair, naming, at)
        right = self.right.local(pair, naming, at)
        fn = _OPS[self.op]
        if isinstance(self.right, Const | Scalar):
            return {labels: fn(value, right[()]) for labels, value in left.items()}
        if isinstance(self.left, Const | Scalar):
            return {labels: fn(left[()], value) for labels, value in right.items()}
        return {labels: fn(value, right[labels]) for labels, value in left.items() if labels in right}

    def gauges(self) -> list[Selector]:
        return [*self.left.gauges(), *self.right.gauges()]


@dataclass(frozen=True)
class ClampMax(Expr):
    """``clamp_max(expr, limit)``: an estimate that cannot exceed a known bound (NaN stays NaN)."""

    expr: Expr
    limit: float

    def promql(self, naming: Naming, window_s: float) -> str:
        return f"clamp_max({self.expr.promql(naming, window_s)}, {self.limit:g})"

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        return {labels: value if math.isnan(value) else min(value, self.limit)
                for labels, value in self.expr.local(pair, naming, at).items()}

    def gauges(self) -> list[Selector]:
        return self.expr.gauges()


@dataclass(frozen=True)
class OrZero(Expr):
    """``(expr) or vector(0)``: for a counter that only appears once something happened (a DLQ
    reason), added to a series that proves the component reports. Never used on its own: a
    missing signal stays unknown."""

    expr: Expr

    def promql(self, naming: Naming, window_s: float) -> str:
        return f"({self.expr.promql(naming, window_s)} or vector(0))"

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        return self.expr.local(pair, naming, at) or {(): 0.0}


@dataclass(frozen=True)
class Raw(Expr):
    """A policy's own PromQL. ``{pipeline_id}``, ``{namespace}``, ``{prefix}`` and ``{window}``
    are substituted; it needs a Prometheus server."""

    text: str
    pipeline_id: str = ""

    def promql(self, naming: Naming, window_s: float) -> str:
        prefix = f"{naming.namespace}_gfm_" if naming.namespace else "gfm_"
        values = {"pipeline_id": self.pipeline_id, "namespace": naming.namespace, "prefix": prefix,
                  "window": format_window(window_s)}
        return re.sub(r"\{(pipeline_id|namespace|prefix|window)\}", lambda m: values[m.group(1)], self.text)

    def local(self, pair: ScrapePair, naming: Naming, at: str = "after") -> Vector:
        raise LocalUnsupported("raw PromQL needs a Prometheus source; direct-scrape mode computes "
                               "only the signal library")

    def instantaneous(self) -> bool:
        return True


def selectors(expr: Expr) -> Iterable[Selector]:
    """Every selector an expression reads (for documentation and tests)."""
    if isinstance(expr, BinOp | Either):
        yield from selectors(expr.left)
        yield from selectors(expr.right)
    elif isinstance(expr, OrZero | Over | ClampMax | Scalar):
        yield from selectors(expr.expr)
    elif isinstance(expr, Rate | Quantile | Aggregate | Deriv):
        yield expr.selector
