"""Judging a change by its metrics: readings before and after + expectations → a verdict.

Pure functions, no I/O. Modelled on Argo Rollouts analysis: three outcomes, not two.

* **pass**: every expectation holds within the tolerance and no guard got worse.
* **fail**: an expectation missed and the signal did not move toward it beyond the noise band
  (no change, or it regressed), a guard got worse beyond the tolerance, new rejected sink rows or
  terminal errors appeared, or the pipeline is not Running.
* **inconclusive**: a reading needed for a check is unknown (no data, NaN, a gap, stale), or an
  expectation missed while the signal *did* move toward it beyond the noise (a partial effect:
  a human decides).

The tolerance ``t`` (default 0.1) is a relative noise band. An expectation ``signal >= V`` holds
when ``after >= V - t·|V|``; a value "changed" when it moved by more than ``t·max(|before|, |after|)``
(for 0..1 gauges such as backpressure the band is absolute: ``t``).

Guards ("healthy and not worse") apply to every change, with or without expectations:
the sink rate and the sink/source ratio must not fall and backpressure (the gauge, and the share of
time in finished episodes) must not rise beyond the tolerance, and rows rejected after an INSERT
error (``sink_retries{outcome="exhausted"}``: rows, DLQ'd at once, not retries that ran out),
permanent errors and DLQ writes must not appear where there were none. Backpressure that rose
while the sink rate held up is inconclusive rather than a failure: a restarted pipeline catches up
on what queued while it was stopped, at full speed. An error counter that had no series before the
change (it did not exist yet) and reads 0 after it passes; one that reads more than 0 after it
"appeared" and fails.

What "keeping up" can mean on a real cluster: GlassFlow measures no INSERT time, so no busy
fraction of the sink is verified. The policies expect what a cluster shows when the sink keeps up:
backpressure stops, the sampled stream drains below the ~half a busy healthy sink keeps in flight,
and the rows written follow what arrives.

**Catching up.** A change that fixes a throughput problem does not clear a backlog at once: while
Kafka still holds the records that piled up, the ingestors read as fast as the stream lets them and
backpressure stays at 1 until the last of them is drained, which can take far longer than any
observation window. So an expectation on a *backlog* signal (backpressure, stream depth, Kafka
lag: :data:`BACKLOG_SIGNALS`) that misses passes as "catching up" when both

1. the change's throughput holds: every throughput expectation (:data:`THROUGHPUT_SIGNALS`)
   passed and at least one did, or the "sink rate not lower" guard passed; and
2. the backlog measurably drains: the Kafka lag shrinks faster than the noise band
   (``consumer_lag_growth < -t·source_rate``), or, with no usable lag reading, the stream depth
   fell beyond the noise band.

Its reason gives the drain rate and, with the lag known, an estimate of the time left. A backlog
that does not drain stays a failure (or inconclusive, as above).

**The next bottleneck.** A change that lifts one stage lets more records through to the next, which
may then be the limit: an ingestor raised to a core reads ~4,950/s instead of ~3,000/s, the one sink
replica behind it writes no more than that, its stream fills and the ingestor backpressures. The
expectation "read rate >= 95% of the input" misses, and the sink/source ratio and backpressure got
"worse", because the sink limits now, not because the change did not help. Such a change is
:data:`NEXT_BOTTLENECK` ("improved; the next bottleneck is the sink"), kept, when all of:

1. Running, with no data gap;
2. every expectation that missed moved toward its target by clearly more than the noise band
   (:data:`CLEARLY` bands), none regressed or stayed put, and none is unknown;
3. no guard got worse but those the downstream limit explains (backpressure, the time in it and the
   sink/source ratio: the stream in front of the sink fills), and those are not unknown; the sink
   rate is not lower; no rejected rows, permanent errors or DLQ writes appeared;
4. the sink is saturated after the change (:func:`gftune.policy.saturation.sink_saturation`: full
   flushes and a backlog in front of it) and was not before: the limit moved to it.

Anything else keeps its verdict: a change that did not move its signal, or made anything else
worse, still fails and is reverted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from gftune.plan.evidence import Expectation
from gftune.policy import saturation

PASS = "pass"
FAIL = "fail"
INCONCLUSIVE = "inconclusive"
# Kept: the change moved its signal well toward the target and the limit moved downstream (see the module).
NEXT_BOTTLENECK = "next_bottleneck"

# The signals the guards read (names from gftune.policy.signals' library; tests check they exist there).
SINK_RATE = "sink_rate"
SINK_SOURCE_RATIO = "sink_source_ratio"
BACKPRESSURE = "ingestor_backpressure"
BACKPRESSURE_SHARE = "backpressure_share"
EXHAUSTED_RETRIES = "sink_exhausted_rate"
TERMINAL_ERRORS = "sink_terminal_error_rate"
DLQ_RATE = "dlq_rate"
SOURCE_RATE = "source_rate"
LAG = "consumer_lag"
LAG_GROWTH = "consumer_lag_growth"
STREAM_DEPTH = "stream_depth"
STREAM_DEPTH_RATIO = "stream_depth_ratio"

# Expectations on these measure a backlog (it must go down): they may miss while a good change is
# still draining what queued before it (see "Catching up" above).
BACKLOG_SIGNALS = frozenset({BACKPRESSURE, BACKPRESSURE_SHARE, "dedup_backpressure", "dedup_backpressure_share",
                             STREAM_DEPTH, STREAM_DEPTH_RATIO, "stream_depth_batches", LAG, "nats_sink_pending",
                             "nats_stream_messages"})
# Expectations on these measure the change's throughput.
THROUGHPUT_SIGNALS = frozenset({SINK_RATE, SINK_SOURCE_RATIO, "sink_input_ratio"})


class Reading(Protocol):
    """What verify needs of a ``gftune.policy.signals.SignalReading``."""

    @property
    def value(self) -> float | None: ...

    @property
    def status(self) -> str: ...


@dataclass(frozen=True)
class Guard:
    signal: str
    better: str  # "higher" | "lower" | "absent" (must stay ~0 when it was ~0)
    absolute: bool = False  # the noise band is t itself (0..1 gauges), not relative
    label: str = ""
    # A worse value is only inconclusive, not a failure, while this signal held up: backpressure
    # right after a restart is the pipeline catching up on what queued while it was stopped.
    excused_by: str | None = None


GUARDS: tuple[Guard, ...] = (
    Guard(SINK_RATE, "higher", label="sink rate not lower"),
    Guard(SINK_SOURCE_RATIO, "higher", absolute=True, label="sink/source ratio not lower"),
    Guard(BACKPRESSURE, "lower", absolute=True, label="backpressure not higher", excused_by=SINK_RATE),
    Guard(BACKPRESSURE_SHARE, "lower", absolute=True, label="time in backpressure not higher", excused_by=SINK_RATE),
    Guard(EXHAUSTED_RETRIES, "absent", label="no new sink rows rejected after an INSERT error"),
    Guard(TERMINAL_ERRORS, "absent", label="no new permanent sink errors"),
    Guard(DLQ_RATE, "absent", label="no new DLQ writes"),
)

# How a backlog expectation judged as catching up starts its reason (and the verdict's note).
CATCHING_UP = "catching up"

# A missed expectation "clearly" moved toward its target when it moved by more than this many noise
# bands (t·max(|before|, |after|)): one band is what noise alone may do.
CLEARLY = 2.0
# Guards a limit further down explains: once the sink limits, the stream in front of it fills (the
# ingestors read more than it writes until it is full) and the ingestors backpressure.
DOWNSTREAM_LIMIT_GUARDS = frozenset({BACKPRESSURE, BACKPRESSURE_SHARE, SINK_SOURCE_RATIO})
# What shows whether the sink is saturated (gftune.policy.saturation), read before and after a change.
SATURATION_SIGNALS = ("sink_batch_fill", STREAM_DEPTH_RATIO, "stream_depth_batches", BACKPRESSURE,
                      BACKPRESSURE_SHARE, "dedup_backpressure", "dedup_backpressure_share", "nats_sink_pending")
# What producers write to the topic (source_rate + consumer_lag_growth): the lag growth's baseline is
# only comparable when it held still (see next_bottleneck).
INPUT_RATE = "kafka_input_rate"

# A rate this small (events/s) counts as "none": counters scraped at a time scale are fractional.
_ABSENT_EPS = 1e-6


@dataclass(frozen=True)
class Check:
    kind: str  # "expectation" | "guard" | "health"
    name: str  # signal name, or "status"
    text: str  # what was checked, for humans
    outcome: str  # pass | fail | inconclusive
    reason: str
    before: float | None = None
    after: float | None = None
    target: str = ""  # e.g. ">= 14000"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Check:
        return cls(**data)


@dataclass(frozen=True)
class Verdict:
    outcome: str  # pass | fail | inconclusive
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]
    verified_by_metrics: bool = True
    tolerance: float = 0.1
    notes: tuple[str, ...] = field(default_factory=tuple)
    created: bool = False  # a new pipeline, judged by what it shows (judge_created), not before/after
    bottleneck: str = ""  # NEXT_BOTTLENECK: the stage that limits now ("the sink")

    @property
    def label(self) -> str:
        if self.outcome == PASS and not self.verified_by_metrics:
            return "healthy, not verified by metrics"
        if self.created and self.outcome == PASS:
            flowing = any(c.name == SINK_RATE and c.outcome == PASS and (c.after or 0) > _ABSENT_EPS
                          for c in self.checks)
            return "created: Running, records flowing" if flowing else "created: Running, no records arrived yet"
        if self.outcome == NEXT_BOTTLENECK:
            return f"improved; the next bottleneck is {self.bottleneck or 'downstream'}"
        return {PASS: "improved" if any(c.kind == "expectation" for c in self.checks) else "healthy, not worse",
                FAIL: "regressed", INCONCLUSIVE: "inconclusive"}[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "label": self.label, "checks": [c.to_dict() for c in self.checks],
                "reasons": list(self.reasons), "verified_by_metrics": self.verified_by_metrics,
                "tolerance": self.tolerance, "notes": list(self.notes), "created": self.created,
                "bottleneck": self.bottleneck}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(outcome=data["outcome"], checks=tuple(Check.from_dict(c) for c in data.get("checks", ())),
                   reasons=tuple(data.get("reasons", ())), verified_by_metrics=data.get("verified_by_metrics", True),
                   tolerance=data.get("tolerance", 0.1), notes=tuple(data.get("notes", ())),
                   created=bool(data.get("created", False)), bottleneck=data.get("bottleneck", ""))


def known(reading: Reading | None) -> float | None:
    """The reading's value when it is usable: present, fresh and a finite number."""
    if reading is None or reading.status != "ok" or reading.value is None:
        return None
    value = float(reading.value)
    return value if math.isfinite(value) else None


