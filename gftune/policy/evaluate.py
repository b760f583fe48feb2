"""Evaluation of one policy for one pipeline: conditions, then the actions, the guards and the
verification it asks for.

Evaluation is pure: :func:`evaluate` takes a policy, the facts of one pipeline and a
:class:`~gftune.policy.views.MetricsView` (live metrics, or a test fixture) and returns a proposal,
an escalation, or nothing, always with notes saying why. Unknown data never proposes: a condition
on an unknown signal is *not met* and is reported ("unknown, not zero"). The always-on guards of
:mod:`gftune.policy.guards` bound every change; ``scale_to_fit`` sizes all stages in one pass
(:mod:`gftune.policy.fit`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from gftune.desired import paths
from gftune.desired.config import Config
from gftune.formatting import duration
from gftune.formatting import number as fmt
from gftune.metrics.snapshots import ERROR
from gftune.plan.assessment import Assessment
from gftune.plan.evidence import Escalation, Evidence, Expectation, FieldChange, Proposal, VerifySpec
from gftune.policy import assess, guards
from gftune.policy.actions import expand_path, field_changes
from gftune.policy.cooldown import (
    cooldown,
    last_verified_change,
    revert_backoff,
    scale_up_allowed,
    still_draining,
    verified_change_by_others,
)
from gftune.policy.facts import PipelineFacts
from gftune.policy.fit import Sized, scale_to_fit
from gftune.policy.language import OPS, Condition, Policy
from gftune.policy.resolve import Resolver
from gftune.policy.views import MetricsView


@dataclass
class Evaluation:
    """What one policy concluded for one pipeline."""

    policy: str
    matched: bool = False
    proposal: Proposal | None = None
    escalation: Escalation | None = None
    notes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # signals that could not be read
    blocked_by_guards: bool = False  # the escalation comes from guards, not from an escalate: policy
    incomplete: bool = False  # a condition could not be evaluated (unknown data): never proposes
    errors: list[str] = field(default_factory=list)  # its own PromQL failed: the policy is broken, not quiet
    # Conditions that hold now but not yet for their whole ``for:``: (signal, model seconds still to go).
    holding: list[tuple[str, float]] = field(default_factory=list)
    # Every other condition holds, nothing (cooldown, backoff) keeps it from proposing: it is established
    # in this many model seconds if what holds now goes on holding. None otherwise.
    pending_s: float | None = None
    # For a proposal: how long (model seconds) its ``for:`` conditions have been established, read back
    # as far as its ``ride_along`` (a scale-down waits at most that long for another change).
    established_s: float | None = None


def _evaluate_condition(condition: Condition, policy: Policy, view: MetricsView, resolver: Resolver,
                        settings: Config, evaluation: Evaluation) -> tuple[bool | None, list[Evidence]]:
    if condition.any_of:
        results = [_evaluate_condition(c, policy, view, resolver, settings, evaluation) for c in condition.any_of]
        # the first alternative that holds is the evidence (a reviewer reads one reason, not every one)
        evidence = next((ev for met, ev in results if met), None) or [e for _, ev in results for e in ev]
        if any(met for met, _ in results):
            return True, evidence
        return (None if any(met is None for met, _ in results) else False), evidence
    if condition.field is not None:
        return _evaluate_field(condition, policy, view, resolver, evaluation)
    if condition.applied_by:
        return _evaluate_applied(condition, policy, view, resolver.facts, settings)
    threshold, threshold_text = resolver.number(condition.value)
    name = condition.signal or "promql"
    reading = view.promql(condition.promql) if condition.promql is not None else view.reading(name)
    window = duration(settings.metrics_window)
    for_text = f" for {duration(condition.for_s)}" if condition.for_s else ""
    if threshold is None:
        evaluation.unknown.append(f"threshold {condition.value!r} of {name} ({threshold_text})")
        return None, []
    measured, query, detail, met = reading.value, reading.query, reading.detail, None
    if reading.known:
        met = OPS[condition.op](reading.value, threshold)
    if condition.for_s > 0 and met:
        held = view.held(condition, threshold)
        met = held.met
        measured = held.value if held.value is not None else measured
        detail = held.detail
        if held.met is None and reading.known:
            met = False
            detail = f"held only partly: {held.detail}"
        if not met and held.held_s is not None and held.held_s < condition.for_s:
            evaluation.holding.append((name, condition.for_s - held.held_s))
            detail = f"{detail}; holding for {duration(held.held_s)} of {duration(condition.for_s)}"
    evidence = Evidence(policy=policy.name, signal=name, query=query or (condition.promql or ""), window=window,
                        measured=measured if reading.known else None,
                        threshold=f"{condition.op} {threshold_text}{for_text}", unit=reading.unit,
                        at=view.at.isoformat())
    if condition.promql is not None and reading.status == ERROR:
        # fail closed: a query that cannot be answered is the policy's error, never an unknown that
        # quietly proposes nothing
        evaluation.errors.append(f"{policy.name}: its promql condition failed: {reading.detail} "
                                 f"(query: {reading.query or condition.promql})")
        return None, [evidence]
    if not reading.known:
        evaluation.unknown.append(f"{name} ({reading.status}: {reading.detail or 'no data'})")
        return None, [evidence]
    if met is False and detail and condition.for_s > 0:
        evaluation.notes.append(f"{policy.name}: {name} {fmt(measured, reading.unit)} {condition.op} "
                                f"{threshold_text} but {detail}")
    return met, [evidence]


def _evaluate_field(condition: Condition, policy: Policy, view: MetricsView, resolver: Resolver,
                    evaluation: Evaluation) -> tuple[bool | None, list[Evidence]]:
    """A condition on the pipeline document itself: holds when every matching item satisfies it."""
    field_path = str(condition.field)
    threshold, threshold_text = resolver.number(condition.value)
    targets = expand_path(field_path, resolver.facts.doc)
    values = [(p, paths.get(resolver.facts.doc, p)) for p in targets]
    numbers = [(p, guards.to_number(guards.field_kind(p, v), v)) for p, v in values]
    known = [(p, n) for p, n in numbers if n is not None]
    evidence = [Evidence(policy.name, f"field:{p}", "the pipeline document in effect (live)", "", n,
                         f"{condition.op} {threshold_text}", {"cpu": "cores", "memory": "bytes"}.get(
                             guards.field_kind(p), ""), view.at.isoformat()) for p, n in known]
    if threshold is None or not known or len(known) != len(numbers):
        evaluation.unknown.append(f"field:{field_path} (no value in the pipeline, or threshold unknown)")
        return None, evidence
    return all(OPS[condition.op](n, threshold) for _, n in known), evidence


def _evaluate_applied(condition: Condition, policy: Policy, view: MetricsView, facts: PipelineFacts,
                      settings: Config) -> tuple[bool, list[Evidence]]:
    """The last change was one apply kept for one of ``applied_by`` (``gftune:applied``), watched to its
    end no longer than ``within`` ago. A pipeline's tags are always known: never unknown."""
    verified = last_verified_change(facts)
    wanted = ", ".join(condition.applied_by)
    threshold = f"by one of {wanted}, within {duration(condition.within_s)}"
    if verified is None:
        return False, [Evidence(policy.name, "applied_by", "the pipeline's gftune:applied tag", "", None,
                                f"{threshold}: the last change is not one apply kept", "", view.at.isoformat())]
    at, policies = verified
    age = (view.at - at).total_seconds() * settings.time_scale
    by = ", ".join(sorted(policies)) or "a git change"
    met = bool(policies & set(condition.applied_by)) and age <= condition.within_s
    return met, [Evidence(policy.name, "applied_by", f"gftune:applied={by}@{at.isoformat(timespec='seconds')}",
                          "", age, f"{threshold} (age of the kept change)", "s", view.at.isoformat())]


