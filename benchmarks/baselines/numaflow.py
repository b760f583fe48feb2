"""Numaflow's autoscaler rule (numaproj/numaflow ``pkg/reconciler/vertex/scaling/scaling.go``,
``docs/user-guide/reference/autoscaling.md``), with GlassFlow's ingestor as the source vertex and
its sink as the vertex reading the NATS stream.

Every 30 s, per vertex, from averages over the lookback window (pending and rate, as Numaflow's
daemon averages them):

* source: ``desired = round(pending / rate / targetProcessingSeconds × replicas)`` with pending the
  Kafka lag and rate the read rate;
* buffer reader (the sink): the stream counts as ``maxMsgs × bufferUsageLimit`` long; pending (the
  stream's depth, acks pending included, as Numaflow counts it) at or above that adds
  ``replicasPerScale``; otherwise each replica is credited with its share of the free room and
  ``desired = round(targetAvailable / ((length − pending) / replicas))`` with ``targetAvailable``
  the target buffer availability of ``maxMsgs``;
* at least 1 and at most the pending count; both pending and rate zero would be 0 (min 1 here);
* the step is at most ``replicasPerScale`` (2) either way, after the vertex's own cooldown (90 s
  each way); a scale-up is vetoed when the buffer the vertex writes to is backpressured
  (pending ≥ 0.9 of its length): the vertex gives up one replica instead, or holds at 1.

Defaults: targetProcessingSeconds 20, targetBufferAvailability 50%, bufferUsageLimit 80%,
replicasPerScale 2, cooldowns 90 s, lookback 120 s, max 10 here (gftune's guard; Numaflow's is 50).
GlassFlow has one replica count per deployment and a change restarts the pipeline: one stop ->
PUT /resources -> resume cycle per tick that changes anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.baselines.loop import Context, every
from benchmarks.baselines.user import LiveConfig, Readings


@dataclass(frozen=True)
class Settings:
    period_s: float = 30.0  # taskInterval
    lookback_s: float = 120.0
    target_processing_s: float = 20.0
    target_buffer_availability: float = 0.5
    buffer_usage_limit: float = 0.8
    backpressure_threshold: float = 0.9
    replicas_per_scale: int = 2
    cooldown_up_s: float = 90.0
    cooldown_down_s: float = 90.0
    min_replicas: int = 1
    max_replicas: int = 10


def desired_source(current: int, pending: float | None, rate: float | None, settings: Settings) -> int | None:
    if pending is None or rate is None:
        return None  # "rate or pending not available": no scaling
    if pending <= 0 and rate <= 0:
        return 0
    if pending <= 0 or rate <= 0:
        return 1
    desired = round(pending / rate / settings.target_processing_s * current)
    return int(min(max(desired, 1), pending))


def desired_reader(current: int, pending: float | None, rate: float | None, max_msgs: float,
                   settings: Settings) -> int | None:
    if pending is None or rate is None:
        return None
    if pending <= 0 and rate <= 0:
        return 0
    if pending <= 0 or rate <= 0:
        return 1
    length = max_msgs * settings.buffer_usage_limit
    if pending >= length:
        desired = current + settings.replicas_per_scale
    else:
        per_replica_room = (length - pending) / current
        desired = round(max_msgs * settings.target_buffer_availability / per_replica_room)
    return int(min(max(desired, 1), pending))


def backpressured(pending: float | None, max_msgs: float, settings: Settings) -> bool:
    if pending is None or not math.isfinite(max_msgs):
        return False
    return pending / (max_msgs * settings.buffer_usage_limit) >= settings.backpressure_threshold


def step(current: int, desired: int | None, since_last_scale: float, pressured_downstream: bool,
         settings: Settings) -> int:
    """The replica count one reconcile sets, from the desired count."""
    if desired is None or (since_last_scale < settings.cooldown_down_s and since_last_scale < settings.cooldown_up_s):
        return current
    desired = max(settings.min_replicas, min(settings.max_replicas, desired))
    if desired < current:
        if since_last_scale < settings.cooldown_down_s:
            return current
        return current - min(current - desired, settings.replicas_per_scale)
    if desired > current:
        if pressured_downstream:
            return current - 1 if current > 1 else current
        if since_last_scale < settings.cooldown_up_s:
            return current
        return current + min(desired - current, settings.replicas_per_scale)
    return current


def decide(config: LiveConfig, readings: Readings, since_ingestor: float, since_sink: float,
           settings: Settings) -> dict[str, int]:
    """Both vertices' new replica counts where they change (gftune field paths)."""
    max_msgs = config.max_msgs if math.isfinite(config.max_msgs) else 8 * config.max_batch_size
    source = desired_source(config.ingestor_replicas, readings.lag_avg, readings.read_rate, settings)
    reader = desired_reader(config.sink_replicas, readings.depth_avg, readings.sink_rate, max_msgs, settings)
    # the ingestor writes to the sink's stream: its scale-ups wait while that stream is backpressured
    new_ingestor = step(config.ingestor_replicas, source, since_ingestor,
                        backpressured(readings.depth_avg, max_msgs, settings), settings)
    new_sink = step(config.sink_replicas, reader, since_sink, False, settings)
    changes = {}
    if new_ingestor != config.ingestor_replicas:
        changes[f"resources.sources[{config.source_id}].replicas"] = new_ingestor
    if new_sink != config.sink_replicas:
        changes["resources.sink.replicas"] = new_sink
    return changes


def run(ctx: Context, settings: Settings = Settings()) -> None:
    last = {"ingestor": -math.inf, "sink": -math.inf}

    def tick() -> None:
        config = ctx.api.config()
        readings = ctx.prom.readings(ctx.now(), settings.lookback_s)
        now = ctx.now()
        changes = decide(config, readings, now - last["ingestor"], now - last["sink"], settings)
        if changes:
            ctx.change(changes, f"lag {_fmt(readings.lag_avg)}, read {_fmt(readings.read_rate)}/s, stream depth "
                                f"{_fmt(readings.depth_avg)}, written {_fmt(readings.sink_rate)}/s (averages)")
            done = ctx.now()
            for path in changes:
                last["sink" if path.startswith("resources.sink") else "ingestor"] = done

    every(ctx, settings.period_s, tick)


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.0f}"