def _why_unknown(name: str, reading: Reading | None, when: str) -> str:
    if reading is None:
        return f"{name}: no {when} reading"
    detail = getattr(reading, "detail", "") or ""
    if reading.status == "ok":
        detail = detail or f"value {reading.value!r} is not a finite number"
    state = reading.status if reading.status != "ok" else "unusable"
    return f"{name}: {when} reading {state}" + (f" ({detail})" if detail else "")


def _fmt(value: float | None) -> str:
    if value is None:
        return "unknown"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def moved(before: float, after: float, tolerance: float, *, absolute: bool = False) -> bool:
    """True when ``after`` differs from ``before`` by more than the noise band."""
    band = tolerance if absolute else tolerance * max(abs(before), abs(after))
    return abs(after - before) > band


def holds(op: str, after: float, value: float, tolerance: float) -> bool:
    """Whether ``after <op> value`` holds, allowing ``tolerance·|value|`` of slack (``tolerance``
    itself when the target is 0)."""
    slack = tolerance * abs(value) if value else tolerance
    if op in (">=", ">"):
        return after >= value - slack
    if op in ("<=", "<"):
        return after <= value + slack
    if op == "==":
        return abs(after - value) <= slack
    raise ValueError(f"unknown comparison {op!r} (use >=, >, <=, < or ==)")


