"""Field paths into a GlassFlow v3 document: one format for diffs, proposals, evidence and tune.

A path is dotted keys plus bracket selectors for list items::

    sink.max_batch_size
    resources.sources[orders].replicas          # the item whose source_id is "orders"
    transforms[dedup:orders].config.time_window # the item with type "dedup" and source_id "orders"
    sink.mapping[0].column_type                 # by position

Selecting list items by ``source_id`` instead of position keeps a path stable when the server
reorders transforms (reference §2.6) and when users reorder their YAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]|(\.)")
_MISSING = object()


@dataclass(frozen=True)
class Key:
    name: str


@dataclass(frozen=True)
class Select:
    """A list item: by position (``index``) or by ``source_id`` (and optionally ``type``)."""

    index: int | None = None
    source_id: str | None = None
    type: str | None = None

    def matches(self, position: int, item: Any) -> bool:
        if self.index is not None:
            return position == self.index
        if not isinstance(item, dict) or item.get("source_id") != self.source_id:
            return False
        return self.type is None or item.get("type") == self.type

    def new_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {}
        if self.type is not None:
            item["type"] = self.type
        item["source_id"] = self.source_id
        return item


Step = Key | Select


class PathError(ValueError):
    pass


def parse(path: str) -> tuple[Step, ...]:
    steps: list[Step] = []
    pos = 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if not match:
            raise PathError(f"invalid field path {path!r} at position {pos}")
        key, selector, _dot = match.groups()
        if key is not None:
            steps.append(Key(key))
        elif selector is not None:
            if selector.isdigit():
                steps.append(Select(index=int(selector)))
            elif ":" in selector:
                type_, source_id = selector.split(":", 1)
                steps.append(Select(source_id=source_id, type=type_))
            elif selector:
                steps.append(Select(source_id=selector))
            else:
                raise PathError(f"empty selector in field path {path!r}")
        pos = match.end()
    if not steps:
        raise PathError("empty field path")
    return tuple(steps)


def format_path(steps: tuple[Step, ...]) -> str:
    out = ""
    for step in steps:
        if isinstance(step, Key):
            out += f".{step.name}" if out else step.name
        elif step.index is not None:
            out += f"[{step.index}]"
        elif step.type is not None:
            out += f"[{step.type}:{step.source_id}]"
        else:
            out += f"[{step.source_id}]"
    return out


def _child(node: Any, step: Step) -> Any:
    if isinstance(step, Key):
        if isinstance(node, dict) and step.name in node:
            return node[step.name]
        return _MISSING
    if isinstance(node, list):
        for position, item in enumerate(node):
            if step.matches(position, item):
                return item
    return _MISSING


def get(doc: Any, path: str | tuple[Step, ...], default: Any = None) -> Any:
    node = doc
    for step in parse(path) if isinstance(path, str) else path:
        node = _child(node, step)
        if node is _MISSING:
            return default
    return node


def has(doc: Any, path: str | tuple[Step, ...]) -> bool:
    return get(doc, path, _MISSING) is not _MISSING


def set_value(doc: dict[str, Any], path: str | tuple[Step, ...], value: Any) -> None:
    """Set a value, creating missing objects and ``source_id``-selected list items on the way."""
    steps = parse(path) if isinstance(path, str) else path
    node: Any = doc
    for step, following in zip(steps, (*steps[1:], None), strict=True):
        last = following is None
        if isinstance(step, Key):
            if not isinstance(node, dict):
                raise PathError(f"cannot set {format_path(steps)}: {step.name} is not inside an object")
            if last:
                node[step.name] = value
                return
            if step.name not in node or node[step.name] is None:
                node[step.name] = [] if isinstance(following, Select) else {}
            node = node[step.name]
            continue
        if not isinstance(node, list):
            raise PathError(f"cannot set {format_path(steps)}: selector applied to a non-list")
        for position, item in enumerate(node):
            if step.matches(position, item):
                if last:
                    node[position] = value
                    return
                node = item
                break
        else:
            if step.index is not None:
                raise PathError(f"cannot set {format_path(steps)}: index {step.index} out of range")
            item = step.new_item()
            node.append(item)
            if last:
                node[-1] = value
                return
            node = item


def leaves(node: Any, location: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], Any]]:
    """Every value of a document that is not a mapping or a list, with its positional location
    (keys and list indexes, as in a :class:`~gftune.desired.yamlio.LocationIndex`), in document order."""
    found: list[tuple[tuple[str | int, ...], Any]] = []

    # A list filled by plain recursion, not nested generators: a leaf passed up through one `yield from`
    # per level cost validate a third of its time on a 1,000-pipeline repository.
    def walk(node: Any, location: tuple[str | int, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*location, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*location, index))
        else:
            found.append((location, node))

    walk(node, location)
    return found
