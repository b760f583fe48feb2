"""The facts a reviewer's verdict is made of: where the bottleneck is, by how much, what a change
buys and what it costs — as data, so that every surface (text, JSON, Markdown, the tune PR) says
the same thing and none re-derives it from prose.

* :class:`Assessment` is filled by the policy engine in one place (:mod:`gftune.policy.assess`)
  from the same readings and sizing the proposal came from; each number is a :class:`Figure`,
  which can say *not established* and why instead of guessing.
* :class:`Cost` is filled by the plan (:mod:`gftune.plan.cost`): restarts and downtime come from
  the lifecycle, the resource delta from the live resources before and after.

Both travel in the plan document (``proposals[].assessment``, ``proposals[].cost``,
``pipelines[].cost``, ``summary.cost``); ``docs/plan.md`` lists the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Figure:
    """A number the verdict states, or why it cannot be stated ("not established, because …")."""

    value: float | None = None
    unit: str = ""  # "records/s", "records", "s"
    basis: str = ""  # how it was established, e.g. "busy time", "observed while saturated"
    missing: str = ""  # value None: why it is not established

    @property
    def known(self) -> bool:
        return self.value is not None

    @classmethod
    def unknown(cls, why: str, unit: str = "") -> Figure:
        return cls(None, unit, "", why)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "basis": self.basis, "missing": self.missing}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Figure:
        data = data or {}
        return cls(data.get("value"), data.get("unit", ""), data.get("basis", ""), data.get("missing", ""))


NOT_ASSESSED = Figure.unknown("not assessed")
NO_BACKLOG = "no backlog"  # why a drain time is not established when there is nothing to drain


@dataclass(frozen=True)
class Assessment:
    """What a proposal or escalation is about, in numbers.

    ``stage`` is the stage whose capacity is in question (``ingestor``, ``transform``, ``sink``),
    or None when the symptom is not about capacity (terminal errors, exhausted retries).
    ``capacity`` is what that stage can process now and ``arriving`` what reaches it, both in
    records/s, so ``arriving / capacity`` is how loaded it is. ``predicted`` is what the whole
    pipeline can carry after the change (records/s of input), set by ``limited_by`` when another
    stage then becomes the limit. ``drain`` is the time until the queued ``backlog`` is gone after
    the change. An escalation says what would help (``needs``) and why gftune cannot do it
    (``blocked_by``).
    """

    stage: str | None = None
    capacity: Figure = NOT_ASSESSED
    arriving: Figure = NOT_ASSESSED
    backlog: Figure = NOT_ASSESSED
    predicted: Figure = NOT_ASSESSED
    limited_by: str | None = None
    drain: Figure = NOT_ASSESSED
    needs: str = ""
    blocked_by: str = ""

    @property
    def load(self) -> float | None:
        """``arriving / capacity`` (1.61 = the stage gets 161% of what it can process)."""
        if self.capacity.value and self.arriving.value is not None:
            return self.arriving.value / self.capacity.value
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "capacity": self.capacity.to_dict(), "arriving": self.arriving.to_dict(),
                "backlog": self.backlog.to_dict(), "predicted": self.predicted.to_dict(),
                "limited_by": self.limited_by, "drain": self.drain.to_dict(), "needs": self.needs,
                "blocked_by": self.blocked_by}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Assessment | None:
        if not data:
            return None
        return cls(stage=data.get("stage"), capacity=Figure.from_dict(data.get("capacity")),
                   arriving=Figure.from_dict(data.get("arriving")), backlog=Figure.from_dict(data.get("backlog")),
                   predicted=Figure.from_dict(data.get("predicted")), limited_by=data.get("limited_by"),
                   drain=Figure.from_dict(data.get("drain")), needs=data.get("needs", ""),
                   blocked_by=data.get("blocked_by", ""))


@dataclass(frozen=True)
class ResourceDelta:
    """What a change adds to (or, negative, frees from) the cluster: pods per stage, and CPU (cores)
    and memory (bytes) as requested (what the scheduler reserves) and as limits (the ceiling)."""

    pods: Mapping[str, int] = field(default_factory=dict)  # stage -> replicas added
    cpu_requests: float = 0.0
    memory_requests: float = 0.0
    cpu_limits: float = 0.0
    memory_limits: float = 0.0
    unknown: tuple[str, ...] = ()  # stages whose requests or limits are not known (not counted)

    @property
    def total_pods(self) -> int:
        return sum(self.pods.values())

    @property
    def zero(self) -> bool:
        return not any(self.pods.values()) and not any(
            abs(x) > 1e-9 for x in (self.cpu_requests, self.memory_requests, self.cpu_limits, self.memory_limits))

    def __add__(self, other: ResourceDelta) -> ResourceDelta:
        pods = dict(self.pods)
        for stage, count in other.pods.items():
            pods[stage] = pods.get(stage, 0) + count
        return ResourceDelta({k: v for k, v in pods.items() if v}, self.cpu_requests + other.cpu_requests,
                             self.memory_requests + other.memory_requests, self.cpu_limits + other.cpu_limits,
                             self.memory_limits + other.memory_limits,
                             tuple(dict.fromkeys(self.unknown + other.unknown)))

    def to_dict(self) -> dict[str, Any]:
        return {"pods": dict(self.pods), "cpu_requests": round(self.cpu_requests, 6),
                "memory_requests": round(self.memory_requests), "cpu_limits": round(self.cpu_limits, 6),
                "memory_limits": round(self.memory_limits), "unknown": list(self.unknown)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ResourceDelta:
        data = data or {}
        return cls(dict(data.get("pods") or {}), float(data.get("cpu_requests", 0.0)),
                   float(data.get("memory_requests", 0.0)), float(data.get("cpu_limits", 0.0)),
                   float(data.get("memory_limits", 0.0)), tuple(data.get("unknown") or ()))


@dataclass(frozen=True)
class Cost:
    """The price of a change: restarts of a running pipeline and the downtime they cause (from the
    lifecycle, an upper bound when a conditional cycle may run), the resource delta, and what cannot
    be undone (a delete or recreate loses the messages buffered in NATS and the dedup state)."""

    restarts: int = 0
    downtime_s: float = 0.0
    resources: ResourceDelta = field(default_factory=ResourceDelta)
    irreversible: tuple[str, ...] = ()

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.restarts + other.restarts, round(self.downtime_s + other.downtime_s, 3),
                    self.resources + other.resources, self.irreversible + other.irreversible)

    def with_irreversible(self, *why: str) -> Cost:
        return replace(self, irreversible=self.irreversible + why)

    def to_dict(self) -> dict[str, Any]:
        return {"restarts": self.restarts, "downtime_s": self.downtime_s, "resources": self.resources.to_dict(),
                "irreversible": list(self.irreversible)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Cost | None:
        if not data:
            return None
        return cls(int(data.get("restarts", 0)), float(data.get("downtime_s", 0.0)),
                   ResourceDelta.from_dict(data.get("resources")), tuple(data.get("irreversible") or ()))
