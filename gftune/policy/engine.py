"""Tuning policies: metric conditions in git turned into bounded, evidenced configuration changes.

A policy file (``policies/<name>.yaml``, ``kind: TuningPolicy``; reference in docs/policies.md)::

    spec:
      selector: {matchLabels: {team: payments}}
      when:                                    # all must hold, each for its `for:`
        - {signal: sink_source_ratio, op: "<", value: 0.9, for: 2m}
        - {signal: sink_batch_fill, op: ">=", value: 0.9, for: 2m}
      then:                                    # bounded changes
        - {multiply: sink.max_batch_size, by: 4, max: 100000}
        - {set: sink.max_delay_time, value: 2s}
      verify: {expect: [{signal: sink_rate, op: ">=", value: "baseline*1.5"}], settle: 1m, window: 5m}
      cooldown: 30m

Evaluation is pure: :func:`evaluate` takes a policy, the facts of one pipeline and a
:class:`MetricsView` (live metrics, or a test fixture) and returns a proposal, an escalation, or
nothing, always with notes saying why. Unknown data never proposes: a condition on an unknown
signal is *not met* and is reported ("unknown, not zero"). The always-on guards of
:mod:`gftune.policy.guards` bound every change; ``scale_to_fit`` sizes all stages in one pass with
:mod:`gftune.policy.sizing`.

:func:`plan_policies` is the entry point of ``gftune plan`` and ``gftune tune``: it opens the metric
source, takes one snapshot for all pipelines, and evaluates every selected policy.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from gftune.desired import paths
from gftune.desired.config import Config
from gftune.desired.problems import Problem
from gftune.glassflow import resources as res
from gftune.glassflow.durations import DurationError, parse_duration
from gftune.metrics.expr import Raw
from gftune.metrics.sources import OK, UNKNOWN, MetricsError, Snapshot, open_source
from gftune.plan import canonical
from gftune.plan.evidence import SIZING_INPUT, Escalation, Evidence, Expectation, FieldChange, Proposal, VerifySpec
from gftune.plan.evidence import format_value as fmt
from gftune.policy import guards, sizing
from gftune.policy.signals import SIGNALS, SignalContext, SignalReading, reading_from, signal_expr

API_VERSION = "gftune/v1"
KIND = "TuningPolicy"
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}
ACTIONS = ("set", "multiply", "add", "scale_to_fit")
DEFAULT_COOLDOWN_S = 600.0
# A policy whose change apply verified as regressed and reverted proposes nothing for this many of its
# cooldowns after the revert (anti-flapping: the same change would most likely be reverted again).
REVERT_BACKOFF_COOLDOWNS = 4
ALL_STAGES = sizing.STAGES


class PolicyError(ValueError):
    """A policy that cannot be interpreted (the message says where and why)."""

    def __init__(self, message: str, where: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.where = where


# --- the model -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    op: str = ">"
    value: Any = 0
    signal: str | None = None
    promql: str | None = None
    field: str | None = None  # a value of the pipeline document, e.g. resources.sources[*].limits.cpu
    for_s: float = 0.0
    for_text: str = ""
    any_of: tuple[Condition, ...] = ()
    where: tuple[str | int, ...] = ()

    @property
    def label(self) -> str:
        if self.any_of:
            return "any(" + ", ".join(c.label for c in self.any_of) + ")"
        if self.field:
            return f"field:{self.field}"
        return self.signal or "promql"


@dataclass(frozen=True)
class Action:
    kind: str  # set | multiply | add | scale_to_fit
    path: str = ""  # field path template (set/multiply/add)
    stages: tuple[str, ...] = ()  # scale_to_fit
    value: Any = None  # set: new value; multiply: factor; add: amount
    min: Any = None
    max: Any = None
    max_step: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)
    where: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class ExpectRule:
    signal: str
    op: str
    value: Any


@dataclass(frozen=True)
class Policy:
    name: str
    description: str = ""
    match_labels: Mapping[str, str] = field(default_factory=dict)
    pipelines: tuple[str, ...] = ()
    priority: int = 0
    when: tuple[Condition, ...] = ()
    then: tuple[Action, ...] = ()
    expect: tuple[ExpectRule, ...] = ()
    settle_s: float | None = None
    window_s: float | None = None
    tolerance: float | None = None
    cooldown_s: float = DEFAULT_COOLDOWN_S
    escalate_reason: str | None = None
    escalate_next_step: str | None = None
    extra_evidence: tuple[str, ...] = ()  # signals read and attached to the evidence when the policy matches
    tests: tuple[Mapping[str, Any], ...] = ()
    file: str = ""

    def selects(self, pipeline_id: str, labels: Mapping[str, str]) -> bool:
        if self.pipelines and pipeline_id not in self.pipelines:
            return False
        return all(labels.get(k) == v for k, v in self.match_labels.items())

    @property
    def escalates(self) -> bool:
        return self.escalate_reason is not None


def parse_seconds(value: Any, where: tuple[str | int, ...]) -> float:
    """A Go-style duration (``2m``, ``1h30m``, ``1d``) or a number of seconds."""
    if isinstance(value, bool) or value is None:
        raise PolicyError("expected a duration such as 30s, 2m or 1h", where)
    if isinstance(value, int | float):
        if value < 0:
            raise PolicyError("a duration must not be negative", where)
        return float(value)
    try:
        seconds = parse_duration(str(value).strip(), allow_days=True) / 1e9
    except DurationError:
        raise PolicyError(f'invalid duration "{value}": use e.g. 30s, 2m or 1h30m', where) from None
    if seconds < 0:
        raise PolicyError("a duration must not be negative", where)
    return seconds


def _mapping(value: Any, where: tuple[str | int, ...], what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyError(f"{what} must be a mapping", where)
    return value


def _condition(raw: Any, where: tuple[str | int, ...]) -> Condition:
    item = _mapping(raw, where, "a condition")
    if "any" in item:
        options = item["any"]
        if not isinstance(options, list) or not options:
            raise PolicyError("any: needs a list of conditions", (*where, "any"))
        return Condition(any_of=tuple(_condition(c, (*where, "any", i)) for i, c in enumerate(options)), where=where)
    signal, promql, field_path = item.get("signal"), item.get("promql"), item.get("field")
    if sum(x is not None for x in (signal, promql, field_path)) != 1:
        raise PolicyError("a condition needs exactly one of signal:, promql: or field:", where)
    if field_path is not None:
        if not isinstance(field_path, str):
            raise PolicyError("field: must be a field path such as resources.sink.replicas", (*where, "field"))
        try:
            paths.parse(field_path.replace("*", "x"))
        except paths.PathError as exc:
            raise PolicyError(str(exc), (*where, "field")) from None
    if signal is not None and signal not in SIGNALS:
        close = [s for s in SIGNALS if s.split("_")[0] == str(signal).split("_")[0]][:5]
        hint = f"; similar: {', '.join(close)}" if close else "; see docs/signals.md"
        raise PolicyError(f"unknown signal {signal!r}{hint}", (*where, "signal"))
    op = item.get("op", ">")
    if op not in OPS:
        raise PolicyError(f"op must be one of {', '.join(OPS)}, got {op!r}", (*where, "op"))
    if "value" not in item:
        raise PolicyError("a condition needs a value: (a number or a reference like 'field:sink.max_batch_size')",
                          where)
    value = item["value"]
    check_reference(value, (*where, "value"))
    for_raw = item.get("for")
    for_s = parse_seconds(for_raw, (*where, "for")) if for_raw is not None else 0.0
    return Condition(op=op, value=value, signal=signal, promql=promql, field=field_path, for_s=for_s,
                     for_text=str(for_raw) if for_raw is not None else "", where=where)


def _action(raw: Any, where: tuple[str | int, ...]) -> Action:
    item = _mapping(raw, where, "an action")
    kinds = [k for k in ACTIONS if k in item]
    if len(kinds) != 1:
        raise PolicyError(f"an action needs exactly one of {', '.join(ACTIONS)}", where)
    kind = kinds[0]
    known = {kind, "value", "by", "min", "max", "max_step", "target_utilization", "catch_up", "restart",
             "max_scale_down", "band", "cpu", "batch", "insert_budget"}
    extra = sorted(set(item) - known)
    if extra:
        raise PolicyError(f"unknown key(s) {', '.join(extra)} in a {kind} action", where)
    if kind == "scale_to_fit":
        stages_raw = item[kind]
        stages = ALL_STAGES if stages_raw in ("all", None) else tuple(
            [stages_raw] if isinstance(stages_raw, str) else stages_raw or ())
        bad = [s for s in stages if s not in ALL_STAGES]
        if bad:
            raise PolicyError(f"scale_to_fit stages must be among {', '.join(ALL_STAGES)} (or all), got "
                              f"{', '.join(map(str, bad))}", (*where, kind))
        options: dict[str, Any] = {}
        if "target_utilization" in item:
            target = item["target_utilization"]
            if not isinstance(target, int | float) or not 0 < target <= 1:
                raise PolicyError("target_utilization must be a number in (0, 1]", (*where, "target_utilization"))
            options["target_utilization"] = float(target)
        for key in ("catch_up", "restart"):
            if key in item:
                options[key] = parse_seconds(item[key], (*where, key))
        if "max_scale_down" in item:
            options["max_scale_down"] = float(item["max_scale_down"])
        if "band" in item:
            band = item["band"]
            if not (isinstance(band, list) and len(band) == 2 and all(isinstance(b, int | float) for b in band)
                    and 0 <= band[0] < band[1]):
                raise PolicyError("band must be [low, high] utilisations, low < high", (*where, "band"))
            options["band"] = (float(band[0]), float(band[1]))
        for key in ("cpu", "batch"):
            if key in item:
                if not isinstance(item[key], bool):
                    raise PolicyError(f"{key} must be true or false", (*where, key))
                options[key] = item[key]
        if "insert_budget" in item:
            budget = item["insert_budget"]
            if not isinstance(budget, int | float) or isinstance(budget, bool) or budget <= 0:
                raise PolicyError("insert_budget must be a positive number of inserts per second",
                                  (*where, "insert_budget"))
            options["insert_budget"] = float(budget)
        return Action("scale_to_fit", stages=tuple(stages), min=item.get("min"), max=item.get("max"),
                      max_step=item.get("max_step"), options=options, where=where)
    path = item[kind]
    if not isinstance(path, str):
        raise PolicyError(f"{kind}: must be a field path such as sink.max_batch_size", (*where, kind))
    try:
        paths.parse(path.replace("*", "x"))
    except paths.PathError as exc:
        raise PolicyError(str(exc), (*where, kind)) from None
    value = item.get("by", item.get("value"))
    if value is None:
        word = {"set": "value:", "multiply": "by:", "add": "value: (or by:)"}[kind]
        raise PolicyError(f"a {kind} action needs {word}", where)
    if kind == "add" and isinstance(value, str) and not _is_reference(value):
        if not _is_literal_amount(value):
            raise PolicyError(f"cannot add {value!r}: use a number, a quantity (512Mi, 500m) or a duration (30s)",
                              (*where, "value"))
    elif kind in ("multiply", "add") and not isinstance(value, int | float):
        check_reference(value, (*where, "by" if "by" in item else "value"))
    if kind == "multiply" and isinstance(value, int | float) and value <= 0:
        raise PolicyError("multiply by: must be positive", (*where, "by"))
    for key in ("min", "max"):
        if isinstance(item.get(key), str) and ":" in item[key]:
            check_reference(item[key], (*where, key))
    return Action(kind, path=path, value=value, min=item.get("min"), max=item.get("max"),
                  max_step=item.get("max_step"), where=where)


def parse_policy(doc: Any, *, file: str = "") -> Policy:
    """A :class:`Policy` from a parsed policy file; :class:`PolicyError` says what is wrong."""
    if not isinstance(doc, Mapping):
        raise PolicyError("a policy file must be a mapping")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise PolicyError(f"expected apiVersion: {API_VERSION} and kind: {KIND}")
    metadata = _mapping(doc.get("metadata"), ("metadata",), "metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise PolicyError("metadata.name is required", ("metadata", "name"))
    spec = _mapping(doc.get("spec"), ("spec",), "spec")
    selector = _mapping(spec.get("selector"), ("spec", "selector"), "selector")
    labels = _mapping(selector.get("matchLabels"), ("spec", "selector", "matchLabels"), "matchLabels")
    when_raw = spec.get("when") or []
    if not isinstance(when_raw, list) or not when_raw:
        raise PolicyError("spec.when needs at least one condition", ("spec", "when"))
    when = tuple(_condition(c, ("spec", "when", i)) for i, c in enumerate(when_raw))
    then_raw = spec.get("then") or []
    if not isinstance(then_raw, list):
        raise PolicyError("spec.then must be a list of actions", ("spec", "then"))
    then = tuple(_action(a, ("spec", "then", i)) for i, a in enumerate(then_raw))
    escalate = _mapping(spec.get("escalate"), ("spec", "escalate"), "escalate")
    if escalate and then:
        raise PolicyError("a policy either escalates (out-of-scope symptom) or proposes changes, not both",
                          ("spec", "escalate"))
    if not escalate and not then:
        raise PolicyError("spec.then needs at least one action (or use spec.escalate for out-of-scope symptoms)",
                          ("spec", "then"))
    if escalate and not (escalate.get("reason") and escalate.get("next_step")):
        raise PolicyError("escalate needs reason: and next_step:", ("spec", "escalate"))
    verify = _mapping(spec.get("verify"), ("spec", "verify"), "verify")
    expect: list[ExpectRule] = []
    for i, rule in enumerate(verify.get("expect") or []):
        where = ("spec", "verify", "expect", i)
        rule = _mapping(rule, where, "an expectation")
        signal = rule.get("signal")
        if signal not in SIGNALS:
            raise PolicyError(f"unknown signal {signal!r} in verify.expect", (*where, "signal"))
        op = rule.get("op", ">=")
        if op not in (">=", "<=", ">", "<", "=="):
            raise PolicyError("verify ops are >=, <=, >, < and ==", (*where, "op"))
        if "value" not in rule:
            raise PolicyError("an expectation needs a value (a number, baseline*F, +/-N%, or prediction)", where)
        check_reference(rule["value"], (*where, "value"), verify=True)
        expect.append(ExpectRule(signal, op, rule["value"]))
    tests = doc.get("tests") or []
    if not isinstance(tests, list):
        raise PolicyError("tests must be a list", ("tests",))
    extra = spec.get("evidence") or []
    if not isinstance(extra, list):
        raise PolicyError("spec.evidence must be a list of signal names", ("spec", "evidence"))
    for i, extra_name in enumerate(extra):
        if extra_name not in SIGNALS:
            raise PolicyError(f"unknown signal {extra_name!r} in spec.evidence", ("spec", "evidence", i))
    return Policy(
        name=name, description=str(metadata.get("description") or spec.get("description") or ""),
        match_labels={str(k): str(v) for k, v in labels.items()},
        pipelines=tuple(str(p) for p in selector.get("pipelines") or ()),
        priority=int(spec.get("priority") or 0), when=when, then=then, expect=tuple(expect),
        settle_s=parse_seconds(verify["settle"], ("spec", "verify", "settle")) if "settle" in verify else None,
        window_s=parse_seconds(verify["window"], ("spec", "verify", "window")) if "window" in verify else None,
        tolerance=float(verify["tolerance"]) if "tolerance" in verify else None,
        cooldown_s=parse_seconds(spec["cooldown"], ("spec", "cooldown")) if "cooldown" in spec else DEFAULT_COOLDOWN_S,
        escalate_reason=str(escalate["reason"]) if escalate else None,
        escalate_next_step=str(escalate["next_step"]) if escalate else None,
        extra_evidence=tuple(extra), tests=tuple(tests), file=file)


def validate_policy(policy_file: Any) -> list[Problem]:
    """The policy engine's semantic checks (hooked into ``gftune validate``), as located problems."""
    try:
        parse_policy(policy_file.doc, file=policy_file.file)
    except PolicyError as exc:
        line, col = policy_file.locations.locate(exc.where) if exc.where else (None, None)
        json_path = ".".join(str(p) for p in exc.where) or "$"
        return [Problem(policy_file.file, line, col, json_path, str(exc))]
    return []