def _verify_spec(policy: Policy, settings: Config, view: MetricsView, resolver: Resolver,
                 prediction: Mapping[str, float], notes: list[str]) -> tuple[VerifySpec, list[Expectation]]:
    expectations: list[Expectation] = []
    for rule in policy.expect:
        reading = view.reading(rule.signal)
        baseline = reading.value if reading.known else None
        if not reading.known and rule.value != "prediction":
            # Not every shape reports every signal (no depth ratio without MaxMsgs, no dedup pod, no
            # exporter): an expectation the pipeline cannot show would only make the verdict
            # inconclusive.
            notes.append(f"verify: {rule.signal} is not reported for this pipeline ({reading.status}); not checked")
            continue
        if rule.value == "prediction":
            value = prediction.get(rule.signal)
            how = "prediction"
        else:
            value, how = resolver.number(rule.value, baseline=baseline)
        if value is None:
            notes.append(f"verify: {rule.signal} {rule.op} {rule.value} cannot be resolved ({how}); not checked")
            continue
        text = f"{rule.signal.replace('_', ' ')} {fmt(baseline, reading.unit)} -> {rule.op}{fmt(value, reading.unit)}"
        expectations.append(Expectation(rule.signal, rule.op, float(value), text))
    return VerifySpec(
        expect=tuple(expectations),
        settle_s=policy.settle_s if policy.settle_s is not None else settings.verify_settle,
        window_s=policy.window_s if policy.window_s is not None else settings.verify_window,
        tolerance=policy.tolerance if policy.tolerance is not None else settings.verify_tolerance,
    ), expectations



