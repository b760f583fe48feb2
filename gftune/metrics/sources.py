"""Where metrics come from: a Prometheus server's HTTP API, or two direct scrapes of ``/metrics``.

Both give a :class:`Snapshot`: a consistent view at one moment that answers instant queries
(:meth:`Snapshot.instant`) and "over the last N seconds" queries (:meth:`Snapshot.over`) for the
expressions of :mod:`gftune.metrics.expr`. The signal library and the policy engine only talk to
snapshots, so they never know which kind of source they read.

* :class:`PrometheusSource` sends the rendered PromQL to ``/api/v1/query`` and
  ``/api/v1/query_range``. ``over`` is a range query, so a condition can be checked at every step.
* :class:`ScrapeSource` scrapes ``/metrics`` twice, a window apart, parses both with
  prometheus_client's text parser and computes rates and quantiles locally the way Prometheus
  does. ``over`` has only the two scrapes: a gauge condition must hold at both, a rate condition
  is one value over the window. Raw PromQL is unknown in this mode.

Empty results, NaN, Inf, stale gauges and missing series are *unknown*, never zero.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gftune.metrics import naming as naming_mod
from gftune.metrics.expr import (
    Expr,
    LocalUnsupported,
    NotConfigured,
    Scrape,
    ScrapePair,
    Vector,
    format_window,
    labels_of,
)
from gftune.metrics.naming import Naming
from gftune.metrics.snapshots import (
    ERROR,
    OK,
    STALE,
    UNKNOWN,
    MetricsError,
    MetricSource,
    Progress,
    QueryResult,
    RangeResult,
)


def _now() -> datetime:
    return datetime.now(UTC)


# --- Prometheus ----------------------------------------------------------------------------------

class PrometheusSource:
    """A Prometheus-compatible HTTP API (``/api/v1/query``, ``/api/v1/query_range``)."""

    kind = "prometheus"

    def __init__(self, url: str, *, namespace: str = naming_mod.DEFAULT_NAMESPACE,
                 naming: str = naming_mod.AUTO, timeout_s: float = 10.0,
                 client: httpx.Client | None = None,
                 clickhouse: tuple[tuple[str, str, str], ...] | None = None) -> None:
        self.url = url.rstrip("/")
        self.namespace = namespace
        self.naming_mode = naming
        self.clickhouse = clickhouse  # matchers of the ClickHouse server's series (None: not configured)
        self._client = client or httpx.Client(timeout=timeout_s)
        self._naming: Naming | None = None
        self.description = f"Prometheus at {self.url}"

    def close(self) -> None:
        self._client.close()

    def _get(self, route: str, params: dict[str, Any] | list[tuple[str, Any]]) -> Any:
        try:
            response = self._client.get(f"{self.url}{route}", params=params)
        except httpx.HTTPError as exc:
            raise MetricsError(f"cannot reach Prometheus at {self.url}: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise MetricsError(f"{self.url}{route} answered HTTP {response.status_code} with no JSON: "
                               "is this a Prometheus server?") from exc
        if body.get("status") != "success":
            raise QueryError(f"Prometheus {body.get('errorType', 'error')}: {body.get('error', response.text)}")
        return body["data"]

    def detect_naming(self, now: datetime) -> Naming:
        if self._naming is not None and "no GlassFlow" not in self._naming.detail:
            return self._naming
        end = now.timestamp()
        data = self._get("/api/v1/label/__name__/values",
                         [("match[]", '{__name__=~".*gfm_.*"}'), ("start", end - 3600), ("end", end)])
        self._naming = naming_mod.detect(data or [], namespace=self.namespace, mode=self.naming_mode,
                                         clickhouse=self.clickhouse)
        return self._naming

    def snapshot(self, *, window_s: float, now: datetime | None = None,
                 progress: Progress | None = None) -> PrometheusSnapshot:
        at = now or _now()
        return PrometheusSnapshot(self, self.detect_naming(at), at, window_s)

    def query(self, promql: str, at: datetime) -> Vector:
        data = self._get("/api/v1/query", {"query": promql, "time": f"{at.timestamp():.3f}"})
        return _vector(data)

    def query_range(self, promql: str, start: float, end: float, step: float) -> dict[Any, list[tuple[float, float]]]:
        data = self._get("/api/v1/query_range",
                         {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"})
        series: dict[Any, list[tuple[float, float]]] = {}
        for item in data.get("result", []):
            labels = labels_of({k: v for k, v in item.get("metric", {}).items() if k != "__name__"})
            series[labels] = [(float(t), float(v)) for t, v in item.get("values", [])]
        return series


class QueryError(MetricsError):
    """Prometheus rejected one query (e.g. a policy's raw PromQL); other queries still work."""


def _vector(data: dict[str, Any]) -> Vector:
    kind = data.get("resultType")
    result = data.get("result")
    if kind not in ("scalar", "vector"):  # a policy's own PromQL may answer a string or a range vector
        raise QueryError(f"the query returns a {'range vector' if kind == 'matrix' else kind}, not a number")
    if kind == "scalar":
        return {(): float(result[1])}
    vector: Vector = {}
    for item in result or []:
        labels = labels_of({k: v for k, v in item.get("metric", {}).items() if k != "__name__"})
        vector[labels] = float(item["value"][1])
    return vector


def _status(vector: Vector) -> tuple[str, str]:
    if not vector:
        return UNKNOWN, "no data (no matching series)"
    if not any(math.isfinite(v) for v in vector.values()):
        return UNKNOWN, "no data (NaN: nothing observed in the window)"
    return OK, ""


@dataclass
class PrometheusSnapshot:
    source: PrometheusSource
    naming: Naming
    at: datetime
    window_s: float
    kind: str = "prometheus"
    stale_after_s: float = field(default=0.0)

    def __post_init__(self) -> None:
        # OTel exporters push every 10 s; a gauge older than a window (and 10 s) has stopped.
        self.stale_after_s = self.stale_after_s or max(self.window_s, 10.0)

    def instant(self, expr: Expr) -> QueryResult:
        try:
            query = expr.promql(self.naming, self.window_s)
        except NotConfigured as exc:
            return QueryResult("", {}, UNKNOWN, str(exc))
        try:
            vector = self.source.query(query, self.at)
        except QueryError as exc:
            return QueryResult(query, {}, ERROR, str(exc))
        status, detail = _status(vector)
        if status == OK:
            for selector in expr.gauges():
                stamp_query = f"max(timestamp({selector.promql(self.naming)}))"
                stamps = self.source.query(stamp_query, self.at)
                newest = max(stamps.values(), default=None)
                age = self.at.timestamp() - newest if newest is not None else None
                if age is not None and age > self.stale_after_s:
                    status, detail = STALE, f"{selector.name(self.naming)} last sampled {age:.0f}s ago"
                    break
        return QueryResult(query, vector, status, detail)

    def over(self, expr: Expr, for_s: float) -> RangeResult:
        try:
            query = expr.promql(self.naming, self.window_s)
        except NotConfigured as exc:
            return RangeResult("", {}, False, str(exc))
        end = self.at.timestamp()
        start = end - for_s
        step = max(for_s / 20.0, 0.05)
        try:
            series = self.source.query_range(query, start, end, step)
        except QueryError as exc:
            return RangeResult(query, {}, False, str(exc))
        complete = bool(series)
        detail = ""
        for points in series.values():
            finite = [p for p in points if math.isfinite(p[1])]
            gaps = [b[0] - a[0] for a, b in itertools.pairwise(finite)]
            if not finite or finite[0][0] > start + 1.5 * step or finite[-1][0] < end - 1.5 * step \
                    or any(g > 2.5 * step for g in gaps):
                complete = False
                covered = finite[-1][0] - finite[0][0] if finite else 0.0
                detail = f"data covers {covered:.1f}s of the {for_s:.1f}s asked for"
        if not series:
            detail = "no data over the duration"
        return RangeResult(f"{query} over {format_window(for_s)} (step {step:g}s)", series, complete, detail)


# --- direct scrape -------------------------------------------------------------------------------

def parse_exposition(text: str, at: float) -> Scrape:
    """Parse Prometheus text exposition into a :class:`Scrape` (samples keyed by sample name)."""
    scrape = Scrape(at)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            scrape.samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return scrape


# A `for:` up to this much longer than the scrape interval still counts as covered: the interval is
# the configured window plus however long the scrapes took, so the two can differ by a little.
_WINDOW_SLACK = 1.05


class ScrapeSource:
    """A ``/metrics`` endpoint read directly: two scrapes a window apart per snapshot."""

    kind = "scrape"

    def __init__(self, url: str, *, namespace: str = naming_mod.DEFAULT_NAMESPACE,
                 naming: str = naming_mod.AUTO, timeout_s: float = 10.0,
                 client: httpx.Client | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, clickhouse_url: str | None = None) -> None:
        self.url = url
        self.namespace = namespace
        self.naming_mode = naming
        self._client = client or httpx.Client(timeout=timeout_s)
        self._sleep = sleep
        self._clock = clock
        self.clickhouse_url = clickhouse_url  # the ClickHouse server's own /metrics, scraped alongside
        self.description = f"direct scrape of {url}" + (f" and {clickhouse_url}" if clickhouse_url else "")

    def close(self) -> None:
        self._client.close()

    def scrape(self) -> Scrape:
        scrape = self._scrape(self.url)
        if self.clickhouse_url:
            # The ClickHouse server's counters, right after: a failed scrape leaves its signals unknown
            # (their series missing), never the GlassFlow ones.
            try:
                server = self._scrape(self.clickhouse_url)
            except MetricsError:
                return scrape
            for name, samples in server.samples.items():
                if name.startswith(naming_mod.CLICKHOUSE_EVENTS):
                    scrape.samples.setdefault(name, []).extend(samples)
        return scrape

    def _scrape(self, url: str) -> Scrape:
        sent = self._clock()
        try:
            response = self._client.get(url, headers={"Accept": "text/plain;version=0.0.4"})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise MetricsError(f"cannot scrape {url}: {exc}") from exc
        at = (sent + self._clock()) / 2  # the page was rendered somewhere in between
        try:
            return parse_exposition(response.text, at)
        except ValueError as exc:
            raise MetricsError(f"{url} is not Prometheus text exposition: {exc}") from exc

    def snapshot(self, *, window_s: float, now: datetime | None = None,
                 progress: Progress | None = None) -> ScrapeSnapshot:
        before = self.scrape()
        if progress and window_s >= 1:
            progress(f"scraping {self.url} again in {window_s:.0f}s to compute rates")
        self._sleep(window_s)
        after = self.scrape()
        names = before.names() | after.names()
        detected = naming_mod.detect(names, namespace=self.namespace, mode=self.naming_mode,
                                     clickhouse=() if self.clickhouse_url else None)
        return ScrapeSnapshot(ScrapePair(before, after), detected,
                              datetime.fromtimestamp(after.at, UTC), after.at - before.at)


@dataclass
class ScrapeSnapshot:
    pair: ScrapePair
    naming: Naming
    at: datetime
    window_s: float
    kind: str = "scrape"

    def _describe(self, expr: Expr) -> str:
        return (f"{expr.promql(self.naming, self.window_s)} computed locally from two scrapes "
                f"{self.window_s:.1f}s apart")

    def instant(self, expr: Expr) -> QueryResult:
        try:
            query = self._describe(expr)
        except NotConfigured as exc:
            return QueryResult("", {}, UNKNOWN, str(exc))
        try:
            vector = expr.local(self.pair, self.naming, "after")
        except LocalUnsupported as exc:
            return QueryResult(getattr(expr, "text", query), {}, UNKNOWN, str(exc))
        status, detail = _status(vector)
        if status != OK:
            for selector in expr.gauges():
                name = selector.name(self.naming)
                if self.pair.before.series(name, selector.matchers) and \
                        not self.pair.after.series(name, selector.matchers):
                    return QueryResult(query, vector, STALE, f"{name} disappeared between the scrapes")
        return QueryResult(query, vector, status, detail)

    def over(self, expr: Expr, for_s: float) -> RangeResult:
        try:
            query = self._describe(expr)
        except NotConfigured as exc:
            return RangeResult("", {}, False, str(exc))
        try:
            after = expr.local(self.pair, self.naming, "after")
            before = expr.local(self.pair, self.naming, "before") if expr.instantaneous() else {}
        except LocalUnsupported as exc:
            return RangeResult(getattr(expr, "text", query), {}, False, str(exc))
        series: dict[Any, list[tuple[float, float]]] = {}
        for labels, value in after.items():
            points = []
            if labels in before:
                points.append((self.pair.before.at, before[labels]))
            points.append((self.pair.after.at, value))
            series[labels] = points
        complete = bool(series) and (not expr.instantaneous() or all(len(p) == 2 for p in series.values()))
        if for_s > self.window_s * _WINDOW_SLACK:
            # Two scrapes cannot vouch for a longer stretch than the one between them: a condition
            # held at both ends of a 5-minute window says nothing about the 25 minutes before it
            # (a diurnal trough would pass for a 30-minute lull). Not established, never guessed.
            return RangeResult(query, series, False,
                               f"direct scrape covers {self.window_s:.1f}s, not the {for_s:.1f}s asked for: "
                               "use Prometheus, or a metrics window at least as long")
        detail = (f"direct scrape: checked at both scrapes {self.window_s:.1f}s apart "
                  f"(within the {for_s:.1f}s asked for)")
        return RangeResult(query, series, complete, detail)


# --- configuration -------------------------------------------------------------------------------

def _config_value(config: Any, name: str, default: Any = None) -> Any:
    return getattr(config, name, default) if config is not None else default


def open_source(config: Any) -> MetricSource | None:
    """The metric source a :class:`gftune.desired.config.Config` asks for; None when none is configured.

    ``prometheus_url`` wins over ``scrape_url`` when both are set.
    """
    namespace = _config_value(config, "metric_namespace") or naming_mod.DEFAULT_NAMESPACE
    mode = _config_value(config, "metric_naming") or naming_mod.AUTO
    clickhouse_match = _config_value(config, "clickhouse_match")
    clickhouse_scrape = _config_value(config, "clickhouse_scrape")
    prometheus = _config_value(config, "prometheus_url")
    if prometheus:
        return PrometheusSource(prometheus, namespace=namespace, naming=mode,
                                clickhouse=clickhouse_matchers(clickhouse_match, clickhouse_scrape))
    scrape = _config_value(config, "scrape_url")
    if scrape:
        return ScrapeSource(scrape, namespace=namespace, naming=mode, clickhouse_url=clickhouse_scrape)
    return None


def clickhouse_matchers(match: Any, scrape: str | None) -> tuple[tuple[str, str, str], ...] | None:
    """Which of a Prometheus server's series are the ClickHouse server's: the configured ``match``
    labels, else the ``instance`` Prometheus gives the configured scrape URL (its ``host:port``, as
    a default scrape config sets it); None when neither is configured."""
    if match is not None:
        return tuple((label, "=", str(value)) for label, value in dict(match).items())
    if scrape:
        return (("instance", "=", urlparse(scrape).netloc),)
    return None
