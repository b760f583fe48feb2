"""``scale_to_fit``: the glue between a policy action and :mod:`gftune.policy.sizing`.

It reads the sizing inputs from the metric view (each one attached to the evidence), asks
:func:`gftune.policy.sizing.size` for every stage at once, and turns the decisions into field changes,
bounded by the action's own replica limits; what a stage needs but may not get becomes a blocker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gftune.desired import paths
from gftune.desired.config import Config
from gftune.formatting import duration
from gftune.formatting import number as fmt
from gftune.glassflow import resources as res
from gftune.glassflow import topology
from gftune.plan.evidence import SIZING_INPUT, Evidence, FieldChange
from gftune.policy import guards, history, saturation, sink_model, sizing
from gftune.policy.actions import expand_path
from gftune.policy.facts import PipelineFacts
from gftune.policy.language import ALL_STAGES, Action, Policy
from gftune.policy.signals import SignalContext
from gftune.policy.views import MetricsView


def _stage_present(stage: str, doc: Mapping[str, Any]) -> bool:
    if stage == "ingestor":
        return bool(res.kafka_sources(dict(doc)))
    if stage == "transform":
        return res.has_transform_component(dict(doc))
    return True


def _sink_producer(facts: PipelineFacts) -> tuple[str, int, str]:
    """The kind of node publishing to the sink's streams (ingestor, dedup, join), its replicas, and
    the sizing stage whose replica count that is ("" when the sizing does not change it)."""
    doc = dict(facts.doc)
    doc.setdefault("pipeline_id", facts.pipeline_id)
    graph = topology.topology(doc)
    inputs = graph.inputs("sink")
    if not inputs:
        return "ingestor", 1, ""
    node = graph.node(inputs[0].producer)
    stage = {"ingestor": "ingestor", "dedup": "transform"}.get(node.kind, "")
    return node.kind, node.replicas, stage


def _replicas(view: MetricsView) -> tuple[sink_model.SinkReplica, ...]:
    """Per-pod sink readings (breakdowns by replica), for the pods that flushed."""
    def by_pod(name: str) -> dict[str, float]:
        reading = view.reading(name)
        return dict(reading.breakdown) if reading.known else {}

    flushes, rows = by_pod("sink_replica_flush_rate"), by_pod("sink_replica_rows")
    written, prepare = by_pod("sink_replica_written"), by_pod("sink_replica_prepare_busy")
    mapping = by_pod("sink_replica_mapping_busy")
    return tuple(sink_model.SinkReplica(pod, flushes[pod], rows[pod], written.get(pod), prepare.get(pod),
                                        mapping.get(pod))
                 for pod in sorted(flushes) if pod in rows and flushes[pod] > 0)


def _past_ingestor_rate(view: MetricsView, facts: PipelineFacts, settings: Config, evidence: list[Evidence],
                        policy: Policy) -> tuple[float | None, str]:
    """The ingestor's capacity per replica measured earlier without backpressure (Prometheus history,
    :mod:`gftune.policy.history`): over the last hour, at most since the pipeline's last change (which
    may have changed the ingestor). (rate, how it was measured), or (None, why not)."""
    lookback = history.HISTORY_S
    if facts.last_change is not None:
        since = (view.at - facts.last_change).total_seconds() * settings.time_scale
        lookback = min(lookback, max(0.0, since))
    if lookback < history.MIN_CLEAN_S:
        return None, (f"the pipeline changed {duration(lookback)} ago: too little history since to measure it "
                      "without backpressure")
    rate = view.recent("ingestor_clean_rate", lookback)
    if not rate.known:
        return None, f"no capacity measured without backpressure in the last {duration(lookback)} ({rate.detail})"
    count = view.recent("ingestor_clean_samples", lookback)
    clean_s = (count.value or 0.0) * history.STEP_S if count.known else 0.0
    if clean_s < history.MIN_CLEAN_S:
        return None, (f"only {duration(clean_s)} without backpressure in the last {duration(lookback)} (at least "
                      f"{duration(history.MIN_CLEAN_S)} needed)")
    how = (f"busy time without backpressure: median of {count.value:.0f} samples, {duration(clean_s)} of the last "
           f"{duration(lookback)}")
    if not any(e.signal == "ingestor_clean_rate" for e in evidence):
        evidence.append(Evidence(policy.name, "ingestor_clean_rate", rate.query, duration(lookback), rate.value,
                                 f"{SIZING_INPUT}: ingestor capacity per replica, {how}", rate.unit,
                                 view.at.isoformat()))
    return rate.value, how


# The recent input counts only when it is clearly above the window's: noise alone does not move it.
RECENT_RISE = 1.1


def _recent_input(view: MetricsView, window_input: float, window_read: float, evidence: list[Evidence],
                  policy: Policy) -> tuple[float, float]:
    """The input the sizing sizes for and the rate read from Kafka: the metrics window's averages, or
    the last two minutes' when the input there is clearly higher (a step within the window;
    :mod:`gftune.policy.history`). The larger input, so a stage is never sized below what arrives
    now; with it the read rate of the same minutes (a saturated ingestor's capacity is what it reads
    since the step, not an average with what it read before)."""
    recent = view.recent("kafka_input_rate_recent", history.RECENT_INPUT_S)
    if not recent.known or recent.value is None or recent.value <= window_input * RECENT_RISE:
        return window_input, window_read
    span = duration(history.RECENT_INPUT_S)
    at = view.at.isoformat()
    evidence.append(Evidence(policy.name, "kafka_input_rate_recent", recent.query, span, recent.value,
                             f"{SIZING_INPUT}: the input over the last {span}, above the metrics window's "
                             f"{fmt(window_input, 'records/s')}: it rose within the window", recent.unit, at))
    read = view.recent("source_rate_recent", history.RECENT_INPUT_S)
    if not read.known or read.value is None:
        return float(recent.value), window_read
    evidence.append(Evidence(policy.name, "source_rate_recent", read.query, span, read.value,
                             f"{SIZING_INPUT}: records read from Kafka over the same {span}", read.unit, at))
    return float(recent.value), float(read.value)


# An ingestor is I/O-bound: below one core it is throttled and its rate follows its CPU limit; above
# one, more CPU does not make it faster (GlassFlow's scaling guide: it scales by replicas).
INGESTOR_CORE = 1.0


def ingestor_cpu_gain(facts: PipelineFacts, earlier: Sequence[FieldChange]) -> float:
    """How much faster each ingestor replica works once ``earlier`` changes of the same change-set
    apply: its CPU limit after over before, each counted up to one core (1.0 when they leave it)."""
    gains = []
    for change in earlier:
        if not (change.path.startswith("resources.sources[") and change.path.endswith(".limits.cpu")):
            continue
        old = guards.to_number(guards.CPU, paths.get(facts.doc, change.path))
        new = guards.to_number(guards.CPU, change.new)
        if old is None or new is None or old <= 0:
            continue
        gains.append(min(new, INGESTOR_CORE) / min(old, INGESTOR_CORE))
    return min(gains) if gains else 1.0


def _sizing_input(action: Action, facts: PipelineFacts, view: MetricsView, settings: Config,
                  evidence: list[Evidence], policy: Policy,
                  ingestor_gain: float = 1.0) -> tuple[sizing.SizingInput | None, str]:
    ctx = SignalContext(facts.pipeline_id, facts.doc)
    at = view.at.isoformat()
    window = duration(settings.metrics_window)

    def read(name: str, why: str) -> float | None:
        reading = view.reading(name)
        if not reading.known:
            return None
        if not any(e.signal == name for e in evidence):
            evidence.append(Evidence(policy.name, name, reading.query, window, reading.value, f"{SIZING_INPUT}: {why}",
                                     reading.unit, at))
        return reading.value

    read_rate = read("source_rate", "input read from Kafka")
    growth = read("consumer_lag_growth", "Kafka lag growth (input the ingestor does not keep up with)")
    if read_rate is None:
        return None, "source_rate is unknown: cannot size without the input rate"
    input_rate = read_rate + max(0.0, growth or 0.0)
    if growth is not None:
        input_rate, recent_read = _recent_input(view, input_rate, read_rate, evidence, policy)
    else:
        recent_read = read_rate
    backlog = (read("consumer_lag", "records waiting in Kafka") or 0.0) + (read("stream_depth", "records in NATS")
                                                                          or 0.0)
    constraints = facts.constraints
    partitions_raw = constraints.get("partitions")
    partitions = int(partitions_raw) if isinstance(partitions_raw, int) else None
    if partitions is None:
        measured = view.reading("kafka_partitions")
        partitions = int(measured.value) if measured.known and measured.value else None
    stages: list[sizing.StageState] = []
    selectivity = read("transform_selectivity", "share of records the transform passes on")
    backpressure = max((v for v in (read("ingestor_backpressure", "ingestor backpressure (0/1)"),
                                    read("backpressure_share", "share of time the ingestors spent in backpressure"))
                        if v is not None), default=None)
    dedup_backpressure = view.reading("dedup_backpressure")
    for stage in ALL_STAGES:
        if not _stage_present(stage, facts.doc):
            continue
        replicas = ctx.replicas(stage) or 1
        frozen, busy, saturated, why = None, None, False, ""
        past: tuple[float | None, str] = (None, "")
        if stage == "transform" and res.dedup_enabled(facts.doc) and facts.exists:
            frozen = "transform replicas are frozen while dedup is on"
        if stage == "ingestor":
            if backpressure is None:
                why = "whether it is in backpressure is unknown"
            elif backpressure > 0:
                why = "it is in backpressure, and its batch time counts the waits"
                rate, how = _past_ingestor_rate(view, facts, settings, evidence, policy)
                if rate is None:
                    why += f"; {how}"
                else:
                    past = (rate, how)
            else:
                busy = read("ingestor_busy", "busy replica-seconds per second of the ingestors (no backpressure)")
                saturated = growth is not None and growth > 0
        elif stage == "transform":
            if dedup_backpressure.known and dedup_backpressure.value == 0:
                busy = read("transform_busy", "stage seconds per second of the dedup pods (no backpressure)")
            else:
                why = "its backpressure is unknown or on: its output, not its work, limits it"
        elif stage == "sink" and any(c.signal == "sink_utilization" for c in policy.when):
            # A policy that established the sink's busy fraction over its duration (the ClickHouse
            # server's INSERT time + GlassFlow's preparation) may size the sink by it when unsaturated.
            busy = read("sink_busy", "busy replica-seconds per second of the sink: preparation + flushes x "
                                     "the ClickHouse server's mean INSERT time")
        stages.append(sizing.StageState(
            stage=stage, replicas=replicas,
            # seen saturated, what it reads since the input rose is its capacity; its busy time is the window's
            processed_rate=(recent_read if saturated else read_rate) if stage == "ingestor" else read(
                {"transform": "transform_rate", "sink": "sink_rate"}[stage], f"records the {stage} processed"),
            busy_rate=busy, selectivity=(selectivity if selectivity is not None and stage == "transform" else 1.0),
            cap_replicas=partitions if stage == "ingestor" else None, frozen=frozen, saturated=saturated,
            past_rate=past[0], past_how=past[1], cpu_gain=ingestor_gain if stage == "ingestor" else 1.0,
            unknown_why=why or ("no busy time, and not seen saturated (Kafka lag growing without backpressure; "
                                "needs kafka_exporter)" if stage == "ingestor" else "")))
    cpu = guards.to_number(guards.CPU, ctx.field("resources.sink.limits.cpu"))
    batch = ctx.field("sink.max_batch_size")
    max_msgs = ctx.field("resources.nats.stream.maxMsgs")
    row_bytes = view.reading("sink_row_bytes")
    producer, producer_replicas, producer_stage = _sink_producer(facts)
    found = saturation.sink_saturation(view, producer, batch=float(batch) if isinstance(batch, int) else None,
                                       sink_replicas=ctx.replicas("sink") or 1)
    if found.saturated:
        for name, why in (("sink_batch_fill", "flush size / max_batch_size (saturation evidence)"),
                          ("sink_replica_flush_rate", "flushes per second of each sink replica: cycle T = 1/F"),
                          ("sink_replica_prepare_busy", "preparation seconds per second of each sink replica"),
                          ("sink_replica_written", "rows each sink replica inserted per second")):
            read(name, why)
    options = action.options
    insert_seconds, insert_share = view.reading("clickhouse_insert_seconds"), view.reading("clickhouse_insert_share")
    sink = sink_model.SinkState(cpu=cpu, batch=batch if isinstance(batch, int) else None,
                                may_change_cpu=bool(options.get("cpu", True)),
                                may_change_batch=bool(options.get("batch", True)),
                                max_msgs=max_msgs if isinstance(max_msgs, int) else None,
                                row_bytes=row_bytes.value if row_bytes.known else None,
                                memory_ceiling=guards.to_number(guards.MEMORY, constraints.get("memory_ceiling"))
                                if constraints.get("memory_ceiling") is not None else None,
                                saturated=found.saturated, evidence=found.evidence, replicas=_replicas(view),
                                insert_seconds=insert_seconds.value if insert_seconds.known else None,
                                insert_share=insert_share.value if insert_share.known else None,
                                producer_replicas=producer_replicas, producer=producer_stage)
    if not found.saturated and sink_model.fit_busy_model(sink)[0] is not None:
        for name, why in (("clickhouse_insert_seconds", "the ClickHouse server's mean INSERT time (busy flush cycle)"),
                          ("clickhouse_insert_share", "the sink's flushes / the server's INSERTs"),
                          ("sink_batch_fill", "flush size / max_batch_size (full flushes: a busy cycle at that batch)"),
                          ("sink_replica_flush_rate", "flushes per second of each sink replica"),
                          ("sink_replica_prepare_busy", "preparation seconds per second of each sink replica")):
            read(name, why)
    return sizing.SizingInput(
        source_rate=input_rate, stages=tuple(stages), backlog=backlog, sink=sink,
        target_utilization=float(options.get("target_utilization", 0.75)),
        catch_up_s=float(options.get("catch_up", 1800.0)),
        insert_budget=float(options.get("insert_budget", 10.0)),
        restart_s=float(options.get("restart", settings.restart_estimate)),
        burst_grace_s=(policy.settle_s if policy.settle_s is not None else settings.verify_settle)
        + (policy.window_s if policy.window_s is not None else settings.verify_window),
        band=options.get("band", (0.4, 0.9)),
        max_scale_down=float(options.get("max_scale_down", 0.5)),
        max_replicas=int(constraints.get("max_replicas") or guards.DEFAULT_MAX_REPLICAS),
    ), ""


def _bound_replicas(action: Action, old: int, new: int, notes: list[str], stage: str) -> int:
    """scale_to_fit's own ``min`` / ``max`` / ``max_step`` (replica counts) on top of the guards."""
    bounded = new
    if isinstance(action.min, int) and bounded < action.min:
        bounded = action.min
    if isinstance(action.max, int) and bounded > action.max:
        bounded = action.max
    if isinstance(action.max_step, int) and abs(bounded - old) > action.max_step:
        bounded = old + (action.max_step if bounded > old else -action.max_step)
    if bounded != new:
        notes.append(f"scale_to_fit: {stage} replicas {new} bounded to {bounded} by the policy's min/max/max_step")
    return bounded


