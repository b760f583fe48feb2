"""One-step sizing (``scale_to_fit``): every stage sized in one pass, DS2 and Flink style.

Pure arithmetic on measured rates, no I/O.

1. **True processing rate per replica** (DS2): ``records processed / busy replica-seconds``. Busy
   time comes from ``processing_duration_seconds`` sums. Without busy time, a stage working off a
   backlog is saturated, so its observed rate is its capacity (Flink's "observed TPR").
2. **Target input** (Flink's ``getTargetProcessingCapacity``): the source's true input rate (read
   rate + Kafka lag growth), divided by the target utilisation, plus the backlog to drain within
   the catch-up time, plus the input that piles up during the restart::

       target = input / u + backlog / catch_up + input x restart / catch_up

   It flows down the graph multiplied by each stage's selectivity (dedup and filters drop records).
   While a backlog exists, a stage is also sized for what its upstream will push while draining
   it, so the catch-up does not fill the stream in between and bring backpressure back.
3. **Replicas** per stage: ``ceil(target_i / true rate per replica)``, capped by partitions
   (ingestor), fixed for join and for a dedup transform, within ``max_replicas``. A stage that
   needs more than a cap allows is reported (``capped``), so the caller can escalate.
4. **Sink**: capacity per replica depends on its workers (``ceil(cpu) - 2``, min 1), which only
   parallelise record preparation (the ``schema_mapping`` share of the busy time); inserts stay
   sequential. Replicas and CPU are chosen together for the least total CPU that carries the
   target. Insert count is throughput / batch size whatever the replicas, so when the sized sink
   would insert more often than ``insert_budget`` per second, ``max_batch_size`` grows with it
   (ClickHouse: bigger batches first). A bigger batch only amortises the per-insert overhead, so
   the capacity estimate made at the current batch size stays a lower bound.
5. **Anti-flapping**: nothing changes while every stage's utilisation is inside the hysteresis band
   and there is no backlog; no scale-down while a backlog exists; a scale-down keeps at least
   ``1 - max_scale_down`` of the replicas.

The result carries the capacity before and after and the prediction the change is verified against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

STAGES = ("ingestor", "transform", "sink")
MAX_BATCH = 100_000  # ClickHouse's recommended range tops out here


@dataclass(frozen=True)
class StageState:
    stage: str
    replicas: int
    processed_rate: float | None  # records/s the stage takes in
    busy_rate: float | None  # busy replica-seconds per second
    selectivity: float = 1.0  # records out / records in
    cap_replicas: int | None = None  # replicas beyond this idle (ingestor: partitions)
    frozen: str | None = None  # why the replica count cannot change (join, dedup transform)


@dataclass(frozen=True)
class SinkState:
    cpu: float | None  # limits.cpu in cores
    prepare_rate: float | None = None  # schema_mapping busy seconds per second (parallel part)
    batch: int | None = None  # sink.max_batch_size
    may_change_cpu: bool = True


@dataclass(frozen=True)
class SizingInput:
    source_rate: float  # what Kafka receives: read rate + lag growth when known
    stages: tuple[StageState, ...]
    backlog: float = 0.0  # records waiting: Kafka lag + stream depth
    sink: SinkState | None = None
    target_utilization: float = 0.75
    catch_up_s: float = 1800.0
    restart_s: float = 60.0
    band: tuple[float, float] = (0.4, 0.9)  # utilisation inside which nothing changes
    max_scale_down: float = 0.5  # a scale-down keeps at least half the replicas
    max_replicas: int = 10
    cpu_ceiling: float = 8.0
    insert_budget: float | None = 10.0  # ClickHouse inserts per second the sink may cause
    backlog_grace_s: float = 30.0  # backlog under this many seconds of input counts as none


@dataclass(frozen=True)
class StageDecision:
    stage: str
    replicas_from: int
    replicas_to: int
    true_rate: float | None  # per replica, at the current CPU
    capacity_now: float | None
    capacity_after: float | None
    target: float
    utilization_now: float | None
    cpu_from: float | None = None
    cpu_to: float | None = None
    batch_from: int | None = None
    batch_to: int | None = None
    reason: str = ""
    estimator: str = ""  # "busy time" | "observed (saturated)" | ""
    needed: int | None = None  # replicas the target needs, before caps
    capped: str = ""  # why fewer than ``needed`` (partitions, frozen, max_replicas)

    @property
    def changed(self) -> bool:
        return (self.replicas_to != self.replicas_from
                or (self.cpu_to is not None and self.cpu_to != self.cpu_from)
                or (self.batch_to is not None and self.batch_to != self.batch_from))


@dataclass(frozen=True)
class SizingResult:
    decisions: tuple[StageDecision, ...]
    target_rate: float
    steady_input: float
    predicted_sink_rate: float | None
    backlog_present: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return any(d.changed for d in self.decisions)

    def decision(self, stage: str) -> StageDecision | None:
        return next((d for d in self.decisions if d.stage == stage), None)


def target_capacity(input_rate: float, backlog: float, *, utilization: float, catch_up_s: float,
                    restart_s: float) -> float:
    """Flink's target processing capacity (records/s)."""
    catch_up_s = max(catch_up_s, 1e-9)
    return input_rate / utilization + backlog / catch_up_s + input_rate * restart_s / catch_up_s


