"""Pipeline resources: the two shapes, server defaults, merging and the immutability check.

The API has two views of one stored row (reference §3):

* the **v3 view** inside the pipeline document: ``resources.{nats, sources[], transform[], sink}``;
* the **internal view** of ``GET/PUT /resources``: ``{nats, ingestor: {base|left,right}, join, sink,
  transform}``.

Everything here is pure data manipulation so that the simulator (which must behave like the
server) and the reconciler (which must predict it) use the same facts.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from gftune.glassflow.durations import DurationError, parse_duration
from gftune.glassflow.quantities import QuantityError, parse_nats_bytes, parse_quantity

Json = dict[str, Any]

COMPONENT_KEYS = ("requests", "limits", "storage", "replicas")
BASE_IMMUTABLE = ("nats/stream/maxAge", "nats/stream/maxBytes", "nats/stream/maxMsgs", "transform/storage/size")


@dataclass(frozen=True)
class ComponentDefaults:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str
    storage: str | None = None

    def block(self) -> Json:
        block: Json = {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
            "replicas": 1,
        }
        if self.storage is not None:
            block["storage"] = {"size": self.storage}
        return block


@dataclass(frozen=True)
class ResourceDefaults:
    """What ``models.NewDefaultPipelineResources`` fills in; set per deployment through env vars."""

    ingestor: ComponentDefaults
    join: ComponentDefaults
    sink: ComponentDefaults
    transform: ComponentDefaults
    max_age: str = "24h"
    max_bytes: str = "0"
    extra: dict[str, Any] = field(default_factory=dict)

    def default_max_msgs(self, max_batch_size: int) -> int:
        """8 x sink.max_batch_size, or 500000 when the batch size is 0."""
        return 8 * max_batch_size if max_batch_size else 500_000


# The code fallbacks (no env vars set).
CODE_DEFAULTS = ResourceDefaults(
    ingestor=ComponentDefaults("100m", "128Mi", "1500m", "1.5Gi"),
    join=ComponentDefaults("100m", "128Mi", "1500m", "1.5Gi"),
    sink=ComponentDefaults("100m", "128Mi", "1500m", "1.5Gi"),
    transform=ComponentDefaults("100m", "128Mi", "1500m", "1.5Gi", storage="10Gi"),
)

# What the Helm chart glassflow-etl 0.5.18 sets, i.e. what a production install sees.
HELM_DEFAULTS = ResourceDefaults(
    ingestor=ComponentDefaults("1000m", "256Mi", "1500m", "512Mi"),
    join=ComponentDefaults("500m", "256Mi", "1000m", "1Gi"),
    sink=ComponentDefaults("1000m", "500Mi", "1500m", "1.5Gi"),
    transform=ComponentDefaults("1000m", "1Gi", "2000m", "2Gi", storage="40Gi"),
)


# --- pipeline shape helpers -------------------------------------------------------------------

# The helpers below also run on documents that failed the JSON Schema (``gftune validate`` reports
# schema and model problems together), so every access tolerates a wrong type.

def _dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def hashable(value: Any) -> Any:
    """``value`` itself when it can be a dict key, else a stable text form (``["a"]``)."""
    try:
        hash(value)
    except TypeError:
        return json.dumps(value, sort_keys=True, default=str)
    return value


def kafka_sources(doc: Json) -> list[Json]:
    return [s for s in _list(doc.get("sources")) if isinstance(s, dict) and _source_type(s) == "kafka"]


def _source_type(source: Json) -> str:
    return str(source.get("type", "")).strip().lower()


def join_enabled(doc: Json) -> bool:
    join = doc.get("join")
    return isinstance(join, dict) and bool(join.get("enabled"))


def has_transform_component(doc: Json) -> bool:
    """The transform ("dedup") deployment exists when any dedup, filter or stateless is configured."""
    return any(_dict(t).get("type") in ("dedup", "filter", "stateless") for t in _list(doc.get("transforms")))


def dedup_enabled(doc: Json) -> bool:
    return any(_dict(t).get("type") == "dedup" for t in _list(doc.get("transforms")))


def max_batch_size(doc: Json) -> int:
    value = _dict(doc.get("sink")).get("max_batch_size") or 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --- v3 view <-> internal view ----------------------------------------------------------------

def _component_from_v3(entry: Json) -> Json:
    return {k: copy.deepcopy(entry[k]) for k in COMPONENT_KEYS if k in _dict(entry)}


def v3_to_internal(doc: Json) -> Json:
    """Map the document's v3 ``resources`` block to the internal shape (reference §3.2).

    Only what the user gave is mapped; nothing is defaulted here.
    """
    v3 = _dict(doc.get("resources"))
    internal: Json = {}
    if "nats" in v3:
        internal["nats"] = copy.deepcopy(v3["nats"])
    sources = _list(v3.get("sources"))
    if join_enabled(doc):
        join = doc["join"]
        sides = {
            hashable(_dict(join.get("left_source")).get("source_id")): "left",
            hashable(_dict(join.get("right_source")).get("source_id")): "right",
        }
        ingestor = {sides[hashable(s["source_id"])]: _component_from_v3(s) for s in sources
                    if isinstance(s, dict) and hashable(s.get("source_id")) in sides}
        if ingestor:
            internal["ingestor"] = ingestor
    elif sources:
        # Only sources[0] is used for a single-source pipeline.
        internal["ingestor"] = {"base": _component_from_v3(sources[0])}
    transforms = _list(v3.get("transform"))
    if transforms:
        internal["transform"] = _component_from_v3(transforms[0])  # only [0] is used
    if "sink" in v3:
        internal["sink"] = _component_from_v3(v3["sink"])
    if "join" in v3:
        # Not part of the API's v3 shape: gftune's pipeline files accept ``resources.join`` so that
        # join resources (reachable only through PUT /resources) can live in git too.
        internal["join"] = _component_from_v3(v3["join"])
    return internal


def internal_to_v3(internal: Json, doc: Json) -> Json:
    """The v3 ``resources`` block that GET /pipeline/{id} shows for stored internal resources."""
    v3: Json = {}
    if "nats" in internal:
        v3["nats"] = copy.deepcopy(internal["nats"])
    ingestor = internal.get("ingestor") or {}
    sources: list[Json] = []
    kafka = kafka_sources(doc)
    if join_enabled(doc):
        join = doc["join"]
        for side in ("left", "right"):
            if side in ingestor:
                source_id = (join.get(f"{side}_source") or {}).get("source_id")
                sources.append({"source_id": source_id, **copy.deepcopy(ingestor[side])})
    elif kafka and "base" in ingestor:
        sources.append({"source_id": kafka[0].get("source_id"), **copy.deepcopy(ingestor["base"])})
    if sources:
        v3["sources"] = sources
    if "transform" in internal:
        # One internal block, shown once per dedup source and once for the stateless source.
        transform_sources: list[str] = []
        for t in doc.get("transforms") or []:
            if t.get("type") == "dedup" and t.get("source_id") not in transform_sources:
                transform_sources.append(t.get("source_id"))
        if any(t.get("type") == "stateless" for t in doc.get("transforms") or []):
            transform_sources.append(f"{doc.get('pipeline_id')}-stateless")
        if transform_sources:
            v3["transform"] = [{"source_id": sid, **copy.deepcopy(internal["transform"])}
                               for sid in transform_sources]
    if "sink" in internal:
        v3["sink"] = copy.deepcopy(internal["sink"])
    return v3


# --- defaults and merging --------------------------------------------------------------------

def components_for(doc: Json) -> list[tuple[str, ...]]:
    """Internal component paths that exist for this pipeline."""
    paths: list[tuple[str, ...]] = []
    if kafka_sources(doc):
        if join_enabled(doc):
            paths += [("ingestor", "left"), ("ingestor", "right"), ("join",)]
        else:
            paths.append(("ingestor", "base"))
    if has_transform_component(doc):
        paths.append(("transform",))
    paths.append(("sink",))
    return paths


def _defaults_for(path: tuple[str, ...], defaults: ResourceDefaults) -> ComponentDefaults:
    return getattr(defaults, path[0])


def merge_with_defaults(internal: Json, doc: Json, defaults: ResourceDefaults = CODE_DEFAULTS) -> Json:
    """``MergeWithDefaults``: fill nil blocks, and nil keys of present blocks, as whole objects.

    Defaults are merged in, not previously stored values: leaving a field out resets it.
    """
    merged = copy.deepcopy(internal)
    stream = merged.setdefault("nats", {}).setdefault("stream", {})
    if not stream.get("maxAge"):
        stream["maxAge"] = defaults.max_age
    if not stream.get("maxBytes"):
        stream["maxBytes"] = defaults.max_bytes
    if not stream.get("maxMsgs"):
        stream["maxMsgs"] = defaults.default_max_msgs(max_batch_size(doc))
    for path in components_for(doc):
        parent = merged
        for key in path[:-1]:
            parent = parent.setdefault(key, {})
        default_block = _defaults_for(path, defaults).block()
        if path == ("transform",) and not dedup_enabled(doc):
            default_block.pop("storage", None)
        block = parent.get(path[-1])
        if block is None:
            parent[path[-1]] = default_block
            continue
        for key in COMPONENT_KEYS:
            if block.get(key) is None and key in default_block:
                block[key] = default_block[key]
    return merged


# --- validation and immutability --------------------------------------------------------------

def immutable_paths(doc: Json) -> list[str]:
    """``fields_policy.immutable``: the base list, plus transform replicas when dedup is on."""
    paths = list(BASE_IMMUTABLE)
    if dedup_enabled(doc):
        paths.append("transform/replicas")
    return paths


def _lookup(data: Json, path: str) -> tuple[bool, Any]:
    node: Any = data
    for key in path.split("/"):
        if not isinstance(node, dict) or key not in node or node[key] is None:
            return False, None
        node = node[key]
    return True, node


def check_immutability(stored: Json, new: Json, paths: list[str]) -> str | None:
    """Textual comparison, only where the path is present on both sides (``"24h"`` != ``"1440m"``)."""
    for path in paths:
        old_present, old_value = _lookup(stored, path)
        new_present, new_value = _lookup(new, path)
        if old_present and new_present and json.dumps(old_value) != json.dumps(new_value):
            return f'immutable field "{path}" cannot be changed'
    return None


def component_blocks(internal: Json) -> list[tuple[str, Json]]:
    """``(name, block)`` for each component block of internal resources: ``join``, ``sink``,
    ``transform``, ``ingestor/<side>`` (``base``, or ``left``/``right`` for a join)."""
    blocks: list[tuple[str, Json]] = []
    for name in ("join", "sink", "transform"):
        if isinstance(internal.get(name), dict):
            blocks.append((name, internal[name]))
    for side, block in _dict(internal.get("ingestor")).items():
        if isinstance(block, dict):
            blocks.append((f"ingestor/{side}", block))
    return blocks


def validate_internal(internal: Json) -> list[tuple[str, str]]:
    """Quantity, duration and range checks. Returns ``(path, message)`` pairs; empty when valid."""
    problems: list[tuple[str, str]] = []
    for name, block in component_blocks(internal):
        for kind_key in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                value = _dict(block.get(kind_key)).get(resource)
                if value is not None:
                    try:
                        parse_quantity(value)
                    except QuantityError as exc:
                        problems.append((f"{name}/{kind_key}/{resource}",
                                         f'invalid {resource} quantity "{value}": {exc}'))
        size = _dict(block.get("storage")).get("size")
        if size is not None:
            try:
                parse_quantity(size)
            except QuantityError as exc:
                problems.append((f"{name}/storage/size", f'invalid storage quantity "{size}": {exc}'))
        replicas = block.get("replicas")
        if isinstance(replicas, int) and replicas < 0:
            problems.append((f"{name}/replicas", f"replicas must not be negative, got {replicas}"))
    stream = _dict(_dict(internal.get("nats")).get("stream"))
    if stream.get("maxAge"):
        try:
            parse_duration(stream["maxAge"], allow_days=False)
        except DurationError as exc:
            problems.append(("nats/stream/maxAge", f'invalid maxAge "{stream["maxAge"]}": {exc}'))
    if stream.get("maxBytes"):
        try:
            parse_nats_bytes(stream["maxBytes"])
        except QuantityError as exc:
            problems.append(("nats/stream/maxBytes", f'invalid maxBytes "{stream["maxBytes"]}": {exc}'))
    max_msgs = stream.get("maxMsgs")
    if isinstance(max_msgs, int) and max_msgs < -1:
        problems.append(("nats/stream/maxMsgs", f"maxMsgs must be >= -1, got {max_msgs}"))
    return problems


def join_replica_problem(internal: Json) -> str | None:
    """Create and edit (not PUT /resources) reject more than one join replica."""
    replicas = _dict(internal.get("join")).get("replicas")
    if isinstance(replicas, int) and replicas != 1:
        return "only 1 join replica is supported"
    return None
