"""One-step sizing (``scale_to_fit``): every stage sized in one pass, DS2 and Flink style.

Pure arithmetic on measured rates, no I/O.

1. **Capacity per replica**, only where the metrics establish it. Ingestor: records per busy
   second, busy time being ``{ingestor,batch}``'s per-record times x records per batch (valid
   without backpressure, which it counts as busy), or, saturated (Kafka lag growing without
   backpressure), its read rate. Dedup pod: records per stage second (an upper bound). Sink: see 4.
   Where a capacity is not established the stage is left as it is and the result says why.
2. **Target input** (Flink's ``getTargetProcessingCapacity``): the source's true input rate (read
   rate + Kafka lag growth), divided by the target utilisation, plus the backlog to drain within
   the catch-up time, plus the input that piles up during the restart::

       target = input / u + backlog / catch_up + input x restart / catch_up

   It flows down the graph multiplied by each stage's selectivity (dedup and filters drop records).
   A stage is never sized for more than its upstream can deliver after the change (the upstream's
   capacity after it, when measured from busy time). While a backlog exists that would take longer
   to drain at the target than the change's settle time plus verify window (``burst_grace_s``), it
   is sized for all of that: an upstream draining its backlog pushes at its full capacity, and a
   downstream sized only for the target lets the stream in between fill again. With a message
   limit that keeps backpressure on for the whole drain (the symptom the change was for, past the
   window it is judged on); on a stream limited by bytes alone (``maxMsgs: -1``) JetStream's
   DiscardOld drops what does not fit: data lost. A shorter burst is left to the stream and
   backpressure. The surplus is temporary: once the backlog is gone, the ``overprovisioned``
   policy gives it back in bounded steps.
3. **Replicas** per stage: ``ceil(target_i / true rate per replica)``, capped by partitions
   (ingestor), fixed for join and for a dedup transform, within ``max_replicas``. A stage that
   needs more than a cap allows is reported (``capped``), so the caller can escalate.
4. **Sink**: its capacity is observable only while a backlog keeps it saturated (the caller decides
   that from backpressure, stream depth and full flushes: :mod:`gftune.policy.saturation`). Then a
   saturated replica k flushes at F_k: its cycle is ``T = 1/F_k``, of which ``T_prep``
   (``total_preparation``) is preparing and ``T - T_prep`` inserting and acking — GlassFlow
   measures no INSERT time, the cycle is what gives it. One flush of B rows costs
   ``a + (b + r + m x w_now / w) x B`` seconds: per-row preparation ``r`` outside the worker
   pool, the mapping ``m`` its ``w = GOMAXPROCS - 2`` workers share, and the insert ``a + b x B``.
   One saturated window at one batch cannot split the insert into ``a`` and ``b``: ``b`` is an
   assumed ClickHouse per-row cost (``insert_row_s``, capped at the measured insert per row) and
   ``a`` the rest. Because ``b`` is small next to ``a`` and ``r``, a wrong ``b`` moves the
   prediction little. The capacity of r replicas is a replica's net rows/s (rows inserted per row
   flushed: redeliveries cost a flush, not an insert) over the largest stream share r replicas
   get behind their producer (``glassflow.topology.stream_shares``: 3 ingestors -> 2 sinks is
   2/3 + 1/3, so the busier stream saturates first). It is predicted at the batch the sink forms
   when loaded: ``max_batch_size``, or less when its stream (``maxMsgs``, immutable) cannot hold
   that batch twice. Not saturated, a sink flushes what arrives and GlassFlow alone establishes
   no capacity (only ``busy >= F x T_prep``): the sink is left as it is. With the ClickHouse
   server's metrics, a replica flushing *full* batches has a busy cycle ``T_prep + t_insert`` (the
   server's mean INSERT time) and the same model follows from it
   (:func:`gftune.policy.sink_model.fit_busy_model`): enough to size the sink up with the stage in
   front of it in one change-set; a scale-down from it waits for a policy that established the
   busy fraction over its ``for:`` (overprovisioned-sink).
   Batch, replicas and CPU are chosen together for the least total CPU that carries the target, the
   smallest batch among equals: when ``a`` dominates, a larger batch (no extra pods) comes before
   replicas, within the memory guard (``memory_ceiling``) and the stream (two fetches of
   ``batch x workers`` in ``maxMsgs``). Insert count is throughput / batch size whatever the
   replicas, so when the sized sink would insert more often than ``insert_budget`` per second,
   ``max_batch_size`` grows with it (ClickHouse: bigger batches first).
5. **Anti-flapping**: nothing changes while every stage's utilisation is inside the hysteresis band
   and there is no backlog; no scale-down while a backlog exists; a scale-down keeps at least
   ``1 - max_scale_down`` of the replicas. A catch-up under way (every established stage carries
   the input alone inside the band, and the slowest drains the backlog within the catch-up time
   at the current capacity) changes nothing (:func:`catch_up_under_way`).

The result carries the capacity before and after and the prediction the change is verified against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from gftune.policy import sink_model
from gftune.policy.sink_model import (
    MAX_BATCH,
    SinkModel,
    SinkState,
    batch_ceiling,
    fill_limit,
    fit_sink_model,
)

STAGES = ("ingestor", "transform", "sink")


@dataclass(frozen=True)
class StageState:
    stage: str
    replicas: int
    processed_rate: float | None  # records/s the stage takes in
    busy_rate: float | None  # busy replica-seconds per second, where the metrics give it (else None)
    selectivity: float = 1.0  # records out / records in
    cap_replicas: int | None = None  # replicas beyond this idle (ingestor: partitions)
    frozen: str | None = None  # why the replica count cannot change (join, dedup transform)
    saturated: bool = False  # established working at capacity: what it processes is what it can
    unknown_why: str = ""  # why its capacity is not established, for the notes
    # per-replica capacity measured earlier, while the stage was not blocked (gftune.policy.history),
    # used when the current readings establish none, and how it was measured
    past_rate: float | None = None
    past_how: str = ""
    # The CPU a replica may use after an earlier action of the same change-set, over what it may use
    # now: a replica throttled below the core it needs (an ingestor) works that much faster after it.
    cpu_gain: float = 1.0


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
    # A catch-up burst the stream may absorb (with backpressure) for this long is not sized for:
    # the settle time plus verify window, where the change is judged.
    burst_grace_s: float = 360.0


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


sink_workers = sink_model.sink_workers


def true_rate(stage: StageState) -> tuple[float | None, str]:
    """Per-replica capacity of a stage and how it was estimated (None: not established). Seen
    saturated, what it processes is what it can: that beats busy time, which for the ingestor is
    an approximation (a mean of per-batch averages)."""
    if stage.saturated and stage.processed_rate is not None and stage.processed_rate > 0:
        effective = min(stage.replicas, stage.cap_replicas or stage.replicas)
        return stage.processed_rate / max(1, effective), "observed (saturated)"
    if stage.processed_rate is not None and stage.busy_rate is not None and stage.busy_rate > 1e-12:
        return stage.processed_rate / stage.busy_rate, "busy time"
    if stage.past_rate is not None and stage.past_rate > 0:
        return stage.past_rate, stage.past_how or "busy time, earlier"
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
    surplus = target_total - inp.source_rate
    drain_at_target = backlog / surplus if surplus > 0 else math.inf
    selectivity = 1.0
    bottleneck = math.inf  # the most source records/s every stage can carry after the change
    delivered: float | None = None  # the most the upstream stage can deliver after the change
    decided: dict[str, int] = {}  # replicas per stage after the change (the sink's shares follow its producer's)
    selectivities: list[float] = []  # each stage's records per source record
    for stage in inp.stages:
        selectivities.append(selectivity)
        steady = inp.source_rate * selectivity
        target = target_total * selectivity
        if delivered is not None and delivered < target:
            notes.append(f"{stage.stage}: sized for the {delivered:,.0f}/s its upstream can deliver after the change, "
                         f"not {target:,.0f}/s")
            target = delivered
        elif delivered is not None and backlog_present and delivered > target and drain_at_target > inp.burst_grace_s:
            # what drains the backlog within the settle time + verify window, at most what the upstream
            # pushes: beyond that a stage would be sized for the upstream's rounding up, not the backlog
            draining = min(delivered, (inp.source_rate + backlog / inp.burst_grace_s) * selectivity)
            if draining > target:
                notes.append(f"{stage.stage}: sized for the {draining:,.0f}/s its upstream pushes while the backlog "
                             f"drains (within {inp.burst_grace_s / 60:.0f} min), not {target:,.0f}/s, so the stream "
                             "in between does not fill again")
                target = draining
        if stage.stage == "sink" and inp.sink is not None:
            producer = decided.get(inp.sink.producer) if inp.sink.producer else None
            decision = _size_sink(stage, inp, steady, target, backlog_present, notes, producer)
        else:
            decision = _size_stage(stage, inp, steady, target, backlog_present, notes)
        decisions.append(decision)
        decided[stage.stage] = decision.replicas_to
        if decision.capacity_after is not None and selectivity > 0:
            bottleneck = min(bottleneck, decision.capacity_after / selectivity)
        # A capacity established (busy time, or seen saturated without backpressure) bounds the next
        # stage; one not established bounds nothing.
        if decision.capacity_after is not None and decision.estimator:
            delivered = decision.capacity_after * (stage.selectivity if stage.stage != "sink" else 1.0)
        else:
            delivered = None
        if stage.stage != "sink":
            selectivity *= stage.selectivity
    under_way = catch_up_under_way(inp, decisions, selectivities, backlog) if backlog_present else None
    if under_way is not None and any(d.changed for d in decisions):
        notes.append(under_way)
        decisions = [replace(d, replicas_to=d.replicas_from, cpu_to=d.cpu_from, batch_to=d.batch_from,
                             capacity_after=d.capacity_now, reason=under_way) for d in decisions]
        bottleneck = min((d.capacity_now / sel for d, sel in zip(decisions, selectivities, strict=True)
                          if d.capacity_now is not None and sel > 0), default=math.inf)
    predicted = min(inp.source_rate, bottleneck) * selectivity
    return SizingResult(tuple(decisions), target_total, inp.source_rate, predicted, backlog_present, tuple(notes))


def catch_up_under_way(inp: SizingInput, decisions: list[StageDecision], selectivities: list[float],
                       backlog: float) -> str | None:
    """Why no stage needs more while a backlog drains (None: it may): every stage whose capacity is
    established carries the input alone inside the band, and what the slowest of them carries beyond
    the input drains the backlog within the catch-up time. That is a catch-up under way, the one the
    last fix was sized for; a change now would cost a restart (and the input during it) to drain a
    little sooner, and the saturated stage it would answer is that catch-up. A stage whose capacity
    is not established is left out: it is left as it is either way."""
    high = inp.band[1]
    carried = []
    for decision, selectivity in zip(decisions, selectivities, strict=True):
        if decision.capacity_now is None or selectivity <= 0:
            if decision.changed:
                return None
            continue
        if decision.utilization_now is None or decision.utilization_now > high:
            return None
        carried.append(decision.capacity_now / selectivity)
    if not carried:
        return None
    surplus = min(carried) - inp.source_rate
    drain_s = backlog / surplus if surplus > 0 else math.inf
    if drain_s > inp.catch_up_s:
        return None
    return (f"a catch-up under way: the backlog ({backlog:,.0f} records) drains in ~{drain_s / 60:.0f} min at the "
            f"current capacity ({min(carried):,.0f}/s for {inp.source_rate:,.0f}/s), within the catch-up time of "
            f"{inp.catch_up_s / 60:.0f} min, and every stage carries the input alone inside the band: no change")


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
    rate_now, estimator = true_rate(stage)
    if rate_now is None or rate_now <= 0:
        why = stage.unknown_why or "no busy time, and not seen saturated"
        notes.append(f"{stage.stage}: capacity not established ({why}); left as is")
        return StageDecision(stage.stage, stage.replicas, stage.replicas, None, None, None, target, None,
                             reason=f"capacity not established: {why}")
    cap = stage.cap_replicas
    effective = min(stage.replicas, cap) if cap else stage.replicas
    capacity_now = rate_now * effective
    utilization = steady / capacity_now if capacity_now > 0 else None
    # Sized at the CPU the change-set gives it: the band is judged on the utilisation it will have.
    rate = rate_now * stage.cpu_gain
    if stage.cpu_gain != 1.0:
        estimator += f", x{stage.cpu_gain:.3g} for the CPU limit this change raises"
        notes.append(f"{stage.stage}: sized at {stage.cpu_gain:.3g}x the rate per replica measured now "
                     f"({rate_now:,.0f}/s -> {rate:,.0f}/s), for the CPU limit this change raises")
    utilization_after_cpu = steady / (rate * effective) if rate * effective > 0 else None
    needed = _replicas_for(target, rate)
    replicas, reason = _new_replicas(stage.replicas, needed, utilization_after_cpu, inp, saturated)
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
    return StageDecision(stage.stage, stage.replicas, replicas, rate_now, capacity_now, rate * effective_after, target,
                         utilization, reason=reason, estimator=estimator, needed=wanted, capped=capped)


def _batch_candidates(current: int, ceiling: int) -> list[int]:
    """The current batch and the readable ones (1, 2, 5 x 10^k) above it, up to ``ceiling``."""
    out = [current]
    batch = nice_batch(current + 1)
    while batch <= ceiling:
        out.append(batch)
        batch = nice_batch(batch + 1)
    return out


def _size_sink(stage: StageState, inp: SizingInput, steady: float, target: float, saturated: bool,
               notes: list[str], producer_replicas: int | None = None) -> StageDecision:
    sink = inp.sink
    assert sink is not None
    model, why = fit_sink_model(sink)
    if (model is None or model.cycle_from == "busy") and stage.busy_rate and stage.processed_rate:
        # a policy that established the sink's busy fraction over its for: (a scale-down)
        return _size_sink_by_busy_time(stage, inp, steady, target, saturated, notes, producer_replicas)
    if model is None:
        bound = max((r.prepare_busy or 0.0 for r in sink.replicas), default=None)
        floor = f"; known: busiest replica busy >= F x T_prep = {bound:.0%}" if bound is not None else ""
        notes.append(f"sink: capacity not established ({why}): without a backlog it flushes what arrives{floor}; "
                     "left as is")
        return StageDecision("sink", stage.replicas, stage.replicas, None, None, None, target, None,
                             cpu_from=sink.cpu, cpu_to=sink.cpu, batch_from=sink.batch, batch_to=sink.batch,
                             reason=f"capacity not established: {why}")
    # The batch a loaded replica forms: max_batch_size (within what its stream lets fill).
    full = float(sink.batch or model.batch_measured)

    def cap(replicas: int, cpu: float | None, batch: float) -> float:
        return sink_model.capacity(model, sink, replicas, cpu, batch, producer_replicas)

    capacity_now = cap(stage.replicas, sink.cpu, full)
    rate_now = model.per_replica(min(full, fill_limit(sink.max_msgs)), sink.cpu)
    utilization = steady / capacity_now if capacity_now > 0 else None
    needed_now = next((r for r in range(1, inp.max_replicas + 1) if cap(r, sink.cpu, full) >= target - 1e-9),
                      inp.max_replicas + 1)
    replicas, reason = _new_replicas(stage.replicas, needed_now, utilization, inp, saturated)
    if model.cycle_from == "busy" and replicas < stage.replicas:
        # one window's busy time: a scale-down wants it established for long (overprovisioned-sink)
        notes.append(f"sink: its busy cycle says {replicas} replica(s), but read over one window: a scale-down "
                     "needs the busy fraction established for long (overprovisioned-sink); left as is")
        replicas, reason = stage.replicas, "a busy cycle read over one window never gives replicas back"
    cpu, batch = sink.cpu, sink.batch
    capped = ""
    if replicas > stage.replicas:
        # Scale up: the cheapest (batch, replicas, cpu) that carries the target. CPU only helps
        # through whole workers, so the candidates are the current limit and whole cores from 4 up;
        # a batch costs no pod, so among equal costs the smallest batch that does it wins.
        cpus: list[float | None] = [sink.cpu]
        if sink.may_change_cpu and model.mapping_row > 0:
            cpus += [float(c) for c in range(4, int(inp.cpu_ceiling) + 1) if sink.cpu is None or c > sink.cpu]
        best: tuple[tuple[float, int, int, int], int, float | None, int | None] | None = None
        for candidate in cpus:
            batches: list[int | None] = [sink.batch]
            if sink.batch and sink.may_change_batch:
                batches = list(_batch_candidates(sink.batch, batch_ceiling(sink, candidate)))
            for option in batches:
                rows = float(option or full)
                count = next((r for r in range(stage.replicas, inp.max_replicas + 1)
                              if cap(r, candidate, rows) >= target - 1e-9), None)
                if count is None:
                    continue
                key = (round(count * max(candidate or 1.0, 1.0), 9), count, int(rows), int(candidate != sink.cpu))
                if best is None or key < best[0]:
                    best = (key, count, candidate, option)
        if best is None:
            cpu = cpus[-1]
            replicas = inp.max_replicas
            capped = f"max_replicas {inp.max_replicas}"
            notes.append(f"sink: {target:,.0f}/s needs more than {inp.max_replicas} replicas even at "
                         f"{cpu if cpu is not None else 'the current'} CPU; using the maximum")
        else:
            _, replicas, cpu, batch = best
            if batch != sink.batch:
                notes.append(f"sink: {sink_model.fixed_share(model, full, sink.cpu):.0%} of a flush's time is the "
                             f"per-flush cost: max_batch_size {sink.batch} -> {batch} before more replicas")
    capacity_after = cap(replicas, cpu, float(batch or full))
    if batch and sink.may_change_batch and inp.insert_budget and (replicas > stage.replicas or cpu != sink.cpu):
        filled = min(float(batch), fill_limit(sink.max_msgs))
        inserts = capacity_after / filled
        if inserts > inp.insert_budget:
            # within the guards (stream and memory): an insert rate above budget is better than an OOM
            wanted = max(batch, min(batch_ceiling(sink, cpu), nice_batch(capacity_after / inp.insert_budget)))
            above = (f"sink: {capacity_after:,.0f}/s in batches of {filled:.0f} would be {inserts:.0f} inserts/s, "
                     f"above the insert budget of {inp.insert_budget:g}/s")
            if wanted > batch:
                notes.append(f"{above}; max_batch_size {batch} -> {wanted}")
                batch = wanted
                capacity_after = cap(replicas, cpu, float(batch))
            else:
                notes.append(f"{above}; the stream (maxMsgs {sink.max_msgs}) and memory guards allow no larger batch")
    return StageDecision("sink", stage.replicas, replicas, rate_now, capacity_now, capacity_after, target,
                         utilization, cpu_from=sink.cpu, cpu_to=cpu, batch_from=sink.batch, batch_to=batch,
                         reason=reason, estimator=model.describe(), needed=needed_now, capped=capped)


def _size_sink_by_busy_time(stage: StageState, inp: SizingInput, steady: float, target: float, saturated: bool,
                            notes: list[str], producer_replicas: int | None) -> StageDecision:
    """An unsaturated sink whose busy time is measured (the ClickHouse server's INSERT time +
    preparation): rows per busy replica-second at the flushes it makes now. Loaded, its flushes
    fill more and the per-INSERT cost spreads over more rows, so this is a lower bound on its
    capacity: enough to give replicas back, never to add them (that still needs it saturated)."""
    sink = inp.sink
    assert sink is not None and stage.busy_rate and stage.processed_rate
    per_busy_second = stage.processed_rate / stage.busy_rate

    def cap(replicas: int) -> float:
        return per_busy_second / max(sink.shares(replicas, producer_replicas))

    capacity_now = cap(stage.replicas)
    utilization = steady / capacity_now if capacity_now > 0 else None
    needed = next((r for r in range(1, inp.max_replicas + 1) if cap(r) >= target - 1e-9), inp.max_replicas + 1)
    replicas, reason = _new_replicas(stage.replicas, needed, utilization, inp, saturated)
    if replicas > stage.replicas:
        notes.append(f"sink: busy time says {replicas} replicas, but unsaturated it gives a lower bound on capacity: "
                     "not a reason to add any; left as is")
        replicas, reason = stage.replicas, "busy time (unsaturated) never adds replicas"
    estimator = (f"busy time: {stage.processed_rate:,.0f} rows/s over {stage.busy_rate:.3g} busy replica-s/s "
                 "(preparation + flushes x ClickHouse INSERT time)")
    return StageDecision("sink", stage.replicas, replicas, per_busy_second, capacity_now, cap(replicas), target,
                         utilization, cpu_from=sink.cpu, cpu_to=sink.cpu, batch_from=sink.batch, batch_to=sink.batch,
                         reason=reason, estimator=estimator, needed=needed)


__all__ = [
    "MAX_BATCH",
    "STAGES",
    "SinkModel",
    "SinkState",
    "SizingInput",
    "SizingResult",
    "StageDecision",
    "StageState",
    "batch_ceiling",
    "fill_limit",
    "fit_sink_model",
    "nice_batch",
    "sink_workers",
    "size",
    "target_capacity",
    "true_rate",
]