def sink_workers(cpu: float | None) -> int:
    """``GOMAXPROCS - 2`` (min 1); GOMAXPROCS follows the CPU limit rounded up."""
    if cpu is None:
        return 1
    return max(1, math.ceil(cpu - 1e-9) - 2)


def true_rate(stage: StageState, saturated: bool) -> tuple[float | None, str]:
    """Per-replica capacity of a stage and how it was estimated."""
    if stage.processed_rate is not None and stage.busy_rate is not None and stage.busy_rate > 1e-12:
        return stage.processed_rate / stage.busy_rate, "busy time"
    if saturated and stage.processed_rate is not None and stage.processed_rate > 0:
        effective = min(stage.replicas, stage.cap_replicas or stage.replicas)
        return stage.processed_rate / max(1, effective), "observed (saturated)"
    return None, ""


def _replicas_for(target: float, per_replica: float) -> int:
    return max(1, math.ceil(target / per_replica - 1e-9))


def nice_batch(rows: float) -> int:
    """A batch size rounded up to 1, 2 or 5 x a power of ten (readable in git)."""
    if rows <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(rows))
    for step in (1, 2, 5, 10):
        if step * magnitude >= rows - 1e-9:
            return int(step * magnitude)
    return int(10 * magnitude)


def size(inp: SizingInput) -> SizingResult:
    """Size every stage for ``inp.source_rate`` in one pass (see the module docstring)."""
    backlog_present = inp.backlog > inp.source_rate * inp.backlog_grace_s
    backlog = inp.backlog if backlog_present else 0.0
    target_total = target_capacity(inp.source_rate, backlog, utilization=inp.target_utilization,
                                   catch_up_s=inp.catch_up_s, restart_s=inp.restart_s)
    notes: list[str] = []
    decisions: list[StageDecision] = []
    selectivity = 1.0
    bottleneck = math.inf  # the most source records/s every stage can carry after the change
    pushed: float | None = None  # what the upstream stage will push after the change (catch-up)
    for stage in inp.stages:
        steady = inp.source_rate * selectivity
        target = target_total * selectivity
        if backlog_present and pushed is not None and pushed > target:
            target = pushed
        if stage.stage == "sink" and inp.sink is not None:
            decision = _size_sink(stage, inp, steady, target, backlog_present, notes)
        else:
            decision = _size_stage(stage, inp, steady, target, backlog_present, notes)
        decisions.append(decision)
        if decision.capacity_after is not None and selectivity > 0:
            bottleneck = min(bottleneck, decision.capacity_after / selectivity)
        if decision.capacity_after is not None:
            pushed = decision.capacity_after * (stage.selectivity if stage.stage != "sink" else 1.0)
        if stage.stage != "sink":
            selectivity *= stage.selectivity
    predicted = min(inp.source_rate, bottleneck) * selectivity
    return SizingResult(tuple(decisions), target_total, inp.source_rate, predicted, backlog_present, tuple(notes))


def _new_replicas(current: int, needed: int, utilization: float | None, inp: SizingInput,
                  backlog_present: bool) -> tuple[int, str]:
    low, high = inp.band
    if utilization is None:
        return current, "no utilisation estimate"
    if needed > current and (backlog_present or utilization > high):
        return needed, ("backlog to drain" if backlog_present else f"utilisation {utilization:.0%} above {high:.0%}")
    if needed < current and not backlog_present and utilization < low:
        floor = math.ceil(current * (1.0 - inp.max_scale_down) - 1e-9)
        return max(needed, floor, 1), f"utilisation {utilization:.0%} below {low:.0%}"
    if needed < current and backlog_present:
        return current, "no scale-down while a backlog exists"
    return current, f"within the {low:.0%}-{high:.0%} band"