# --- references: "field:sink.max_batch_size * 0.95", "baseline*1.2", "-50%" --------------------------

_TERM = re.compile(r"^(field|signal|constraint):(\S+)$")
_RELATIVE = re.compile(r"^([+-]\d+(?:\.\d+)?)%$")


def _terms(text: str) -> list[str]:
    return [t.strip() for t in text.split("*")]


def _is_reference(text: str) -> bool:
    """A value expression (``constraint:partitions``, ``field:x * 2``) rather than a literal."""
    return any(_TERM.match(term) for term in _terms(text)) or any(t == "baseline" for t in _terms(text))


def _is_literal_amount(text: str) -> bool:
    """A quantity or duration an ``add`` can use (``512Mi``, ``500m``, ``30s``)."""
    return guards.to_number(guards.MEMORY, text) is not None or guards.to_number(guards.DURATION, text) is not None


def check_reference(value: Any, where: tuple[str | int, ...], *, verify: bool = False) -> None:
    """Reject a value expression that can never be resolved."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return
    if not isinstance(value, str):
        raise PolicyError("expected a number or a reference such as 'field:sink.max_batch_size * 0.95'", where)
    text = value.strip()
    if verify and (_RELATIVE.match(text) or text == "prediction"):
        return
    for term in _terms(text):
        if verify and term == "baseline":
            continue
        try:
            float(term)
            continue
        except ValueError:
            pass
        match = _TERM.match(term)
        if not match:
            allowed = "numbers, field:PATH, signal:NAME, constraint:NAME" + (", baseline, +/-N%, prediction"
                                                                              if verify else "")
            raise PolicyError(f"cannot read {term!r} in {value!r}: use {allowed} joined by *", where)
        if match.group(1) == "signal" and match.group(2) not in SIGNALS:
            raise PolicyError(f"unknown signal {match.group(2)!r} in {value!r}", where)


# --- facts and metrics -------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class Held:
    """A condition evaluated over its ``for:`` duration."""

    met: bool | None  # None = unknown
    value: float | None  # the latest value
    query: str
    detail: str = ""


class MetricsView(Protocol):
    """Signal readings for one pipeline: live (a snapshot) or recorded (a policy-test fixture)."""

    at: datetime

    def reading(self, name: str) -> SignalReading: ...

    def promql(self, text: str) -> SignalReading: ...

    def held(self, condition: Condition, threshold: float) -> Held: ...


class SnapshotView:
    """Live metrics of one pipeline from a :class:`~gftune.metrics.sources.Snapshot`."""

    def __init__(self, snapshot: Snapshot, ctx: SignalContext, *, time_scale: float = 1.0) -> None:
        self.snapshot = snapshot
        self.ctx = ctx
        self.time_scale = time_scale
        self.at = snapshot.at
        self._cache: dict[str, SignalReading] = {}

    def _expr(self, condition: Condition) -> Any:
        if condition.promql is not None:
            return Raw(condition.promql, self.ctx.pipeline_id)
        return signal_expr(str(condition.signal), self.ctx)

    def reading(self, name: str) -> SignalReading:
        if name not in self._cache:
            definition = SIGNALS[name]
            expr = definition.build(self.ctx)
            if expr is None:
                self._cache[name] = SignalReading(name, None, definition.unit, "", self.snapshot.window_s, self.at,
                                                  UNKNOWN, f"needs {definition.needs}, which the pipeline lacks")
            else:
                self._cache[name] = reading_from(name, definition.unit, self.snapshot.instant(expr),
                                                 self.snapshot.window_s, self.at, definition.breakdown)
        return self._cache[name]

    def promql(self, text: str) -> SignalReading:
        key = f"promql:{text}"
        if key not in self._cache:
            self._cache[key] = reading_from("promql", "", self.snapshot.instant(Raw(text, self.ctx.pipeline_id)),
                                            self.snapshot.window_s, self.at)
        return self._cache[key]

    def held(self, condition: Condition, threshold: float) -> Held:
        expr = self._expr(condition)
        if expr is None:
            return Held(None, None, "", f"signal {condition.signal} needs facts the pipeline lacks")
        result = self.snapshot.over(expr, condition.for_s / self.time_scale)
        values = [v for points in result.series.values() for _, v in points]
        finite = [v for v in values if math.isfinite(v)]
        latest = None
        for points in result.series.values():
            good = [p for p in points if math.isfinite(p[1])]
            if good and (latest is None or good[-1][0] >= latest[0]):
                latest = good[-1]
        value = latest[1] if latest else None
        if not finite:
            return Held(None, None, result.query, result.detail or "no data over the duration")
        check = OPS[condition.op]
        if not all(check(v, threshold) for v in finite):
            return Held(False, value, result.query,
                        f"not held throughout (range {min(finite):.4g}..{max(finite):.4g})")
        if not result.complete:
            return Held(False, value, result.query, result.detail or "not held for the whole duration")
        return Held(True, value, result.query, result.detail)


class FixtureView:
    """Recorded signal values (policy unit tests): scalars, or series of ``[seconds, value]``."""

    def __init__(self, signals: Mapping[str, Any], series: Mapping[str, Any] | None = None, *,
                 at: datetime | None = None, promql: Mapping[str, Any] | None = None) -> None:
        self.signals = dict(signals)
        self.series = {k: [(float(t), float(v)) for t, v in pts] for k, pts in (series or {}).items()}
        self.promql_values = dict(promql or {})
        self.at = at or datetime(2026, 1, 1, tzinfo=UTC)

    def _reading(self, name: str, value: Any, unit: str) -> SignalReading:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return SignalReading(name, None, unit, "fixture", 0.0, self.at, UNKNOWN, "no data in the fixture")
        if isinstance(value, Mapping):  # {reason: value} breakdowns
            breakdown = {str(k): float(v) for k, v in value.items()}
            return SignalReading(name, sum(breakdown.values()), unit, "fixture", 0.0, self.at, OK, "", breakdown)
        return SignalReading(name, float(value), unit, "fixture", 0.0, self.at, OK)

    def reading(self, name: str) -> SignalReading:
        unit = SIGNALS[name].unit if name in SIGNALS else ""
        if name in self.series and name not in self.signals:
            points = self.series[name]
            return self._reading(name, points[-1][1] if points else None, unit)
        return self._reading(name, self.signals.get(name), unit)

    def promql(self, text: str) -> SignalReading:
        return self._reading("promql", self.promql_values.get(text), "")

    def held(self, condition: Condition, threshold: float) -> Held:
        name = condition.signal or ""
        check = OPS[condition.op]
        if condition.promql is not None or name not in self.series:
            reading = self.promql(condition.promql) if condition.promql is not None else self.reading(name)
            if not reading.known:
                return Held(None, None, "fixture", "no data in the fixture")
            return Held(check(reading.value, threshold), reading.value, "fixture",
                        "a scalar fixture value counts as constant over the duration")
        points = self.series[name]
        if not points:
            return Held(None, None, "fixture", "empty series")
        span = points[-1][0] - points[0][0]
        value = points[-1][1]
        if not all(check(v, threshold) for _, v in points):
            return Held(False, value, "fixture series", "not held throughout the series")
        if span + 1e-9 < condition.for_s:
            return Held(False, value, "fixture series", f"series covers {span:g}s of {condition.for_s:g}s")
        return Held(True, value, "fixture series")


# --- evaluation ---------------------------------------------------------------------------------------

@dataclass
class Evaluation:
    """What one policy concluded for one pipeline."""

    policy: str
    matched: bool = False
    proposal: Proposal | None = None
    escalation: Escalation | None = None
    notes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # signals that could not be read
    blocked_by_guards: bool = False  # the escalation comes from guards, not from an escalate: policy
    incomplete: bool = False  # a condition could not be evaluated (unknown data): never proposes


def format_seconds(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


class _Resolver:
    """Resolve ``field:``, ``signal:``, ``constraint:`` references against one pipeline."""

    def __init__(self, facts: PipelineFacts, view: MetricsView) -> None:
        self.facts = facts
        self.view = view

    def term(self, kind: str, name: str) -> tuple[float | None, str]:
        if kind == "field":
            value = paths.get(self.facts.doc, name)
            number = guards.to_number(guards.field_kind(name, value), value)
            return number, f"{name} ({value if value is not None else 'unset'})"
        if kind == "constraint":
            value = self.facts.constraints.get(name)
            if value is None and name == "partitions":
                reading = self.view.reading("kafka_partitions")
                return (reading.value if reading.known else None), "partitions (measured)"
            if value is None and name == "max_replicas":
                return float(guards.DEFAULT_MAX_REPLICAS), "max_replicas (default)"
            return guards.to_number(guards.MEMORY if "ceiling" in name else guards.NUMBER, value), name
        reading = self.view.reading(name)
        return (reading.value if reading.known else None), name

    def number(self, raw: Any, *, baseline: float | None = None) -> tuple[float | None, str]:
        """A number (or None when a reference is unknown) and how it was derived."""
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw), fmt(float(raw))
        text = str(raw).strip()
        relative = _RELATIVE.match(text)
        if relative:
            if baseline is None:
                return None, text
            return baseline * (1 + float(relative.group(1)) / 100.0), f"baseline {text}"
        product, parts = 1.0, []
        for term in _terms(text):
            if term == "baseline":
                if baseline is None:
                    return None, text
                product *= baseline
                parts.append("baseline")
                continue
            try:
                number = float(term)
            except ValueError:
                match = _TERM.match(term)
                if not match:
                    return None, text
                number, label = self.term(match.group(1), match.group(2))
                if number is None:
                    return None, f"{label}: unknown"
                parts.append(label)
            else:
                parts.append(f"{number:g}")
            product *= number
        derived = " x ".join(parts)
        return product, (f"{derived} = {fmt(product)}" if len(parts) > 1 or ":" in text else fmt(product))


def _evaluate_condition(condition: Condition, policy: Policy, view: MetricsView, resolver: _Resolver,
                        settings: Config, evaluation: Evaluation) -> tuple[bool | None, list[Evidence]]:
    if condition.any_of:
        results = [_evaluate_condition(c, policy, view, resolver, settings, evaluation) for c in condition.any_of]
        evidence = [e for met, ev in results if met for e in ev] or [e for _, ev in results for e in ev]
        if any(met for met, _ in results):
            return True, evidence
        return (None if any(met is None for met, _ in results) else False), evidence
    if condition.field is not None:
        return _evaluate_field(condition, policy, view, resolver, evaluation)
    threshold, threshold_text = resolver.number(condition.value)
    name = condition.signal or "promql"
    reading = view.promql(condition.promql) if condition.promql is not None else view.reading(name)
    window = format_seconds(settings.metrics_window)
    for_text = f" for {format_seconds(condition.for_s)}" if condition.for_s else ""
    if threshold is None:
        evaluation.unknown.append(f"threshold {condition.value!r} of {name} ({threshold_text})")
        return None, []
    measured, query, detail, met = reading.value, reading.query, reading.detail, None
    if reading.known:
        met = OPS[condition.op](reading.value, threshold)
    if condition.for_s > 0 and met:
        held = view.held(condition, threshold)
        met = held.met
        measured = held.value if held.value is not None else measured
        detail = held.detail
        if held.met is None and reading.known:
            met = False
            detail = f"held only partly: {held.detail}"
    evidence = Evidence(policy=policy.name, signal=name, query=query or (condition.promql or ""), window=window,
                        measured=measured if reading.known else None,
                        threshold=f"{condition.op} {threshold_text}{for_text}", unit=reading.unit,
                        at=view.at.isoformat())
    if not reading.known:
        evaluation.unknown.append(f"{name} ({reading.status}: {reading.detail or 'no data'})")
        return None, [evidence]
    if met is False and detail and condition.for_s > 0:
        evaluation.notes.append(f"{policy.name}: {name} {fmt(measured, reading.unit)} {condition.op} "
                                f"{threshold_text} but {detail}")
    return met, [evidence]


def _evaluate_field(condition: Condition, policy: Policy, view: MetricsView, resolver: _Resolver,
                    evaluation: Evaluation) -> tuple[bool | None, list[Evidence]]:
    """A condition on the pipeline document itself: holds when every matching item satisfies it."""
    field_path = str(condition.field)
    threshold, threshold_text = resolver.number(condition.value)
    targets = expand_path(field_path, resolver.facts.doc)
    values = [(p, paths.get(resolver.facts.doc, p)) for p in targets]
    numbers = [(p, guards.to_number(guards.field_kind(p, v), v)) for p, v in values]
    known = [(p, n) for p, n in numbers if n is not None]
    evidence = [Evidence(policy.name, f"field:{p}", "the pipeline document in effect (live)", "", n,
                         f"{condition.op} {threshold_text}", {"cpu": "cores", "memory": "bytes"}.get(
                             guards.field_kind(p), ""), view.at.isoformat()) for p, n in known]
    if threshold is None or not known or len(known) != len(numbers):
        evaluation.unknown.append(f"field:{field_path} (no value in the pipeline, or threshold unknown)")
        return None, evidence
    return all(OPS[condition.op](n, threshold) for _, n in known), evidence


def _verify_spec(policy: Policy, settings: Config, view: MetricsView, resolver: _Resolver,
                 prediction: Mapping[str, float], notes: list[str]) -> tuple[VerifySpec, list[Expectation]]:
    expectations: list[Expectation] = []
    for rule in policy.expect:
        reading = view.reading(rule.signal)
        baseline = reading.value if reading.known else None
        if rule.value == "prediction":
            value = prediction.get(rule.signal)
            how = "prediction"
        else:
            value, how = resolver.number(rule.value, baseline=baseline)
        if value is None:
            notes.append(f"verify: {rule.signal} {rule.op} {rule.value} cannot be resolved ({how}); not checked")
            continue
        text = f"{rule.signal.replace('_', ' ')} {fmt(baseline, reading.unit)} -> {rule.op}{fmt(value, reading.unit)}"
        expectations.append(Expectation(rule.signal, rule.op, float(value), text))
    return VerifySpec(
        expect=tuple(expectations),
        settle_s=policy.settle_s if policy.settle_s is not None else settings.verify_settle,
        window_s=policy.window_s if policy.window_s is not None else settings.verify_window,
        tolerance=policy.tolerance if policy.tolerance is not None else settings.verify_tolerance,
    ), expectations


def expand_path(template: str, doc: Mapping[str, Any]) -> list[str]:
    """Concrete paths for a template with ``[*]`` / ``[type:*]`` list selectors.

    ``resources.sources[*]`` and ``resources.transform[*]`` fall back to the pipeline's Kafka
    sources and dedup transforms when the document has no resources list yet.
    """
    if "*" not in template:
        return [template]
    match = re.search(r"\[(?:([a-z]+):)?\*\]", template)
    assert match is not None
    prefix, rest = template[:match.start()], template[match.end():]
    type_ = match.group(1)
    items = paths.get(doc, prefix) if prefix else None
    ids: list[str] = []
    if isinstance(items, list) and items:
        ids = [i.get("source_id") for i in items if isinstance(i, dict) and i.get("source_id")
               and (type_ is None or i.get("type") == type_)]
    elif prefix == "resources.sources":
        ids = [s.get("source_id") for s in res.kafka_sources(dict(doc)) if s.get("source_id")]
    elif prefix == "resources.transform":
        ids = list(dict.fromkeys(t.get("source_id") for t in doc.get("transforms") or []
                                 if t.get("type") == "dedup" and t.get("source_id")))
    selector = (lambda sid: f"[{type_}:{sid}]") if type_ else (lambda sid: f"[{sid}]")
    out: list[str] = []
    for sid in ids:
        out += expand_path(prefix + selector(sid) + rest, doc)
    return out


def _bounded(action: Action, path: str, old: Any, wanted: float, kind: str, resolver: _Resolver,
             notes: list[str]) -> Any:
    current = guards.to_number(kind, old)
    value = wanted
    for key, bound, better in (("min", action.min, max), ("max", action.max, min)):
        if bound is None:
            continue
        if isinstance(bound, str) and ":" in bound:
            number, _ = resolver.number(bound)
        else:
            number = guards.parse_amount(kind, bound, current)
        if number is None:
            notes.append(f"{path}: {key} {bound!r} unknown; not applied")
            continue
        limited = better(value, number)
        if limited != value and key == "max":
            notes.append(f"{path}: {guards.from_number(kind, wanted)} limited to {key} {bound}")
        value = limited
    if action.max_step is not None and current is not None:
        step = guards.parse_amount(kind, action.max_step, current)
        if step is not None and abs(value - current) > step:
            stepped = current + math.copysign(step, value - current)
            notes.append(f"{path}: step limited to {action.max_step} ({guards.from_number(kind, value)} -> "
                         f"{guards.from_number(kind, stepped)})")
            value = stepped
    rounding = "up" if current is None or value >= current else "down"
    return guards.from_number(kind, value, rounding=rounding)


def _field_changes(action: Action, facts: PipelineFacts, resolver: _Resolver, notes: list[str]) -> list[FieldChange]:
    changes: list[FieldChange] = []
    targets = expand_path(action.path, facts.doc)
    if not targets:
        notes.append(f"{action.path}: the pipeline has no such item; nothing to change")
    for path in targets:
        old = paths.get(facts.doc, path)
        kind = guards.field_kind(path, old)
        current = guards.to_number(kind, old)
        if action.kind == "set":
            value = action.value
            if isinstance(value, str) and _is_reference(value):
                number, _ = resolver.number(value)
                if number is None:
                    notes.append(f"{path}: {value} is unknown; not set")
                    continue
                new = _bounded(action, path, old, number, kind, resolver, notes)
            else:
                literal = value if isinstance(value, int | float) and not isinstance(value, bool) else \
                    guards.to_number(kind, value) if kind != guards.NUMBER else None
                if literal is None:
                    new = value  # a plain value (a string field): set as written
                else:
                    new = _bounded(action, path, old, float(literal), kind, resolver, notes)
                    if isinstance(value, str) and guards.to_number(kind, new) == literal:
                        new = value  # unbounded: keep the policy's own spelling ("2s", "1500m")
        else:
            if current is None:
                notes.append(f"{path}: no current value to {action.kind}; skipped (set it in git first)")
                continue
            if isinstance(action.value, str) and not _is_reference(action.value):
                amount = guards.to_number(kind, action.value)  # add: 512Mi, 500m, 30s
            else:
                amount, _ = resolver.number(action.value)
            if amount is None:
                notes.append(f"{path}: {action.kind} amount {action.value!r} unknown; skipped")
                continue
            wanted = current * amount if action.kind == "multiply" else current + amount
            new = _bounded(action, path, old, wanted, kind, resolver, notes)
        if old is not None and guards.to_number(kind, old) == guards.to_number(kind, new) and \
                guards.to_number(kind, new) is not None:
            continue
        changes.append(FieldChange(path, old, new))
    return changes


# --- scale_to_fit --------------------------------------------------------------------------------------

def _stage_present(stage: str, doc: Mapping[str, Any]) -> bool:
    if stage == "ingestor":
        return bool(res.kafka_sources(dict(doc)))
    if stage == "transform":
        return res.has_transform_component(dict(doc))
    return True


def _sizing_input(action: Action, facts: PipelineFacts, view: MetricsView, settings: Config,
                  evidence: list[Evidence], policy: Policy) -> tuple[sizing.SizingInput | None, str]:
    ctx = SignalContext(facts.pipeline_id, facts.doc)
    at = view.at.isoformat()
    window = format_seconds(settings.metrics_window)

    def read(name: str, why: str) -> float | None:
        reading = view.reading(name)
        if not reading.known:
            return None
        if not any(e.signal == name for e in evidence):
            evidence.append(Evidence(policy.name, name, reading.query, window, reading.value, f"{SIZING_INPUT}: {why}",
                                     reading.unit, at))
        return reading.value

    read_rate = read("source_rate", "input read from Kafka")
    growth = read("consumer_lag_growth", "Kafka lag growth (input the ingestor does not keep up with)")
    if read_rate is None:
        return None, "source_rate is unknown: cannot size without the input rate"
    input_rate = read_rate + max(0.0, growth or 0.0)
    backlog = (read("consumer_lag", "records waiting in Kafka") or 0.0) + (read("stream_depth", "records in NATS")
                                                                          or 0.0)
    constraints = facts.constraints
    partitions_raw = constraints.get("partitions")
    partitions = int(partitions_raw) if isinstance(partitions_raw, int) else None
    if partitions is None:
        measured = view.reading("kafka_partitions")
        partitions = int(measured.value) if measured.known and measured.value else None
    stages: list[sizing.StageState] = []
    selectivity = read("transform_selectivity", "share of records the transform passes on")
    for stage in ALL_STAGES:
        if not _stage_present(stage, facts.doc):
            continue
        replicas = ctx.replicas(stage) or 1
        frozen = None
        if stage == "transform" and res.dedup_enabled(facts.doc) and facts.exists:
            frozen = "transform replicas are frozen while dedup is on"
        stages.append(sizing.StageState(
            stage=stage, replicas=replicas,
            processed_rate=read({"ingestor": "source_rate", "transform": "transform_rate", "sink": "sink_rate"}[stage],
                                f"records the {stage} processed"),
            busy_rate=read(f"{stage}_busy", f"busy replica-seconds per second of the {stage}"),
            selectivity=(selectivity if selectivity is not None and stage == "transform" else 1.0),
            cap_replicas=partitions if stage == "ingestor" else None, frozen=frozen))
    cpu = guards.to_number(guards.CPU, ctx.field("resources.sink.limits.cpu"))
    prepare = view.reading("sink_prepare_busy")
    batch = ctx.field("sink.max_batch_size")
    max_msgs = ctx.field("resources.nats.stream.maxMsgs")
    row_bytes = view.reading("sink_row_bytes")
    options = action.options
    return sizing.SizingInput(
        source_rate=input_rate, stages=tuple(stages), backlog=backlog,
        sink=sizing.SinkState(cpu=cpu, prepare_rate=prepare.value if prepare.known else None,
                              batch=batch if isinstance(batch, int) else None,
                              may_change_cpu=bool(options.get("cpu", True)),
                              may_change_batch=bool(options.get("batch", True)),
                              batch_mean=read("sink_batch_mean", "rows per insert: splits the sink's busy time "
                                                                 "into a per-insert and a per-row cost"),
                              max_msgs=max_msgs if isinstance(max_msgs, int) else None,
                              row_bytes=row_bytes.value if row_bytes.known else None,
                              memory_ceiling=guards.to_number(guards.MEMORY, constraints.get("memory_ceiling"))
                              if constraints.get("memory_ceiling") is not None else None),
        target_utilization=float(options.get("target_utilization", 0.75)),
        catch_up_s=float(options.get("catch_up", 1800.0)),
        insert_budget=float(options.get("insert_budget", 10.0)),
        restart_s=float(options.get("restart", settings.restart_estimate)),
        burst_grace_s=(policy.settle_s if policy.settle_s is not None else settings.verify_settle)
        + (policy.window_s if policy.window_s is not None else settings.verify_window),
        band=options.get("band", (0.4, 0.9)),
        max_scale_down=float(options.get("max_scale_down", 0.5)),
        max_replicas=int(constraints.get("max_replicas") or guards.DEFAULT_MAX_REPLICAS),
    ), ""


def _bound_replicas(action: Action, old: int, new: int, notes: list[str], stage: str) -> int:
    """scale_to_fit's own ``min`` / ``max`` / ``max_step`` (replica counts) on top of the guards."""
    bounded = new
    if isinstance(action.min, int) and bounded < action.min:
        bounded = action.min
    if isinstance(action.max, int) and bounded > action.max:
        bounded = action.max
    if isinstance(action.max_step, int) and abs(bounded - old) > action.max_step:
        bounded = old + (action.max_step if bounded > old else -action.max_step)
    if bounded != new:
        notes.append(f"scale_to_fit: {stage} replicas {new} bounded to {bounded} by the policy's min/max/max_step")
    return bounded


