"""Adopt live pipelines into git: the pipeline file a person would have written for a running pipeline.

``GET /api/v1/pipeline/{id}`` rebuilds the document it returns (``glassflow-api/internal/api/
pipeline_from_model.go`` in github.com/glassflow/clickhouse-etl): it fills in defaults, prints
durations the Go way, shows resources with the server's defaults merged in, and returns secrets in
clear text. :func:`adopt` undoes what can be undone without changing what the file means:

* a value the API fills in anyway (:mod:`gftune.glassflow.defaults`), an optional key holding the
  API's "not set" (``false``, ``""``, ``[]``, ``null``; required keys stay, per the v3 JSON Schema),
  and a resource value equal to the server's default (the code's fallbacks or the Helm chart's,
  :mod:`gftune.glassflow.resources`, whichever the cluster's pipelines show: :func:`defaults_in_use`) are
  left out. A field a pipeline file leaves out is not managed
  by gftune (plan and apply keep the live value), so leaving out a default never changes a pipeline;
* durations are written in their shortest form (``1h`` for ``1h0m0s``);
* resources come from the internal view of ``GET /resources``, the only one that shows the join's
  (written as gftune's ``resources.join``), with one ``resources.transform`` entry for the single
  transform deployment;
* gftune's own tags are dropped;
* every secret field becomes an ``${env:NAME}`` reference, named by :func:`secret_names`.

All of it is pure: documents in, the file's data (and the secrets found, for the caller to report
by name) out.
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from gftune.desired import secrets
from gftune.desired.schemas import schema_for
from gftune.desired.yamlio import dump_roundtrip
from gftune.glassflow import defaults
from gftune.glassflow import resources as res
from gftune.glassflow.durations import DurationError, format_duration, parse_duration
from gftune.glassflow.quantities import QuantityError, parse_nats_bytes, parse_quantity

Json = dict[str, Any]

# The server defaults a resource value is compared with. Which set a cluster runs with depends on how it
# was installed (the Helm chart sets env vars the API reads; without them the code's fallbacks apply).
KNOWN_DEFAULTS: tuple[res.ResourceDefaults, ...] = (res.HELM_DEFAULTS, res.CODE_DEFAULTS)

# The environment variable an imported secret is referenced by, per secret field (gftune.secrets):
# the names the example repository uses, so that the demo's and an import's files read the same.
SECRET_ENV_NAMES: dict[str, str] = {
    "sources[*].connection_params.password": "KAFKA_PASSWORD",
    "sources[*].connection_params.client_key": "KAFKA_CLIENT_KEY",
    "sources[*].connection_params.kerberos_keytab": "KAFKA_KERBEROS_KEYTAB",
    "sources[*].schema_registry.api_key": "SCHEMA_REGISTRY_API_KEY",
    "sources[*].schema_registry.api_secret": "SCHEMA_REGISTRY_API_SECRET",
    "sink.connection_params.password": "CLICKHOUSE_PASSWORD",
}

_SELECTOR = re.compile(r"\[[^\]]*\]")
_NOT_NAME = re.compile(r"[^A-Za-z0-9]+")
_FLOW_KEYS = frozenset({"requests", "limits", "storage", "stream", "labels", "constraints"})
_FLOW_WIDTH = 100


@dataclass(frozen=True)
class FoundSecret:
    """A secret value in a live document. ``value`` is never shown; the caller masks it."""

    pipeline_id: str
    path: str  # gftune.paths, e.g. "sources[orders].connection_params.password"
    location: tuple[str | int, ...]  # positional path inside the spec
    value: str = field(repr=False)

    @property
    def pattern(self) -> str:
        return _SELECTOR.sub("[*]", self.path)

    @property
    def source_id(self) -> str | None:
        match = _SELECTOR.search(self.path)
        return match.group(0)[1:-1] if match else None


@dataclass
class Adopted:
    """One live pipeline as a pipeline file's ``spec`` (secrets still in place until :func:`with_references`)."""

    pipeline_id: str
    spec: Json
    secrets: list[FoundSecret]


# --- the document ---------------------------------------------------------------------------------------------

def short_duration(value: Any) -> Any:
    """``1h0m0s`` -> ``1h``, ``1m30s`` stays: Go's form without its zero units; anything else unchanged."""
    if not isinstance(value, str):
        return value
    try:
        text = format_duration(parse_duration(value, allow_days=True))
    except DurationError:
        return value
    if text.endswith("m0s") or text.endswith("h0m0s"):
        text = text[:-2]
    if text.endswith("h0m"):
        text = text[:-2]
    return text


def _spec_schema() -> tuple[Json, Json]:
    bundled = schema_for("pipeline")
    return bundled["properties"]["spec"], bundled.get("$defs", {})


