"""The JSON Schemas of gftune's file kinds (pipeline, policy, config): bundled, compiled, and their
violations as located problems.

The schemas ship in ``gftune/schemas``. ``pipeline.schema.json`` refers to the API's
``glassflow-v3.schema.json`` (the single source of truth for the v3 shape) and extends it with
``spec.resources.join`` (``x-gftune-extends``); :func:`schema_for` bundles both into one
self-contained schema, which is what editors get and what the checks use.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from importlib import resources as importlib_resources
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from gftune.desired import paths
from gftune.desired.problems import Problem
from gftune.desired.yamlio import LocationIndex
from gftune.glassflow import rules

JsonPath = tuple[str | int, ...]
SCHEMA_KINDS = ("pipeline", "policy", "config")
_EXTERNAL_REF = re.compile(r"^(?P<file>[\w.-]+)\.schema\.json#/\$defs/(?P<name>[\w.-]+)$")
_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
               (list, "array"), (dict, "object"), (type(None), "null"))
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
def validator(kind: str) -> Draft202012Validator:
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


def ref_with_siblings(node: Any) -> bool:
    if isinstance(node, dict):
        if "$ref" in node and _CONSTRAINTS & node.keys():
            return True
        return any(ref_with_siblings(v) for k, v in node.items() if k not in ("const", "enum"))
    if isinstance(node, list):
        return any(ref_with_siblings(v) for v in node)
    return False


@cache
def fast_check(kind: str) -> Callable[[Any], Any] | None:
    """A compiled validity check (fastjsonschema), ~10x faster than walking the schema.

    It only ever answers "valid": a document it rejects is checked again by jsonschema, which
    reports every error with its path. A differential property test keeps the two in step.
    """
    schema = _bundled(kind)
    if ref_with_siblings(schema):
        return None
    draft7 = {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
    return fastjsonschema.compile(draft7)


def is_schema_valid(kind: str, doc: Any) -> bool:
    check = fast_check(kind)
    if check is None:
        return validator(kind).is_valid(doc)
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


def schema_problems_with_paths(kind: str, doc: Any, locations: LocationIndex, display: str
                                ) -> list[tuple[JsonPath, Problem]]:
    found: list[tuple[JsonPath, Problem]] = []
    if is_schema_valid(kind, doc):  # the common case, fast; errors are collected by jsonschema
        return found
    for error in validator(kind).iter_errors(doc):
        for path, locate_path, message in _schema_findings(error):
            line, col = locations.locate(locate_path)
            found.append((path, Problem(display, line, col, rules.json_path(path), message)))
    found.sort(key=lambda item: (item[1].line or 0, item[1].col or 0))
    return found


def schema_problems(kind: str, doc: Any, locations: LocationIndex, display: str) -> list[Problem]:
    """Every JSON Schema violation of ``doc`` (all of them, sorted by line)."""
    return [problem for _, problem in schema_problems_with_paths(kind, doc, locations, display)]


def _schema_node(node: Any, defs: dict[str, Any]) -> list[Any]:
    """``node`` with its $ref followed, and its allOf/anyOf/oneOf branches (each a possible shape)."""
    if not isinstance(node, dict):
        return []
    if isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/$defs/"):
        return _schema_node(defs.get(node["$ref"].removeprefix("#/$defs/")), defs)
    found = [node]
    for key in ("allOf", "anyOf", "oneOf"):
        for branch in node.get(key) or []:
            found += _schema_node(branch, defs)
    return found


def pipeline_field_exists(field_path: str) -> bool:
    """Whether a :mod:`gftune.desired.paths` field path (``[*]`` selectors allowed) names a field a
    pipeline document can have, by the pipeline file's JSON Schema (the API's v3 document plus
    gftune's ``resources.join``)."""
    schema = _bundled("pipeline")
    defs = schema.get("$defs", {})
    try:
        steps = paths.parse(field_path)
    except paths.PathError:
        return False
    nodes = _schema_node(schema["properties"]["spec"], defs)
    for step in steps:
        following: list[Any] = []
        for node in nodes:
            if isinstance(step, paths.Key):
                child = (node.get("properties") or {}).get(step.name)
                if child is None and isinstance(node.get("additionalProperties"), dict):
                    child = node["additionalProperties"]
            else:
                child = node.get("items")
            following += _schema_node(child, defs)
        if not following:
            return False
        nodes = following
    return True