def _scale_to_fit(action: Action, facts: PipelineFacts, view: MetricsView, settings: Config, policy: Policy,
                  evidence: list[Evidence], notes: list[str], blocked: list[guards.Blocked]
                  ) -> tuple[list[FieldChange], dict[str, float], str]:
    inp, why = _sizing_input(action, facts, view, settings, evidence, policy)
    if inp is None:
        notes.append(f"scale_to_fit: {why}")
        return [], {}, ""
    result = sizing.size(inp)
    notes += [f"scale_to_fit: {n}" for n in result.notes]
    changes: list[FieldChange] = []
    lines = [f"input {fmt(inp.source_rate, 'records/s')} (read + Kafka lag growth), backlog {fmt(inp.backlog)} "
             f"records -> target capacity {fmt(result.target_rate, 'records/s')} at {inp.target_utilization:.0%} "
             f"utilisation, catch-up {format_seconds(inp.catch_up_s)}, restart {format_seconds(inp.restart_s)}"]
    for decision in result.decisions:
        lines.append(
            f"{decision.stage}: {decision.replicas_from} replica(s) x {fmt(decision.true_rate, 'records/s')} "
            f"per replica ({decision.estimator or 'unknown'}) = {fmt(decision.capacity_now, 'records/s')}, "
            f"utilisation {('%.0f%%' % (decision.utilization_now * 100)) if decision.utilization_now else 'unknown'}"
            f" -> {decision.replicas_to} replica(s)"
            + (f" at {guards.from_number(guards.CPU, decision.cpu_to)} CPU" if decision.cpu_to != decision.cpu_from
               and decision.cpu_to is not None else "")
            + f" = {fmt(decision.capacity_after, 'records/s')} ({decision.reason})")
        if decision.stage not in action.stages:
            continue
        if decision.capped and decision.needed and decision.needed > decision.replicas_to:
            path = {"ingestor": "resources.sources[*].replicas", "transform": "resources.transform[*].replicas",
                    "sink": "resources.sink.replicas"}[decision.stage]
            carries = fmt(decision.capacity_after, "records/s")
            if decision.stage == "ingestor" and "partitions" in decision.capped:
                step = ("increase the Kafka topic's partitions (a Kafka-side change outside GlassFlow) to at least "
                        f"{decision.needed}, set tuning.constraints.partitions, then let gftune raise {path}")
            elif decision.stage == "transform":
                step = ("the transform replica count is fixed while dedup is on: recreate the pipeline with "
                        f"{decision.needed} transform replicas, or shorten the dedup window to cut its work")
            else:
                step = f"raise tuning.constraints.max_replicas (or add capacity elsewhere) to allow {decision.needed}"
            blocked.append(guards.Blocked(
                path, f"the {decision.stage} needs {decision.needed} replicas for {fmt(decision.target, 'records/s')}"
                      f" but {decision.capped}; at {decision.replicas_to} it carries {carries}", step))
        if not decision.changed:
            continue
        replicas_to = _bound_replicas(action, decision.replicas_from, decision.replicas_to, notes, decision.stage)
        if replicas_to != decision.replicas_from:
            if decision.stage == "ingestor":
                targets = expand_path("resources.sources[*].replicas", facts.doc)
            elif decision.stage == "transform":
                targets = expand_path("resources.transform[*].replicas", facts.doc)[:1]
            else:
                targets = ["resources.sink.replicas"]
            for path in targets:
                changes.append(FieldChange(path, paths.get(facts.doc, path), replicas_to))
        if decision.stage == "sink" and decision.cpu_to is not None and decision.cpu_to != decision.cpu_from:
            path = "resources.sink.limits.cpu"
            changes.append(FieldChange(path, paths.get(facts.doc, path), guards.from_number(guards.CPU,
                                                                                          decision.cpu_to)))
        if decision.stage == "sink" and decision.batch_to is not None and decision.batch_to != decision.batch_from:
            changes.append(FieldChange("sink.max_batch_size", decision.batch_from, decision.batch_to))
    prediction: dict[str, float] = {}
    if result.changed and result.predicted_sink_rate is not None:
        prediction["sink_rate"] = result.predicted_sink_rate
    return changes, prediction, "; ".join(lines)


