"""Canonical form of a pipeline on both sides of the diff: what git wants and what GET returns.

The API rebuilds every document it returns (reference §2.6): durations come back in Go form,
defaults are filled in, transforms are reordered, ``tags: null`` stands for "no tags", the v3
``resources`` block is a second view of the internal ``/resources`` row, and so on. A naive diff
reports all of that as drift. This module turns both sides into one comparable form so that the
only differences left are real ones:

* :func:`canonical_config` for everything but resources (a nested structure; lists that carry an
  id become :class:`Keyed` mappings so that order does not matter and diff paths stay stable);
* :func:`desired_resource_leaves` and :func:`resource_values_equal` for resources: only the fields
  the desired file names are compared (absent in git = unmanaged), by value (``1.5Gi`` = ``1536Mi``,
  ``1500m`` = ``1.5``, ``60s`` = ``1m0s``), against the internal shape of ``GET /resources``.

Secrets never survive canonicalisation: secret fields are replaced by their fingerprint.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from gftune.desired import paths, secrets
from gftune.glassflow import defaults
from gftune.glassflow import resources as res
from gftune.glassflow.durations import DurationError, api_duration, parse_duration
from gftune.glassflow.quantities import QuantityError, parse_nats_bytes, parse_quantity
from gftune.plan import tags

Json = dict[str, Any]

SECRET_MASK = "(sensitive)"


class Keyed(dict):
    """A list of id-carrying items turned into a mapping; a diff path shows its keys as ``[key]``."""


# --- secrets --------------------------------------------------------------------------------

Resolver = Callable[[str], str]


def _with_references_resolved(doc: Json, resolver: Resolver | None) -> Json:
    """A copy with references resolved (when a resolver is given) and secret fields fingerprinted.

    Raises :class:`gftune.desired.secrets.SecretError` when a reference cannot be resolved.
    """
    out = _copy(doc, resolver, prune=True)
    for location, _, value in list(secrets.iter_secret_locations(out)):
        if isinstance(value, str) and value != "":
            parent: Any = out
            for step in location[:-1]:
                parent = parent[step]
            parent[location[-1]] = secrets.fingerprint(value)
    return out


def _copy(node: Any, resolver: Resolver | None, *, prune: bool = False) -> Any:
    """A copy of JSON data (much cheaper than ``copy.deepcopy``), resolving references on the way.

    ``prune`` drops what the API treats as "not set": None, "", False, empty lists and objects.
    GET leaves out ``omitempty`` fields and fills others with zero values; dropping both on both
    sides makes ``skip_auth: false`` equal to no ``skip_auth`` at all.
    """
    kind = type(node)
    if kind is dict:
        if not prune:
            return {k: _copy(v, resolver) for k, v in node.items()}
        out = {}
        for key, value in node.items():
            value = _copy(value, resolver, prune=True)
            if value is None or value is False or value == "" or value == {} or value == []:
                continue
            out[key] = value
        return out
    if kind is list:
        return [_copy(v, resolver, prune=prune) for v in node]
    if resolver is not None and kind is str and node.startswith("${") and secrets.is_reference(node):
        return resolver(node)
    return node


def masked(doc: Json, *, keep_references: bool = True) -> Json:
    """A copy for display: secret values replaced by ``(sensitive)``; references (safe) kept."""
    out = _copy(doc, None)
    for location, _, value in list(secrets.iter_secret_locations(out)):
        if value in (None, "") or (keep_references and secrets.is_reference(value)):
            continue
        parent: Any = out
        for step in location[:-1]:
            parent = parent[step]
        parent[location[-1]] = SECRET_MASK
    return out


def secret_paths(*docs: Json | None) -> set[str]:
    """gftune.desired.paths of every secret field present in any of ``docs``."""
    return {path for doc in docs if doc for path, _ in secrets.iter_secret_fields(doc)}


# --- config ---------------------------------------------------------------------------------

def _source(source: Json) -> Json:
    out = {k: v for k, v in source.items() if k != "source_id"}
    out["type"] = str(out.get("type", "")).strip().lower()
    offset = out.get("consumer_group_initial_offset")
    out["consumer_group_initial_offset"] = str(offset).lower() if offset else defaults.INITIAL_OFFSET
    if not out.get("schema_version"):
        out["schema_version"] = defaults.SCHEMA_VERSION
    return out


def _transforms(doc: Json) -> Keyed:
    sources = [s for s in doc.get("sources") or [] if isinstance(s, dict)]
    first_source = sources[0].get("source_id") if sources else None
    keyed = Keyed()
    for transform in doc.get("transforms") or []:
        if not isinstance(transform, dict):
            continue
        kind = transform.get("type")
        source_id = transform.get("source_id")
        config = dict(transform.get("config") or {})
        if kind == "dedup":
            config["time_window"] = api_duration(config.get("time_window"))
        else:
            # The API reports a filter on the first source, and fills an unused "0s" window.
            if kind == "filter":
                source_id = first_source
            window = config.get("time_window")
            if window is not None and api_duration(window) == defaults.UNUSED_TIME_WINDOW:
                config.pop("time_window")
        keyed[f"{kind}:{source_id}"] = {"config": config}
    return keyed


def _join(join: Json) -> Json:
    out = dict(join)  # (a private copy already: see canonical_config)
    out["type"] = out.get("type") or defaults.JOIN_TYPE
    for side in ("left_source", "right_source"):
        if isinstance(out.get(side), dict):
            out[side] = {**out[side], "time_window": api_duration(out[side].get("time_window"))}
    return out


def _sink(sink: Json) -> Json:
    out = {k: v for k, v in sink.items() if k != "type"}  # GET always says clickhouse
    if "max_delay_time" in out:
        out["max_delay_time"] = api_duration(out["max_delay_time"], zero_as=defaults.ZERO_MAX_DELAY)
    return out


def canonical_config(doc: Json, *, resolver: Resolver | None = None) -> Json:
    """The comparable form of everything but ``resources``.

    ``resolver`` resolves ``${env:..}``/``${file:..}`` references (desired side only); secret
    fields are fingerprinted either way. gftune's own tags are left out.
    """
    doc = _with_references_resolved(doc, resolver)
    out: Json = {
        "pipeline_id": doc.get("pipeline_id"),
        "name": doc.get("name"),
        "sources": Keyed((s.get("source_id"), _source(s)) for s in doc.get("sources") or []
                         if isinstance(s, dict)),
        "transforms": _transforms(doc),
        "sink": _sink(doc.get("sink") or {}),
        "metadata": {"tags": sorted(set(tags.user_tags(doc)))},
    }
    if isinstance(doc.get("join"), dict) and doc["join"].get("enabled"):
        out["join"] = _join(doc["join"])
    return out


def digest(value: Any) -> str:
    """A stable sha256 of JSON-able data (keys sorted)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- resources ------------------------------------------------------------------------------