def _resolve(schema: Json, defs: Json) -> Json:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = defs.get(schema["$ref"].removeprefix("#/$defs/"), {})
    return schema if isinstance(schema, dict) else {}


def _unset(value: Any) -> bool:
    """The API's "not set": what Go's ``omitempty`` leaves out, or a zero value GET fills in."""
    return value is None or value is False or value == "" or value == [] or value == {}


def _prune(node: Any, schema: Json, defs: Json) -> Any:
    """Drop optional keys holding "not set"; required keys (the v3 schema's ``required``) always stay."""
    schema = _resolve(schema, defs)
    if isinstance(node, dict):
        required = set(schema.get("required") or ())
        properties = schema.get("properties") or {}
        out = {}
        for key, value in node.items():
            value = _prune(value, properties.get(key, {}), defs)
            if key not in required and _unset(value):
                continue
            out[key] = value
        return out
    if isinstance(node, list):
        return [_prune(item, schema.get("items") or {}, defs) for item in node]
    return node


def _source(source: Json) -> Json:
    out = copy.deepcopy(source)
    if str(out.get("consumer_group_initial_offset") or "").lower() == defaults.INITIAL_OFFSET:
        del out["consumer_group_initial_offset"]
    if out.get("schema_version") == defaults.SCHEMA_VERSION:
        del out["schema_version"]
    return out


def _transforms(doc: Json, source_ids: list[str]) -> list[Json]:
    out = []
    for transform in doc.get("transforms") or []:
        if not isinstance(transform, dict):
            continue
        item = copy.deepcopy(transform)
        config = item.get("config") if isinstance(item.get("config"), dict) else {}
        if item.get("type") == "dedup":
            config["time_window"] = short_duration(config.get("time_window"))
        elif short_duration(config.get("time_window")) == defaults.UNUSED_TIME_WINDOW:
            config.pop("time_window", None)
        if item.get("source_id") not in source_ids and source_ids:
            # Filter and stateless run on the only (first) source; an id GET made up is not one of ours.
            item["source_id"] = source_ids[0]
        out.append(item)
    return out


def _join(join: Json) -> Json:
    out = copy.deepcopy(join)
    if out.get("type") == defaults.JOIN_TYPE:
        del out["type"]
    for side in ("left_source", "right_source"):
        if isinstance(out.get(side), dict) and "time_window" in out[side]:
            out[side]["time_window"] = short_duration(out[side]["time_window"])
    return out


def _sink(sink: Json) -> Json:
    out = copy.deepcopy(sink)
    out["max_delay_time"] = short_duration(out.get("max_delay_time"))
    return out


# --- resources ------------------------------------------------------------------------------------------------

def _same_quantities(value: Any, default: Json) -> bool:
    if not isinstance(value, dict) or set(value) != set(default):
        return False
    try:
        return all(parse_quantity(value[k]) == parse_quantity(default[k]) for k in default)
    except (QuantityError, TypeError):
        return False


def _component(block: Any, kind: str, known: Sequence[res.ResourceDefaults], *, storage: bool) -> Json:
    """A component block without what equals a known default (replicas 1, a default requests/limits/storage)."""
    if not isinstance(block, dict):
        return {}
    out: Json = {}
    if block.get("replicas") not in (None, 1):
        out["replicas"] = block["replicas"]
    choices = [getattr(d, kind).block() for d in known]
    for key in ("requests", "limits"):
        value = block.get(key)
        if isinstance(value, dict) and value and not any(_same_quantities(value, c[key]) for c in choices):
            out[key] = copy.deepcopy(value)
    size = (block.get("storage") or {}).get("size") if isinstance(block.get("storage"), dict) else None
    if storage and size and not any(_same_quantities({"size": size}, c["storage"]) for c in choices
                                    if "storage" in c):
        out["storage"] = {"size": size}
    return out


def _stream(stream: Any, doc: Json, known: Sequence[res.ResourceDefaults]) -> Json:
    if not isinstance(stream, dict):
        return {}
    out: Json = {}
    max_age = stream.get("maxAge")
    try:
        default_age = any(parse_duration(max_age) == parse_duration(d.max_age) for d in known)
    except DurationError:
        default_age = False
    if max_age and not default_age:
        out["maxAge"] = max_age
    max_bytes = stream.get("maxBytes")
    try:
        # "0" (the default: no limit) is stored as "-1" (no limit) after a PUT in Kubernetes.
        no_limit = parse_nats_bytes(str(max_bytes)) in (Fraction(0), Fraction(-1))
    except QuantityError:
        no_limit = False
    if max_bytes not in (None, "") and not no_limit:
        out["maxBytes"] = max_bytes
    max_msgs = stream.get("maxMsgs")
    if max_msgs not in (None, 0) and max_msgs != known[0].default_max_msgs(res.max_batch_size(doc)):
        out["maxMsgs"] = max_msgs
    return {"stream": out} if out else {}


