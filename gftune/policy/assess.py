"""The facts of a verdict, filled in one place: which stage is the bottleneck, how loaded it is, what
the change is predicted to give, how long the backlog takes to drain (:class:`Assessment`).

Everything here is read from what the proposal itself came from (the sizing of ``scale_to_fit``,
or the same signal readings), never re-derived from the text of notes. Where a number cannot be
known from the metrics, its :class:`Figure` says *not established* and why, and the verdict says
so instead of guessing. This module is the one to adapt when the signals change (issue 10); the
structure is documented for that in docs/plan.md ("The verdict").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol

from gftune.plan.assessment import NO_BACKLOG, Assessment, Figure
from gftune.plan.evidence import FieldChange
from gftune.policy import saturation, sizing
from gftune.policy.signals import SignalReading

RATE = "records/s"


class Readings(Protocol):
    """What the assessment reads: a policy :class:`~gftune.policy.engine.MetricsView`."""

    def reading(self, name: str) -> SignalReading: ...


def stage_of_path(path: str) -> str | None:
    """The stage a field belongs to: ``resources.sink.replicas`` and ``sink.max_batch_size`` → sink."""
    head = path.split(".", 2)
    if head[0] == "resources" and len(head) > 1:
        name = head[1].split("[", 1)[0]
        return {"sources": "ingestor", "transform": "transform", "sink": "sink", "join": "join"}.get(name)
    return {"sink": "sink", "transforms": "transform", "join": "join", "sources": "ingestor"}.get(
        head[0].split("[", 1)[0])


def _value(view: Readings, name: str) -> float | None:
    reading = view.reading(name)
    return reading.value if reading.known else None


def backlog(view: Readings) -> Figure:
    """Records waiting: Kafka consumer lag plus the NATS stream's depth (what is known of them)."""
    lag, depth = _value(view, "consumer_lag"), _value(view, "stream_depth")
    if lag is None and depth is None:
        return Figure.unknown("neither the Kafka lag nor the NATS stream depth was read", "records")
    basis = ("Kafka lag + NATS stream depth" if lag is not None and depth is not None else
             "NATS stream depth only (no Kafka lag reading)" if lag is None else "Kafka lag only (no stream depth)")
    return Figure((lag or 0.0) + (depth or 0.0), "records", basis)


def drain_time(queued: Figure, arriving: float | None, predicted: Figure, restart_s: float) -> Figure:
    """Seconds until the backlog is gone after the change: the backlog, plus what arrives during the
    restart, worked off by what the pipeline carries beyond its input."""
    if not queued.known or not queued.value:
        return Figure.unknown(NO_BACKLOG, "s")
    if not predicted.known or arriving is None:
        return Figure.unknown("the capacity after the change is not established", "s")
    surplus = float(predicted.value) - arriving  # type: ignore[arg-type]
    if surplus <= 0:
        return Figure.unknown("the backlog does not shrink at the predicted capacity", "s")
    return Figure((float(queued.value) + arriving * restart_s) / surplus, "s", "backlog / capacity beyond the input")


# --- proposals sized by scale_to_fit ------------------------------------------------------------------------

def _selectivities(inp: sizing.SizingInput) -> list[float]:
    """The selectivity of the stages before each stage (records reaching it per input record)."""
    out, selectivity = [], 1.0
    for stage in inp.stages:
        out.append(selectivity)
        if stage.stage != "sink":
            selectivity *= stage.selectivity
    return out


def _arrivals(inp: sizing.SizingInput) -> list[float]:
    """Records/s reaching each stage: the input times the selectivity of the stages before it."""
    return [inp.source_rate * s for s in _selectivities(inp)]


