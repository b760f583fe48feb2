"""What the GlassFlow API rejects in a v3 pipeline document beyond its JSON Schema.

This is ``toModel()`` and the storage-layer ID rules of reference §2.4, plus resource validation
(§3.4). Every rule yields a :class:`Violation` with the JSON path it is about, in the order the
server checks them, so that:

* the simulator answers with the first violation exactly like the server (422 with
  ``details.error``, or 400 ``pipeline id is invalid`` for the storage ID rules), and
* ``gftune validate`` reports all of them, each pointing at a line of the user's file.

The input is assumed to have passed the JSON Schema (types are right); rules still guard against
wrong types so that they never raise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gftune.glassflow import resources as res
from gftune.glassflow.durations import DurationError, parse_duration

Json = dict[str, Any]
Path = tuple[str | int, ...]

SOURCE_TYPES = ("kafka", "otlp.logs", "otlp.traces", "otlp.metrics")
TRANSFORM_TYPES = ("dedup", "filter", "stateless")
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "GSSAPI", "NO_AUTH")
PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL")
BASIC_FIELD_TYPES = ("string", "bool", "int", "uint", "float", "array", "map")
FIELD_TYPES = (
    *BASIC_FIELD_TYPES,
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float32", "float64", "bytes",
)
_INT_TYPES = ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64")
_FLOAT_TYPES = ("Float32", "Float64")
COLUMN_TYPES = frozenset(
    (
        "String", "FixedString", "Bool", *_INT_TYPES, *_FLOAT_TYPES, "Enum8", "Enum16", "UUID",
        "DateTime", "DateTime64",
        *(f"LowCardinality({t})" for t in (*_INT_TYPES, *_FLOAT_TYPES, "String", "FixedString", "DateTime")),
    )
)
_COLUMN_PATTERNS = (
    re.compile(r"^FixedString\(\d+\)$"),
    re.compile(r"^LowCardinality\(FixedString\(\d+\)\)$"),
    re.compile(r"^DateTime.*$"),
    re.compile(r"^Map\(.*\)$"),
    re.compile(r"^Array\(.*\)$"),
)
_ID_CHARS = re.compile(r"^[a-z0-9-]+$")


@dataclass(frozen=True)
class Violation:
    """One thing the API would reject.

    ``kind`` says how the API answers: ``model`` (422 ``failed to convert request to pipeline
    model``), ``id`` (400 ``pipeline id is invalid``, create only), ``resources`` (422 with the
    message ``validate pipeline resources: invalid pipeline resources: ...``).
    """

    path: Path
    message: str
    kind: str = "model"

    @property
    def dotted(self) -> str:
        return json_path(self.path)


def json_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "$"


def is_supported_column_type(column_type: str) -> bool:
    return column_type in COLUMN_TYPES or any(p.match(column_type) for p in _COLUMN_PATTERNS)


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _k(value: Any) -> Any:
    """An id or field name usable as a set member / dict key even when it has a wrong type."""
    return res.hashable(value)


def _positive_duration(value: Any) -> str | None:
    """None if ``value`` is a valid duration > 0 (days allowed), else the reason."""
    if not isinstance(value, str):
        return "must be a duration string"
    try:
        ns = parse_duration(value, allow_days=True)
    except DurationError as exc:
        return str(exc)
    return None if ns > 0 else "must be greater than 0"


# --- individual rule groups (generators of violations, in server order) ------------------------

def _id_rules(doc: Json) -> Iterator[Violation]:
    version = doc.get("version", "")
    if version not in ("v3", ""):
        yield Violation(("version",), f'unsupported pipeline version "{version}"; expected "v3"')
    pid = doc.get("pipeline_id")
    pid = pid.strip() if isinstance(pid, str) else ""
    if len(pid) < 5:
        yield Violation(("pipeline_id",), "pipeline ID must be at least 5 characters")
        return
    reasons = []
    if len(pid) > 40:
        reasons.append("must be at most 40 characters")
    if not pid[0].isascii() or not pid[0].islower() or not pid[0].isalpha():
        reasons.append("must start with a lowercase letter")
    if not _ID_CHARS.match(pid):
        reasons.append("may only contain lowercase letters, digits and '-'")
    elif not (pid[-1].isdigit() or pid[-1].islower()):
        reasons.append("must end with a lowercase letter or digit")
    if "--" in pid:
        reasons.append("must not contain '--'")
    for reason in reasons:
        yield Violation(("pipeline_id",), f"pipeline id is invalid: {reason}", kind="id")


def _source_rules(doc: Json) -> Iterator[Violation]:
    sources = _list(doc.get("sources"))
    if not 1 <= len(sources) <= 2:
        yield Violation(("sources",), f"pipeline must have 1 or 2 sources, got {len(sources)}")
    seen: set[str] = set()
    kinds: list[str] = []
    for i, source in enumerate(sources):
        source = _dict(source)
        sid = source.get("source_id")
        if _blank(sid):
            yield Violation(("sources", i, "source_id"), "source_id cannot be empty")
        elif sid in seen:
            yield Violation(("sources", i, "source_id"), f'duplicate source_id "{sid}"')
        else:
            seen.add(sid)
        stype = str(source.get("type", "")).strip().lower()
        if stype not in SOURCE_TYPES:
            yield Violation(("sources", i, "type"),
                            f'unsupported source type "{source.get("type")}"; expected one of '
                            + ", ".join(SOURCE_TYPES))
            continue
        kinds.append(stype)
        if stype == "kafka":
            yield from _kafka_source_rules(source, i)
        else:
            for key in ("connection_params", "topic", "schema_fields", "schema_registry"):
                if key in source:
                    yield Violation(("sources", i, key), f"{key} is not allowed for OTLP source {sid!s}")
    otlp = [k for k in kinds if k != "kafka"]
    if otlp and "kafka" in kinds:
        yield Violation(("sources",), "kafka and OTLP sources cannot be mixed")
    if len(otlp) > 1:
        yield Violation(("sources",), "at most one OTLP source is allowed")
    kafka = [s for s in sources if isinstance(s, dict) and str(s.get("type", "")).strip().lower() == "kafka"]
    join_on = res.join_enabled(doc)
    if len(kafka) == 2:
        if _dict(kafka[0].get("connection_params")) != _dict(kafka[1].get("connection_params")):
            yield Violation(("sources", 1, "connection_params"),
                            "two kafka sources must have identical connection_params")
        if not join_on:
            yield Violation(("join",), "two kafka sources require join.enabled=true")
    if join_on and otlp:
        yield Violation(("join", "enabled"), "join is not allowed with OTLP sources")
    elif join_on and len(kafka) != 2:
        yield Violation(("join", "enabled"), "join.enabled=true requires exactly two kafka sources")


def _kafka_source_rules(source: Json, i: int) -> Iterator[Violation]:
    sid = source.get("source_id")
    if "connection_params" not in source:
        yield Violation(("sources", i), f"kafka source {sid} requires connection_params")
    else:
        yield from _kafka_connection_rules(_dict(source["connection_params"]), ("sources", i, "connection_params"))
    if _blank(source.get("topic")):
        yield Violation(("sources", i, "topic") if "topic" in source else ("sources", i),
                        f"kafka source {sid} requires a topic")
    fields = _list(source.get("schema_fields"))
    if not fields:
        yield Violation(("sources", i, "schema_fields") if "schema_fields" in source else ("sources", i),
                        f"kafka source {sid} requires non-empty schema_fields")
    for j, f in enumerate(fields):
        ftype = _dict(f).get("type")
        if ftype not in FIELD_TYPES:
            yield Violation(("sources", i, "schema_fields", j, "type"),
                            f'unsupported field type "{ftype}" for field "{_dict(f).get("name")}"')
    offset = source.get("consumer_group_initial_offset")
    if isinstance(offset, str) and offset.strip().lower() not in ("earliest", "latest", ""):
        yield Violation(("sources", i, "consumer_group_initial_offset"),
                        f'invalid consumer_group_initial_offset "{offset}"; expected earliest or latest')


def _kafka_connection_rules(conn: Json, path: Path) -> Iterator[Violation]:
    brokers = _list(conn.get("brokers"))
    if not brokers:
        yield Violation((*path, "brokers"), "at least one kafka broker is required")
    for k, broker in enumerate(brokers):
        if _blank(broker):
            yield Violation((*path, "brokers", k), "kafka broker address cannot be blank")
    mechanism = conn.get("mechanism")
    if mechanism not in MECHANISMS:
        yield Violation((*path, "mechanism"),
                        f'unsupported kafka mechanism "{mechanism}"; expected one of ' + ", ".join(MECHANISMS))
    elif mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
        for key in ("username", "password"):
            if _blank(conn.get(key)):
                yield Violation((*path, key) if key in conn else path,
                                f"kafka mechanism {mechanism} requires {key}")
    elif mechanism == "GSSAPI":
        for key in ("kerberos_service_name", "kerberos_realm", "kerberos_keytab", "kerberos_config"):
            if _blank(conn.get(key)):
                yield Violation((*path, key) if key in conn else path, f"kafka mechanism GSSAPI requires {key}")
    protocol = conn.get("protocol")
    if protocol not in PROTOCOLS:
        yield Violation((*path, "protocol"),
                        f'unsupported kafka protocol "{protocol}"; expected one of ' + ", ".join(PROTOCOLS))
    elif protocol in ("SSL", "SASL_SSL") and not conn.get("skip_tls_verification") \
            and all(_blank(conn.get(k)) for k in ("root_ca", "client_cert", "client_key")):
        yield Violation((*path, "protocol"),
                        f"kafka protocol {protocol} requires root_ca, client_cert or client_key "
                        "unless skip_tls_verification is true")


def _field_names(source: Json) -> set[str]:
    return {_k(_dict(f).get("name")) for f in _list(source.get("schema_fields"))}


def _transform_rules(doc: Json) -> Iterator[Violation]:
    sources = {_k(s.get("source_id")): s for s in _list(doc.get("sources")) if isinstance(s, dict)}
    dedup_per_source: set[str] = set()
    counts = {"filter": 0, "stateless": 0}
    join_on = res.join_enabled(doc)
    for i, t in enumerate(_list(doc.get("transforms"))):
        t = _dict(t)
        ttype, sid, config = t.get("type"), _k(t.get("source_id")), _dict(t.get("config"))
        if sid not in sources:
            yield Violation(("transforms", i, "source_id"), f'transform references unknown source_id "{sid}"')
        if ttype not in TRANSFORM_TYPES:
            yield Violation(("transforms", i, "type"),
                            f'unsupported transform type "{ttype}"; expected dedup, filter or stateless')
            continue
        if ttype == "dedup":
            if sid in dedup_per_source:
                yield Violation(("transforms", i), f'at most one dedup transform per source ("{sid}")')
            dedup_per_source.add(sid)
            if _blank(config.get("key")):
                yield Violation(("transforms", i, "config", "key"), "dedup key cannot be empty")
            elif sid in sources and str(sources[sid].get("type", "")).lower() == "kafka" \
                    and _k(config["key"]) not in _field_names(sources[sid]):
                yield Violation(("transforms", i, "config", "key"),
                                f'dedup key "{config["key"]}" is not a field of source "{sid}"')
            reason = _positive_duration(config.get("time_window"))
            if reason:
                yield Violation(("transforms", i, "config", "time_window"), f"dedup time_window {reason}")
            continue
        counts[ttype] += 1
        if counts[ttype] > 1:
            yield Violation(("transforms", i), f"at most one {ttype} transform is allowed")
        if join_on:
            yield Violation(("transforms", i, "type"), f"{ttype} transforms are not allowed together with join")
        if ttype == "filter":
            if _blank(config.get("expression")):
                yield Violation(("transforms", i, "config", "expression"), "filter expression cannot be empty")
            # Filter validation only knows the seven basic field types (reference §2.2).
            for s_index, source in enumerate(_list(doc.get("sources"))):
                for j, f in enumerate(_list(_dict(source).get("schema_fields"))):
                    ftype = _dict(f).get("type")
                    if ftype in FIELD_TYPES and ftype not in BASIC_FIELD_TYPES:
                        yield Violation(("sources", s_index, "schema_fields", j, "type"),
                                        f'filter validation does not support field type "{ftype}" '
                                        f'(field "{_dict(f).get("name")}"); use one of '
                                        + ", ".join(BASIC_FIELD_TYPES))
        else:
            outputs = _list(config.get("transforms"))
            if not outputs:
                yield Violation(("transforms", i, "config"), "stateless transform needs at least one expression")
            for j, out in enumerate(outputs):
                out = _dict(out)
                if _blank(out.get("expression")):
                    yield Violation(("transforms", i, "config", "transforms", j, "expression"),
                                    "stateless expression cannot be empty")
                if _blank(out.get("output_name")):
                    yield Violation(("transforms", i, "config", "transforms", j, "output_name"),
                                    "stateless output_name cannot be empty")
                if out.get("output_type") not in FIELD_TYPES:
                    yield Violation(("transforms", i, "config", "transforms", j, "output_type"),
                                    f'unsupported output_type "{out.get("output_type")}"')


def _join_rules(doc: Json) -> Iterator[Violation]:
    join = doc.get("join")
    if not isinstance(join, dict) or not join.get("enabled"):
        return
    sources = {_k(s.get("source_id")): s for s in _list(doc.get("sources")) if isinstance(s, dict)}
    if join.get("type", "") not in ("", "temporal"):
        yield Violation(("join", "type"), f'unsupported join type "{join.get("type")}"; only "temporal"')
    sides = {}
    for side in ("left_source", "right_source"):
        spec = _dict(join.get(side))
        sid = _k(spec.get("source_id"))
        sides[side] = sid
        if sid not in sources:
            yield Violation(("join", side, "source_id"), f'join {side} references unknown source_id "{sid}"')
        elif _k(spec.get("key")) not in _field_names(sources[sid]):
            yield Violation(("join", side, "key"), f'join key "{spec.get("key")}" is not a field of source "{sid}"')
        reason = _positive_duration(spec.get("time_window"))
        if reason:
            yield Violation(("join", side, "time_window"), f"join time_window {reason}")
    if sides["left_source"] is not None and sides["left_source"] == sides["right_source"]:
        yield Violation(("join", "right_source", "source_id"), "join left and right sources must differ")
    for k, out in enumerate(_list(join.get("output_fields"))):
        out = _dict(out)
        sid = _k(out.get("source_id"))
        if sid not in sources:
            yield Violation(("join", "output_fields", k, "source_id"),
                            f'join output field references unknown source_id "{sid}"')
        elif _blank(out.get("name")):
            yield Violation(("join", "output_fields", k, "name"), "join output field name cannot be empty")
        elif _k(out["name"]) not in _field_names(sources[sid]):
            yield Violation(("join", "output_fields", k, "name"),
                            f'join output field "{out["name"]}" is not a field of source "{sid}"')


def sink_upstream_fields(doc: Json) -> set[str] | None:
    """Field names the sink mapping may use, or None when they cannot be known (OTLP, no stateless)."""
    if res.join_enabled(doc):
        return {_k(_dict(o).get("output_name") or _dict(o).get("name"))
                for o in _list(_dict(doc.get("join")).get("output_fields"))}
    for t in _list(doc.get("transforms")):
        if _dict(t).get("type") == "stateless":
            return {_k(_dict(o).get("output_name")) for o in _list(_dict(_dict(t).get("config")).get("transforms"))}
    sources = _list(doc.get("sources"))
    if sources and str(_dict(sources[0]).get("type", "")).lower() == "kafka":
        return _field_names(_dict(sources[0]))
    return None


def _sink_rules(doc: Json) -> Iterator[Violation]:
    sink = _dict(doc.get("sink"))
    conn = _dict(sink.get("connection_params"))
    for key in ("host", "port", "database", "username"):
        if _blank(conn.get(key)):
            yield Violation(("sink", "connection_params", key), f"clickhouse {key} cannot be empty")
    if not isinstance(conn.get("password"), str) or conn.get("password") == "":
        yield Violation(("sink", "connection_params", "password"), "clickhouse password cannot be empty")
    if _blank(sink.get("table")):
        yield Violation(("sink", "table"), "clickhouse table cannot be empty")
    if sink.get("max_batch_size") == 0:
        yield Violation(("sink", "max_batch_size"), "max_batch_size cannot be 0")
    delay = sink.get("max_delay_time")
    if isinstance(delay, str):
        try:
            parse_duration(delay, allow_days=True)
        except DurationError as exc:
            yield Violation(("sink", "max_delay_time"), f"invalid max_delay_time: {exc}")
    upstream = sink_upstream_fields(doc)
    for k, m in enumerate(_list(sink.get("mapping"))):
        m = _dict(m)
        if upstream is not None and _k(m.get("name")) not in upstream:
            yield Violation(("sink", "mapping", k, "name"),
                            f'mapping field "{m.get("name")}" does not exist in the sink\'s upstream schema')
        ctype = m.get("column_type")
        if not isinstance(ctype, str) or not is_supported_column_type(ctype):
            yield Violation(("sink", "mapping", k, "column_type"), f'unsupported ClickHouse column type: "{ctype}"')


def _resource_rules(doc: Json) -> Iterator[Violation]:
    v3 = _dict(doc.get("resources"))
    sources = {_k(s.get("source_id")): s for s in _list(doc.get("sources")) if isinstance(s, dict)}
    for i, entry in enumerate(_list(v3.get("sources"))):
        sid = _k(_dict(entry).get("source_id"))
        if sid not in sources:
            yield Violation(("resources", "sources", i, "source_id"),
                            f'resources reference unknown source_id "{sid}"')
        elif str(sources[sid].get("type", "")).lower() != "kafka":
            yield Violation(("resources", "sources", i),
                            f'per-source resources are not allowed for OTLP source "{sid}"')
    dedup_sources = {_k(_dict(t).get("source_id")) for t in _list(doc.get("transforms"))
                     if _dict(t).get("type") == "dedup"}
    stateless_id = f"{doc.get('pipeline_id')}-stateless"
    for i, entry in enumerate(_list(v3.get("transform"))):
        sid = _k(_dict(entry).get("source_id"))
        if sid == stateless_id:
            continue  # GET shows the shared transform block under this id; echoing it back is fine
        if sid not in sources:
            yield Violation(("resources", "transform", i, "source_id"),
                            f'resources reference unknown source_id "{sid}"')
        elif "storage" in _dict(entry) and sid not in dedup_sources:
            yield Violation(("resources", "transform", i, "storage"),
                            f'transform storage is only allowed for a source with dedup ("{sid}")')
    internal = res.v3_to_internal(doc)
    for path, message in res.validate_internal(internal):
        yield Violation(_v3_path_for(path, doc), f"validate pipeline resources: invalid pipeline resources: {message}",
                        kind="resources")
    problem = res.join_replica_problem(internal)
    if problem:
        yield Violation(("resources", "join", "replicas"),
                        f"validate pipeline resources: invalid pipeline resources: {problem}", kind="resources")


def _v3_path_for(internal_path: str, doc: Json) -> Path:
    """Point an internal-shape path (``ingestor/base/limits/cpu``) back into the v3 document."""
    parts = internal_path.split("/")
    v3 = _dict(doc.get("resources"))
    if parts[0] == "ingestor":
        rest = parts[2:]
        if parts[1] == "base":
            return ("resources", "sources", 0, *rest)
        join = _dict(doc.get("join"))
        wanted = _dict(join.get(f"{parts[1]}_source")).get("source_id")
        for i, entry in enumerate(_list(v3.get("sources"))):
            if _dict(entry).get("source_id") == wanted:
                return ("resources", "sources", i, *rest)
        return ("resources", "sources")
    if parts[0] == "transform":
        return ("resources", "transform", 0, *parts[1:])
    return ("resources", *parts)


def validate_document(doc: Json) -> list[Violation]:
    """Every violation of the API's model rules, in the order the server checks them."""
    if not isinstance(doc, dict):
        return [Violation((), "pipeline document must be an object")]
    groups = (_id_rules, _source_rules, _transform_rules, _join_rules, _sink_rules, _resource_rules)
    return [v for group in groups for v in group(doc)]