def _component_blocks(internal: Json) -> Iterable[tuple[str, Any]]:
    """``(defaults attribute, block)`` for every component block of a pipeline's internal resources."""
    ingestor = internal.get("ingestor") if isinstance(internal.get("ingestor"), dict) else {}
    for block in ingestor.values():
        yield "ingestor", block
    for kind in ("transform", "sink", "join"):
        yield kind, internal.get(kind)


def defaults_in_use(pipelines: Iterable[tuple[Json, Json | None]],
                    known: Sequence[res.ResourceDefaults] = KNOWN_DEFAULTS) -> tuple[res.ResourceDefaults, ...]:
    """The known default set(s) a cluster runs with, recognised from its pipelines (``(document, internal
    resources)`` pairs): the set most component blocks match. A value equal to another set's default was set
    on purpose there (a join limit of 1Gi is the Helm chart's default, not the code's), so it stays in the file.
    All sets when none matches (custom defaults: nothing can be told apart, and nothing is left out wrongly)."""
    counts = [0] * len(known)
    for _, internal in pipelines:
        for kind, block in _component_blocks(internal or {}):
            if not isinstance(block, dict):
                continue
            for index, defaults_set in enumerate(known):
                default_block = getattr(defaults_set, kind).block()
                counts[index] += sum(_same_quantities(block.get(key), default_block[key])
                                     for key in ("requests", "limits", "storage") if key in default_block)
    best = max(counts, default=0)
    if best == 0:
        return tuple(known)
    return tuple(d for d, count in zip(known, counts, strict=True) if count == best)


def adopted_resources(doc: Json, internal: Json | None,
                      known: Sequence[res.ResourceDefaults] = KNOWN_DEFAULTS) -> Json:
    """The v3 ``resources`` block (plus gftune's ``join``) a person would write for ``GET /resources``."""
    internal = internal or {}
    out: Json = {}
    nats = _stream((internal.get("nats") or {}).get("stream"), doc, known)
    if nats:
        out["nats"] = nats
    ingestor = internal.get("ingestor") if isinstance(internal.get("ingestor"), dict) else {}
    # which source each ingestor block belongs to (a join's left and right, or the one Kafka source) is
    # the API's own mapping: the sources GET /pipeline shows for these resources
    blocks = {side: block for side, block in ingestor.items() if isinstance(block, dict)}
    shown = res.internal_to_v3({"ingestor": blocks}, doc).get("sources", [])
    sources = [{"source_id": source["source_id"], **block} for source in shown
               if (block := _component(source, "ingestor", known, storage=False))]
    if sources:
        out["sources"] = sources
    if res.has_transform_component(doc) and isinstance(internal.get("transform"), dict):
        block = _component(internal["transform"], "transform", known, storage=res.dedup_enabled(doc))
        if block:
            transforms = [t for t in doc.get("transforms") or [] if isinstance(t, dict)]
            # One deployment runs every transform; the API reads only transform[0], and storage is allowed
            # only on a source with a dedup.
            owner = next((t for t in transforms if t.get("type") == "dedup"), transforms[0])
            out["transform"] = [{"source_id": owner.get("source_id"), **block}]
    sink = _component(internal.get("sink"), "sink", known, storage=False)
    if sink:
        out["sink"] = sink
    if res.join_enabled(doc):
        join = _component(internal.get("join"), "join", known, storage=False)
        if join:
            out["join"] = join
    return out


# --- the whole pipeline ---------------------------------------------------------------------------------------

def adopt(live: Json, internal: Json | None, *, known: Sequence[res.ResourceDefaults] = KNOWN_DEFAULTS) -> Adopted:
    """The spec of a pipeline file for a live pipeline: ``live`` is ``GET /pipeline/{id}``, ``internal``
    the ``pipeline_resources`` of ``GET /resources``. Secrets are still values here (see :func:`with_references`)."""
    pipeline_id = str(live.get("pipeline_id"))
    sources = [s for s in live.get("sources") or [] if isinstance(s, dict)]
    source_ids = [s.get("source_id") for s in sources]
    spec: Json = {"version": live.get("version") or "v3", "pipeline_id": pipeline_id, "name": live.get("name", "")}
    spec["sources"] = [_source(s) for s in sources]
    transforms = _transforms(live, source_ids)
    if transforms:
        spec["transforms"] = transforms
    if res.join_enabled(live):
        spec["join"] = _join(live["join"])
    spec["sink"] = _sink(live.get("sink") or {})
    tags = [t for t in ((live.get("metadata") or {}).get("tags") or [])
            if isinstance(t, str) and not t.startswith("gftune:")]
    if tags:
        spec["metadata"] = {"tags": tags}
    spec = _prune(spec, *_spec_schema())
    resources = adopted_resources(spec, internal, known)
    if resources:
        spec["resources"] = resources
    found = [FoundSecret(pipeline_id, path, location, value)
             for location, path, value in secrets.iter_secret_locations(spec)
             if isinstance(value, str) and value and not secrets.is_reference(value)]
    return Adopted(pipeline_id, spec, found)


