"""Plans for tests: a :class:`~gftune.plan.model.Plan` needs an id and a creation time, which the edge
(``gftune.orchestration.plan``) draws at run time; tests give fixed ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gftune.plan.model import Plan

PLAN_ID = "00000000-0000-4000-8000-000000000001"
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def make_plan(pipelines: list[Any], **kw: Any) -> Plan:
    kw.setdefault("id", PLAN_ID)
    kw.setdefault("created_at", CREATED.isoformat(timespec="seconds"))
    return Plan(pipelines=pipelines, **kw)