@dataclass(frozen=True)
class Sized:
    """One ``scale_to_fit`` sizing, kept for the proposal's assessment (:mod:`gftune.policy.assess`)."""

    inp: sizing.SizingInput
    result: sizing.SizingResult
    stages: tuple[str, ...]  # the stages the action may change


def scale_to_fit(action: Action, facts: PipelineFacts, view: MetricsView, settings: Config, policy: Policy,
                 evidence: list[Evidence], notes: list[str], blocked: list[guards.Blocked],
                 sized: list[Sized] | None = None, earlier: Sequence[FieldChange] = ()
                 ) -> tuple[list[FieldChange], dict[str, float], str]:
    """Size the action's stages; ``earlier``: the changes the policy's earlier actions make in the same
    change-set (a CPU limit raised changes what an ingestor replica carries)."""
    inp, why = _sizing_input(action, facts, view, settings, evidence, policy, ingestor_cpu_gain(facts, earlier))
    if inp is None:
        notes.append(f"scale_to_fit: {why}")
        return [], {}, ""
    if not view.reading("consumer_lag_growth").known:
        notes.append("scale_to_fit: the arrival is not established without the Kafka lag (kafka_exporter): sized for "
                     "the read rate, which under backpressure is only what the pipeline drains (a lower bound)")
    result = sizing.size(inp)
    if sized is not None:
        sized.append(Sized(inp, result, action.stages))
    notes += [f"scale_to_fit: {n}" for n in result.notes]
    changes: list[FieldChange] = []
    lines = [f"input {fmt(inp.source_rate, 'records/s')} (read + Kafka lag growth), backlog {fmt(inp.backlog)} "
             f"records -> target capacity {fmt(result.target_rate, 'records/s')} at {inp.target_utilization:.0%} "
             f"utilisation, catch-up {duration(inp.catch_up_s)}, restart {duration(inp.restart_s)}"]
    for decision in result.decisions:
        lines.append(
            f"{decision.stage}: {decision.replicas_from} replica(s) x {fmt(decision.true_rate, 'records/s')} "
            f"per replica ({decision.estimator or 'unknown'}) = {fmt(decision.capacity_now, 'records/s')}, "
            f"utilisation {('%.0f%%' % (decision.utilization_now * 100)) if decision.utilization_now else 'unknown'}"
            f" -> {decision.replicas_to} replica(s)"
            + (f" at {guards.from_number(guards.CPU, decision.cpu_to)} CPU" if decision.cpu_to != decision.cpu_from
               and decision.cpu_to is not None else "")
            + f" = {fmt(decision.capacity_after, 'records/s')} ({decision.reason})")
        if decision.stage not in action.stages:
            continue
        if decision.capped and decision.needed and decision.needed > decision.replicas_to:
            path = {"ingestor": "resources.sources[*].replicas", "transform": "resources.transform[*].replicas",
                    "sink": "resources.sink.replicas"}[decision.stage]
            carries = fmt(decision.capacity_after, "records/s")
            if decision.stage == "ingestor" and "partitions" in decision.capped:
                step = ("increase the Kafka topic's partitions (a Kafka-side change outside GlassFlow) to at least "
                        f"{decision.needed}, set tuning.constraints.partitions, then let gftune raise {path}")
            elif decision.stage == "transform":
                step = ("the transform replica count is fixed while dedup is on: recreate the pipeline with "
                        f"{decision.needed} transform replicas, or shorten the dedup window to cut its work")
            else:
                step = f"raise tuning.constraints.max_replicas (or add capacity elsewhere) to allow {decision.needed}"
            blocked.append(guards.Blocked(
                path, f"the {decision.stage} needs {decision.needed} replicas for {fmt(decision.target, 'records/s')}"
                      f" but {decision.capped}; at {decision.replicas_to} it carries {carries}", step))
        if not decision.changed:
            continue
        replicas_to = _bound_replicas(action, decision.replicas_from, decision.replicas_to, notes, decision.stage)
        if replicas_to != decision.replicas_from:
            if decision.stage == "ingestor":
                targets = expand_path("resources.sources[*].replicas", facts.doc)
            elif decision.stage == "transform":
                targets = expand_path("resources.transform[*].replicas", facts.doc)[:1]
            else:
                targets = ["resources.sink.replicas"]
            for path in targets:
                changes.append(FieldChange(path, paths.get(facts.doc, path), replicas_to))
        if decision.stage == "sink" and decision.cpu_to is not None and decision.cpu_to != decision.cpu_from:
            path = "resources.sink.limits.cpu"
            changes.append(FieldChange(path, paths.get(facts.doc, path), guards.from_number(guards.CPU,
                                                                                          decision.cpu_to)))
        if decision.stage == "sink" and decision.batch_to is not None and decision.batch_to != decision.batch_from:
            changes.append(FieldChange("sink.max_batch_size", decision.batch_from, decision.batch_to))
    prediction: dict[str, float] = {}
    if result.changed and result.predicted_sink_rate is not None:
        prediction["sink_rate"] = result.predicted_sink_rate
    return changes, prediction, "; ".join(lines)