def evaluate(policy: Policy, facts: PipelineFacts, view: MetricsView, settings: Config | None = None,
             now: datetime | None = None) -> Evaluation:
    """Evaluate one policy for one pipeline. Pure: all I/O is behind ``view``."""
    settings = settings or Config()
    now = now or view.at
    evaluation = Evaluation(policy.name)
    resolver = Resolver(facts, view)
    evidence: list[Evidence] = []
    results: list[bool | None] = []
    holding = 0  # conditions that hold now, not yet for their whole ``for:``
    for condition in policy.when:
        before = len(evaluation.holding)
        met, found = _evaluate_condition(condition, policy, view, resolver, settings, evaluation)
        evidence += found
        if met is False and len(evaluation.holding) > before:
            holding += 1  # may be established soon: the rest decides whether the policy is pending
            continue
        results.append(met)
        if met is False:
            break  # later conditions cannot change the outcome
    if evaluation.errors:
        return evaluation
    if holding and all(r is True for r in results):
        if not policy.escalates and not revert_backoff(policy, facts, now, settings)[0] \
                and not cooldown(policy, facts, now, settings)[0]:
            evaluation.pending_s = max(left for _, left in evaluation.holding)
        return evaluation
    if holding or not results or not all(r is True for r in results):
        if not holding and any(r is None for r in results) and not any(r is False for r in results):
            evaluation.incomplete = True
            evaluation.notes.append(f"{policy.name}: not evaluated (no data is not zero): "
                                    f"{', '.join(evaluation.unknown)}")
        return evaluation
    evaluation.matched = True
    for name in policy.extra_evidence:
        reading = view.reading(name)
        if reading.known and not any(e.signal == name for e in evidence):
            detail = ", ".join(f"{k or '-'}: {fmt(v, reading.unit)}" for k, v in sorted(reading.breakdown.items()))
            evidence.append(Evidence(policy.name, name, reading.query, duration(settings.metrics_window),
                                     reading.value, f"context{' (' + detail + ')' if detail else ''}", reading.unit,
                                     view.at.isoformat()))
    if policy.escalates:
        evaluation.escalation = Escalation(facts.pipeline_id, policy.name, str(policy.escalate_reason),
                                           tuple(evidence), str(policy.escalate_next_step),
                                           assess.out_of_scope(view))
        return evaluation
    backing_off, note = revert_backoff(policy, facts, now, settings)
    if backing_off:
        evaluation.notes.append(str(note))
        return evaluation
    cooling, note = cooldown(policy, facts, now, settings)
    waiver = verified_change_by_others(policy, facts) if cooling else None
    draining = still_draining(_measured(view, "consumer_lag_growth")) if waiver else None
    if cooling and (waiver is None or draining):
        evaluation.notes.append(str(note) + (f"; {waiver}, but {draining}" if draining else ""))
        return evaluation
    if note and not cooling:
        evaluation.notes.append(note)
    notes: list[str] = []
    changes: list[FieldChange] = []
    prediction: dict[str, float] = {}
    rationale_parts: list[str] = []
    sizing_blocked: list[guards.Blocked] = []
    sized: list[Sized] = []
    for action in policy.then:
        if action.kind == "scale_to_fit":
            found, predicted, rationale = scale_to_fit(action, facts, view, settings, policy, evidence, notes,
                                                       sizing_blocked, sized, earlier=changes)
            prediction.update(predicted)
            if rationale:
                rationale_parts.append(rationale)
        else:
            found = field_changes(action, facts, resolver, notes)
        for change in found:
            changes = [c for c in changes if c.path != change.path] + [change]
    guard_ctx = guards.GuardContext(
        doc=facts.doc, constraints=dict(facts.constraints), exists=facts.exists, immutable=facts.immutable,
        measured_partitions=_measured_int(view, "kafka_partitions"),
        row_bytes=_measured(view, "sink_row_bytes"))
    guarded = guards.apply_guards(changes, guard_ctx)
    guarded.blocked = sizing_blocked + guarded.blocked
    notes += guarded.notes
    if cooling:
        if not scale_up_allowed(guarded.changes):
            evaluation.notes.append(f"{note}; {waiver}, but this change is not only a scale-up")
            return evaluation
        notes.append(f"cooldown {duration(policy.cooldown_s)} not applied: {waiver}, and this change only adds "
                     "capacity")
    if not guarded.changes:
        if guarded.blocked:
            reasons = "; ".join(f"{b.path}: {b.reason}" for b in guarded.blocked)
            next_steps = " / ".join(dict.fromkeys(b.next_step for b in guarded.blocked))
            evaluation.escalation = Escalation(facts.pipeline_id, policy.name,
                                               f"conditions met, but every change is blocked by a guard: {reasons}",
                                               tuple(evidence), next_steps, _blocked_assessment(sized, guarded, view))
            evaluation.blocked_by_guards = True
        else:
            evaluation.notes.append(f"{policy.name}: conditions met, but nothing to change"
                                    + (f" ({'; '.join(notes)})" if notes else " (already at the target values)"))
        return evaluation
    for blocked in guarded.blocked:
        notes.append(f"{blocked.path}: {blocked.reason}; next step: {blocked.next_step}")
    verify, expectations = _verify_spec(policy, settings, view, resolver, prediction, notes)
    predictions = list(expectations)
    if "sink_rate" in prediction and not any(e.signal == "sink_rate" for e in predictions):
        baseline = view.reading("sink_rate")
        predictions.append(Expectation(
            "sink_rate", ">=", round(prediction["sink_rate"], 3),
            f"sink rate {fmt(baseline.value if baseline.known else None, 'records/s')} -> "
            f">={fmt(prediction['sink_rate'], 'records/s')}"))
        verify = VerifySpec(tuple(predictions), verify.settle_s, verify.window_s, verify.tolerance)
    rationale = policy.description or policy.name
    if rationale_parts:
        rationale += " | " + " | ".join(rationale_parts)
    evaluation.proposal = Proposal(facts.pipeline_id, policy.name, tuple(guarded.changes), tuple(evidence),
                                   tuple(predictions), verify, rationale, tuple(notes),
                                   _assessment(sized, guarded.changes, view))
    if policy.ride_along_s > 0:
        evaluation.established_s = _established_s(policy, view, resolver)
    return evaluation


