"""The seed's manual procedure: GlassFlow's ``tune-pipeline`` skill, followed by an operator.

Every 5 minutes the operator reads the skill's baseline queries over a 5-minute window (source and
sink rates, backpressure, stream depth, sink batch p95, retries; plus the Kafka lag a user's
kafka_exporter shows). The first matching row of the skill's symptom table picks **one knob**:

* backpressure: the ingestor's backpressure sustained (at least half the window) or the stream
  deeper than 0.8 of maxMsgs -> sink replicas +1 (the slowest downstream component, "often sink
  replicas");
* ingestor lag: the Kafka lag growing (by more than 1% of the read rate) without backpressure ->
  ingestor replicas +1 while below the partitions, else nothing (a Kafka-side change);
* batch-bound: the sink rate below 0.9 x the source rate and the batch p95 at 95% of
  max_batch_size or more -> max_batch_size x4 (the skill's 5000 -> 20000);
* retries: ``sink_retries_total{outcome="retry"}`` above 0 -> sink replicas +1;
* exhausted: ``sink_retries_total{outcome="exhausted"}`` above 0 -> nothing: out of tuning scope.

It applies the knob (stop -> PUT /resources or /edit -> Running), waits 5 minutes after Running
("so the rate windows refill"), re-reads the same queries and judges the row's own metric: improved
(accept), or not (revert the change — another restart — and never try that knob for that row
again). The skill has no row for slack: it never scales down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.baselines.loop import Context, every
from benchmarks.baselines.user import LiveConfig, Readings

Json = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    period_s: float = 300.0  # how often the operator looks when nothing is being verified
    window_s: float = 300.0  # the skill's rate()[5m]
    verify_wait_s: float = 300.0  # "wait at least 5 minutes after the pipeline returns to Running"
    improvement: float = 0.10  # what counts as improved for a rate
    max_replicas: int = 10


@dataclass(frozen=True)
class Row:
    name: str
    knob: str  # the field path it changes, or "" when it is out of tuning scope


@dataclass
class Notebook:
    """What the operator remembers: knobs that did not help, per row."""

    failed: set[tuple[str, str]] = field(default_factory=set)


def diagnose(r: Readings, config: LiveConfig, settings: Settings) -> Row | None:
    """The first row of the symptom table the readings match (None: do not guess)."""
    sid = config.source_id
    length = config.max_msgs if config.max_msgs != float("inf") else None
    depth_ratio = (r.depth / length) if (r.depth is not None and length) else None
    if (r.backpressure or 0.0) >= 0.5 or (depth_ratio or 0.0) > 0.8:
        return Row("backpressure", "resources.sink.replicas")
    read = r.read_rate or 0.0
    if (r.lag_growth or 0.0) > 0.01 * max(read, 1.0):
        partitions = r.partitions if r.partitions else float("inf")
        if config.ingestor_replicas < min(partitions, settings.max_replicas):
            return Row("ingestor lag", f"resources.sources[{sid}].replicas")
        return Row("ingestor lag", "")
    if r.sink_rate is not None and read > 0 and r.sink_rate < 0.9 * read and r.batch_p95 is not None \
            and r.batch_p95 >= 0.95 * config.max_batch_size:
        return Row("batch-bound", "sink.max_batch_size")
    if (r.retry_rate or 0.0) > 0:
        return Row("retries", "resources.sink.replicas")
    if (r.exhausted_rate or 0.0) > 0:
        return Row("exhausted", "")
    return None


def turn(knob: str, config: LiveConfig) -> tuple[Any, Any]:
    """(old value, new value) of one knob."""
    if knob == "resources.sink.replicas":
        return config.sink_replicas, config.sink_replicas + 1
    if knob.endswith(".replicas"):
        return config.ingestor_replicas, config.ingestor_replicas + 1
    if knob == "sink.max_batch_size":
        return config.max_batch_size, config.max_batch_size * 4
    raise ValueError(f"no rule for {knob}")


def improved(row: Row, before: Readings, after: Readings, settings: Settings) -> bool:
    """The row's own symptom metric, before vs after (the skill's verdict)."""
    gain = 1.0 + settings.improvement

    def up(a: float | None, b: float | None) -> bool:
        return a is not None and b is not None and b >= gain * a

    if row.name == "backpressure":
        return (after.backpressure or 0.0) < 0.5 * max(before.backpressure or 0.0, 1e-9) \
            or up(before.sink_rate, after.sink_rate)
    if row.name == "ingestor lag":
        return (after.lag_growth or 0.0) <= 0.0 or up(before.read_rate, after.read_rate)
    if row.name == "batch-bound":
        return up(before.sink_rate, after.sink_rate)
    if row.name == "retries":
        return (after.retry_rate or 0.0) < 0.5 * (before.retry_rate or 0.0)
    return False


def run(ctx: Context, settings: Settings = Settings()) -> None:
    notebook = Notebook()

    def tick() -> None:
        config = ctx.api.config()
        before = ctx.prom.readings(ctx.now(), settings.window_s)
        row = diagnose(before, config, settings)
        if row is None or not row.knob or (row.name, row.knob) in notebook.failed:
            return
        old, new = turn(row.knob, config)
        ctx.change({row.knob: new}, f"row '{row.name}': {row.knob} {old} -> {new}")
        ctx.sleep(settings.verify_wait_s)
        after = ctx.prom.readings(ctx.now(), settings.window_s)
        verdict = improved(row, before, after, settings)
        ctx.events.append({"kind": "verdict", "t": ctx.now(), "row": row.name, "knob": row.knob,
                           "verdict": "improved" if verdict else "no change"})
        ctx.say(f"verdict for {row.knob}: {'improved' if verdict else 'not improved'}")
        if not verdict:
            notebook.failed.add((row.name, row.knob))
            ctx.change({row.knob: old}, f"revert {row.knob}: it did not help")

    every(ctx, settings.period_s, tick)
