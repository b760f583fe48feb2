"""Checks of the files in a user's repository: JSON Schema, the API's model rules, gftune's rules.

Everything here works on data that is already loaded (no I/O except reading the packaged schemas)
and returns :class:`~gftune.desired.problems.Problem` lists; :mod:`gftune.desired.repo` calls these while it
loads a repository, and ``gftune validate`` prints the result.

The JSON Schemas ship in ``gftune/schemas``. ``pipeline.schema.json`` refers to the API's
``glassflow-v3.schema.json`` (the single source of truth for the v3 shape) and extends it with
``spec.resources.join`` (``x-gftune-extends``); :func:`schema_for` bundles both into one
self-contained schema, which is what editors get and what the checks use.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from importlib import resources as importlib_resources
from typing import TYPE_CHECKING, Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from gftune.desired import secrets
from gftune.desired.problems import ERROR, WARNING, Problem
from gftune.desired.yamlio import LocationIndex
from gftune.glassflow import resources as res
from gftune.glassflow import rules
from gftune.glassflow.quantities import QuantityError, parse_quantity

if TYPE_CHECKING:
    from gftune.desired.repo import DesiredState, PolicyFile

JsonPath = tuple[str | int, ...]
SCHEMA_KINDS = ("pipeline", "policy", "config")
_EXTERNAL_REF = re.compile(r"^(?P<file>[\w.-]+)\.schema\.json#/\$defs/(?P<name>[\w.-]+)$")
_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
               (list, "array"), (dict, "object"), (type(None), "null"))
_RESOURCES_PREFIX = "validate pipeline resources: invalid pipeline resources: "
_NUMBER_TEXT = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


# --- schemas ------------------------------------------------------------------------------------

@cache
def _raw_schema(name: str) -> dict[str, Any]:
    text = (importlib_resources.files("gftune") / "schemas" / f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


def _rewrite_refs(node: Any, rewrite: Any) -> Any:
    if isinstance(node, dict):
        return {k: (rewrite(v) if k == "$ref" and isinstance(v, str) else _rewrite_refs(v, rewrite))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v, rewrite) for v in node]
    return node


def _deep_merge(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = value


@cache
def _bundled(kind: str) -> dict[str, Any]:
    root = copy.deepcopy(_raw_schema(kind))
    extends = root.pop("x-gftune-extends", {})
    defs: dict[str, Any] = root.setdefault("$defs", {})
    imported: set[str] = set()

    def local(ref: str) -> str:
        match = _EXTERNAL_REF.match(ref)
        if not match:
            return ref
        other = match["file"]
        if other not in imported:
            imported.add(other)
            for name, definition in _raw_schema(other).get("$defs", {}).items():
                defs[f"{other}.{name}"] = _rewrite_refs(
                    definition, lambda r, o=other: f"#/$defs/{o}.{r.removeprefix('#/$defs/')}"
                    if r.startswith("#/$defs/") else r)
        return f"#/$defs/{other}.{match['name']}"

    bundled = _rewrite_refs(root, local)
    defs = bundled["$defs"] = {**defs, **bundled.get("$defs", {})}
    for target, extension in extends.items():
        _deep_merge(defs[local(target).removeprefix("#/$defs/")], _rewrite_refs(extension, local))
    return bundled


def schema_for(kind: str) -> dict[str, Any]:
    """The self-contained JSON Schema (draft 2020-12) of a file kind: pipeline, policy or config."""
    if kind not in SCHEMA_KINDS:
        raise ValueError(f"unknown schema kind {kind!r}; expected one of {', '.join(SCHEMA_KINDS)}")
    return copy.deepcopy(_bundled(kind))


@cache
def _validator(kind: str) -> Draft202012Validator:
    schema = _bundled(kind)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


# Keywords that constrain a value. Draft-07 (what fastjsonschema compiles) ignores everything next
# to a "$ref"; draft 2020-12 applies it. Where a schema has such siblings, the compiled check could
# accept what 2020-12 rejects, so it is not used for that kind.
_CONSTRAINTS = frozenset({"type", "properties", "additionalProperties", "required", "items", "enum", "const",
                          "minimum", "maximum", "pattern", "minItems", "maxItems", "allOf", "anyOf", "oneOf",
                          "not", "if", "then", "else", "unevaluatedProperties", "patternProperties",
                          "minLength", "maxLength", "exclusiveMinimum", "exclusiveMaximum", "format"})


def _ref_with_siblings(node: Any) -> bool:
    if isinstance(node, dict):
        if "$ref" in node and _CONSTRAINTS & node.keys():
            return True
        return any(_ref_with_siblings(v) for k, v in node.items() if k not in ("const", "enum"))
    if isinstance(node, list):
        return any(_ref_with_siblings(v) for v in node)
    return False


@cache
def _fast_check(kind: str) -> Callable[[Any], Any] | None:
    """A compiled validity check (fastjsonschema), ~10x faster than walking the schema.

    It only ever answers "valid": a document it rejects is checked again by jsonschema, which
    reports every error with its path. A differential property test keeps the two in step.
    """
    schema = _bundled(kind)
    if _ref_with_siblings(schema):
        return None
    draft7 = {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
    return fastjsonschema.compile(draft7)


def is_schema_valid(kind: str, doc: Any) -> bool:
    check = _fast_check(kind)
    if check is None:
        return _validator(kind).is_valid(doc)
    try:
        check(doc)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


# --- schema errors -> problems ------------------------------------------------------------------

def _json_type(value: Any) -> str:
    for python_type, name in _JSON_TYPES:
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def _suggest(key: str, known: Iterable[str]) -> str:
    known = [k for k in known if isinstance(k, str)]

    def norm(text: str) -> str:
        return text.replace("_", "").replace("-", "").lower()

    for candidate in known:
        if norm(candidate) == norm(key):
            return f"; did you mean {candidate}?"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def _type_message(error: ValidationError) -> str:
    expected = error.validator_value
    expected_text = " or ".join(expected) if isinstance(expected, list) else str(expected)
    actual = _json_type(error.instance)
    message = f"expected {expected_text}, got {actual}"
    wanted = set(expected if isinstance(expected, list) else [expected])
    if wanted & {"integer", "number"} and isinstance(error.instance, str) and _NUMBER_TEXT.match(error.instance):
        message += " (a quoted number: remove the quotes)"
    elif "string" in wanted and actual in ("integer", "number", "boolean"):
        message += " (put the value in quotes)"
    return message


def _one_of_keys(error: ValidationError) -> list[str] | None:
    """For oneOf/anyOf whose branches are all ``{"required": [key]}``: the keys."""
    keys = []
    for branch in error.validator_value or []:
        if not isinstance(branch, dict) or set(branch) != {"required"} or len(branch["required"]) != 1:
            return None
        keys.append(branch["required"][0])
    return keys


def _schema_findings(error: ValidationError) -> Iterator[tuple[JsonPath, JsonPath, str]]:
    """(path to report, path to locate, message) for one jsonschema error."""
    path: JsonPath = tuple(error.absolute_path)
    validator, value, instance = error.validator, error.validator_value, error.instance
    if validator == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {})
        patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
        for key in instance:
            if key not in known and not any(p.search(key) for p in patterns):
                yield (*path, key), (*path, key), f'unknown key "{key}"{_suggest(key, known)}'
        return
    if validator == "required" and isinstance(instance, dict):
        for key in value:
            if key not in instance:
                yield path, path, f'missing required key "{key}"'
        return
    if validator == "type":
        yield path, path, _type_message(error)
    elif validator == "const":
        yield path, path, f"must be {json.dumps(value)}"
    elif validator == "enum":
        yield path, path, "must be one of: " + ", ".join(str(v) for v in value)
    elif validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[validator]
        yield path, path, f"must be {op} {value}"
    elif validator in ("minItems", "maxItems"):
        bound = "at least" if validator == "minItems" else "at most"
        yield path, path, f"must have {bound} {value} item{'s' if value != 1 else ''}"
    elif validator in ("minLength", "maxLength"):
        yield path, path, "must not be empty" if (validator, value) == ("minLength", 1) else \
            f"must be {'at least' if validator == 'minLength' else 'at most'} {value} characters long"
    elif validator == "pattern":
        yield path, path, error.schema.get("x-message") or f"must match the pattern {value}"
    elif validator in ("oneOf", "anyOf"):
        keys = _one_of_keys(error)
        if keys is not None and isinstance(instance, dict):
            present = [k for k in keys if k in instance]
            yield path, path, (f"use only one of: {', '.join(present)}" if len(present) > 1
                               else f"needs one of: {', '.join(keys)}")
        elif error.context:
            yield from _schema_findings(best_match(error.context))
        else:
            yield path, path, "does not match any allowed form"
    elif validator in ("not", "false"):
        yield path, path, "is not allowed here"
    else:
        yield path, path, f"is invalid ({validator})"


def _schema_problems_with_paths(kind: str, doc: Any, locations: LocationIndex, display: str
                                ) -> list[tuple[JsonPath, Problem]]:
    found: list[tuple[JsonPath, Problem]] = []
    if is_schema_valid(kind, doc):  # the common case, fast; errors are collected by jsonschema
        return found
    for error in _validator(kind).iter_errors(doc):
        for path, locate_path, message in _schema_findings(error):
            line, col = locations.locate(locate_path)
            found.append((path, Problem(display, line, col, rules.json_path(path), message)))
    found.sort(key=lambda item: (item[1].line or 0, item[1].col or 0))
    return found


def schema_problems(kind: str, doc: Any, locations: LocationIndex, display: str) -> list[Problem]:
    """Every JSON Schema violation of ``doc`` (all of them, sorted by line)."""
    return [problem for _, problem in _schema_problems_with_paths(kind, doc, locations, display)]


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
    found = _schema_problems_with_paths("pipeline", doc, locations, display)
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
    problems += _secret_problems(spec, locations, display)
    if file_check is not None:
        problems += _file_reference_problems(spec, locations, display, file_check)
    problems += _identity_problems(doc, locations, display, stem)
    problems += _constraint_problems(doc, locations, display)
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


def _secret_problems(spec: dict[str, Any], locations: LocationIndex, display: str) -> list[Problem]:
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
    for path, value in _strings(spec, ()):
        if path not in secret_paths and secrets.PLACEHOLDER.match(value) and not secrets.is_reference(value):
            problems.append(_problem(display, locations, ("spec", *path),
                                     "looks like a placeholder but is not a reference (${env:NAME} or "
                                     "${file:PATH}); it would be sent as written", WARNING))
    return problems


def _file_reference_problems(spec: dict[str, Any], locations: LocationIndex, display: str,
                             file_check: Callable[[str], str | None]) -> list[Problem]:
    problems = []
    for path, value in _strings(spec, ()):
        match = secrets.REFERENCE.match(value)
        if match and match["kind"] == "file" and (reason := file_check(match["target"])) is not None:
            problems.append(_problem(display, locations, ("spec", *path),
                                     f"{value} refused: {reason}; gftune will not read it"))
    return problems


def _strings(node: Any, path: JsonPath) -> Iterator[tuple[JsonPath, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, (*path, i))
    elif isinstance(node, str):
        yield path, node


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


def _replica_entries(resources: dict[str, Any]) -> Iterator[tuple[JsonPath, Any]]:
    for key in ("sources", "transform"):
        entries = resources.get(key)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and "replicas" in entry:
                yield ("spec", "resources", key, i, "replicas"), entry["replicas"]
    for key in ("sink", "join"):
        block = resources.get(key)
        if isinstance(block, dict) and "replicas" in block:
            yield ("spec", "resources", key, "replicas"), block["replicas"]


def _memory_entries(resources: dict[str, Any]) -> Iterator[tuple[JsonPath, Any]]:
    blocks: list[tuple[JsonPath, Any]] = []
    for key in ("sources", "transform"):
        entries = resources.get(key)
        if isinstance(entries, list):
            blocks += [(("spec", "resources", key, i), entry) for i, entry in enumerate(entries)]
    blocks += [(("spec", "resources", key), resources.get(key)) for key in ("sink", "join")]
    for path, block in blocks:
        if not isinstance(block, dict):
            continue
        for kind in ("requests", "limits"):
            section = block.get(kind)
            if isinstance(section, dict) and isinstance(section.get("memory"), str):
                yield (*path, kind, "memory"), section["memory"]


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


# --- policies ----------------------------------------------------------------------------------

def check_policy(policy: PolicyFile) -> list[Problem]:
    """Schema of a ``policies/<name>.yaml`` file, then the policy engine's own semantic checks.

    The semantic checks live in ``gftune.policy.language.validate_policy(policy_file) -> list[Problem]``
    (the policy language's owner); they run when that module provides the hook.
    """
    if policy.doc is None:
        return [empty_file_problem(policy.file, "TuningPolicy")]
    problems = schema_problems("policy", policy.doc, policy.locations, policy.file)
    metadata = policy.doc.get("metadata") if isinstance(policy.doc, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if isinstance(name, str) and name != policy.path.stem:
        problems.append(_problem(
            policy.file, policy.locations, ("metadata", "name"),
            f'metadata.name "{name}" does not match the file name: rename the file to {name}.yaml'))
    hook = _policy_hook()
    if hook is not None and isinstance(policy.doc, dict):
        reported = [p.json_path for p in problems]
        for problem in hook(policy):
            path = _bracketed(problem.json_path)
            if not any(_related(path, other) for other in reported):  # the schema already said it
                problems.append(problem)
    return problems


def _bracketed(path: str) -> str:
    """``spec.then.0.max`` -> ``spec.then[0].max`` (the rules.json_path form)."""
    return re.sub(r"\.(\d+)(?=\.|\[|$)", r"[\1]", path)


def _related(a: str, b: str) -> bool:
    """One path is the other or inside it."""
    def inside(child: str, parent: str) -> bool:
        return parent == "$" or child == parent or child.startswith((parent + ".", parent + "["))

    return inside(a, b) or inside(b, a)


def _policy_hook() -> Any:
    try:
        module = importlib.import_module("gftune.policy.language")
    except ModuleNotFoundError as exc:
        if exc.name == "gftune.policy.language":
            return None
        raise
    return getattr(module, "validate_policy", None)


# --- the whole repository ----------------------------------------------------------------------

def empty_repo_problem() -> Problem:
    return Problem("pipelines/", None, None, "$",
                   "no pipeline files found: expected pipelines/<pipeline_id>.yaml "
                   "(use --allow-empty if that is intended)")


def validate_repo(root: Any, *, env: Any = None, overrides: dict[str, Any] | None = None,
                  allow_empty: bool = False) -> DesiredState:
    """Load and check a repository; ``state.problems`` holds everything found, sorted."""
    from gftune.desired.problems import sorted_problems
    from gftune.desired.repo import load_repo

    state = load_repo(root, env=env, overrides=overrides, validate=True)
    nothing_loaded = not any(p.file.startswith("pipelines/") for p in state.problems)
    if state.root.is_dir() and not state.pipelines and not allow_empty and nothing_loaded:
        state.problems.append(empty_repo_problem())
    state.problems[:] = sorted_problems(state.problems)
    return state
