"""The policies of a repository over its pipelines: what ``gftune plan`` and ``gftune tune`` report.

:func:`pipeline_outcome` evaluates every selected policy for one pipeline against one metric
snapshot (:mod:`gftune.policy.arbitrate`, :mod:`gftune.policy.evaluate`), or says why it cannot.
Pure: the snapshot it reads is passed in (``gftune.orchestration.policies`` opens the metric source
and feeds it recorded answers, :mod:`gftune.metrics.recorded`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gftune.desired.config import Config
from gftune.metrics.snapshots import Snapshot
from gftune.plan.evidence import Escalation, Proposal
from gftune.policy.arbitrate import PolicyOutcome, evaluate_pipeline
from gftune.policy.facts import facts_for
from gftune.policy.language import Policy
from gftune.policy.signals import SignalContext
from gftune.policy.views import SnapshotView


@dataclass
class PolicyReport:
    source_description: str | None  # None: no metrics configured, policies were not evaluated
    outcomes: dict[str, PolicyOutcome] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # report-wide (naming detection, invalid policies)

    @property
    def proposals(self) -> list[Proposal]:
        return [p for o in self.outcomes.values() for p in o.proposals]

    @property
    def escalations(self) -> list[Escalation]:
        return [e for o in self.outcomes.values() for e in o.escalations]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source_description, "notes": list(self.notes),
                "outcomes": {k: v.to_dict() for k, v in self.outcomes.items()}}


NO_SOURCE = "no metrics source configured (--prometheus or --scrape): policies not evaluated"
NO_POLICIES = "no policies in the repository"


def everywhere(pipeline_ids: Iterable[str], note: str) -> dict[str, PolicyOutcome]:
    """The same note for every pipeline (nothing could be evaluated)."""
    return {pipeline_id: PolicyOutcome(notes=[note]) for pipeline_id in pipeline_ids}


def pipeline_outcome(policies: list[Policy], pipeline: Any, live: Any, snapshot: Snapshot, settings: Config,
                     now: datetime) -> PolicyOutcome:
    """Every selected policy for one pipeline, or why none could be evaluated."""
    if not getattr(pipeline, "valid", True):
        return PolicyOutcome(notes=["pipeline file invalid: policies not evaluated"])
    facts = facts_for(pipeline, live)
    if live is not None and getattr(live, "error", None):
        return PolicyOutcome(notes=[f"live state unreadable ({live.error}): policies not evaluated"])
    if not facts.exists:
        return PolicyOutcome(notes=["pipeline does not exist yet: no metrics to evaluate policies on"])
    if facts.status not in (None, "Running"):
        return PolicyOutcome(notes=[f"pipeline is {facts.status}: its metrics do not show its load; "
                                    "policies not evaluated"])
    view = SnapshotView(snapshot, SignalContext(pipeline.pipeline_id, facts.doc, settings.time_scale),
                        time_scale=settings.time_scale)
    return evaluate_pipeline(policies, facts, view, settings, now)