COMPONENT_LEAVES: tuple[tuple[str, ...], ...] = (
    ("replicas",), ("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory"),
    ("storage", "size"),
)
STREAM_LEAVES = ("maxAge", "maxBytes", "maxMsgs")


@dataclass(frozen=True)
class ResourceLeaf:
    """One resource field the desired file sets: its v3 path, where it lives internally, the value."""

    path: str  # gftune.desired.paths, e.g. "resources.sources[orders].replicas"
    internal: tuple[str, ...]  # e.g. ("ingestor", "base", "replicas")
    value: Any

    @property
    def internal_path(self) -> str:
        """The ``fields_policy.immutable`` spelling, e.g. ``transform/storage/size``."""
        return "/".join(self.internal)


def _component_leaves(prefix: str, internal: tuple[str, ...], entry: Json) -> list[ResourceLeaf]:
    leaves = []
    for leaf in COMPONENT_LEAVES:
        value: Any = entry
        for key in leaf:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            leaves.append(ResourceLeaf(f"{prefix}.{'.'.join(leaf)}", (*internal, *leaf), value))
    return leaves


def desired_resource_leaves(doc: Json) -> tuple[list[ResourceLeaf], list[str]]:
    """Every resource field set in the desired document, mapped as the API maps it (reference §3.2).

    Returns the leaves and warnings about entries the API ignores (only ``sources[0]`` of a
    single-source pipeline and only ``transform[0]`` are used).
    """
    v3 = doc.get("resources") or {}
    leaves: list[ResourceLeaf] = []
    warnings: list[str] = []
    stream = (v3.get("nats") or {}).get("stream") or {}
    for key in STREAM_LEAVES:
        value = stream.get(key)
        # 0 / "" mean "server default" (MergeWithDefaults fills them): not managed by this file.
        if value is None or value == "" or (key == "maxMsgs" and value == 0):
            continue
        leaves.append(ResourceLeaf(f"resources.nats.stream.{key}", ("nats", "stream", key), value))
    sides: dict[Any, str] = {}
    if res.join_enabled(doc):
        join = doc["join"]
        sides = {(join.get("left_source") or {}).get("source_id"): "left",
                 (join.get("right_source") or {}).get("source_id"): "right"}
    for index, entry in enumerate(v3.get("sources") or []):
        source_id = entry.get("source_id")
        prefix = f"resources.sources[{source_id}]"
        if sides:
            if source_id not in sides:
                warnings.append(f"{prefix}: not a join source; the API ignores it")
                continue
            internal: tuple[str, ...] = ("ingestor", sides[source_id])
        elif index == 0:
            internal = ("ingestor", "base")
        else:
            warnings.append(f"{prefix}: the API uses only the first resources.sources entry; ignored")
            continue
        leaves += _component_leaves(prefix, internal, entry)
    transforms = v3.get("transform") or []
    if transforms:
        first = transforms[0]
        leaves += _component_leaves(f"resources.transform[{first.get('source_id')}]", ("transform",), first)
        for entry in transforms[1:]:
            if {k: v for k, v in entry.items() if k != "source_id"} != \
               {k: v for k, v in first.items() if k != "source_id"}:
                warnings.append(f"resources.transform[{entry.get('source_id')}]: the API uses only the first "
                                "resources.transform entry (one transform deployment); this one is ignored")
    if isinstance(v3.get("sink"), dict):
        leaves += _component_leaves("resources.sink", ("sink",), v3["sink"])
    if isinstance(v3.get("join"), dict):
        leaves += _component_leaves("resources.join", ("join",), v3["join"])
    return leaves, warnings


