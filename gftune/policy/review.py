"""From review to merge: what a tune run proposes now, against the proposals of the plan a person reviewed.

``gftune plan --out plan.json`` shows proposals on the pull request; ``gftune tune --plan plan.json``
writes exactly those. When tune evaluates the policies again instead (``--reevaluate``), the metrics
have moved on and a value may differ from the reviewed one: :func:`revisions` pairs each field of the
reviewed proposals with the one proposed now and, where they differ, says why from the evidence both
carry (the measured signals that moved most), e.g. "resources.sink.replicas: 3 in the reviewed plan
-> 4 now (stream-backpressure): consumer_lag 1,200,000 -> 3,100,000 (+158%)". Pure: proposals in,
revisions out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gftune.formatting import number
from gftune.plan import canonical
from gftune.plan.evidence import Evidence, Proposal
from gftune.plan.integrity import seal_problem
from gftune.plan.model import Plan
from gftune.policy.arbitrate import PolicyOutcome
from gftune.policy.engine import PolicyReport

MIN_RELATIVE_CHANGE = 0.05  # a signal that moved less than this is noise, not a reason
MAX_REASONS = 3


@dataclass(frozen=True)
class Revision:
    """One field whose proposed value differs between the reviewed plan and now."""

    pipeline_id: str
    path: str
    reviewed: Any  # None: not proposed in the reviewed plan
    now: Any  # None: not proposed now
    policy: str
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        then = "not proposed in the reviewed plan" if self.reviewed is None else f"{self.reviewed} in the reviewed plan"
        now = "not proposed now" if self.now is None else f"{self.now} now"
        why = f": {', '.join(self.reasons)}" if self.reasons else ""
        return f"{self.path}: {then} -> {now} ({self.policy}){why}"

    def to_dict(self) -> dict[str, Any]:
        return {"pipeline_id": self.pipeline_id, "path": self.path, "reviewed": self.reviewed, "now": self.now,
                "policy": self.policy, "reasons": list(self.reasons), "text": self.describe()}


def _fields(proposals: Sequence[Proposal]) -> dict[tuple[str, str], tuple[Any, Proposal]]:
    out: dict[tuple[str, str], tuple[Any, Proposal]] = {}
    for proposal in proposals:
        for change in proposal.changes:
            out[(proposal.pipeline_id, change.path)] = (change.new, proposal)
    return out


def _measured(evidence: Sequence[Evidence]) -> dict[str, Evidence]:
    return {e.signal: e for e in evidence if e.measured is not None and e.signal != "promql"}


def moved_signals(before: Sequence[Evidence], after: Sequence[Evidence]) -> list[str]:
    """The signals measured both times that moved most (at least :data:`MIN_RELATIVE_CHANGE`), as text."""
    then, now = _measured(before), _measured(after)
    moved: list[tuple[float, str]] = []
    for signal, old in then.items():
        new = now.get(signal)
        if new is None or old.measured is None or new.measured is None:
            continue
        base = max(abs(old.measured), 1e-9)
        change = (new.measured - old.measured) / base
        if abs(change) < MIN_RELATIVE_CHANGE:
            continue
        verb = "grew" if change > 0 else "fell"
        text = (f"{signal} {verb} from {number(old.measured, old.unit)} to "
                f"{number(new.measured, new.unit)} ({change:+.0%})")
        moved.append((abs(change), text))
    return [text for _, text in sorted(moved, key=lambda m: -m[0])[:MAX_REASONS]]


def _same(a: Any, b: Any) -> bool:
    return a == b or str(a) == str(b)


def revisions(reviewed: Sequence[Proposal], current: Sequence[Proposal]) -> list[Revision]:
    """Every field proposed in one and not the other, or with another value, with the reasons."""
    then, now = _fields(reviewed), _fields(current)
    out: list[Revision] = []
    for key in sorted(set(then) | set(now)):
        old_value, old_proposal = then.get(key, (None, None))
        new_value, new_proposal = now.get(key, (None, None))
        if old_proposal is not None and new_proposal is not None and _same(old_value, new_value):
            continue
        proposal = new_proposal or old_proposal
        assert proposal is not None
        reasons: list[str] = []
        if old_proposal is not None and new_proposal is not None:
            reasons = moved_signals(old_proposal.evidence, new_proposal.evidence)
        elif new_proposal is None:
            reasons = ["the policy's condition no longer holds"]
        else:
            reasons = ["the policy's condition holds now, not when the plan was made"]
        out.append(Revision(key[0], key[1], old_value if old_proposal else None,
                            new_value if new_proposal else None, proposal.policy, tuple(reasons)))
    return out


def reviewed_proposals(plan: Plan, targets: Sequence[str] = ()) -> PolicyReport:
    """The proposals and escalations of a saved plan, as a report ``tune`` writes from (nothing measured now)."""
    metrics = plan.metrics if isinstance(plan.metrics, dict) else {}
    made = f"made {plan.created_at}" + (f" at git {str(plan.git.get('sha'))[:12]}"
                                         if isinstance(plan.git, dict) and plan.git.get("sha") else "")
    source = f"the reviewed plan {plan.id} ({made}; metrics: {metrics.get('source') or 'none'})"
    report = PolicyReport(source)
    for entry in plan.pipelines:
        if targets and entry.pipeline_id not in targets:
            continue
        if entry.proposals or entry.escalations:
            report.outcomes[entry.pipeline_id] = PolicyOutcome(proposals=list(entry.proposals),
                                                               escalations=list(entry.escalations))
    return report


def stale_pipelines(plan: Plan, specs: Mapping[str, Any], pipeline_ids: Sequence[str]) -> list[str]:
    """Why the reviewed proposals of ``pipeline_ids`` must not be written (``specs``: the pipeline documents
    in git, by id): the plan must be as ``gftune plan`` sealed it, made from the same file contents."""
    broken = seal_problem(plan)
    if broken is not None:
        return [broken]
    desired = plan.digest["desired"]
    problems = []
    for pipeline_id in pipeline_ids:
        spec = specs.get(pipeline_id)
        if spec is None:
            problems.append(f"{pipeline_id}: its pipeline file is gone since the plan was made")
        elif canonical.digest(spec) != desired.get(pipeline_id):
            problems.append(f"{pipeline_id}: its pipeline file changed since the plan was made")
    return problems