# --- one policy, one pipeline --------------------------------------------------------------------------

def _cooldown(policy: Policy, facts: PipelineFacts, now: datetime, settings: Config) -> tuple[bool, str | None]:
    """(active, note): no proposal within the cooldown after the pipeline's last change."""
    if facts.last_change is None or policy.cooldown_s <= 0:
        return False, None
    elapsed = (now - facts.last_change).total_seconds()
    wait = policy.cooldown_s / settings.time_scale
    last = facts.last_change.isoformat(timespec="seconds")
    if elapsed < -1:
        # The API's clock is ahead of ours (a time-scaled simulator stamps model time): say so
        # rather than wait for a moment that will not come.
        return False, f"{policy.name}: the pipeline's last change ({last}) is ahead of this machine's clock; " \
                      "cooldown not applied"
    if elapsed < wait:
        until = datetime.fromtimestamp(facts.last_change.timestamp() + wait, UTC).isoformat(timespec="seconds")
        return True, (f"{policy.name}: cooldown {format_seconds(policy.cooldown_s)} active until {until} "
                      f"(last change {last}); no change proposed")
    return False, None


def _backoff(policy: Policy, facts: PipelineFacts, now: datetime, settings: Config) -> tuple[bool, str | None]:
    """(active, note): no proposal for ``REVERT_BACKOFF_COOLDOWNS`` cooldowns (the default cooldown when
    the policy has none) after apply reverted a change this policy proposed."""
    when = facts.reverted.get(policy.name)
    if when is None:
        return False, None
    cooldown = policy.cooldown_s if policy.cooldown_s > 0 else DEFAULT_COOLDOWN_S
    wait = REVERT_BACKOFF_COOLDOWNS * cooldown / settings.time_scale
    if (now - when).total_seconds() >= wait:
        return False, None
    until = datetime.fromtimestamp(when.timestamp() + wait, UTC).isoformat(timespec="seconds")
    return True, (f"{policy.name}: its change was reverted at {when.isoformat(timespec='seconds')} (regressed); "
                  f"backing off until {until}: cooldown {REVERT_BACKOFF_COOLDOWNS} x {format_seconds(cooldown)} "
                  "active after a revert; no change proposed")