def _kept_capacity(decision: sizing.StageDecision, changes: Sequence[FieldChange]) -> tuple[float | None, str]:
    """The stage's capacity with the replicas the proposal really sets (the guards or the policy's
    bounds may have clamped the sized count; capacity is linear in replicas at a given batch/CPU)."""
    if not decision.changed:
        return decision.capacity_now, ""
    replicas = [c.new for c in changes if stage_of_path(c.path) == decision.stage and c.path.endswith(".replicas")]
    kept = replicas[0] if replicas and isinstance(replicas[0], int) else decision.replicas_from
    other = [c for c in changes if stage_of_path(c.path) == decision.stage and not c.path.endswith(".replicas")]
    sized_other = (decision.cpu_to != decision.cpu_from) or (decision.batch_to != decision.batch_from)
    if sized_other and not other:
        return None, f"the sized {decision.stage} CPU or batch was not kept by the guards"
    if decision.capacity_after is None or not decision.replicas_to:
        return None, f"the {decision.stage}'s capacity after the change is not established"
    return decision.capacity_after * kept / decision.replicas_to, ""


def from_sizing(inp: sizing.SizingInput, result: sizing.SizingResult, changes: Sequence[FieldChange],
                view: Readings, *, applied: Iterable[str]) -> Assessment:
    """The assessment of a ``scale_to_fit`` proposal (or of an escalation it ended in)."""
    applied = set(applied)
    rows = list(zip(inp.stages, result.decisions, _arrivals(inp), strict=True))
    loaded = [(arriving / d.capacity_now, d, arriving) for _, d, arriving in rows if d.capacity_now]
    if loaded:
        _, worst, arriving = max(loaded, key=lambda row: row[0])
        stage = worst.stage
        capacity = Figure(worst.capacity_now, RATE, worst.estimator)
        arriving_figure = Figure(arriving, RATE, "Kafka input (read + lag growth) x upstream selectivity")
    else:
        stage = next((stage_of_path(c.path) for c in changes), None)
        capacity = Figure.unknown("no stage's capacity is established: no backlog saturates a stage, and no "
                                  "busy time bounds one", RATE)
        arriving_figure = Figure(inp.source_rate, RATE, "Kafka input (read + lag growth)")
    predicted, limited_by, missing = math.inf, None, []
    for (state, decision, _), selectivity in zip(rows, _selectivities(inp), strict=True):
        cap, why = _kept_capacity(decision, changes) if decision.stage in applied else (decision.capacity_now, "")
        if cap is None:
            missing.append(why or f"the {decision.stage}'s capacity is not established")
            continue
        carries = cap / selectivity if selectivity > 0 else math.inf
        if carries < predicted:
            predicted, limited_by = carries, state.stage
    if math.isfinite(predicted):
        basis = "sizing model" + (f"; {', '.join(missing)}" if missing else "")
        predicted_figure = Figure(predicted, RATE, basis)
    else:
        predicted_figure = Figure.unknown("; ".join(missing) or "no stage's capacity is established", RATE)
    queued = backlog(view)
    return Assessment(stage=stage, capacity=capacity, arriving=arriving_figure, backlog=queued,
                      predicted=predicted_figure, limited_by=limited_by,
                      drain=drain_time(queued, inp.source_rate, predicted_figure, inp.restart_s))


def capped(inp: sizing.SizingInput, result: sizing.SizingResult, view: Readings) -> Assessment:
    """An escalation from ``scale_to_fit``: the stage that needs more than any allowed change gives."""
    base = from_sizing(inp, result, (), view, applied=())
    decision = next((d for d in result.decisions if d.capped and d.needed and d.needed > d.replicas_to), None)
    if decision is None:
        return base
    if "partitions" in decision.capped:
        needs = f"more Kafka partitions (at least {decision.needed})"
    elif decision.stage == "transform":
        needs = f"{decision.needed} transform replicas, which dedup allows only on a new pipeline (a recreate)"
    else:
        needs = f"{decision.needed} {decision.stage} replicas"
    index = next(i for i, d in enumerate(result.decisions) if d is decision)
    arriving = _arrivals(inp)[index]
    return Assessment(stage=decision.stage, capacity=Figure(decision.capacity_after, RATE, decision.estimator),
                      arriving=Figure(arriving, RATE, "Kafka input (read + lag growth) x upstream selectivity"),
                      backlog=base.backlog, predicted=Figure.unknown(f"no allowed change: {decision.capped}", RATE),
                      drain=Figure.unknown("no allowed change", "s"), needs=needs, blocked_by=decision.capped)


