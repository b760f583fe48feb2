"""The types of the signal library: what a signal may know about the pipeline (:class:`SignalContext`),
a signal's definition (:class:`SignalDef`) and one reading of it (:class:`SignalReading`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gftune.desired import paths
from gftune.metrics.expr import Expr
from gftune.metrics.snapshots import OK


@dataclass(frozen=True)
class SignalContext:
    """What a signal may need to know about the pipeline besides its id."""

    pipeline_id: str
    doc: dict[str, Any] | None = None  # the v3 document in effect (live GET body, else git)
    time_scale: float = 1.0  # a simulator's clock speed: gauge slopes per wall second are this x too big
    lookback_s: float = 3600.0  # model seconds of history a history reading (gftune.policy.history) covers

    def field(self, path: str) -> Any:
        return paths.get(self.doc, path) if self.doc is not None else None

    def number(self, path: str) -> float | None:
        value = self.field(path)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def replicas(self, stage: str) -> int | None:
        """Replica count of a stage (the server default 1 when the document leaves it out)."""
        if self.doc is None:
            return None
        resources = self.doc.get("resources") or {}
        if stage == "ingestor":
            sources = resources.get("sources") or []
            if not sources:
                return 1
            counts = [s.get("replicas") or 1 for s in sources if isinstance(s, dict)]
            return int(sum(counts)) if counts else 1
        if stage == "transform":
            transforms = resources.get("transform") or []
            first = transforms[0] if transforms and isinstance(transforms[0], dict) else {}
            return int(first.get("replicas") or 1)
        if stage == "sink":
            return int((resources.get("sink") or {}).get("replicas") or 1)
        return None


@dataclass(frozen=True)
class SignalDef:
    name: str
    unit: str
    meaning: str
    build: Callable[[SignalContext], Expr | None]
    breakdown: str | None = None  # label to break the value down by (dlq_rate by reason)
    needs: str = ""  # pipeline facts the signal needs, said when they are missing
    group: str = ""


@dataclass(frozen=True)
class SignalReading:
    name: str
    value: float | None  # None = unknown, never silently 0
    unit: str
    query: str
    window_s: float
    at: datetime
    status: str  # "ok" | "unknown" | "stale"
    detail: str = ""
    breakdown: dict[str, float] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.status == OK and self.value is not None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "query": self.query,
                "window_s": self.window_s, "at": self.at.isoformat(), "status": self.status,
                "detail": self.detail, "breakdown": dict(self.breakdown)}
