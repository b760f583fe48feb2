"""Checks of the files in a user's repository: JSON Schema, the API's model rules, gftune's rules.

Everything here works on data that is already loaded (no I/O except reading the packaged schemas)
and returns :class:`~gftune.desired.problems.Problem` lists; :mod:`gftune.desired.repo` calls these while it
loads a repository, and ``gftune validate`` prints the result.
The JSON Schemas themselves, and their violations as problems, are :mod:`gftune.desired.schemas`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from gftune.desired import paths, secrets
from gftune.desired.drift_rules import rule_problems
from gftune.desired.problems import ERROR, WARNING, Problem
from gftune.desired.schemas import pipeline_field_exists, schema_problems, schema_problems_with_paths
from gftune.desired.yamlio import LocationIndex
from gftune.glassflow import resources as res
from gftune.glassflow import rules
from gftune.glassflow.durations import DurationError, parse_duration
from gftune.glassflow.quantities import QuantityError, parse_quantity

JsonPath = tuple[str | int, ...]
_RESOURCES_PREFIX = "validate pipeline resources: invalid pipeline resources: "


def _problem(display: str, locations: LocationIndex, path: JsonPath, message: str,
             severity: str = ERROR) -> Problem:
    line, col = locations.locate(path)
    return Problem(display, line, col, rules.json_path(path), message, severity)


def empty_file_problem(display: str, kind: str) -> Problem:
    return Problem(display, 1, 1, "$",
                   f"file is empty: expected a {kind} document (apiVersion: gftune/v1, kind: {kind})")


def internal_error_problem(display: str, exc: BaseException) -> Problem:
    """A bug in gftune must not look like a traceback, nor hide the file it happened on."""
    return Problem(display, 1, 1, "$", f"internal error while checking this file ({type(exc).__name__}); "
                   "this is a bug in gftune, please report it")


# --- pipelines ---------------------------------------------------------------------------------

def check_pipeline(doc: Any, locations: LocationIndex, display: str, *, stem: str | None = None,
                   file_check: Callable[[str], str | None] | None = None) -> list[Problem]:
    """Schema, API model rules and gftune rules for one ``pipelines/<stem>.yaml`` document.

    ``file_check(target)`` says why a ``${file:TARGET}`` reference would be refused (None if not);
    the loader passes :func:`gftune.secrets.file_reference_problem` bound to the repository.
    """
    if doc is None:
        return [empty_file_problem(display, "Pipeline")]
    found = schema_problems_with_paths("pipeline", doc, locations, display)
    problems = [problem for _, problem in found]
    if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
        return problems
    spec = doc["spec"]
    schema_paths = [path for path, _ in found]
    for violation in rules.validate_document(spec):
        path = ("spec", *violation.path)
        if any(path[: len(p)] == p for p in schema_paths):
            continue  # the schema already said what is wrong here
        message = violation.message.removeprefix(_RESOURCES_PREFIX)
        problems.append(_problem(display, locations, path, message + _hint(message)))
    problems += _join_resources_problems(spec, locations, display)
    strings = _strings(spec)  # walked once: three checks read every string of the spec
    problems += _secret_problems(spec, strings, locations, display)
    for found in (_integer_problems(spec, locations, display), _quantity_problems(spec, locations, display),
                  _text_problems(strings, locations, display)):
        problems += [p for p in found if not any(p.json_path == other.json_path for other in problems)]
    if file_check is not None:
        problems += _file_reference_problems(strings, locations, display, file_check)
    problems += _identity_problems(doc, locations, display, stem)
    problems += _constraint_problems(doc, locations, display)
    problems += _drift_rule_problems(doc, locations, display)
    return problems


_DECIMAL_BYTES = re.compile(r'quantity "(\d+(?:\.\d+)?)([KMGTP])B"')
_DAYS = re.compile(r'invalid maxAge "(\d+)d"')


def _hint(message: str) -> str:
    """A concrete fix for the mistakes people make most (``1GB``, ``maxAge: 1d``)."""
    if match := _DECIMAL_BYTES.search(message):
        return f'; did you mean "{match[1]}{match[2]}i"?'
    if match := _DAYS.search(message):
        return f'; maxAge does not accept days: use "{int(match[1]) * 24}h"'
    return ""


def _join_resources_problems(spec: dict[str, Any], locations: LocationIndex, display: str) -> list[Problem]:
    resources = spec.get("resources")
    if isinstance(resources, dict) and "join" in resources and not res.join_enabled(spec):
        return [_problem(display, locations, ("spec", "resources", "join"),
                         "join resources need a join pipeline (join.enabled: true)")]
    return []


def _secret_problems(spec: dict[str, Any], strings: list[tuple[JsonPath, str]], locations: LocationIndex,
                     display: str) -> list[Problem]:
    problems = []
    secret_paths = set()
    for path, _, value in secrets.iter_secret_locations(spec):
        secret_paths.add(path)
        full = ("spec", *path)
        if isinstance(value, str) and secrets.PLACEHOLDER.match(value) and not secrets.is_reference(value):
            problems.append(_problem(display, locations, full,
                                     "not a valid secret reference: write ${env:NAME} or ${file:PATH}"))
        elif secrets.is_literal_secret(value):
            problems.append(_problem(display, locations, full,
                                     "literal secret: use a reference such as ${env:NAME} or ${file:PATH} "
                                     "(the value is not shown)"))
    for path, value in strings:
        if path not in secret_paths and secrets.PLACEHOLDER.match(value) and not secrets.is_reference(value):
            problems.append(_problem(display, locations, ("spec", *path),
                                     "looks like a placeholder but is not a reference (${env:NAME} or "
                                     "${file:PATH}); it would be sent as written", WARNING))
    return problems


def _file_reference_problems(strings: list[tuple[JsonPath, str]], locations: LocationIndex, display: str,
                             file_check: Callable[[str], str | None]) -> list[Problem]:
    problems = []
    for path, value in strings:
        match = secrets.REFERENCE.match(value)
        if match and match["kind"] == "file" and (reason := file_check(match["target"])) is not None:
            problems.append(_problem(display, locations, ("spec", *path),
                                     f"{value} refused: {reason}; gftune will not read it"))
    return problems


def _strings(node: Any) -> list[tuple[JsonPath, str]]:
    """Every string of a document with its location."""
    return [(path, value) for path, value in paths.leaves(node) if isinstance(value, str)]


def _identity_problems(doc: dict[str, Any], locations: LocationIndex, display: str, stem: str | None
                       ) -> list[Problem]:
    problems = []
    pipeline_id = doc["spec"].get("pipeline_id")
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if isinstance(name, str) and isinstance(pipeline_id, str) and name != pipeline_id:
        problems.append(_problem(display, locations, ("metadata", "name"),
                                 f'metadata.name "{name}" must equal spec.pipeline_id "{pipeline_id}"'))
    if stem is not None and isinstance(pipeline_id, str) and pipeline_id != stem:
        problems.append(_problem(display, locations, ("spec", "pipeline_id"),
                                 f'pipeline_id "{pipeline_id}" does not match the file name: '
                                 f"rename the file to {pipeline_id}.yaml"))
    return problems


def _component_blocks(resources: dict[str, Any]) -> Iterator[tuple[JsonPath, dict[str, Any]]]:
    """Every component block of ``spec.resources`` (sources[], transform[], sink, join) with its path."""
    for key in ("sources", "transform"):
        entries = resources.get(key)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict):
                yield ("spec", "resources", key, i), entry
    for key in ("sink", "join"):
        if isinstance(resources.get(key), dict):
            yield ("spec", "resources", key), resources[key]


def _replica_entries(resources: dict[str, Any]) -> Iterator[tuple[JsonPath, Any]]:
    for path, block in _component_blocks(resources):
        if "replicas" in block:
            yield (*path, "replicas"), block["replicas"]


def _quantity_entries(resources: dict[str, Any]) -> Iterator[tuple[JsonPath, str, str]]:
    """(path, resource name, value) of every cpu/memory request or limit and storage size."""
    for path, block in _component_blocks(resources):
        for kind in ("requests", "limits"):
            section = block.get(kind)
            for name in ("cpu", "memory"):
                if isinstance(section, dict) and isinstance(section.get(name), str):
                    yield (*path, kind, name), name, section[name]
        storage = block.get("storage")
        if isinstance(storage, dict) and isinstance(storage.get("size"), str):
            yield (*path, "storage", "size"), "storage", storage["size"]


def _memory_entries(resources: dict[str, Any]) -> Iterator[tuple[JsonPath, Any]]:
    for path, name, value in _quantity_entries(resources):
        if name == "memory":
            yield path, value


# --- value rules: what the API's Go types, Kubernetes or PostgreSQL refuse later, or accept and break on --

_INT64_MAX = 2**63 - 1
# Kubernetes: Deployment spec.replicas is an int32 (k8s.io/api apps/v1 types.go); the operator
# creates one Deployment per component.
_REPLICAS_MAX = 2**31 - 1
# sink.max_batch_size is a Go int (glassflow-api/internal/api/pipeline.go, clickhouseSink), and the
# API derives the NATS stream's default maxMsgs as 8 x max_batch_size in an int64
# (glassflow-api/internal/models/resources.go, defaultNATSMaxMsgs): anything larger overflows.
_BATCH_MAX = _INT64_MAX // 8
# Sane bounds: a component asking for more than any node has can never be scheduled; such a value
# is a typo (a missing "m" or "Mi"), not a sizing decision.
_QUANTITY_MAX = {"cpu": parse_quantity("1024"), "memory": parse_quantity("64Ti"), "storage": parse_quantity("1Pi")}
# Fields whose text may span lines (certificates, keys, expressions); everywhere else a control
# character is a mistake or an attack.
_MULTILINE_KEYS = frozenset({"expression", "root_ca", "client_cert", "client_key", "kerberos_config",
                             "kerberos_keytab", "password", "api_key", "api_secret"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _integer_problems(spec: dict[str, Any], locations: LocationIndex, display: str) -> Iterator[Problem]:
    def bad(value: Any, low: int, high: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and not low <= value <= high

    sink = spec.get("sink") if isinstance(spec.get("sink"), dict) else {}
    batch = sink.get("max_batch_size")
    if batch != 0 and bad(batch, 1, _BATCH_MAX):  # 0 is the API's own rule (rules.py)
        yield _problem(display, locations, ("spec", "sink", "max_batch_size"),
                       f"max_batch_size must be between 1 and {_BATCH_MAX} (the API multiplies it by 8 into an "
                       "int64 for the stream's default maxMsgs)")
    resources = spec.get("resources") if isinstance(spec.get("resources"), dict) else {}
    nats = resources.get("nats") if isinstance(resources.get("nats"), dict) else {}
    stream = nats.get("stream") if isinstance(nats.get("stream"), dict) else {}
    if bad(stream.get("maxMsgs"), -1, _INT64_MAX):
        yield _problem(display, locations, ("spec", "resources", "nats", "stream", "maxMsgs"),
                       f"maxMsgs must be between -1 (unlimited) and {_INT64_MAX} (an int64 in the API)")
    for path, replicas in _replica_entries(resources):
        if bad(replicas, 1, _REPLICAS_MAX):
            why = ("0 replicas stop the component: nothing would move" if replicas == 0
                   else f"Kubernetes replicas are an int32 (at most {_REPLICAS_MAX})")
            yield _problem(display, locations, path, f"replicas must be at least 1 ({why})"
                           if replicas < 1 else f"replicas must be at most {_REPLICAS_MAX} ({why})")


def _quantity_problems(spec: dict[str, Any], locations: LocationIndex, display: str) -> Iterator[Problem]:
    resources = spec.get("resources") if isinstance(spec.get("resources"), dict) else {}
    parsed: dict[JsonPath, Any] = {}
    for path, name, text in _quantity_entries(resources):
        amount = _quantity(text)
        if amount is None:
            continue  # not a quantity at all: the API's rule says so (rules.py)
        parsed[path] = amount
        if amount <= 0:
            # Kubernetes refuses negative requests and limits (pkg/apis/core/validation/validation.go,
            # ValidateResourceQuantityValue); a zero one gives the container nothing to run with.
            yield _problem(display, locations, path, f'{name} "{text}" must be greater than 0')
        elif amount > _QUANTITY_MAX[name]:
            yield _problem(display, locations, path,
                           f'{name} "{text}" is more than any node offers (at most {_QUANTITY_MAX[name]} '
                           f"{'cores' if name == 'cpu' else 'bytes'}); a missing unit suffix?")
    for path, block in _component_blocks(resources):
        for name in ("cpu", "memory"):
            request, limit = parsed.get((*path, "requests", name)), parsed.get((*path, "limits", name))
            if request is not None and limit is not None and 0 < limit < request:
                # Kubernetes: a request must be less than or equal to its limit (validation.go,
                # ValidateResourceRequirements)
                yield _problem(display, locations, (*path, "requests", name),
                               f"{name} request {block['requests'][name]} is more than the limit "
                               f"{block['limits'][name]}")


def _text_problems(strings: list[tuple[JsonPath, str]], locations: LocationIndex, display: str
                   ) -> Iterator[Problem]:
    for path, value in strings:
        match = _CONTROL.search(value)
        if match is None:
            continue
        key = next((part for part in reversed(path) if isinstance(part, str)), "")
        where = ("spec", *path)
        if match.group() == "\x00" or "\x00" in value:
            # GlassFlow stores pipelines in PostgreSQL (glassflow-api/migrations), whose text and jsonb
            # types cannot hold U+0000 (PostgreSQL docs, "JSON Types")
            yield _problem(display, locations, where, "contains a NUL character (U+0000), which the API cannot store")
        elif key not in _MULTILINE_KEYS:
            yield _problem(display, locations, where,
                           f"contains the control character U+{ord(match.group()):04X}: names, ids, topics and "
                           "tables are single lines of printable text")


def _quantity(value: Any) -> Any:
    try:
        return parse_quantity(value)
    except QuantityError:
        return None


def _constraint_problems(doc: dict[str, Any], locations: LocationIndex, display: str) -> list[Problem]:
    tuning = doc.get("tuning")
    constraints = tuning.get("constraints") if isinstance(tuning, dict) else None
    if not isinstance(constraints, dict):
        return []
    spec = doc["spec"]
    resources = spec.get("resources") if isinstance(spec.get("resources"), dict) else {}
    problems = []
    base = ("tuning", "constraints")
    ceilings = {}
    for key in ("memory_ceiling", "storage_ceiling"):
        value = constraints.get(key)
        if isinstance(value, str):
            ceilings[key] = _quantity(value)
            if ceilings[key] is None:
                problems.append(_problem(display, locations, (*base, key),
                                         f'invalid quantity "{value}": use a Kubernetes quantity such as 8Gi'))
    partitions = constraints.get("partitions")
    if isinstance(partitions, int) and not isinstance(partitions, bool):
        for i, entry in enumerate(resources.get("sources") if isinstance(resources.get("sources"), list) else []):
            replicas = entry.get("replicas") if isinstance(entry, dict) else None
            if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas > partitions:
                problems.append(_problem(
                    display, locations, ("spec", "resources", "sources", i, "replicas"),
                    f"{replicas} ingestor replicas exceed tuning.constraints.partitions ({partitions}); "
                    "replicas beyond the partition count sit idle"))
    max_replicas = constraints.get("max_replicas")
    if isinstance(max_replicas, int) and not isinstance(max_replicas, bool):
        for path, replicas in _replica_entries(resources):
            if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas > max_replicas:
                problems.append(_problem(
                    display, locations, path,
                    f"replicas {replicas} exceed tuning.constraints.max_replicas ({max_replicas})"))
    if ceilings.get("memory_ceiling") is not None:
        for path, memory in _memory_entries(resources):
            amount = _quantity(memory)
            if amount is not None and amount > ceilings["memory_ceiling"]:
                problems.append(_problem(display, locations, path,
                                         f"memory {memory} exceeds tuning.constraints.memory_ceiling "
                                         f"({constraints['memory_ceiling']})"))
    if ceilings.get("storage_ceiling") is not None:
        entries = resources.get("transform")
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            storage = entry.get("storage") if isinstance(entry, dict) else None
            size = storage.get("size") if isinstance(storage, dict) else None
            amount = _quantity(size)
            if amount is not None and amount > ceilings["storage_ceiling"]:
                problems.append(_problem(display, locations, ("spec", "resources", "transform", i, "storage", "size"),
                                         f"storage {size} exceeds tuning.constraints.storage_ceiling "
                                         f"({constraints['storage_ceiling']})"))
    return problems


def _drift_rule_problems(doc: dict[str, Any], locations: LocationIndex, display: str) -> list[Problem]:
    """``tuning.drift``: patterns that are field paths, tolerances that are numbers, percentages or quantities."""
    tuning = doc.get("tuning")
    drift = tuning.get("drift") if isinstance(tuning, dict) else None
    return [_problem(display, locations, path, message) for path, message in rule_problems(drift)]


# --- policies ----------------------------------------------------------------------------------

def check_policy(doc: Any, locations: LocationIndex, display: str, *, stem: str | None = None) -> list[Problem]:
    """Schema of a ``policies/<stem>.yaml`` file, the file name, and the fields its actions change.

    What the policy language itself says about the file (signals, references, durations) is added by
    :func:`gftune.policy.files.check_policies`, which parses each policy file once.
    """
    if doc is None:
        return [empty_file_problem(display, "TuningPolicy")]
    problems = schema_problems("policy", doc, locations, display)
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if stem is not None and isinstance(name, str) and name != stem:
        problems.append(_problem(
            display, locations, ("metadata", "name"),
            f'metadata.name "{name}" does not match the file name: rename the file to {name}.yaml'))
    if isinstance(doc, dict):
        reported = [p.json_path for p in problems]
        problems += [p for p in _action_problems(doc, locations, display)
                     if not any(related_paths(p.json_path, r) for r in reported)]
    return problems


_DURATION_FIELDS = ("time_window", "max_delay_time", "maxAge")


def _comparable(value: Any, field_path: Any) -> tuple[str, Any] | None:
    """(kind, amount) for a bound written as a number, a quantity (512Mi) or, on a duration field,
    a duration (``2m`` is two minutes there, two thousandths elsewhere)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return "number", value
    if not isinstance(value, str) or ":" in value:  # "constraint:max_replicas" is known only per pipeline
        return None
    if isinstance(field_path, str) and field_path.endswith(_DURATION_FIELDS):
        try:
            return "duration", parse_duration(value, allow_days=True)
        except DurationError:
            return None
    amount = _quantity(value)
    return ("quantity", amount) if amount is not None else None


