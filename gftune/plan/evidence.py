"""What a policy hands to the plan: bounded proposals and escalations, each with its evidence.

These are plain frozen dataclasses with a JSON round trip, because they travel in the saved plan
file from ``plan`` to ``apply`` (and into reports and PR comments).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gftune.formatting import number
from gftune.plan.assessment import Assessment, Cost

# Evidence whose threshold starts with this is an input of the sizing, not a condition that fired.
SIZING_INPUT = "sizing input"


@dataclass(frozen=True)
class Evidence:
    """One measured fact behind a proposal: which signal, how it was measured, what it was."""

    policy: str
    signal: str  # a name from the signal library, or "promql" for a raw query
    query: str  # the exact PromQL, or a description of the local computation in scrape mode
    window: str  # e.g. "5m"
    measured: float | None  # None = unknown (empty, NaN or stale), never silently 0
    threshold: str  # e.g. "> 0.8 for 2m"
    unit: str = ""
    at: str = ""  # ISO-8601 time of the measurement

    def describe(self) -> str:
        """``signal = value (threshold ..., window ...)``; a sizing input says what it measures."""
        measured = number(self.measured, self.unit)
        if self.threshold.startswith(SIZING_INPUT):
            what = self.threshold[len(SIZING_INPUT):].lstrip(": ")
            return f"{self.signal} = {measured} (sizing input: {what}; window {self.window})"
        return f"{self.signal} = {measured} (threshold {self.threshold}, window {self.window})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        return cls(**data)


@dataclass(frozen=True)
class FieldChange:
    path: str  # gftune.desired.paths format, e.g. "resources.sink.replicas"
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FieldChange:
        return cls(**data)


@dataclass(frozen=True)
class Expectation:
    """A checkable statement about a signal after the change, e.g. ``sink_rate >= 14000``."""

    signal: str
    op: str  # one of ">=", "<=", ">", "<", "=="
    value: float
    text: str = ""  # human form, e.g. "sink rate 5,200 -> >=14,000/s"

    def describe(self) -> str:
        return self.text or f"{self.signal} {self.op} {self.value:g}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Expectation:
        return cls(**data)


@dataclass(frozen=True)
class VerifySpec:
    expect: tuple[Expectation, ...] = ()
    settle_s: float = 60.0
    window_s: float = 300.0
    tolerance: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return {"expect": [e.to_dict() for e in self.expect], "settle_s": self.settle_s,
                "window_s": self.window_s, "tolerance": self.tolerance}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerifySpec:
        return cls(expect=tuple(Expectation.from_dict(e) for e in data.get("expect", ())),
                   settle_s=data.get("settle_s", 60.0), window_s=data.get("window_s", 300.0),
                   tolerance=data.get("tolerance", 0.1))


@dataclass(frozen=True)
class Proposal:
    """A bounded change a policy wants, with the evidence and the predicted effect."""

    pipeline_id: str
    policy: str
    changes: tuple[FieldChange, ...]
    evidence: tuple[Evidence, ...]
    predictions: tuple[Expectation, ...] = ()
    verify: VerifySpec | None = None
    rationale: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)  # e.g. guards that clamped a value
    assessment: Assessment | None = None  # the verdict's facts (gftune.policy.assess)
    cost: Cost | None = None  # restarts, downtime, resources: set by the plan (gftune.plan.cost)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline_id": self.pipeline_id, "policy": self.policy,
            "changes": [c.to_dict() for c in self.changes],
            "evidence": [e.to_dict() for e in self.evidence],
            "predictions": [p.to_dict() for p in self.predictions],
            "verify": self.verify.to_dict() if self.verify else None,
            "rationale": self.rationale, "notes": list(self.notes),
            "assessment": self.assessment.to_dict() if self.assessment else None,
            "cost": self.cost.to_dict() if self.cost else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Proposal:
        return cls(
            pipeline_id=data["pipeline_id"], policy=data["policy"],
            changes=tuple(FieldChange.from_dict(c) for c in data.get("changes", ())),
            evidence=tuple(Evidence.from_dict(e) for e in data.get("evidence", ())),
            predictions=tuple(Expectation.from_dict(p) for p in data.get("predictions", ())),
            verify=VerifySpec.from_dict(data["verify"]) if data.get("verify") else None,
            rationale=data.get("rationale", ""), notes=tuple(data.get("notes", ())),
            assessment=Assessment.from_dict(data.get("assessment")), cost=Cost.from_dict(data.get("cost")),
        )


@dataclass(frozen=True)
class Escalation:
    """An out-of-scope symptom (exhausted retries, terminal errors): no change, plan exit 3."""

    pipeline_id: str
    policy: str
    reason: str
    evidence: tuple[Evidence, ...]
    next_step: str
    assessment: Assessment | None = None  # the verdict's facts (gftune.policy.assess)

    def to_dict(self) -> dict[str, Any]:
        return {"pipeline_id": self.pipeline_id, "policy": self.policy, "reason": self.reason,
                "evidence": [e.to_dict() for e in self.evidence], "next_step": self.next_step,
                "assessment": self.assessment.to_dict() if self.assessment else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Escalation:
        return cls(pipeline_id=data["pipeline_id"], policy=data["policy"], reason=data["reason"],
                   evidence=tuple(Evidence.from_dict(e) for e in data.get("evidence", ())),
                   next_step=data["next_step"], assessment=Assessment.from_dict(data.get("assessment")))