def evaluate(policy: Policy, facts: PipelineFacts, view: MetricsView, settings: Config | None = None,
             now: datetime | None = None) -> Evaluation:
    """Evaluate one policy for one pipeline. Pure: all I/O is behind ``view``."""
    settings = settings or Config()
    now = now or view.at
    evaluation = Evaluation(policy.name)
    resolver = _Resolver(facts, view)
    evidence: list[Evidence] = []
    results: list[bool | None] = []
    for condition in policy.when:
        met, found = _evaluate_condition(condition, policy, view, resolver, settings, evaluation)
        results.append(met)
        evidence += found
        if met is False:
            break  # later conditions cannot change the outcome
    if not results or not all(r is True for r in results):
        if any(r is None for r in results) and not any(r is False for r in results):
            evaluation.incomplete = True
            evaluation.notes.append(f"{policy.name}: not evaluated: {', '.join(evaluation.unknown)} unknown "
                                    "(no data is not zero); no change proposed")
        return evaluation
    evaluation.matched = True
    for name in policy.extra_evidence:
        reading = view.reading(name)
        if reading.known:
            detail = ", ".join(f"{k or '-'}: {fmt(v, reading.unit)}" for k, v in sorted(reading.breakdown.items()))
            evidence.append(Evidence(policy.name, name, reading.query, format_seconds(settings.metrics_window),
                                     reading.value, f"context{' (' + detail + ')' if detail else ''}", reading.unit,
                                     view.at.isoformat()))
    if policy.escalates:
        evaluation.escalation = Escalation(facts.pipeline_id, policy.name, str(policy.escalate_reason),
                                           tuple(evidence), str(policy.escalate_next_step))
        return evaluation
    backing_off, note = _backoff(policy, facts, now, settings)
    if backing_off:
        evaluation.notes.append(str(note))
        return evaluation
    cooling, note = _cooldown(policy, facts, now, settings)
    if note:
        evaluation.notes.append(note)
    if cooling:
        return evaluation
    notes: list[str] = []
    changes: list[FieldChange] = []
    prediction: dict[str, float] = {}
    rationale_parts: list[str] = []
    sizing_blocked: list[guards.Blocked] = []
    for action in policy.then:
        if action.kind == "scale_to_fit":
            found, predicted, rationale = _scale_to_fit(action, facts, view, settings, policy, evidence, notes,
                                                        sizing_blocked)
            prediction.update(predicted)
            if rationale:
                rationale_parts.append(rationale)
        else:
            found = _field_changes(action, facts, resolver, notes)
        for change in found:
            changes = [c for c in changes if c.path != change.path] + [change]
    guard_ctx = guards.GuardContext(
        doc=facts.doc, constraints=dict(facts.constraints), exists=facts.exists, immutable=facts.immutable,
        measured_partitions=_measured_int(view, "kafka_partitions"),
        row_bytes=_measured(view, "sink_row_bytes"))
    guarded = guards.apply_guards(changes, guard_ctx)
    guarded.blocked = sizing_blocked + guarded.blocked
    notes += guarded.notes
    if not guarded.changes:
        if guarded.blocked:
            reasons = "; ".join(f"{b.path}: {b.reason}" for b in guarded.blocked)
            next_steps = " / ".join(dict.fromkeys(b.next_step for b in guarded.blocked))
            evaluation.escalation = Escalation(facts.pipeline_id, policy.name,
                                               f"conditions met, but every change is blocked by a guard: {reasons}",
                                               tuple(evidence), next_steps)
            evaluation.blocked_by_guards = True
        else:
            evaluation.notes.append(f"{policy.name}: conditions met, but nothing to change"
                                    + (f" ({'; '.join(notes)})" if notes else " (already at the target values)"))
        return evaluation
    for blocked in guarded.blocked:
        notes.append(f"{blocked.path}: {blocked.reason}; next step: {blocked.next_step}")
    verify, expectations = _verify_spec(policy, settings, view, resolver, prediction, notes)
    predictions = list(expectations)
    if "sink_rate" in prediction and not any(e.signal == "sink_rate" for e in predictions):
        baseline = view.reading("sink_rate")
        predictions.append(Expectation(
            "sink_rate", ">=", round(prediction["sink_rate"], 3),
            f"sink rate {fmt(baseline.value if baseline.known else None, 'records/s')} -> "
            f">={fmt(prediction['sink_rate'], 'records/s')}"))
        verify = VerifySpec(tuple(predictions), verify.settle_s, verify.window_s, verify.tolerance)
    rationale = policy.description or policy.name
    if rationale_parts:
        rationale += " | " + " | ".join(rationale_parts)
    evaluation.proposal = Proposal(facts.pipeline_id, policy.name, tuple(guarded.changes), tuple(evidence),
                                   tuple(predictions), verify, rationale, tuple(notes))
    return evaluation


