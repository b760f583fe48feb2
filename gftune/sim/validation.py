"""Request-body validation the way huma v2 does it (reference §1.2).

``jsonschema`` decides whether a body is valid against the strict schema that ships with gftune;
huma's wording and ordering of the *first* error is reproduced by a small walk over the same
schema: properties in declaration order (a missing required property is reported where it would
be visited), then unexpected properties of that object. The message is
``<msg> (<location>: <value printed like Go's %v>)``.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from gftune.glassflow.durations import DurationError, parse_duration

Json = dict[str, Any]


@cache
def v3_schema() -> Json:
    return json.loads(resources.files("gftune").joinpath("schemas/glassflow-v3.schema.json").read_text())


def schema_for(definition: str) -> Json:
    """The strict v3 schema of one `$defs` entry (``pipeline``, ``rename_body``, ...) as a document of its own."""
    root = v3_schema()
    return {"$schema": root["$schema"], "$ref": f"#/$defs/{definition}", "$defs": root["$defs"]}


@cache
def _validator(definition: str) -> jsonschema.protocols.Validator:
    schema = schema_for(definition)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


# Small bodies of other routes, in the same dialect as the shipped schema.
EXTRA_DEFS: dict[str, Json] = {
    "rename_body": {"type": "object", "properties": {"name": {"type": "string"}},
                    "additionalProperties": False, "required": ["name"]},
    "metadata_body": {"type": "object", "properties": {"metadata": {"$ref": "#/$defs/metadata"}},
                      "additionalProperties": False, "required": ["metadata"]},
}


def _definition(name: str) -> Json:
    return EXTRA_DEFS.get(name) or v3_schema()["$defs"][name]


@cache
def _extra_validator(name: str) -> jsonschema.protocols.Validator:
    root = v3_schema()
    schema = {"$schema": root["$schema"], **EXTRA_DEFS[name], "$defs": root["$defs"]}
    return jsonschema.validators.validator_for(schema)(schema)


def canonical_keys(definition: str, body: Any) -> Any:
    """huma (like Go's encoding/json) matches property names case-insensitively: ``Pipeline_ID`` is
    ``pipeline_id``. Returns the body with known properties spelled as the schema spells them."""
    return _canonical(_definition(definition), body)


def _canonical(schema: Json, value: Any) -> Any:
    schema = _resolve(schema)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        by_lower = {name.lower(): name for name in properties}
        out = {}
        for key, item in value.items():
            name = key if key in properties else by_lower.get(key.lower(), key)
            out[name] = _canonical(properties[name], item) if name in properties else item
        return out
    if isinstance(value, list) and "items" in schema:
        return [_canonical(schema["items"], item) for item in value]
    return value


def first_error(definition: str, body: Any) -> str | None:
    """None when ``body`` is valid for ``$defs/<definition>``, else huma's first error text."""
    validator = _extra_validator(definition) if definition in EXTRA_DEFS else _validator(definition)
    if validator.is_valid(body):
        return None
    found = _walk(_definition(definition), body, "body")
    if found is None:  # the walk and jsonschema disagree: still answer, with jsonschema's reason
        error = jsonschema.exceptions.best_match(validator.iter_errors(body))
        return f"{error.message} (body: {go_repr(body)})"
    return found


def _resolve(schema: Json) -> Json:
    while "$ref" in schema:
        schema = _definition(schema["$ref"].rsplit("/", 1)[-1])
    return schema


_TYPE_CHECKS = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def _walk(schema: Json, value: Any, location: str) -> str | None:
    schema = _resolve(schema)
    types = schema.get("type")
    if types is not None:
        allowed = types if isinstance(types, list) else [types]
        if not any(_TYPE_CHECKS[t](value) for t in allowed):
            wanted = next(t for t in allowed if t != "null")
            return f"expected {wanted} ({location}: {go_repr(value)})"
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        for key, sub in properties.items():
            if key not in value:
                if key in required:
                    return f"expected required property {key} to be present ({location}: {go_repr(value)})"
                continue
            found = _walk(sub, value[key], f"{location}.{key}")
            if found:
                return found
        if schema.get("additionalProperties") is False:
            for key in value:
                if key not in properties:
                    return f"unexpected property ({location}.{key}: {go_repr(value[key])})"
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found = _walk(schema["items"], item, f"{location}[{index}]")
            if found:
                return found
    elif isinstance(value, str) and len(value) < schema.get("minLength", 0):
        return f"expected length >= {schema['minLength']} ({location}: {value})"
    return None


def duration_error(doc: Json) -> str | None:
    """The API's duration fields are Go durations decoded with the body: a string that does not parse
    fails before any handler runs (422, ``validation failed: unable to parse as duration``)."""
    candidates: list[tuple[str, Any]] = [("body.sink.max_delay_time", (doc.get("sink") or {}).get("max_delay_time"))]
    for i, transform in enumerate(doc.get("transforms") or []):
        config = transform.get("config") or {}
        candidates.append((f"body.transforms[{i}].config.time_window", config.get("time_window")))
    join = doc.get("join") or {}
    for side in ("left_source", "right_source"):
        candidates.append((f"body.join.{side}.time_window", (join.get(side) or {}).get("time_window")))
    for location, value in candidates:
        if isinstance(value, str) and value:
            try:
                parse_duration(value, allow_days=True)
            except DurationError as exc:
                return f"unable to parse as duration: {exc} ({location}: {value})"
    return None


# --- Go's %v -----------------------------------------------------------------------------------

def go_repr(value: Any) -> str:
    """How Go's ``fmt`` prints a value decoded from JSON into ``any`` (numbers are float64)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return go_float(float(value))
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + " ".join(go_repr(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_repr(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def go_float(number: float) -> str:
    """``fmt.Sprint(float64)``, i.e. ``strconv.FormatFloat(f, 'g', -1, 64)``: shortest digits, %e form
    when the decimal exponent is < -4 or >= max(6, digits) (so 1e6 prints as ``1e+06``)."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    mantissa, _, exp_text = repr(abs(number)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    leading_zeros = len(whole + frac) - len(digits)
    point = len(whole) - leading_zeros + (int(exp_text) if exp_text else 0)  # digits x 10^(point - len)
    digits = digits.rstrip("0")
    eprec = 6
    if eprec > len(digits) and len(digits) >= point:
        eprec = len(digits)
    exponent = point - 1
    if exponent < -4 or exponent >= eprec:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if point <= 0:
        return sign + "0." + "0" * -point + digits
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return sign + digits[:point] + "." + digits[point:]
