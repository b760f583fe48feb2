"""The ``set``, ``multiply`` and ``add`` actions: concrete field changes for one pipeline, bounded by the
action's own ``min``/``max``/``max_step`` (the always-on guards come after, in :mod:`gftune.policy.guards`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from gftune.desired import paths
from gftune.glassflow import resources as res
from gftune.plan.evidence import FieldChange
from gftune.policy import guards
from gftune.policy.facts import PipelineFacts
from gftune.policy.language import Action, is_reference
from gftune.policy.resolve import Resolver


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


def _bounded(action: Action, path: str, old: Any, wanted: float, kind: str, resolver: Resolver,
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


def field_changes(action: Action, facts: PipelineFacts, resolver: Resolver, notes: list[str]) -> list[FieldChange]:
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
            if isinstance(value, str) and is_reference(value):
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
            if isinstance(action.value, str) and not is_reference(action.value):
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
