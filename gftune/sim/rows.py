"""One stored pipeline: what the API keeps (document, resources, name, tags, status history), the
operator's pending events, the DLQ, and the fluid model of its components."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gftune.sim.dlq import DlqState

if TYPE_CHECKING:
    from gftune.sim.model import PipelineModel
    from gftune.sim.operator import Event

Json = dict[str, Any]


@dataclass
class Row:
    pipeline_id: str
    doc: Json  # stored request document (after the SDK shim), without gftune's own resources handling
    resources: Json  # internal shape, merged with defaults
    name: str
    tags: list[str] | None
    status: str
    created_at: float
    updated_at: float
    model: PipelineModel
    history: list[tuple[float, str]]
    events: list[Event] = field(default_factory=list)
    op: int = 0
    deleting: bool = False
    hung: bool = False  # a stuck stop: the components no longer drain
    dlq: DlqState = field(default_factory=DlqState)
    cached_get: bytes | None = None
    notes: list[str] = field(default_factory=list)
    crd_status: str = ""  # the Pipeline CRD's status: what the operator itself last wrote

    def status_at(self, t: float) -> str:
        status = self.history[0][1]
        for when, value in self.history:
            if when > t:
                break
            status = value
        return status