def _size_stage(stage: StageState, inp: SizingInput, steady: float, target: float, saturated: bool,
                notes: list[str]) -> StageDecision:
    rate, estimator = true_rate(stage, saturated)
    if rate is None or rate <= 0:
        notes.append(f"{stage.stage}: no busy time and no backlog to estimate its capacity; left as is")
        return StageDecision(stage.stage, stage.replicas, stage.replicas, None, None, None, target, None,
                             reason="capacity unknown")
    cap = stage.cap_replicas
    effective = min(stage.replicas, cap) if cap else stage.replicas
    capacity_now = rate * effective
    utilization = steady / capacity_now if capacity_now > 0 else None
    needed = _replicas_for(target, rate)
    replicas, reason = _new_replicas(stage.replicas, needed, utilization, inp, saturated)
    wanted, capped = replicas, ""
    if stage.frozen and replicas != stage.replicas:
        notes.append(f"{stage.stage}: would need {replicas} replicas but {stage.frozen}")
        replicas, reason, capped = stage.replicas, stage.frozen, stage.frozen
    if cap and replicas > cap:
        notes.append(f"{stage.stage}: needs {replicas} replicas to carry {target:,.0f}/s but the topic has {cap} "
                     "partitions; more replicas would idle")
        replicas = max(cap, min(stage.replicas, cap))
        capped = f"the topic has {cap} partitions"
    if replicas > inp.max_replicas:
        notes.append(f"{stage.stage}: needs {replicas} replicas, capped at max_replicas {inp.max_replicas}")
        replicas = inp.max_replicas
        capped = capped or f"max_replicas {inp.max_replicas}"
    effective_after = min(replicas, cap) if cap else replicas
    return StageDecision(stage.stage, stage.replicas, replicas, rate, capacity_now, rate * effective_after, target,
                         utilization, reason=reason, estimator=estimator, needed=wanted, capped=capped)


def _sink_record_time(stage: StageState, sink: SinkState) -> tuple[float, float] | None:
    """(sequential seconds per record, parallel seconds per record at the current workers)."""
    if stage.processed_rate is None or stage.busy_rate is None or stage.processed_rate <= 0 or stage.busy_rate <= 0:
        return None
    total = stage.busy_rate / stage.processed_rate
    parallel = (sink.prepare_rate or 0.0) / stage.processed_rate
    parallel = min(parallel, total)
    return total - parallel, parallel


def _size_sink(stage: StageState, inp: SizingInput, steady: float, target: float, saturated: bool,
               notes: list[str]) -> StageDecision:
    sink = inp.sink
    assert sink is not None
    times = _sink_record_time(stage, sink)
    if times is None:
        decision = _size_stage(stage, inp, steady, target, saturated, notes)
        return StageDecision(**{**decision.__dict__, "cpu_from": sink.cpu, "cpu_to": sink.cpu,
                                "batch_from": sink.batch, "batch_to": sink.batch})
    sequential, parallel = times
    workers_now = sink_workers(sink.cpu)

    def per_replica(cpu: float | None) -> float:
        seconds = sequential + parallel * workers_now / sink_workers(cpu)
        return 1.0 / seconds if seconds > 0 else math.inf

    rate_now = per_replica(sink.cpu)
    capacity_now = rate_now * stage.replicas
    utilization = steady / capacity_now if capacity_now > 0 else None
    needed_now = _replicas_for(target, rate_now)
    replicas, reason = _new_replicas(stage.replicas, needed_now, utilization, inp, saturated)
    cpu = sink.cpu
    capped = ""
    if replicas > stage.replicas:
        # Scale up: the cheapest (replicas, cpu) that carries the target. CPU only helps through
        # whole workers, so the candidates are the current limit and whole cores from 4 up.
        candidates: list[float | None] = [sink.cpu]
        if sink.may_change_cpu and parallel > 0:
            candidates += [float(c) for c in range(4, int(inp.cpu_ceiling) + 1) if sink.cpu is None or c > sink.cpu]
        best: tuple[float, int, float | None] | None = None
        for candidate in candidates:
            count = _replicas_for(target, per_replica(candidate))
            if count > inp.max_replicas:
                continue
            cost = count * max(candidate or 1.0, 1.0)
            if best is None or (cost, count) < (best[0], best[1]):
                best = (cost, count, candidate)
        if best is None:
            cpu = candidates[-1]
            replicas = inp.max_replicas
            capped = f"max_replicas {inp.max_replicas}"
            notes.append(f"sink: {target:,.0f}/s needs more than {inp.max_replicas} replicas even at "
                         f"{cpu if cpu is not None else 'the current'} CPU; using the maximum")
        else:
            _, replicas, cpu = best
    capacity_after = per_replica(cpu) * replicas
    batch = sink.batch
    if sink.batch and inp.insert_budget and (replicas > stage.replicas or cpu != sink.cpu):
        inserts = capacity_after / sink.batch
        if inserts > inp.insert_budget:
            batch = min(MAX_BATCH, max(sink.batch, nice_batch(capacity_after / inp.insert_budget)))
            notes.append(f"sink: {capacity_after:,.0f}/s in batches of {sink.batch} would be {inserts:.0f} inserts/s, "
                         f"above the insert budget of {inp.insert_budget:g}/s; max_batch_size {sink.batch} -> {batch}")
    return StageDecision("sink", stage.replicas, replicas, rate_now, capacity_now, capacity_after, target,
                         utilization, cpu_from=sink.cpu, cpu_to=cpu, batch_from=sink.batch, batch_to=batch,
                         reason=reason, estimator="busy time", needed=needed_now, capped=capped)