def internal_get(internal: Json | None, where: tuple[str, ...]) -> Any:
    node: Any = internal
    for key in where:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return node


def internal_set(internal: Json, where: tuple[str, ...], value: Any) -> None:
    node = internal
    for key in where[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[where[-1]] = value


def resource_value(where: tuple[str, ...], value: Any) -> Any:
    """The comparable value of one resource field (exact numbers; raw text if it does not parse)."""
    if value is None:
        return None
    name = where[-1]
    try:
        if name in ("cpu", "memory", "size"):
            return parse_quantity(value)
        if name == "maxAge":
            return parse_duration(value, allow_days=True)
        if name == "maxBytes":
            number = parse_nats_bytes(value)
            # The k8s orchestrator stores "0" (no limit) as "-1" (no limit) after a PUT (§3.5.3).
            return Fraction(-1) if number == 0 else number
        if name in ("replicas", "maxMsgs"):
            return int(value)
    except (QuantityError, DurationError, TypeError, ValueError):
        pass
    return value


def resource_values_equal(where: tuple[str, ...], a: Any, b: Any) -> bool:
    return resource_value(where, a) == resource_value(where, b)


def path_internal(doc: Json, path: str) -> tuple[str, ...] | None:
    """Where a v3 resources path (``resources.sources[orders].replicas``) lives internally."""
    try:
        steps = paths.parse(path)
    except paths.PathError:
        return None
    if len(steps) < 2 or not isinstance(steps[0], paths.Key) or steps[0].name != "resources":
        return None
    head = steps[1]
    rest = tuple(s.name for s in steps[2:] if isinstance(s, paths.Key))
    if not isinstance(head, paths.Key):
        return None
    if head.name in ("nats", "sink", "join"):
        return (head.name, *rest)
    selector = steps[2] if len(steps) > 2 else None
    if not isinstance(selector, paths.Select):
        return None
    rest = tuple(s.name for s in steps[3:] if isinstance(s, paths.Key))
    if head.name == "transform":
        return ("transform", *rest)
    if head.name == "sources":
        if res.join_enabled(doc):
            join = doc["join"]
            for side in ("left", "right"):
                if (join.get(f"{side}_source") or {}).get("source_id") == selector.source_id:
                    return ("ingestor", side, *rest)
            return None
        return ("ingestor", "base", *rest)
    return None


def edit_resources(internal: Json, doc: Json) -> Json:
    """The v3 ``resources`` block to POST with ``/edit`` so that nothing is reset (reference §3.5).

    Starts from :func:`gftune.glassflow.resources.internal_to_v3` and adds the one thing GET does
    not show: the transform block of a pipeline whose only transforms are filters.
    """
    v3 = res.internal_to_v3(internal, doc)
    block = internal.get("transform")
    if isinstance(block, dict) and "transform" not in v3 and res.has_transform_component(doc):
        source_id = next(t.get("source_id") for t in doc.get("transforms") or []
                         if t.get("type") in ("dedup", "filter", "stateless"))
        entry = {k: copy.deepcopy(v) for k, v in block.items() if k != "storage" or res.dedup_enabled(doc)}
        v3["transform"] = [{"source_id": source_id, **entry}]
    return v3