def _action_problems(doc: dict[str, Any], locations: LocationIndex, display: str) -> Iterator[Problem]:
    """A field an action changes must exist in a pipeline document, and its bounds must not cross."""
    spec = doc.get("spec")
    actions = spec.get("then") if isinstance(spec, dict) else None
    for i, action in enumerate(actions if isinstance(actions, list) else []):
        if not isinstance(action, dict):
            continue
        where = ("spec", "then", i)
        for verb in ("set", "multiply", "add"):
            target = action.get(verb)
            if isinstance(target, str) and not pipeline_field_exists(target):
                yield _problem(display, locations, (*where, verb),
                               f'{verb}: "{target}" is not a field of a GlassFlow pipeline document '
                               "(see `gftune schema pipeline`)")
        target = next((action[verb] for verb in ("set", "multiply", "add") if verb in action), None)
        low, high = _comparable(action.get("min"), target), _comparable(action.get("max"), target)
        if low is not None and high is not None and low[0] == high[0] and low[1] > high[1]:
            yield _problem(display, locations, (*where, "min"),
                           f"min {action['min']} is greater than max {action['max']}")


def related_paths(a: str, b: str) -> bool:
    """One JSON path is the other or inside it (a finding there would say the same thing again)."""
    def inside(child: str, parent: str) -> bool:
        return parent == "$" or child == parent or child.startswith((parent + ".", parent + "["))

    return inside(a, b) or inside(b, a)


# --- the whole repository ----------------------------------------------------------------------

def empty_repo_problem() -> Problem:
    return Problem("pipelines/", None, None, "$",
                   "no pipeline files found: expected pipelines/<pipeline_id>.yaml "
                   "(use --allow-empty if that is intended)")
