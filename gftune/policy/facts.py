"""What the policy engine knows about one pipeline besides its metrics: the document in effect,
labels and constraints from git, status, last change and reverts from the live state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gftune.glassflow.timestamps import parse_timestamp
from gftune.plan import tags


@dataclass
class PipelineFacts:
    """What the policy engine knows about one pipeline besides its metrics."""

    pipeline_id: str
    doc: dict[str, Any]  # the v3 document in effect (live GET body, else git)
    labels: Mapping[str, str] = field(default_factory=dict)
    constraints: Mapping[str, Any] = field(default_factory=dict)
    exists: bool = True
    immutable: tuple[str, ...] = ()
    status: str | None = "Running"
    last_change: datetime | None = None
    # policy -> when apply last reverted a change it proposed (``gftune:reverted=`` tags)
    reverted: Mapping[str, datetime] = field(default_factory=dict)
    # the last change apply kept: when it finished watching it, and the policies that motivated it
    # (``gftune:applied=``); None when gftune recorded none
    applied: tuple[datetime, frozenset[str]] | None = None



def _last_change(health: Mapping[str, Any]) -> datetime | None:
    """When the pipeline last changed status (stop, resume, edit); creation alone is no change."""
    updated = parse_timestamp(health.get("updated_at"))
    created = parse_timestamp(health.get("created_at"))
    if updated is None or (created is not None and updated <= created):
        return None
    return updated


def facts_for(pipeline: Any, live: Any) -> PipelineFacts:
    """Facts from the desired pipeline (labels, constraints) and the live state (document in effect)."""
    exists = bool(live is not None and getattr(live, "exists", False) and getattr(live, "pipeline", None))
    doc = live.pipeline if exists else pipeline.spec
    doc = dict(doc)
    if exists and isinstance(getattr(live, "resources", None), dict) and "join" in live.resources:
        doc.setdefault("resources", {})
        doc["resources"] = {**doc["resources"], "join": live.resources["join"]}
    health = getattr(live, "health", None) or {}
    return PipelineFacts(
        pipeline_id=pipeline.pipeline_id, doc=doc, labels=dict(pipeline.labels),
        constraints=dict(pipeline.constraints), exists=exists,
        immutable=tuple(getattr(live, "immutable", ()) or ()) if exists else (),
        status=getattr(live, "status", None) if exists else None,
        last_change=_last_change(health) if exists else None,
        reverted=tags.reverted_policies(tags.tags_of(live.pipeline)) if exists else {},
        applied=tags.last_applied(tags.tags_of(live.pipeline)) if exists else None)