def _env_word(text: str) -> str:
    return _NOT_NAME.sub("_", text).strip("_").upper()


def secret_names(found: Iterable[FoundSecret], env: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """The environment variable each secret is referenced by, keyed by ``(pipeline_id, path)``.

    The field's name (``CLICKHOUSE_PASSWORD``) when every pipeline imported has the same value there and the
    environment does not already give that name another value; otherwise qualified by the pipeline
    (``CLICKHOUSE_PASSWORD_ORDERS_DEDUP``), and by the source too when a pipeline's sources differ.
    """
    found = list(found)
    by_base: dict[str, list[FoundSecret]] = {}
    for secret in found:
        base = SECRET_ENV_NAMES.get(secret.pattern) or _env_word(secret.pattern.replace("[*]", ""))
        by_base.setdefault(base, []).append(secret)
    names: dict[tuple[str, str], str] = {}
    for base, group in by_base.items():
        values = {s.value for s in group}
        if len(values) == 1 and env.get(base, group[0].value) == group[0].value:
            names.update(((s.pipeline_id, s.path), base) for s in group)
            continue
        per_pipeline: dict[str, list[FoundSecret]] = {}
        for secret in group:
            per_pipeline.setdefault(secret.pipeline_id, []).append(secret)
        for pipeline_id, own in per_pipeline.items():
            qualified = f"{base}_{_env_word(pipeline_id)}"
            if len({s.value for s in own}) == 1:
                names.update(((s.pipeline_id, s.path), qualified) for s in own)
            else:
                names.update(((s.pipeline_id, s.path), f"{qualified}_{_env_word(s.source_id or '')}") for s in own)
    return names


def with_references(adopted: Adopted, names: Mapping[tuple[str, str], str]) -> Json:
    """The spec with every secret replaced by its ``${env:NAME}`` reference."""
    spec = copy.deepcopy(adopted.spec)
    for secret in adopted.secrets:
        node: Any = spec
        for step in secret.location[:-1]:
            node = node[step]
        node[secret.location[-1]] = "${env:" + names[(secret.pipeline_id, secret.path)] + "}"
    return spec


# --- the file -------------------------------------------------------------------------------------------------

def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _one_line(node: Any) -> bool:
    """A mapping of scalars short enough for one ``{key: value, ...}`` line."""
    if not isinstance(node, dict) or not node or not all(_is_scalar(v) for v in node.values()):
        return False
    return sum(len(str(k)) + len(str(v)) + 4 for k, v in node.items()) <= _FLOW_WIDTH


def _styled(node: Any, key: Any = None, flow: bool = False) -> Any:
    """ruamel nodes laid out like the example repository: mappings of scalars on one line where they fit
    (every item of a list, or none of them, so that a list reads as a table), lists of scalars on one line."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, dict):
        out = CommentedMap((k, _styled(v, k)) for k, v in node.items())
        if flow or (key in _FLOW_KEYS and _one_line(node)):
            out.fa.set_flow_style()
        return out
    if isinstance(node, list):
        items_flow = bool(node) and all(_one_line(item) for item in node)
        seq = CommentedSeq(_styled(v, flow=items_flow) for v in node)
        if node and all(_is_scalar(v) for v in node):
            seq.fa.set_flow_style()
        return seq
    return node


def pipeline_file_text(spec: Json, *, labels: Mapping[str, str] | None = None, header: Sequence[str] = ()) -> str:
    """The text of ``pipelines/<id>.yaml`` for ``spec`` (secrets must be references by now)."""
    metadata: Json = {"name": spec.get("pipeline_id")}
    if labels:
        metadata["labels"] = dict(labels)
    doc = _styled({"apiVersion": "gftune/v1", "kind": "Pipeline", "metadata": metadata, "spec": spec})
    out = io.StringIO()
    for line in header:
        out.write(f"# {line}\n" if line else "#\n")
    out.write(dump_roundtrip(doc))
    return out.getvalue()
