"""OTel as GlassFlow runs it: one meter per process, a push every 10 s, and the chart's collector.

* A :class:`Meter` is one process's meter (a component pod, the API, the operator): the series it
  has *recorded*, cumulative since the process started. A series does not exist before its first
  recording; a restarted pod starts from an empty meter (its counters reset).
* Every ``PUSH_INTERVAL`` after the process started, the meter pushes all its series to the
  :class:`Collector` (the chart's ``otel/opentelemetry-collector-contrib`` with one ``prometheus``
  exporter on ``:9090``). The collector keeps each series' last pushed value and drops a series
  ``METRIC_EXPIRATION`` (5 min) after its last update, so a deleted pod's series linger.
* The collector turns a process's resource into ``job`` (``<service.namespace>/<service.name>``)
  and ``instance`` (``service.instance.id``) labels, and its other resource attributes into one
  ``<ns>_target_info`` series per process.

Time scale: counter-like values (counters, histogram buckets/sum/count) are divided by the time
scale at exposition, so that ``rate()`` over wall-clock seconds reads per-sim-second rates.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from gftune.glassflow.instruments import Instrument
from gftune.glassflow.topology import METRIC_EXPIRATION, PUSH_INTERVAL

Labels = tuple[str, ...]  # attribute values, in the instrument's label order


class Histogram:
    """Explicit-bucket histogram points: counts per bucket (last one: +Inf) and the sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0.0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float, count: float = 1.0) -> None:
        """``count`` observations of ``value`` (OTel bucket upper bounds are inclusive)."""
        if count <= 0:
            return
        self.counts[bisect.bisect_left(self.bounds, value)] += count
        self.total += value * count

    def copy(self) -> Histogram:
        twin = Histogram(self.bounds)
        twin.counts = list(self.counts)
        twin.total = self.total
        return twin

    @property
    def count(self) -> float:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0.0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((_le(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() and bound >= 1 else repr(float(bound))


@dataclass(frozen=True)
class Resource:
    """A process's OTel resource, as the collector sees it."""

    job: str
    instance: str | None  # service.instance.id (the pod name); the API sets none
    attributes: tuple[tuple[str, str], ...] = ()  # everything else: only reaches target_info


@dataclass
class Meter:
    """The series one process has recorded since it started (cumulative temporality)."""

    resource: Resource
    started: float  # sim time the process started: pushes happen at started + k x PUSH_INTERVAL
    counters: dict[tuple[Instrument, Labels], float] = field(default_factory=dict)
    gauges: dict[tuple[Instrument, Labels], float] = field(default_factory=dict)
    histograms: dict[tuple[Instrument, Labels], Histogram] = field(default_factory=dict)
    pushed: int = 0  # pushes done

    def add(self, instrument: Instrument, labels: Labels, value: float) -> None:
        """A counter increment; a zero or negative increment records nothing (no series appears)."""
        if value > 0:
            key = (instrument, labels)
            self.counters[key] = self.counters.get(key, 0.0) + value

    def set(self, instrument: Instrument, labels: Labels, value: float) -> None:
        self.gauges[(instrument, labels)] = value

    def observe(self, instrument: Instrument, labels: Labels, value: float, count: float = 1.0) -> None:
        if count <= 0:
            return
        key = (instrument, labels)
        hist = self.histograms.get(key)
        if hist is None:
            hist = self.histograms[key] = Histogram(instrument.buckets)
        hist.observe(value, count)

    def counter(self, instrument: Instrument, labels: Labels) -> float:
        return self.counters.get((instrument, labels), 0.0)

    def next_push(self) -> float:
        return self.started + (self.pushed + 1) * PUSH_INTERVAL


@dataclass
class _Point:
    value: float | Histogram
    updated: float  # sim time of the push that carried it


class Collector:
    """The chart's OTel collector: last pushed value of every series, expiring 5 min after its
    last update, exposed under ``<namespace>_`` in one of the two naming styles."""

    def __init__(self, expiration: float = METRIC_EXPIRATION) -> None:
        self.expiration = expiration
        self.points: dict[tuple[Instrument, Resource, Labels], _Point] = {}
        self.targets: dict[Resource, float] = {}  # resource -> last push (for target_info)

    def push(self, meter: Meter, t: float) -> None:
        """One export of ``meter`` at sim time ``t``: every series it has recorded, as it is now."""
        resource = meter.resource
        for (instrument, labels), value in meter.counters.items():
            self.points[(instrument, resource, labels)] = _Point(value, t)
        for (instrument, labels), value in meter.gauges.items():
            self.points[(instrument, resource, labels)] = _Point(value, t)
        for (instrument, labels), hist in meter.histograms.items():
            self.points[(instrument, resource, labels)] = _Point(hist.copy(), t)
        self.targets[resource] = t
        meter.pushed += 1

    def push_due(self, meter: Meter, until: float) -> None:
        """The pushes of ``meter`` due up to sim time ``until`` (values as they are now: callers
        push at least once per model step)."""
        while meter.next_push() <= until + 1e-9:
            self.push(meter, meter.next_push())

    def expire(self, now: float) -> None:
        horizon = now - self.expiration
        for key in [k for k, p in self.points.items() if p.updated < horizon]:
            del self.points[key]
        for resource in [r for r, t in self.targets.items() if t < horizon]:
            del self.targets[resource]

    def families(self, namespace: str, naming: str, scale: float = 1.0) -> Iterator[Metric]:
        """The exposition: one family per instrument that has series, plus ``target_info``."""
        by_instrument: dict[Instrument, list[tuple[Resource, Labels, _Point]]] = {}
        for (instrument, resource, labels), point in self.points.items():
            by_instrument.setdefault(instrument, []).append((resource, labels, point))
        for instrument, rows in by_instrument.items():
            yield _family(instrument, rows, namespace, naming, scale)
        if self.targets:
            info = GaugeMetricFamily(f"{namespace}_target_info" if namespace else "target_info", "Target metadata",
                                     labels=_TARGET_LABELS)
            for resource in self.targets:
                attrs = dict(resource.attributes)
                info.add_metric((resource.job, resource.instance or "", attrs.get("pipeline_id", ""),
                                 attrs.get("service_version", "")), 1.0)
            yield _without_empty_labels(info)


_TARGET_LABELS = ("job", "instance", "pipeline_id", "service_version")


def _family(instrument: Instrument, rows: list[tuple[Resource, Labels, _Point]], namespace: str, naming: str,
            scale: float) -> Metric:
    name = instrument.exposed(namespace, naming)
    labels = (*instrument.labels, "job", "instance")
    if instrument.kind == "counter":
        family: Metric = CounterMetricFamily(name, instrument.help, labels=labels)
        for resource, values, point in rows:
            family.add_metric((*values, resource.job, resource.instance or ""), float(point.value) * scale)
    elif instrument.kind == "gauge":
        family = GaugeMetricFamily(name, instrument.help, labels=labels)
        for resource, values, point in rows:
            family.add_metric((*values, resource.job, resource.instance or ""), float(point.value))
    else:
        family = HistogramMetricFamily(name, instrument.help, labels=labels)
        for resource, values, point in rows:
            hist = point.value
            assert isinstance(hist, Histogram)
            family.add_metric((*values, resource.job, resource.instance or ""),
                              [(le, v * scale) for le, v in hist.cumulative()], hist.total * scale)
    return _without_empty_labels(family)


def _without_empty_labels(family: Metric) -> Metric:
    """An empty label value is an absent label in Prometheus (the API's series carry no instance)."""
    for sample in family.samples:
        for key in [k for k, v in sample.labels.items() if v == ""]:
            del sample.labels[key]
    return family
