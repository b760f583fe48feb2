"""Policies against metrics for ``plan`` and ``tune``: open the metric source, take one snapshot for all
pipelines, and evaluate each pipeline's policies (:func:`gftune.policy.engine.pipeline_outcome`) on
answers recorded from that snapshot.

The evaluation reads a :class:`~gftune.metrics.recorded.RecordedSnapshot` and never the source: when it
needs an answer that is not recorded yet it stops (:class:`~gftune.metrics.recorded.Unanswered`); the
question is put to the live snapshot here, the answer recorded, and the pipeline evaluated again. Each
pipeline is asked exactly what the lazy evaluation would ask, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from gftune.desired.config import Config
from gftune.desired.repo import DesiredState
from gftune.metrics.recorded import RecordedSnapshot, Unanswered, ask
from gftune.metrics.snapshots import MetricsError, MetricSource
from gftune.metrics.sources import open_source
from gftune.policy.arbitrate import PolicyOutcome
from gftune.policy.engine import NO_POLICIES, NO_SOURCE, PolicyReport, everywhere, pipeline_outcome
from gftune.policy.files import load_policies
from gftune.policy.language import Policy


def plan_policies(state: DesiredState, live: Mapping[str, Any], config: Config, now: datetime,
                  *, source: MetricSource | None = None, progress: Callable[[str], None] | None = None
                  ) -> PolicyReport:
    """Evaluate the repository's policies against live metrics (``gftune plan`` / ``gftune tune``).

    ``source`` overrides the configured metric source (tests). Without one configured, the report
    says so (``source_description`` None) and nothing is evaluated.
    """
    policies, notes = load_policies(state)
    report = PolicyReport(None, notes=notes)
    pipelines = state.pipelines
    own_source = source is None
    source = source if source is not None else open_source(config)
    if source is None:
        report.outcomes = everywhere(pipelines, NO_SOURCE)
        return report
    report.source_description = source.description
    try:
        if not policies:
            report.outcomes = everywhere(pipelines, NO_POLICIES)
            return report
        try:
            snapshot = source.snapshot(window_s=config.metrics_window / config.time_scale, now=now,
                                       progress=progress)
        except MetricsError as exc:
            report.outcomes = everywhere(pipelines, f"metrics unavailable: {exc}; policies not evaluated")
            report.notes.append(f"metrics unavailable: {exc}")
            return report
        if snapshot.naming.detail:
            report.notes.append(f"metric names: {snapshot.naming.detail}")
        recorded = RecordedSnapshot.like(snapshot)
        for pipeline_id, pipeline in pipelines.items():
            report.outcomes[pipeline_id] = _answered(policies, pipeline, live.get(pipeline_id), snapshot, recorded,
                                                     config, now)
    finally:
        if own_source:
            source.close()
    return report


def _answered(policies: list[Policy], pipeline: Any, live: Any, snapshot: Any, recorded: RecordedSnapshot,
              config: Config, now: datetime) -> PolicyOutcome:
    """One pipeline's outcome, asking the live snapshot whatever the evaluation needs until it has it all."""
    while True:
        try:
            return pipeline_outcome(policies, pipeline, live, recorded, config, now)
        except Unanswered as unanswered:
            recorded.record(unanswered.question, ask(snapshot, unanswered.question))
