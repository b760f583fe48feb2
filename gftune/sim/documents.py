"""What the API stores and shows for a pipeline document (reference §2.6, §1.5).

* :func:`sdk_compat` rewrites what SDK 4.1.0 sends (``schema: {fields}``) into the OSS shape;
* :func:`normalized` is ``toJSON``: the document GET returns (Go durations, filled defaults,
  re-ordered transforms, ``tags: null``, resources filled with server defaults, secrets in clear).
"""

from __future__ import annotations

import copy
from typing import Any

from gftune.glassflow import defaults
from gftune.glassflow import resources as res
from gftune.glassflow.durations import api_duration

Json = dict[str, Any]

# Key order of the Go structs (what GET prints).
_TOP = ("version", "pipeline_id", "name", "sources", "transforms", "join", "sink", "metadata", "resources")
_SOURCE = ("type", "source_id", "connection_params", "topic", "schema_version", "schema_registry",
           "schema_fields", "consumer_group_initial_offset")
_SINK = ("type", "connection_params", "table", "max_batch_size", "max_delay_time", "mapping")
_JOIN = ("enabled", "type", "left_source", "right_source", "output_fields")


def sdk_compat(body: Any) -> tuple[Any, list[str]]:
    """Rewrite SDK 4.1.0's ``sources[].schema: {fields: [...]}`` to ``schema_fields`` and drop its
    ``format: json``. Returns the body and notes about what was rewritten. Anything else the OSS API
    does not know is left for the schema to reject."""
    if not isinstance(body, dict) or not isinstance(body.get("sources"), list):
        return body, []
    notes: list[str] = []
    body = copy.deepcopy(body)
    for i, source in enumerate(body["sources"]):
        if not isinstance(source, dict):
            continue
        schema = source.get("schema")
        if isinstance(schema, dict) and set(schema) <= {"fields"} and "schema_fields" not in source:
            source["schema_fields"] = schema.get("fields") or []
            del source["schema"]
            notes.append(f"sources[{i}].schema.fields -> schema_fields")
        if source.get("format") == "json":
            del source["format"]
            notes.append(f"sources[{i}].format dropped")
    return body, notes


def _ordered(obj: Json, order: tuple[str, ...]) -> Json:
    out = {k: obj[k] for k in order if k in obj}
    out.update({k: v for k, v in obj.items() if k not in out})
    return out


def _transforms(doc: Json) -> list[Json]:
    transforms = [copy.deepcopy(t) for t in doc.get("transforms") or []]
    source_order = [s.get("source_id") for s in doc.get("sources") or []]
    first_source = source_order[0] if source_order else None

    def dedup_rank(t: Json) -> int:
        sid = t.get("source_id")
        return source_order.index(sid) if sid in source_order else len(source_order)

    dedups = sorted((t for t in transforms if t.get("type") == "dedup"), key=dedup_rank)
    filters = [t for t in transforms if t.get("type") == "filter"]
    stateless = [t for t in transforms if t.get("type") == "stateless"]
    out = []
    for t in dedups:
        config = dict(t.get("config") or {})
        config["time_window"] = api_duration(config.get("time_window", defaults.UNUSED_TIME_WINDOW))
        out.append({"type": "dedup", "source_id": t.get("source_id"), "config": config})
    for t in filters:
        config = dict(t.get("config") or {})
        config["time_window"] = api_duration(config.get("time_window", defaults.UNUSED_TIME_WINDOW))
        out.append({"type": "filter", "source_id": first_source, "config": config})
    for t in stateless:
        config = dict(t.get("config") or {})
        config["time_window"] = api_duration(config.get("time_window", defaults.UNUSED_TIME_WINDOW))
        out.append({"type": "stateless", "source_id": t.get("source_id"), "config": config})
    return out


def normalized(doc: Json, internal_resources: Json, *, name: str, tags: list[str] | None) -> Json:
    """The v3 JSON GET /api/v1/pipeline/{id} returns for a stored pipeline."""
    out: Json = {"version": "v3", "pipeline_id": doc.get("pipeline_id"), "name": name}
    sources = []
    for source in doc.get("sources") or []:
        s = copy.deepcopy(source)
        s["type"] = str(s.get("type", "")).strip().lower()
        if s["type"] == "kafka":
            s.setdefault("schema_version", defaults.SCHEMA_VERSION)
            s["schema_version"] = s["schema_version"] or defaults.SCHEMA_VERSION
            offset = str(s.get("consumer_group_initial_offset") or defaults.INITIAL_OFFSET).strip().lower()
            s["consumer_group_initial_offset"] = offset
        sources.append(_ordered(s, _SOURCE))
    out["sources"] = sources
    transforms = _transforms(doc)
    if transforms:
        out["transforms"] = transforms
    if isinstance(doc.get("join"), dict):
        join = copy.deepcopy(doc["join"])
        join["type"] = defaults.JOIN_TYPE
        for side in ("left_source", "right_source"):
            if isinstance(join.get(side), dict) and "time_window" in join[side]:
                join[side]["time_window"] = api_duration(join[side]["time_window"])
        out["join"] = _ordered(join, _JOIN)
    sink = copy.deepcopy(doc.get("sink") or {})
    sink["type"] = defaults.SINK_TYPE
    sink["max_delay_time"] = api_duration(sink.get("max_delay_time", "0s"), zero_as=defaults.ZERO_MAX_DELAY)
    out["sink"] = _ordered(sink, _SINK)
    out["metadata"] = {"tags": list(tags) if tags is not None else None}
    out["resources"] = res.internal_to_v3(internal_resources, doc)
    return _ordered(out, _TOP)


def transformation_type(doc: Json) -> str:
    """List rows: only join and Kafka-topic dedup count; filter and stateless are ignored."""
    kafka_ids = {s.get("source_id") for s in res.kafka_sources(doc)}
    dedup = any(t.get("type") == "dedup" and t.get("source_id") in kafka_ids for t in doc.get("transforms") or [])
    join = res.join_enabled(doc)
    if join and dedup:
        return "Join & Deduplication"
    if join:
        return "Join"
    if dedup:
        return "Deduplication"
    return "Ingest Only"
