"""A policy's own PromQL, checked before anything runs it: a policy must fail closed.

A ``promql:`` condition is parsed with a real PromQL parser (the ``promql-parser`` package, a
binding of the Rust crate of that name, which follows Prometheus' grammar and type-checks function
arguments), after filling in the placeholders gftune substitutes at run time (``{pipeline_id}``,
``{namespace}``, ``{prefix}``, ``{window}``). A condition compares one number, so the expression
must be an instant vector or a scalar: a string or a range vector can never satisfy it.
"""

from __future__ import annotations

import promql_parser

from gftune.metrics.expr import Raw
from gftune.metrics.naming import Naming

# What a condition can compare: Prometheus' instant query answers these two types with numbers.
_NUMERIC = ("vector", "scalar")


def _value_type(expr: object) -> str:
    """The PromQL value type of a parsed expression (Prometheus' ``Expr.Type()``)."""
    if isinstance(expr, promql_parser.StringLiteral):
        return "string"
    if isinstance(expr, promql_parser.NumberLiteral):
        return "scalar"
    if isinstance(expr, promql_parser.MatrixSelector | promql_parser.SubqueryExpr):
        return "matrix"
    if isinstance(expr, promql_parser.ParenExpr | promql_parser.UnaryExpr):
        return _value_type(expr.expr)
    if isinstance(expr, promql_parser.Call):
        return str(expr.func.return_type).rsplit(".", 1)[-1].lower()
    if isinstance(expr, promql_parser.BinaryExpr):
        both = {_value_type(expr.lhs), _value_type(expr.rhs)}
        return "scalar" if both == {"scalar"} else "vector"
    return "vector"  # selectors and aggregations


def promql_problem(text: str) -> str | None:
    """Why ``text`` cannot be a policy condition's query (None when it can)."""
    query = Raw(text, "pipeline-id").promql(Naming(), 300.0)
    try:
        expr = promql_parser.parse(query)
    except ValueError as exc:
        return f"invalid PromQL: {exc}"
    kind = _value_type(expr)
    if kind not in _NUMERIC:
        return f"the query returns a {kind}; a condition needs an instant vector or a scalar (one number)"
    return None
