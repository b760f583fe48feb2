"""Arbitration between the policies that select one pipeline: highest priority first, a field changed by
one is not changed again, an out-of-scope escalation withholds every proposal, and a symptom no
policy matched is said rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gftune.desired.config import Config
from gftune.formatting import number as fmt
from gftune.plan.evidence import Escalation, Proposal
from gftune.policy.evaluate import evaluate
from gftune.policy.facts import PipelineFacts
from gftune.policy.language import OPS, Policy
from gftune.policy.ridealong import ride_along_wait
from gftune.policy.views import MetricsView


@dataclass
class PolicyOutcome:
    proposals: list[Proposal] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # policies that could not be evaluated: shown, never silent

    def to_dict(self) -> dict[str, Any]:
        return {"proposals": [p.to_dict() for p in self.proposals],
                "escalations": [e.to_dict() for e in self.escalations], "notes": list(self.notes),
                "errors": list(self.errors)}



SYMPTOMS = (("ingestor_backpressure", ">=", 1.0, "ingestor backpressure active"),
            ("sink_source_ratio", "<", 0.9, "sink trails the source"),
            ("sink_exhausted_rate", ">", 0.0, "sink retries exhausted"),
            ("sink_terminal_error_rate", ">", 0.0, "terminal sink errors"))


def evaluate_pipeline(policies: Iterable[Policy], facts: PipelineFacts, view: MetricsView,
                      settings: Config | None = None, now: datetime | None = None) -> PolicyOutcome:
    """Every selected policy, highest priority first; a field changed by one is not changed again."""
    outcome = PolicyOutcome()
    selected = sorted((p for p in policies if p.selects(facts.pipeline_id, facts.labels)),
                      key=lambda p: (-p.priority, p.name))
    if not selected:
        outcome.notes.append("no policy selects this pipeline")
        return outcome
    claimed: dict[str, str] = {}
    matched = False
    out_of_scope: str | None = None
    # every policy first: a scale-down may wait for another that is about to be established (ride_along)
    evaluations = [evaluate(policy, facts, view, settings, now) for policy in selected]
    for policy, evaluation in zip(selected, evaluations, strict=True):
        outcome.errors += evaluation.errors
        if evaluation.escalation is not None and policy.escalates and out_of_scope is None:
            out_of_scope = policy.name
        # A policy that could not be evaluated says so in its own note, worded the same on every
        # pipeline where the same data is missing, so that a report can say it once for all of them.
        outcome.notes += evaluation.notes
        matched = matched or evaluation.matched
        if evaluation.escalation is not None:
            if evaluation.blocked_by_guards and outcome.proposals:
                # A higher-priority policy already proposes a fix for this pipeline: what this one
                # could not do is context, not a reason to block the plan.
                outcome.notes.append(f"{policy.name}: {evaluation.escalation.reason} (a higher-priority proposal "
                                     f"addresses the pipeline; otherwise: {evaluation.escalation.next_step})")
            else:
                outcome.escalations.append(evaluation.escalation)
        proposal = evaluation.proposal
        if proposal is None:
            continue
        wait = ride_along_wait(policy, evaluation, evaluations)
        if wait is not None:
            outcome.notes.append(wait.note)
            continue
        kept = [c for c in proposal.changes if c.path not in claimed]
        dropped = [c for c in proposal.changes if c.path in claimed]
        if not kept:
            outcome.notes.append(f"{policy.name}: superseded by {', '.join(sorted({claimed[c.path] for c in dropped}))}"
                                 " (higher priority, same fields)")
            continue
        notes = list(proposal.notes) + [f"{c.path} left to {claimed[c.path]} (higher priority)" for c in dropped]
        for change in kept:
            claimed[change.path] = policy.name
        outcome.proposals.append(replace(proposal, changes=tuple(kept), notes=tuple(notes)))
    if out_of_scope is not None and outcome.proposals:
        # An out-of-scope symptom (exhausted retries, terminal errors): no change is proposed while it lasts.
        outcome.notes += [f"{p.policy}: proposal withheld while {out_of_scope} escalates (an out-of-scope symptom "
                          f"comes first): {', '.join(c.path for c in p.changes)}" for p in outcome.proposals]
        outcome.proposals = []
    if not matched:
        symptoms = []
        for name, op, threshold, text in SYMPTOMS:
            reading = view.reading(name)
            if reading.known and OPS[op](reading.value, threshold):
                symptoms.append(f"{text} ({name} {fmt(reading.value, reading.unit)})")
        if symptoms:
            outcome.notes.append("no policy matched, but " + "; ".join(symptoms)
                                 + ": not guessing a change; narrow the signal or add a policy")
        else:
            outcome.notes.append("no policy matched")
    return outcome
