"""The runner of policies' own unit tests (``gftune policy test``).

A policy's ``tests:`` give fixtures of signal values or recorded series (and optionally a pipeline
patch, labels and constraints) and the expected outcome: a proposal of given fields and values,
an escalation, or nothing. Each test evaluates the policy exactly as ``plan`` does, against a
:class:`gftune.policy.views.FixtureView` instead of a live metric source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gftune.desired.config import Config
from gftune.glassflow import resources as res
from gftune.glassflow.durations import parse_duration
from gftune.policy.evaluate import Evaluation, evaluate
from gftune.policy.facts import PipelineFacts
from gftune.policy.language import Policy
from gftune.policy.views import FixtureView

TEST_PIPELINE: dict[str, Any] = {
    "version": "v3", "pipeline_id": "policy-test", "name": "policy test",
    "sources": [{"type": "kafka", "source_id": "orders", "topic": "orders"}],
    "sink": {"type": "clickhouse", "table": "orders", "max_batch_size": 1000, "max_delay_time": "1s"},
    "resources": {
        "nats": {"stream": {"maxAge": "24h", "maxBytes": "0", "maxMsgs": 8000}},
        "sources": [{"source_id": "orders", "replicas": 2, "requests": {"cpu": "1000m", "memory": "256Mi"},
                     "limits": {"cpu": "1500m", "memory": "512Mi"}}],
        "sink": {"replicas": 1, "requests": {"cpu": "1000m", "memory": "500Mi"},
                 "limits": {"cpu": "1500m", "memory": "1.5Gi"}},
    },
}


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, Mapping):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return override


@dataclass(frozen=True)
class TestResult:
    policy: str
    name: str
    passed: bool
    message: str = ""
    file: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "name": self.name, "passed": self.passed, "message": self.message,
                "file": self.file}


def _check_expectation(expect: Mapping[str, Any], evaluation: Evaluation) -> list[str]:
    failures: list[str] = []
    proposal, escalation = evaluation.proposal, evaluation.escalation
    changes = {c.path: c.new for c in proposal.changes} if proposal else {}
    if expect.get("nothing"):
        if proposal is not None or escalation is not None:
            got = f"proposal {sorted(changes)}" if proposal else f"escalation: {escalation.reason}"  # type: ignore
            failures.append(f"expected nothing, got {got}")
        return failures
    if expect.get("escalates"):
        if escalation is None:
            failures.append("expected an escalation, got " + (f"proposal {sorted(changes)}" if proposal else
                                                               "nothing (" + "; ".join(evaluation.notes) + ")"))
        else:
            wanted = expect.get("next_step_contains")
            if wanted and str(wanted).lower() not in escalation.next_step.lower():
                failures.append(f"next step {escalation.next_step!r} does not mention {wanted!r}")
        return failures
    if escalation is not None and not expect.get("proposes"):
        failures.append(f"unexpected escalation: {escalation.reason}")
    wanted_paths = list(expect.get("proposes") or []) + list((expect.get("values") or {}).keys())
    if wanted_paths and proposal is None:
        detail = f"escalation: {escalation.reason}" if escalation else "; ".join(evaluation.notes) or "no match"
        return [f"expected a proposal of {sorted(set(wanted_paths))}, got none ({detail})"]
    for path in wanted_paths:
        if path not in changes:
            failures.append(f"expected a change of {path}, proposal changes {sorted(changes)}")
    for path, value in (expect.get("values") or {}).items():
        if path in changes and changes[path] != value and str(changes[path]) != str(value):
            failures.append(f"{path}: expected {value!r}, proposed {changes[path]!r}")
    for path in expect.get("absent") or []:
        if path in changes:
            failures.append(f"{path} must not change, proposed {changes[path]!r}")
    for text in expect.get("notes_contain") or []:
        notes = list(evaluation.notes) + list(proposal.notes if proposal else [])
        if not any(str(text).lower() in n.lower() for n in notes):
            failures.append(f"no note mentions {text!r}")
    for signal in expect.get("evidence") or []:
        found = [e for e in (proposal.evidence if proposal else escalation.evidence if escalation else ())
                 if e.signal == signal]
        if not found or found[0].measured is None:
            failures.append(f"no measured evidence for {signal}")
    return failures


def fixture_evaluation(policy: Policy, test: Mapping[str, Any]) -> tuple[dict[str, Any], Evaluation]:
    """The test pipeline document of one of a policy's ``tests:`` and the policy's evaluation on its fixture."""
    doc = _merge(TEST_PIPELINE, test.get("pipeline") or {})
    view = FixtureView(test.get("signals") or {}, test.get("series"), promql=test.get("promql"))
    last_change, applied = _applied(test.get("applied"), view.at)
    facts = PipelineFacts(pipeline_id=str(doc.get("pipeline_id")), doc=doc,
                          labels=dict(test.get("labels") or {}), constraints=dict(test.get("constraints") or {}),
                          exists=bool(test.get("exists", True)), immutable=tuple(res.immutable_paths(doc)),
                          last_change=last_change, applied=applied)
    return doc, evaluate(policy, facts, view, Config())


def _applied(raw: Any, now: datetime) -> tuple[datetime | None, tuple[datetime, frozenset[str]] | None]:
    """``applied: {by: [policy, ...], ago: 15m}``: the pipeline's last change was made for those policies
    and kept by apply, which finished watching it ``ago`` before the fixture's moment (the change itself
    ``changed`` before that, default 6m: a 1m settle and a 5m window)."""
    if not isinstance(raw, Mapping):
        return None, None
    ago = parse_duration(str(raw.get("ago", "0s"))) / 1e9
    watched = parse_duration(str(raw.get("changed", "6m"))) / 1e9
    at = now - timedelta(seconds=ago)
    return at - timedelta(seconds=watched), (at, frozenset(str(p) for p in raw.get("by") or ()))


def run_policy_tests(policy: Policy) -> list[TestResult]:
    """Run a policy's ``tests:`` (fixtures of signal values or recorded series -> expected outcome)."""
    results: list[TestResult] = []
    for index, test in enumerate(policy.tests):
        name = str(test.get("name") or f"test {index + 1}") if isinstance(test, Mapping) else f"test {index + 1}"
        if not isinstance(test, Mapping) or not isinstance(test.get("expect"), Mapping):
            results.append(TestResult(policy.name, name, False, "a test needs an expect: mapping", policy.file))
            continue
        try:
            _, evaluation = fixture_evaluation(policy, test)
        except Exception as exc:  # a broken fixture must fail its test, not the run
            results.append(TestResult(policy.name, name, False, f"evaluation failed: {exc}", policy.file))
            continue
        failures = _check_expectation(test["expect"], evaluation)
        results.append(TestResult(policy.name, name, not failures, "; ".join(failures), policy.file))
    return results
