"""The policy language: the model of a ``TuningPolicy`` file and its parser.

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

:func:`parse_policy` turns a loaded document into a :class:`Policy` or raises :class:`PolicyError`
with the path of what is wrong. Value expressions (``field:sink.max_batch_size * 0.95``,
``baseline*1.2``, ``-50%``) are checked here and resolved at evaluation time
(:mod:`gftune.policy.resolve`).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gftune.desired import paths
from gftune.desired.problems import Problem
from gftune.desired.repo import PolicyFile
from gftune.glassflow import rules
from gftune.glassflow.durations import DurationError, parse_duration
from gftune.policy import guards, sizing
from gftune.policy.promql import promql_problem
from gftune.policy.signals import SIGNALS

API_VERSION = "gftune/v1"
KIND = "TuningPolicy"
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}
ACTIONS = ("set", "multiply", "add", "scale_to_fit")
DEFAULT_COOLDOWN_S = 600.0
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
    # the last change, one apply kept for one of these policies, finished watching within within_s
    applied_by: tuple[str, ...] = ()
    within_s: float = 0.0

    @property
    def label(self) -> str:
        if self.applied_by:
            return "applied_by"
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
    # A proposal that only gives capacity back waits up to this long (model seconds) for another policy
    # whose conditions are holding to be established, so both land in one restart (ridealong.py).
    ride_along_s: float = 0.0
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
    if "applied_by" in item:
        return _applied_condition(item, where)
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
    if promql is not None:  # fail closed: a query that cannot run is an invalid policy, not a skipped one
        reason = promql_problem(promql) if isinstance(promql, str) else "promql: must be a query string"
        if reason is not None:
            raise PolicyError(reason, (*where, "promql"))
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


def _applied_condition(item: Mapping[str, Any], where: tuple[str | int, ...]) -> Condition:
    """``{applied_by: [policy, ...], within: 2h}``: the last change was made for one of those policies and
    kept by apply (``gftune:applied``), which finished watching it no longer than ``within`` ago."""
    names = item["applied_by"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise PolicyError("applied_by: needs a list of policy names", (*where, "applied_by"))
    extra = sorted(set(item) - {"applied_by", "within"})
    if extra:
        raise PolicyError(f"unknown key(s) {', '.join(extra)} in an applied_by condition", where)
    if "within" not in item:
        raise PolicyError("an applied_by condition needs within: (how recent the change must be)", where)
    return Condition(applied_by=tuple(names), within_s=parse_seconds(item["within"], (*where, "within")),
                     for_text=str(item["within"]), where=where)


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
    if kind == "add" and isinstance(value, str) and not is_reference(value):
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
    if escalate and "ride_along" in spec:
        raise PolicyError("ride_along lets a scale-down wait for another change; a policy that escalates "
                          "proposes none", ("spec", "ride_along"))
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
        ride_along_s=parse_seconds(spec["ride_along"], ("spec", "ride_along")) if "ride_along" in spec else 0.0,
        escalate_reason=str(escalate["reason"]) if escalate else None,
        escalate_next_step=str(escalate["next_step"]) if escalate else None,
        extra_evidence=tuple(extra), tests=tuple(tests), file=file)


def parse_policy_file(policy_file: PolicyFile) -> tuple[Policy | None, list[Problem]]:
    """A loaded policy file parsed once: the :class:`Policy`, or None and the located problem saying why."""
    try:
        return parse_policy(policy_file.doc, file=policy_file.file), []
    except PolicyError as exc:
        line, col = policy_file.locations.locate(exc.where) if exc.where else (None, None)
        return None, [Problem(policy_file.file, line, col, rules.json_path(exc.where), str(exc))]


# --- references: "field:sink.max_batch_size * 0.95", "baseline*1.2", "-50%" --------------------------

REFERENCE_TERM = re.compile(r"^(field|signal|constraint):(\S+)$")
RELATIVE_CHANGE = re.compile(r"^([+-]\d+(?:\.\d+)?)%$")


def reference_terms(text: str) -> list[str]:
    return [t.strip() for t in text.split("*")]


def is_reference(text: str) -> bool:
    """A value expression (``constraint:partitions``, ``field:x * 2``) rather than a literal."""
    terms = reference_terms(text)
    return any(REFERENCE_TERM.match(term) for term in terms) or any(t == "baseline" for t in terms)


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
    if verify and (RELATIVE_CHANGE.match(text) or text == "prediction"):
        return
    for term in reference_terms(text):
        if verify and term == "baseline":
            continue
        try:
            float(term)
            continue
        except ValueError:
            pass
        match = REFERENCE_TERM.match(term)
        if not match:
            allowed = "numbers, field:PATH, signal:NAME, constraint:NAME" + (", baseline, +/-N%, prediction"
                                                                              if verify else "")
            raise PolicyError(f"cannot read {term!r} in {value!r}: use {allowed} joined by *", where)
        if match.group(1) == "signal" and match.group(2) not in SIGNALS:
            raise PolicyError(f"unknown signal {match.group(2)!r} in {value!r}", where)