def judge_expectation(expectation: Expectation, before: Reading | None, after: Reading | None,
                      tolerance: float) -> Check:
    name = expectation.signal
    target = f"{expectation.op} {_fmt(expectation.value)}"
    text = expectation.text or f"{name} {target}"
    b, a = known(before), known(after)
    if a is None:
        return Check("expectation", name, text, INCONCLUSIVE, _why_unknown(name, after, "after"), b, a, target)
    if holds(expectation.op, a, expectation.value, tolerance):
        return Check("expectation", name, text, PASS, f"{name} {_fmt(b)} → {_fmt(a)}, expected {target}", b, a, target)
    if b is not None and moved(b, a, tolerance) and _toward(expectation.op, b, a):
        return Check("expectation", name, text, INCONCLUSIVE,
                     f"{name} moved {_fmt(b)} → {_fmt(a)} toward {target} but fell short", b, a, target)
    how = "regressed" if b is not None and moved(b, a, tolerance) else "did not improve"
    return Check("expectation", name, text, FAIL, f"{name} {how}: {_fmt(b)} → {_fmt(a)}, expected {target}",
                 b, a, target)


def _toward(op: str, before: float, after: float) -> bool:
    if op in (">=", ">"):
        return after > before
    if op in ("<=", "<"):
        return after < before
    return False