# --- proposals of set / multiply / add, and escalations ------------------------------------------------------

def _saturated_capacity(stage: str | None, view: Readings) -> Figure:
    """A stage's capacity is observable only while it is saturated: then what it processes is what it can."""
    if stage == "sink":
        found = saturation.sink_saturation(view, "", batch=None, sink_replicas=1)
        if not found.saturated:
            return Figure.unknown(f"the sink is not seen saturated ({found.evidence}), so its rate shows its input, "
                                  "not what it can do", RATE)
        capacity = _value(view, "sink_capacity")
        if capacity is None:
            return Figure.unknown(f"the sink is saturated ({found.evidence}) but its per-replica write rates were "
                                  "not read", RATE)
        return Figure(capacity, RATE, f"observed while saturated: {found.evidence}")
    if stage == "ingestor":
        growth, backpressure, rate = (_value(view, "consumer_lag_growth"), _value(view, "ingestor_backpressure"),
                                      _value(view, "source_rate"))
        if growth is not None and growth > 0 and backpressure is not None and backpressure < 1 and rate is not None:
            return Figure(rate, RATE, "observed while Kafka lag grows without backpressure")
        if growth is None:
            return Figure.unknown("whether the ingestor keeps up with its topic needs the Kafka lag (kafka_exporter)",
                                  RATE)
    if stage is None:
        return Figure.unknown("the change is not tied to one stage", RATE)
    return Figure.unknown(f"the {stage} is not seen saturated, so its rate shows its input, not what it can do",
                          RATE)


def _arriving(stage: str | None, view: Readings) -> Figure:
    kafka = _value(view, "kafka_input_rate")
    if kafka is None:
        read, growth = _value(view, "source_rate"), _value(view, "consumer_lag_growth")
        kafka = read + max(0.0, growth) if read is not None and growth is not None else None
    if kafka is None:
        return Figure.unknown("the Kafka input rate is not known (no read rate or lag growth)", RATE)
    selectivity = _value(view, "transform_selectivity") if stage == "sink" else None
    if selectivity is not None:
        return Figure(kafka * selectivity, RATE, "Kafka input x transform selectivity")
    return Figure(kafka, RATE, "Kafka input (read + lag growth)")


def from_readings(changes: Sequence[FieldChange], view: Readings) -> Assessment:
    """The assessment of a ``set``/``multiply``/``add`` proposal: the stage it changes, read from the
    same signals; no capacity model predicts such a change, so the verify expectations stand in."""
    stages = [s for s in (stage_of_path(c.path) for c in changes) if s]
    stage = max(set(stages), key=stages.count) if stages else None
    queued = backlog(view)
    return Assessment(stage=stage, capacity=_saturated_capacity(stage, view), arriving=_arriving(stage, view),
                      backlog=queued, predicted=Figure.unknown("no capacity model for this change", RATE),
                      drain=Figure.unknown(NO_BACKLOG if not queued.value else "no capacity model for this change",
                                           "s"))


def blocked(changes_blocked: Sequence[tuple[str, str]], view: Readings) -> Assessment:
    """An escalation because guards block every change (``(path, reason)`` pairs)."""
    path, reason = changes_blocked[0] if changes_blocked else ("", "a guard")
    stage = stage_of_path(path)
    return Assessment(stage=stage, capacity=_saturated_capacity(stage, view), arriving=_arriving(stage, view),
                      backlog=backlog(view), predicted=Figure.unknown("no allowed change", RATE),
                      drain=Figure.unknown("no allowed change", "s"), needs=f"a change of {path}", blocked_by=reason)


def out_of_scope(view: Readings) -> Assessment:
    """An escalating policy's symptom (permanent errors, rows rejected after INSERT errors): not about capacity."""
    return Assessment(stage=None, backlog=backlog(view), blocked_by="not a capacity problem: no replica, batch or "
                      "CPU change addresses it")