def _measured(view: MetricsView, name: str) -> float | None:
    reading = view.reading(name)
    return reading.value if reading.known else None


def _measured_int(view: MetricsView, name: str) -> int | None:
    value = _measured(view, name)
    return round(value) if value else None


# --- all policies, one pipeline ----------------------------------------------------------------------

@dataclass
class PolicyOutcome:
    proposals: list[Proposal] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"proposals": [p.to_dict() for p in self.proposals],
                "escalations": [e.to_dict() for e in self.escalations], "notes": list(self.notes)}


@dataclass
class PolicyReport:
    source_description: str | None  # None: no metrics configured, policies were not evaluated
    outcomes: dict[str, PolicyOutcome] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # report-wide (naming detection, invalid policies)

    @property
    def proposals(self) -> list[Proposal]:
        return [p for o in self.outcomes.values() for p in o.proposals]

    @property
    def escalations(self) -> list[Escalation]:
        return [e for o in self.outcomes.values() for e in o.escalations]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source_description, "notes": list(self.notes),
                "outcomes": {k: v.to_dict() for k, v in self.outcomes.items()}}


SYMPTOMS = (("ingestor_backpressure", ">=", 1.0, "ingestor backpressure active"),
            ("sink_source_ratio", "<", 0.9, "sink trails the source"),
            ("sink_exhausted_rate", ">", 0.0, "sink retries exhausted"),
            ("sink_terminal_error_rate", ">", 0.0, "terminal sink errors"))