def judge_guard(guard: Guard, before: Reading | None, after: Reading | None, tolerance: float,
                excuse: Check | None = None) -> Check | None:
    """None when the signal is not available on this deployment at all (neither side has a series).

    ``excuse`` is the judged guard of ``guard.excused_by``: when it passed, a worse value is
    inconclusive instead of a failure."""
    b, a = known(before), known(after)
    if (before is None and after is None) or (guard.better == "absent" and a is None and b is None):
        return None  # e.g. an error counter that never counted: nothing to compare
    name = guard.signal
    if guard.better == "absent" and b is None and a is not None:
        # The counter had no series before the change (it did not exist yet): none is none.
        if a > _ABSENT_EPS:
            return Check("guard", name, guard.label, FAIL, f"{name} appeared: none before → {_fmt(a)}", b, a)
        return Check("guard", name, guard.label, PASS, f"{name} none before → {_fmt(a)}", b, a)
    if a is None or b is None:
        missing = after if a is None else before
        return Check("guard", name, guard.label, INCONCLUSIVE,
                     _why_unknown(name, missing, "after" if a is None else "before"), b, a)
    if guard.better == "absent":
        if b <= _ABSENT_EPS < a:
            return Check("guard", name, guard.label, FAIL, f"{name} appeared: {_fmt(b)} → {_fmt(a)}", b, a)
        worse = a > b and moved(b, a, tolerance)
    elif guard.better == "higher":
        worse = a < b and moved(b, a, tolerance, absolute=guard.absolute)
    else:
        worse = a > b and moved(b, a, tolerance, absolute=guard.absolute)
    if worse and excuse is not None and excuse.outcome == PASS:
        return Check("guard", name, guard.label, INCONCLUSIVE,
                     f"{name} got worse ({_fmt(b)} → {_fmt(a)}) while {excuse.name} held up ({excuse.reason}): "
                     "still catching up after the restart? observe longer (verify settle/window)", b, a)
    if worse:
        return Check("guard", name, guard.label, FAIL, f"{name} got worse: {_fmt(b)} → {_fmt(a)}", b, a)
    return Check("guard", name, guard.label, PASS, f"{name} {_fmt(b)} → {_fmt(a)}", b, a)


def judge(*, status: str, before: Mapping[str, Reading], after: Mapping[str, Reading],
          expectations: Sequence[Expectation] = (), tolerance: float = 0.1,
          metrics: bool = True, gaps: Sequence[str] = (), guards: Sequence[Guard] = GUARDS) -> Verdict:
    """The verdict for one pipeline after a change.

    ``status`` is the pipeline's status at the end of the observation window. ``metrics=False``
    means no metric source is configured: only health is judged. A change without expectations
    then passes as "healthy, not verified by metrics"; a change that predicted an effect is
    inconclusive, because the prediction could not be checked. ``gaps`` are data gaps seen in the
    observation window (missing scrapes, series that stopped): each makes the verdict inconclusive.
    """
    checks: list[Check] = []
    running = status == "Running"
    checks.append(Check("health", "status", "pipeline Running", PASS if running else FAIL,
                        f"status is {status}" if running else f"status is {status}, expected Running"))
    if not metrics:
        notes = ("no metric source configured: verified by health only",)
        if expectations and running:
            checks.extend(Check("expectation", e.signal, e.text or f"{e.signal} {e.op} {_fmt(e.value)}",
                                INCONCLUSIVE, "no metric source configured", target=f"{e.op} {_fmt(e.value)}")
                          for e in expectations)
        return _verdict(checks, tolerance, verified_by_metrics=False, notes=notes)
    checks.extend(Check("data", "coverage", "metrics cover the observation window", INCONCLUSIVE, gap)
                  for gap in gaps)
    expected = [judge_expectation(e, before.get(e.signal), after.get(e.signal), tolerance) for e in expectations]
    judged: dict[str, Check] = {}
    for guard in guards:
        excuse = judged.get(guard.excused_by) if guard.excused_by else None
        check = judge_guard(guard, before.get(guard.signal), after.get(guard.signal), tolerance, excuse)
        if check is not None:
            judged[guard.signal] = check
    draining = None
    if any(_backlog_miss(c) for c in expected) and _throughput_holds(expected, judged.get(SINK_RATE)):
        draining = backlog_draining(before, after, tolerance)
    notes: tuple[str, ...] = ()
    if draining is not None:
        caught = [c.name for c in expected if _backlog_miss(c)]
        expected = [_caught_up(c, draining) if _backlog_miss(c) else c for c in expected]
        notes = (f"{CATCHING_UP}: {draining}; {', '.join(caught)} not at target yet, judged as catching up",)
    checks += [*expected, *judged.values()]
    verdict = _verdict(checks, tolerance, notes=notes)
    if verdict.outcome == PASS or not running or gaps:
        return verdict
    found = next_bottleneck(expected, judged, before, after, tolerance)
    if found is None:
        return verdict
    return Verdict(NEXT_BOTTLENECK, verdict.checks, (found,), tolerance=tolerance, notes=(*notes, found),
                   bottleneck="the sink")


