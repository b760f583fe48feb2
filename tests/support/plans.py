"""Plans for tests: one pipeline planned against a live state built from plain data
(:mod:`tests.support.documents`), policy proposals with evidence, and whole plans — which need an id and
a creation time that the edge (``gftune.orchestration.plan``) draws at run time; tests give fixed ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gftune.live import LiveState
from gftune.plan.build import PlanOptions, plan_pipeline
from gftune.plan.evidence import Evidence, Expectation, FieldChange, Proposal, VerifySpec
from gftune.plan.model import Plan
from tests.support.documents import ENV, desired_doc, live_doc, live_internal, resolver

PLAN_ID = "00000000-0000-4000-8000-000000000001"
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def make_plan(pipelines: list[Any], **kw: Any) -> Plan:
    kw.setdefault("id", PLAN_ID)
    kw.setdefault("created_at", CREATED.isoformat(timespec="seconds"))
    return Plan(pipelines=pipelines, **kw)


OPTIONS = PlanOptions(resolver=resolver(ENV), restart_estimate_s=42.0)


@dataclass
class Desired:
    pipeline_id: str
    spec: dict[str, Any]
    path: Any = "pipelines/orders-dedup.yaml"


@dataclass
class Outcome:
    proposals: list
    escalations: list
    notes: list


def live(status="Running", **changes):
    doc = live_doc()
    internal = live_internal()
    for key, value in changes.items():
        if key == "internal":
            value(internal)
        elif key == "doc":
            value(doc)
    immutable = ["nats/stream/maxAge", "nats/stream/maxBytes", "nats/stream/maxMsgs", "transform/storage/size",
                 "transform/replicas"]
    return LiveState("orders-dedup", exists=True, pipeline=doc, resources=internal, immutable=immutable,
                     status=status, health={"overall_status": status})


def plan_for(spec=None, state=None, options=OPTIONS, outcome=None):
    return plan_pipeline(Desired("orders-dedup", spec or desired_doc()), state or live(), options, outcome=outcome)


def actions(plan):
    return [(s["action"], s.get("status")) if s["action"] == "wait_status" else s["action"] for s in plan.lifecycle]


def evidence():
    return Evidence(policy="sink-batch", signal="sink_rate", query="rate(x[5m])", window="5m", measured=5200.0,
                    threshold="< 10000 for 2m")


def proposal(path="resources.sources[orders].replicas", new=3):
    return Proposal(pipeline_id="orders-dedup", policy="scale-ingestor", changes=(FieldChange(path, 2, new),),
                    evidence=(evidence(),), predictions=(Expectation("sink_rate", ">=", 14000.0),),
                    verify=VerifySpec(settle_s=30))
