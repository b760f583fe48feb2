"""Field-level differences between a desired pipeline and its live state, after canonicalisation.

Config is compared with deepdiff on the canonical forms of both sides (:mod:`gftune.plan.canonical`);
resources field by field for the fields the desired file sets. Every difference carries a
gftune.desired.paths path, the value to show on each side (secrets masked) and whether it is sensitive.
Pure functions: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gftune.desired import paths
from gftune.desired.secrets import is_reference
from gftune.plan.canonical import (
    SECRET_MASK,
    Json,
    Keyed,
    ResourceLeaf,
    internal_get,
    resource_values_equal,
)

ABSENT = None  # how a missing value is shown ("(absent)" in text)
_MISSING = object()

# What each kind of difference costs to apply.
CONFIG = "config"  # needs POST /edit (stop, update, restart)
RESOURCES = "resources"  # needs PUT /resources or /edit (stop, update, restart)
METADATA = "metadata"  # PATCH /metadata, no restart
NAME = "name"  # PATCH /pipeline/{id}, no restart


@dataclass(frozen=True)
class FieldDiff:
    path: str
    old: Any  # display value (secrets masked); None when absent
    new: Any
    area: str  # CONFIG | RESOURCES | METADATA | NAME
    sensitive: bool = False
    internal: tuple[str, ...] | None = None  # resources only: where it lives in GET /resources

    @property
    def disruptive(self) -> bool:
        return self.area in (CONFIG, RESOURCES)


def _format_path(steps: list[Any], live: Any, desired: Any) -> str:
    out = ""
    nodes = [live, desired]
    for step in steps:
        container = next((n for n in nodes if isinstance(n, (dict, list))), None)
        if isinstance(container, (Keyed, list)):
            out += f"[{step}]"
        else:
            out += f".{step}" if out else str(step)
        nodes = [_child(n, step) for n in nodes]
    return out


def _child(node: Any, step: Any) -> Any:
    if isinstance(node, dict):
        return node.get(step, _MISSING)
    if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
        return node[step]
    return _MISSING


def _display(doc: Json | None, path: str, fallback: Any) -> Any:
    if doc is None:
        return fallback
    try:
        value = paths.get(doc, path, _MISSING)
    except paths.PathError:
        value = _MISSING
    if value is _MISSING:
        return fallback
    return value


def _area(path: str) -> str:
    if path == "name":
        return NAME
    if path == "metadata" or path.startswith("metadata."):
        return METADATA
    return CONFIG


def diff_config(desired: Json, live: Json, *, desired_display: Json | None = None,
                live_display: Json | None = None, sensitive: frozenset[str] | set[str] = frozenset()
                ) -> list[FieldDiff]:
    """Differences between two canonical configs (:func:`gftune.plan.canonical.canonical_config`).

    ``*_display`` are the original documents with secrets masked (:func:`gftune.plan.canonical.masked`),
    used to show values as the user wrote them; ``sensitive`` are the secret field paths.
    """
    if desired == live:
        return []
    changes: list[FieldDiff] = []
    desired_tags = (desired.get("metadata") or {}).get("tags") or []
    live_tags = (live.get("metadata") or {}).get("tags") or []
    if desired_tags != live_tags:
        changes.append(FieldDiff("metadata.tags", live_tags, desired_tags, METADATA))
    strip = ("metadata",)
    left = {k: v for k, v in live.items() if k not in strip}
    right = {k: v for k, v in desired.items() if k not in strip}
    from deepdiff import DeepDiff  # only when something differs: the import costs ~0.1 s
    from deepdiff.helper import notpresent

    tree = DeepDiff(left, right, view="tree", threshold_to_diff_deeper=0, verbose_level=2)
    for levels in tree.values():
        for level in levels:
            steps = level.path(output_format="list")
            path = _format_path(steps, left, right)
            is_secret = path in sensitive
            if is_secret:
                new = _display(desired_display, path, None)
                new_shown = new if is_reference(new) else (SECRET_MASK if level.t2 is not notpresent else ABSENT)
                old_shown = SECRET_MASK if level.t1 is not notpresent else ABSENT
            else:
                old_shown = ABSENT if level.t1 is notpresent else _display(live_display, path, level.t1)
                new_shown = ABSENT if level.t2 is notpresent else _display(desired_display, path, level.t2)
            changes.append(FieldDiff(path, old_shown, new_shown, _area(path), sensitive=is_secret))
    changes.sort(key=lambda c: c.path)
    return changes


def diff_resources(leaves: list[ResourceLeaf], live_internal: Json | None) -> list[FieldDiff]:
    """The desired resource fields whose value differs from GET /resources (by value, not text)."""
    changes = []
    for leaf in leaves:
        old = internal_get(live_internal, leaf.internal)
        if not resource_values_equal(leaf.internal, old, leaf.value):
            changes.append(FieldDiff(leaf.path, old, leaf.value, RESOURCES, internal=leaf.internal))
    return changes