def _established_s(policy: Policy, view: MetricsView, resolver: Resolver) -> float:
    """How long every ``for:`` condition of ``policy`` has held past its ``for:``, read back at most
    ``ride_along`` further (a scale-down's wait for another change is bounded by it)."""
    established = policy.ride_along_s
    for condition in policy.when:
        if condition.for_s <= 0 or condition.any_of or condition.field is not None or condition.applied_by:
            continue
        threshold, _ = resolver.number(condition.value)
        if threshold is None:
            continue
        longer = replace(condition, for_s=condition.for_s + policy.ride_along_s)
        held = view.held(longer, threshold)
        held_s = held.held_s if held.held_s is not None else condition.for_s
        established = min(established, max(0.0, held_s - condition.for_s))
    return established


def _assessment(sized: list[Sized], changes: list[FieldChange], view: MetricsView) -> Assessment:
    """The verdict's facts: from the sizing when ``scale_to_fit`` made the change, else from the readings."""
    if sized:
        return assess.from_sizing(sized[-1].inp, sized[-1].result, changes, view, applied=sized[-1].stages)
    return assess.from_readings(changes, view)


def _blocked_assessment(sized: list[Sized], guarded: guards.GuardOutcome, view: MetricsView) -> Assessment:
    """Why no change helps: the sizing's capped stage, else the guards' first block."""
    if sized and any(d.capped for d in sized[-1].result.decisions):
        return assess.capped(sized[-1].inp, sized[-1].result, view)
    return assess.blocked([(b.path, b.reason) for b in guarded.blocked], view)


def _measured(view: MetricsView, name: str) -> float | None:
    reading = view.reading(name)
    return reading.value if reading.known else None


def _measured_int(view: MetricsView, name: str) -> int | None:
    value = _measured(view, name)
    return round(value) if value else None