def judge_created(*, status: str, after: Mapping[str, Reading], metrics: bool = True,
                  gaps: Sequence[str] = ()) -> Verdict:
    """The verdict for a pipeline that was just created: it has no "before" to compare with, so it
    is judged by what a new pipeline can show.

    * it is **Running** (else fail);
    * **records flow into the sink**: a sink rate above zero passes; records arriving (source rate
      above zero) while none reach the sink fails; no records arriving at all passes, and the label
      says that the flow could not be seen yet; an unknown sink rate is inconclusive;
    * no rejected sink rows, permanent errors or DLQ writes (any above zero fails).

    Without a metric source, health alone decides ("healthy, not verified by metrics"). Gaps in the
    observation window are expected (the pipeline's series begin during it): they are notes, not
    reasons for an inconclusive verdict.
    """
    running = status == "Running"
    checks = [Check("health", "status", "pipeline Running", PASS if running else FAIL,
                    f"status is {status}" if running else f"status is {status}, expected Running")]
    if not metrics:
        return _verdict(checks, 0.0, verified_by_metrics=False, created=True,
                        notes=("no metric source configured: verified by health only",))
    sink, source = known(after.get(SINK_RATE)), known(after.get(SOURCE_RATE))
    text = "records flow into the sink"
    if sink is None:
        checks.append(Check("health", SINK_RATE, text, INCONCLUSIVE, _why_unknown(SINK_RATE, after.get(SINK_RATE),
                                                                                "after")))
    elif sink > _ABSENT_EPS:
        checks.append(Check("health", SINK_RATE, text, PASS, f"{SINK_RATE} {_fmt(sink)}/s", after=sink))
    elif source is not None and source > _ABSENT_EPS:
        checks.append(Check("health", SINK_RATE, text, FAIL,
                            f"{_fmt(source)} records/s arrive but none reached the sink", after=sink))
    else:
        checks.append(Check("health", SINK_RATE, text, PASS,
                            "no records arrived in the window, so none could flow (not verified)", after=sink))
    for guard in GUARDS:
        if guard.better != "absent":
            continue
        value = known(after.get(guard.signal))
        if value is not None and value > _ABSENT_EPS:
            checks.append(Check("guard", guard.signal, guard.label, FAIL, f"{guard.signal} {_fmt(value)}",
                                after=value))
    return _verdict(checks, 0.0, created=True, notes=tuple(f"new pipeline: {gap}" for gap in gaps))


class _Known:
    """A reading as :mod:`gftune.policy.saturation` asks for it: its value when usable."""

    def __init__(self, value: float | None) -> None:
        self.value = value
        self.known = value is not None


class _Readings:
    def __init__(self, readings: Mapping[str, Reading]) -> None:
        self._readings = readings

    def reading(self, name: str) -> Any:
        return _Known(known(self._readings.get(name)))


def sink_saturation(readings: Mapping[str, Reading]) -> saturation.Saturation:
    """Whether the sink flushes back to back behind a backlog, from one side's readings (any shape
    of pipeline: the stream behind an ingestor or the join, or a dedup pod's backpressure)."""
    return saturation.sink_saturation(_Readings(readings), "", batch=None, sink_replicas=1)


