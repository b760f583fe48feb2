"""Which metric names a GlassFlow installation exposes: namespace and naming mode.

GlassFlow's processes push OTel metrics to the Helm chart's OTel collector, which re-exposes them
as ``<namespace>_gfm_<name>`` (reference §5.1). Two naming modes are seen in the wild:

* ``documented``: the names of the GlassFlow docs (``gfm_ingestor_backpressure_active``,
  ``gfm_stream_depth``, ``gfm_stream_depth_ratio``);
* ``collector``: the collector's normalised names (reference §5.4): gauges with unit ``"1"`` get
  ``_ratio`` and the ``"1/s"`` ratio gauge gets ``_per_second``. So ``gfm_stream_depth_ratio`` is the
  *absolute* depth there, and the real ratio is ``gfm_stream_depth_ratio_per_second``.

Counters and histograms are named the same in both modes. :func:`detect` looks at the names a
source actually has, so users never have to know which one they run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DOCUMENTED = "documented"
COLLECTOR = "collector"
AUTO = "auto"
MODES = (DOCUMENTED, COLLECTOR)
DEFAULT_NAMESPACE = "glassflow"

# Logical (documented) gauge name -> the collector's name for it.
_COLLECTOR_NAMES = {
    "ingestor_backpressure_active": "ingestor_backpressure_active_ratio",
    "component_backpressure_active": "component_backpressure_active_ratio",
    "stream_depth": "stream_depth_ratio",
    "stream_depth_ratio": "stream_depth_ratio_per_second",
}
# Names that exist in one mode only, so their presence tells the mode.
_MARKERS = {
    DOCUMENTED: ("ingestor_backpressure_active", "component_backpressure_active", "stream_depth"),
    COLLECTOR: ("ingestor_backpressure_active_ratio", "component_backpressure_active_ratio",
                "stream_depth_ratio_per_second"),
}
_GFM = re.compile(r"^(?:(?P<ns>[a-zA-Z_:][a-zA-Z0-9_:]*)_)?gfm_(?P<name>[a-zA-Z0-9_:]+)$")


# The ClickHouse server's own Prometheus endpoint (``<prometheus>`` in its config) names every
# ProfileEvent ``ClickHouseProfileEvents_<Event>`` (src/Server/PrometheusMetricsWriter.cpp).
CLICKHOUSE_EVENTS = "ClickHouseProfileEvents_"
CLICKHOUSE_NOT_CONFIGURED = ("needs the ClickHouse server's metrics (metrics.clickhouse in gftune.yaml: match "
                             "labels for Prometheus, or the server's /metrics URL to scrape), which are not "
                             "configured")


@dataclass(frozen=True)
class Naming:
    """How logical GlassFlow metric names map to the names a source exposes."""

    namespace: str = DEFAULT_NAMESPACE
    mode: str = DOCUMENTED
    detail: str = ""  # how this was decided, for notes and ``--verbose`` output
    # Label matchers that pick the ClickHouse server's series out of a Prometheus (e.g. job), or
    # None when no ClickHouse metrics are configured: the signals built on them are unknown.
    clickhouse: tuple[tuple[str, str, str], ...] | None = ()

    def metric(self, logical: str) -> str:
        """The exposed name of a logical ``gfm`` metric (``kafka_records_read_total`` ->
        ``glassflow_gfm_kafka_records_read_total``)."""
        name = _COLLECTOR_NAMES.get(logical, logical) if self.mode == COLLECTOR else logical
        prefix = f"{self.namespace}_" if self.namespace else ""
        return f"{prefix}gfm_{name}"


def split_name(name: str) -> tuple[str, str] | None:
    """``glassflow_gfm_stream_depth`` -> ``("glassflow", "stream_depth")``; None for other names."""
    match = _GFM.match(name)
    if not match:
        return None
    return match.group("ns") or "", match.group("name")


def detect(names: Iterable[str], *, namespace: str = DEFAULT_NAMESPACE, mode: str = AUTO,
           clickhouse: tuple[tuple[str, str, str], ...] | None = None) -> Naming:
    """Decide namespace and mode from the metric names a source has.

    The configured namespace wins when it has series; if it has none and exactly one other
    namespace has ``gfm`` series, that one is used (and said so). ``mode`` other than ``auto``
    is taken as given. ``clickhouse``: the matchers of the ClickHouse server's series, or None when
    they are not configured (the ClickHouse signals are unknown then).
    """
    by_namespace: dict[str, set[str]] = {}
    for name in names:
        parts = split_name(name)
        if parts:
            by_namespace.setdefault(parts[0], set()).add(parts[1])
    details: list[str] = []
    chosen = namespace
    if namespace not in by_namespace:
        others = sorted(by_namespace)
        if len(others) == 1:
            chosen = others[0]
            details.append(f"no metrics under namespace {namespace!r}; using {chosen!r}, "
                           "the only GlassFlow namespace the source has")
        elif others:
            details.append(f"no metrics under namespace {namespace!r}; the source has "
                           f"{', '.join(repr(o) for o in others)} (set metric_namespace)")
        else:
            details.append("the source has no GlassFlow (gfm_) metrics")
    present = by_namespace.get(chosen, set())
    if mode in MODES:
        details.append(f"naming {mode} (configured)")
        return Naming(chosen, mode, "; ".join(details), clickhouse)
    documented = any(m in present for m in _MARKERS[DOCUMENTED])
    collector = any(m in present for m in _MARKERS[COLLECTOR])
    if not documented and not collector and "stream_depth_ratio" in present:
        # The backpressure gauges do not exist before the first episode, and the ratio gauge not
        # without MaxMsgs; the depth count always comes with any sampled stream. It is
        # "stream_depth" in the documented style, so a "stream_depth_ratio" without it is the
        # collector's name for the count.
        collector = True
    if collector and not documented:
        chosen_mode = COLLECTOR
        details.append("naming collector (detected: gauges carry _ratio/_per_second suffixes)")
    elif documented and not collector:
        chosen_mode = DOCUMENTED
        details.append("naming documented (detected)")
    elif documented and collector:
        chosen_mode = DOCUMENTED
        details.append("both naming modes present; using documented (set metric_naming to choose)")
    else:
        chosen_mode = DOCUMENTED
        if present:
            details.append("naming undetermined (no backpressure or depth gauges yet); assuming documented")
    return Naming(chosen, chosen_mode, "; ".join(details), clickhouse)
