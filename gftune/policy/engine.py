"""All policies over all pipelines: the entry point of ``gftune plan`` and ``gftune tune``.

:func:`plan_policies` opens the metric source, takes one snapshot for all pipelines, and evaluates
every selected policy (:mod:`gftune.policy.arbitrate`, :mod:`gftune.policy.evaluate`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gftune.metrics.sources import MetricsError, open_source
from gftune.plan.evidence import Escalation, Proposal
from gftune.policy.arbitrate import PolicyOutcome, evaluate_pipeline
from gftune.policy.facts import facts_for
from gftune.policy.files import load_policies
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



def plan_policies(state: Any, live: Mapping[str, Any], config: Any, now: datetime,
                  *, source: Any = None, progress: Callable[[str], None] | None = None) -> PolicyReport:
    """Evaluate the repository's policies against live metrics (``gftune plan`` / ``gftune tune``).

    ``source`` overrides the configured metric source (tests). Without one configured, the report
    says so (``source_description`` None) and nothing is evaluated.
    """
    policies, notes = load_policies(state)
    report = PolicyReport(None, notes=notes)
    pipelines = getattr(state, "pipelines", {}) or {}
    own_source = source is None
    source = source if source is not None else open_source(config)
    if source is None:
        for pipeline_id in pipelines:
            report.outcomes[pipeline_id] = PolicyOutcome(notes=["no metrics source configured (--prometheus or "
                                                                "--scrape): policies not evaluated"])
        return report
    report.source_description = source.description
    settings = config
    try:
        if not policies:
            for pipeline_id in pipelines:
                report.outcomes[pipeline_id] = PolicyOutcome(notes=["no policies in the repository"])
            return report
        try:
            snapshot = source.snapshot(window_s=settings.metrics_window / settings.time_scale, now=now,
                                       progress=progress)
        except MetricsError as exc:
            for pipeline_id in pipelines:
                report.outcomes[pipeline_id] = PolicyOutcome(notes=[f"metrics unavailable: {exc}; policies not "
                                                                    "evaluated"])
            report.notes.append(f"metrics unavailable: {exc}")
            return report
        if snapshot.naming.detail:
            report.notes.append(f"metric names: {snapshot.naming.detail}")
        for pipeline_id, pipeline in pipelines.items():
            if not getattr(pipeline, "valid", True):
                report.outcomes[pipeline_id] = PolicyOutcome(notes=["pipeline file invalid: policies not evaluated"])
                continue
            state_live = live.get(pipeline_id)
            facts = facts_for(pipeline, state_live)
            if state_live is not None and getattr(state_live, "error", None):
                report.outcomes[pipeline_id] = PolicyOutcome(notes=[f"live state unreadable ({state_live.error}): "
                                                                    "policies not evaluated"])
                continue
            if not facts.exists:
                report.outcomes[pipeline_id] = PolicyOutcome(notes=["pipeline does not exist yet: no metrics to "
                                                                    "evaluate policies on"])
                continue
            if facts.status not in (None, "Running"):
                report.outcomes[pipeline_id] = PolicyOutcome(notes=[f"pipeline is {facts.status}: its metrics do not "
                                                                    "show its load; policies not evaluated"])
                continue
            view = SnapshotView(snapshot, SignalContext(pipeline_id, facts.doc, settings.time_scale),
                                time_scale=settings.time_scale)
            report.outcomes[pipeline_id] = evaluate_pipeline(policies, facts, view, settings, now)
    finally:
        if own_source:
            source.close()
    return report