def _clearly_toward(check: Check, tolerance: float) -> bool:
    """The missed expectation's signal moved toward its target by more than CLEARLY noise bands."""
    if check.before is None or check.after is None or not check.target:
        return False
    op = check.target.split(" ")[0]
    return _toward(op, check.before, check.after) and moved(check.before, check.after, CLEARLY * tolerance)


def _lag_growth_net_of_input(check: Check, before: Mapping[str, Reading], after: Mapping[str, Reading],
                             tolerance: float) -> str | None:
    """How the Kafka lag growth moved net of a change in what producers write, when the input rose
    beyond the noise band between the two windows and, net of it, the growth fell clearly (None
    otherwise).

    The lag grows by input - read. A baseline window that began before the input stepped up (the
    symptom's ``for:`` is shorter than the verify window) averages a growth the input has since
    outgrown: 5,005/s before and 5,045/s after while the input rose ~7,500 → 10,000/s is a growth
    2,500/s slower for the same input."""
    if check.name != LAG_GROWTH or check.before is None or check.after is None:
        return None
    ib, ia = known(before.get(INPUT_RATE)), known(after.get(INPUT_RATE))
    if ib is None or ia is None or ia <= ib or not moved(ib, ia, tolerance):
        return None
    same_input = check.before + (ia - ib)  # the growth the baseline's read rate would give at the new input
    if not (check.after < same_input and moved(same_input, check.after, CLEARLY * tolerance)):
        return None
    return (f"{check.name} {_fmt(check.before)} → {_fmt(check.after)} (expected {check.target}) while the input "
            f"rose {_fmt(ib)} → {_fmt(ia)}/s: at the same input, {_fmt(same_input)} → {_fmt(check.after)}")


def next_bottleneck(expected: Sequence[Check], guards: Mapping[str, Check], before: Mapping[str, Reading],
                    after: Mapping[str, Reading], tolerance: float) -> str | None:
    """Why the change improved and the sink limits now (None: it does not show), with the numbers.

    Every missed expectation moved clearly toward its target (the Kafka lag growth net of a rise in
    the input: :func:`_lag_growth_net_of_input`); no guard got worse or is unknown but backpressure
    and the sink/source ratio, which a sink that limits explains; the sink rate is measured and not
    lower; the sink is saturated now and was not before (the module's "The next bottleneck")."""
    missed = [c for c in expected if c.outcome != PASS]
    if not missed:
        return None
    moves = []
    for check in missed:
        if _clearly_toward(check, tolerance):
            moves.append(f"{check.name} {_fmt(check.before)} → {_fmt(check.after)} (expected {check.target})")
        elif (net := _lag_growth_net_of_input(check, before, after, tolerance)) is not None:
            moves.append(net)
        else:
            return None
    sink = guards.get(SINK_RATE)
    if sink is None or sink.outcome != PASS:
        return None
    for check in guards.values():
        explained = check.name in DOWNSTREAM_LIMIT_GUARDS and check.before is not None and check.after is not None
        if check.outcome != PASS and not explained:
            return None
    now, then = sink_saturation(after), sink_saturation(before)
    if not now.saturated or then.saturated:
        return None
    return (f"{'; '.join(moves)}; the sink writes {_fmt(sink.before)} → {_fmt(sink.after)}/s and is saturated now "
            f"({now.evidence}), it was not before ({then.evidence})")


def _backlog_miss(check: Check) -> bool:
    """A backlog expectation that missed its target with a usable after-reading."""
    return (check.kind == "expectation" and check.name in BACKLOG_SIGNALS and check.outcome != PASS
            and check.after is not None and check.target.split(" ")[0] in ("<=", "<", "=="))


def _throughput_holds(expected: Sequence[Check], sink_guard: Check | None) -> bool:
    """Every throughput expectation passed and one did, or (with none) the sink rate guard passed."""
    throughput = [c for c in expected if c.name in THROUGHPUT_SIGNALS]
    if throughput:
        return all(c.outcome == PASS for c in throughput)
    return sink_guard is not None and sink_guard.outcome == PASS


