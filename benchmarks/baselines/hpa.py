"""An HPA-style proportional rule, one per deployment, as the Kubernetes HPA runs it on the metrics
KEDA would feed it (kubernetes/website ``horizontal-pod-autoscale.md``; kedacore Kafka and NATS
JetStream scalers).

GlassFlow exposes no CPU or busy time for the sink, so the HPA's default CPU target is not
available; a GlassFlow user wires it to the backlogs instead:

* ingestor: Kafka consumer lag in seconds of reading (lag ÷ read rate, Little's law), target 20 s —
  a KEDA ``lagThreshold`` expressed as time, the same target Numaflow uses by default;
* sink: its NATS stream's fill (depth ÷ ``maxMsgs``), target 0.5 — the JetStream scaler's pending
  messages as a share of the stream, Numaflow's default target buffer availability.

Each sync period (15 s): ``desired = ceil(current × metric / target)``, nothing when the ratio is
within the tolerance (0.1); scale-down takes the highest recommendation of the last 300 s (the
stabilisation window); scale-up at most +100% or +4 pods per period, whichever is more; 1..10
replicas, the ingestor also capped at the topic's partitions (KEDA's Kafka scaler does). A metric
that cannot be computed leaves its deployment alone. Every change is one stop -> PUT /resources ->
resume cycle of the whole pipeline (GlassFlow's operator owns the deployments).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from benchmarks.baselines.loop import Context, every
from benchmarks.baselines.user import LiveConfig, Readings


@dataclass(frozen=True)
class Settings:
    period_s: float = 15.0  # --horizontal-pod-autoscaler-sync-period
    tolerance: float = 0.1
    stabilisation_s: float = 300.0  # behavior.scaleDown.stabilizationWindowSeconds
    up_percent: float = 100.0  # behavior.scaleUp: +100% ...
    up_pods: int = 4  # ... or +4 pods per period, whichever is more
    min_replicas: int = 1
    max_replicas: int = 10
    target_lag_s: float = 20.0
    target_fill: float = 0.5
    window_s: float = 60.0  # rate window of the metric queries


@dataclass
class Deployment:
    """One HPA's memory: its recent recommendations (for the scale-down stabilisation window)."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)


def recommend(current: int, metric: float, target: float, tolerance: float) -> int:
    """The HPA formula: the current count when within tolerance, else ceil(current × metric/target)."""
    ratio = metric / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    return math.ceil(current * ratio)


def next_replicas(current: int, metric: float | None, target: float, now: float, memory: Deployment,
                  settings: Settings, cap: int) -> int:
    """One sync period of one HPA: the replica count it sets."""
    if metric is None or not math.isfinite(metric):
        return current
    upper = max(settings.min_replicas, min(settings.max_replicas, cap))
    wanted = min(upper, max(settings.min_replicas, recommend(current, metric, target, settings.tolerance)))
    memory.recommendations = [(t, r) for t, r in memory.recommendations if now - t < settings.stabilisation_s]
    memory.recommendations.append((now, wanted))
    if wanted < current:
        return min(current, max(r for _, r in memory.recommendations))
    if wanted > current:
        limit = max(math.ceil(current * (1 + settings.up_percent / 100)), current + settings.up_pods)
        return min(wanted, limit)
    return current


def metrics(readings: Readings, config: LiveConfig) -> tuple[float | None, float | None]:
    """(ingestor metric: Kafka lag in seconds of reading, sink metric: stream fill 0..1)."""
    lag_s = None
    if readings.lag is not None and readings.read_rate:
        lag_s = readings.lag / readings.read_rate
    length = config.max_msgs if math.isfinite(config.max_msgs) else 8 * config.max_batch_size
    fill = readings.depth / length if readings.depth is not None else None
    return lag_s, fill


def run(ctx: Context, settings: Settings = Settings()) -> None:
    ingestor, sink = Deployment(), Deployment()

    def tick() -> None:
        config = ctx.api.config()
        readings = ctx.prom.readings(ctx.now(), settings.window_s)
        lag_s, fill = metrics(readings, config)
        partitions = int(readings.partitions) if readings.partitions else settings.max_replicas
        now = ctx.now()
        new_ingestor = next_replicas(config.ingestor_replicas, lag_s, settings.target_lag_s, now, ingestor,
                                     settings, partitions)
        new_sink = next_replicas(config.sink_replicas, fill, settings.target_fill, now, sink, settings,
                                 settings.max_replicas)
        changes = {}
        if new_ingestor != config.ingestor_replicas:
            changes[f"resources.sources[{config.source_id}].replicas"] = new_ingestor
        if new_sink != config.sink_replicas:
            changes["resources.sink.replicas"] = new_sink
        if changes:
            ctx.change(changes, f"lag {_fmt(lag_s)} s (target {settings.target_lag_s:g}), stream fill "
                                f"{_fmt(fill)} (target {settings.target_fill:g})")

    every(ctx, settings.period_s, tick)


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}"