def evaluate_pipeline(policies: Iterable[Policy], facts: PipelineFacts, view: MetricsView,
                      settings: Config | None = None, now: datetime | None = None) -> PolicyOutcome:
    """Every selected policy, highest priority first; a field changed by one is not changed again."""
    outcome = PolicyOutcome()
    selected = sorted((p for p in policies if p.selects(facts.pipeline_id, facts.labels)),
                      key=lambda p: (-p.priority, p.name))
    if not selected:
        outcome.notes.append("no policy selects this pipeline")
        return outcome
    claimed: dict[str, str] = {}
    unknown: dict[str, None] = {}
    incomplete: list[str] = []
    matched = False
    out_of_scope: str | None = None
    for policy in selected:
        evaluation = evaluate(policy, facts, view, settings, now)
        if evaluation.escalation is not None and policy.escalates and out_of_scope is None:
            out_of_scope = policy.name
        if evaluation.incomplete:
            incomplete.append(policy.name)
            unknown.update(dict.fromkeys(evaluation.unknown))
        else:
            outcome.notes += evaluation.notes
        matched = matched or evaluation.matched
        if evaluation.escalation is not None:
            if evaluation.blocked_by_guards and outcome.proposals:
                # A higher-priority policy already proposes a fix for this pipeline: what this one
                # could not do is context, not a reason to block the plan.
                outcome.notes.append(f"{policy.name}: {evaluation.escalation.reason} (a higher-priority proposal "
                                     f"addresses the pipeline; otherwise: {evaluation.escalation.next_step})")
            else:
                outcome.escalations.append(evaluation.escalation)
        proposal = evaluation.proposal
        if proposal is None:
            continue
        kept = [c for c in proposal.changes if c.path not in claimed]
        dropped = [c for c in proposal.changes if c.path in claimed]
        if not kept:
            outcome.notes.append(f"{policy.name}: superseded by {', '.join(sorted({claimed[c.path] for c in dropped}))}"
                                 " (higher priority, same fields)")
            continue
        notes = list(proposal.notes) + [f"{c.path} left to {claimed[c.path]} (higher priority)" for c in dropped]
        for change in kept:
            claimed[change.path] = policy.name
        outcome.proposals.append(Proposal(proposal.pipeline_id, proposal.policy, tuple(kept), proposal.evidence,
                                          proposal.predictions, proposal.verify, proposal.rationale, tuple(notes)))
    if incomplete:
        outcome.notes.append(f"not evaluated for unknown data (no data is not zero): {', '.join(incomplete)}; "
                             f"unknown: {', '.join(unknown)}")
    if out_of_scope is not None and outcome.proposals:
        # An out-of-scope symptom (exhausted retries, terminal errors): no change is proposed while it lasts.
        outcome.notes += [f"{p.policy}: proposal withheld while {out_of_scope} escalates (an out-of-scope symptom "
                          f"comes first): {', '.join(c.path for c in p.changes)}" for p in outcome.proposals]
        outcome.proposals = []
    if not matched:
        symptoms = []
        for name, op, threshold, text in SYMPTOMS:
            reading = view.reading(name)
            if reading.known and OPS[op](reading.value, threshold):
                symptoms.append(f"{text} ({name} {fmt(reading.value, reading.unit)})")
        if symptoms:
            outcome.notes.append("no policy matched, but " + "; ".join(symptoms)
                                 + ": not guessing a change; narrow the signal or add a policy")
        else:
            outcome.notes.append("no policy matched")
    return outcome