def backlog_draining(before: Mapping[str, Reading], after: Mapping[str, Reading], tolerance: float) -> str | None:
    """How the backlog drains after the change ("backlog draining at 1,450/s, ~44 min to drain"), or
    None when it does not drain measurably.

    The Kafka lag decides when it is known: it must shrink by more than the noise band,
    ``t·source_rate`` (at least 1 record/s). Without a usable lag reading, a stream depth that fell
    beyond the noise band between before and after counts (no rate, no estimate)."""
    growth = known(after.get(LAG_GROWTH))
    if growth is not None:
        reference = known(after.get(SOURCE_RATE)) or known(after.get(SINK_RATE)) or 0.0
        if growth >= -max(1.0, tolerance * abs(reference)):
            return None
        rate = -growth
        lag = known(after.get(LAG))
        eta = f", ~{_minutes(lag / rate)} to drain {_fmt(lag)} records" if lag is not None and lag > 0 else ""
        return f"backlog draining at {_fmt(rate)}/s (Kafka lag){eta}"
    for name in (STREAM_DEPTH, STREAM_DEPTH_RATIO):
        b, a = known(before.get(name)), known(after.get(name))
        if b is not None and a is not None and a < b and moved(b, a, tolerance):
            return f"backlog draining: {name} fell {_fmt(b)} → {_fmt(a)} (no Kafka lag reading: no estimate)"
    return None


# Shares of the observed window's time spent in backpressure: the restart's catch-up at the start of
# the window counts in them after the backlog is gone.
WINDOW_SHARES = frozenset({BACKPRESSURE_SHARE, "dedup_backpressure_share"})
# A Kafka lag under this many seconds of input counts as no backlog (as the sizing's backlog grace).
CAUGHT_UP_LAG_S = 30.0


def catch_up_over(verdict: Verdict, after: Mapping[str, Reading]) -> str | None:
    """Why a failed verdict should be judged again on the next window (None: it should not): every
    check that did not pass is a share of the window's time in backpressure, and by the window's end
    the catch-up that a restart causes is over — no backpressure now, the Kafka lag under
    ``CAUGHT_UP_LAG_S`` seconds of input. A smaller sink (a scale-down) drains the input that queued
    during its restart with backpressure for a minute or two; the share over a window that starts
    there counts it although it is gone."""
    missed = [c for c in verdict.checks if c.outcome != PASS]
    if not missed or any(c.name not in WINDOW_SHARES or c.kind not in ("expectation", "guard") for c in missed):
        return None
    gauge, lag, rate = known(after.get(BACKPRESSURE)), known(after.get(LAG)), known(after.get(SOURCE_RATE))
    if gauge is None or gauge > 0 or lag is None or rate is None or lag > CAUGHT_UP_LAG_S * rate:
        return None
    names = ", ".join(dict.fromkeys(c.name for c in missed))
    return (f"the catch-up after the restart is over by the window's end (no backpressure now, Kafka lag "
            f"{_fmt(lag)} under {CAUGHT_UP_LAG_S:.0f} s of input), but {names} over the window still counts it")


def _minutes(seconds: float) -> str:
    minutes = seconds / 60
    if minutes < 1:
        return "<1 min"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


def _caught_up(check: Check, draining: str) -> Check:
    return Check(check.kind, check.name, check.text, PASS,
                 f"{CATCHING_UP}: {draining} ({check.name} {_fmt(check.before)} → {_fmt(check.after)}, expected "
                 f"{check.target}, while the change's throughput holds)", check.before, check.after, check.target)


def _verdict(checks: list[Check], tolerance: float, *, verified_by_metrics: bool = True,
             notes: tuple[str, ...] = (), created: bool = False) -> Verdict:
    outcomes = {c.outcome for c in checks}
    outcome = FAIL if FAIL in outcomes else INCONCLUSIVE if INCONCLUSIVE in outcomes else PASS
    reasons = tuple(c.reason for c in checks if c.outcome == outcome and outcome != PASS)
    return Verdict(outcome, tuple(checks), reasons, verified_by_metrics, tolerance, notes, created)


def next_move(verdict: Verdict, *, reverted: bool | None = None) -> str:
    """What the team should do next, in the seed report's words."""
    if verdict.outcome == PASS:
        return "accept"
    if verdict.outcome == NEXT_BOTTLENECK:
        return f"keep: it helped and {verdict.bottleneck or 'the next stage'} limits now; its policies may act at once"
    if verdict.outcome == FAIL:
        if reverted is False:
            return "revert failed: restore the previous configuration by hand"
        return "reverted: try a different tunable"
    return "investigate: the change is kept; re-run `gftune plan` after more data, or revert by hand"