# --- plan entry point ----------------------------------------------------------------------------------

def load_policies(state: Any) -> tuple[list[Policy], list[str]]:
    """Parse the repository's policies; invalid ones are skipped with a note (validate reports them)."""
    policies: list[Policy] = []
    notes: list[str] = []
    for policy_file in getattr(state, "policies", []) or []:
        if not getattr(policy_file, "valid", True):
            notes.append(f"{policy_file.file}: invalid policy skipped (see gftune validate)")
            continue
        try:
            policies.append(parse_policy(policy_file.doc, file=policy_file.file))
        except PolicyError as exc:
            notes.append(f"{policy_file.file}: invalid policy skipped: {exc}")
    return policies, notes


def _last_change(health: Mapping[str, Any]) -> datetime | None:
    """When the pipeline last changed status (stop, resume, edit); creation alone is no change."""
    updated = canonical.parse_timestamp(health.get("updated_at"))
    created = canonical.parse_timestamp(health.get("created_at"))
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
        reverted=canonical.reverted_policies(canonical.tags_of(live.pipeline)) if exists else {})


def plan_policies(state: Any, live: Mapping[str, Any], config: Any, now: datetime,
                  *, source: Any = None, progress: Callable[[str], None] | None = None) -> PolicyReport:
    """Evaluate the repository's policies against live metrics (``gftune plan`` / ``gftune tune``).

    ``source`` overrides the configured metric source (tests). Without one configured, the report
    says so (``source_description`` None) and nothing is evaluated.
    """
    policies, notes = load_policies(state)
    report = PolicyReport(None, notes=notes)
    pipelines = getattr(state, "pipelines", {}) or {}
    own_source = source is None
    source = source if source is not None else open_source(config)
    if source is None:
        for pipeline_id in pipelines:
            report.outcomes[pipeline_id] = PolicyOutcome(notes=["no metrics source configured (--prometheus or "
                                                                "--scrape): policies not evaluated"])
        return report
    report.source_description = source.description
    settings = config
    try:
        if not policies:
            for pipeline_id in pipelines:
                report.outcomes[pipeline_id] = PolicyOutcome(notes=["no policies in the repository"])
            return report
        try:
            snapshot = source.snapshot(window_s=settings.metrics_window / settings.time_scale, now=now,
                                       progress=progress)
        except MetricsError as exc:
            for pipeline_id in pipelines:
                report.outcomes[pipeline_id] = PolicyOutcome(notes=[f"metrics unavailable: {exc}; policies not "
                                                                    "evaluated"])
            report.notes.append(f"metrics unavailable: {exc}")
            return report
        if snapshot.naming.detail:
            report.notes.append(f"metric names: {snapshot.naming.detail}")
        for pipeline_id, pipeline in pipelines.items():
            if not getattr(pipeline, "valid", True):
                report.outcomes[pipeline_id] = PolicyOutcome(notes=["pipeline file invalid: policies not evaluated"])
                continue
            state_live = live.get(pipeline_id)
            facts = facts_for(pipeline, state_live)
            if state_live is not None and getattr(state_live, "error", None):
                report.outcomes[pipeline_id] = PolicyOutcome(notes=[f"live state unreadable ({state_live.error}): "
                                                                    "policies not evaluated"])
                continue
            if not facts.exists:
                report.outcomes[pipeline_id] = PolicyOutcome(notes=["pipeline does not exist yet: no metrics to "
                                                                    "evaluate policies on"])
                continue
            if facts.status not in (None, "Running"):
                report.outcomes[pipeline_id] = PolicyOutcome(notes=[f"pipeline is {facts.status}: its metrics do not "
                                                                    "show its load; policies not evaluated"])
                continue
            view = SnapshotView(snapshot, SignalContext(pipeline_id, facts.doc, settings.time_scale),
                                time_scale=settings.time_scale)
            report.outcomes[pipeline_id] = evaluate_pipeline(policies, facts, view, settings, now)
    finally:
        if own_source:
            source.close()
    return report
