"""``tuning.drift`` of a pipeline file: which differences from git are not drift (pure).

* ``ignore``: field-path patterns whose live value may differ from git (owned by someone else), and
  ``status`` for a pipeline that may be stopped outside gftune. ``*`` is one key, ``[*]`` any list
  item, and a pattern covers everything below it.
* ``tolerance``: numeric fields whose difference counts as drift only outside a band: a percentage
  of git's value (``10%``), an absolute number (``2``) or a quantity (``256Mi``, ``500m``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from gftune.glassflow.quantities import parse_quantity

STATUS_FIELD = "status"  # the ignore entry (and the field name in reports) for status drift


# --- rules ----------------------------------------------------------------------------------------

def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A field-path pattern: ``*`` is one key, ``[*]`` any list item; a pattern also covers what is
    below it (``resources.sink`` covers ``resources.sink.replicas``)."""
    body = re.escape(pattern).replace(r"\[\*\]", r"\[[^\]]+\]").replace(r"\*", r"[^.\[\]]+")
    return re.compile(rf"^{body}(?:$|(?=[.\[]))")


@dataclass(frozen=True)
class Tolerance:
    pattern: str
    amount: Fraction
    relative: bool  # a percentage of git's value; else an absolute amount (a number or a quantity)

    @classmethod
    def parse(cls, pattern: str, value: Any) -> Tolerance:
        """``10%``, ``2``, ``0.5`` or a quantity such as ``256Mi``/``500m``; raises ValueError."""
        if isinstance(value, bool):
            raise ValueError("a tolerance is a number, a percentage (10%) or a quantity (256Mi)")
        if isinstance(value, int | float):
            if value < 0:
                raise ValueError("a tolerance cannot be negative")
            return cls(pattern, Fraction(str(value)), False)
        text = str(value).strip()
        if text.endswith("%"):
            number = Fraction(text[:-1].strip())
            if number < 0:
                raise ValueError("a tolerance cannot be negative")
            return cls(pattern, number / 100, True)
        try:
            return cls(pattern, parse_quantity(text), False)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{text!r} is not a number, a percentage (10%) or a quantity (256Mi)") from None

    def within(self, git: Any, live: Any) -> bool:
        a, b = _number(git), _number(live)
        if a is None or b is None:
            return False
        band = self.amount * abs(a) if self.relative else self.amount
        return abs(b - a) <= band

    def describe(self) -> str:
        return f"{float(self.amount * 100):g}%" if self.relative else f"±{float(self.amount):g}"


def _number(value: Any) -> Fraction | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return Fraction(str(value))
    if isinstance(value, str):
        try:
            return parse_quantity(value.strip())
        except (ValueError, ZeroDivisionError):
            return None
    return None


@dataclass(frozen=True)
class DriftRules:
    ignore: tuple[str, ...] = ()
    tolerance: tuple[Tolerance, ...] = ()

    @classmethod
    def from_doc(cls, doc: Any) -> DriftRules:
        """From a pipeline file's ``tuning.drift`` (validated by gftune validate; bad entries are skipped)."""
        if not isinstance(doc, Mapping):
            return cls()
        ignore = tuple(str(p) for p in doc.get("ignore") or () if isinstance(p, str) and p)
        bands = []
        for pattern, value in (doc.get("tolerance") or {}).items() if isinstance(doc.get("tolerance"), Mapping) \
                else ():
            try:
                bands.append(Tolerance.parse(str(pattern), value))
            except ValueError:
                continue
        return cls(ignore, tuple(bands))

    @property
    def ignores_status(self) -> bool:
        return STATUS_FIELD in self.ignore

    def ignored(self, path: str) -> str | None:
        """The ignore pattern that covers ``path``, if any."""
        return next((p for p in self.ignore if p != STATUS_FIELD and pattern_regex(p).match(path)), None)

    def band(self, path: str) -> Tolerance | None:
        return next((t for t in self.tolerance if pattern_regex(t.pattern).match(path)), None)


def rule_problems(doc: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with a ``tuning.drift`` block beyond its JSON Schema: ``(json path, message)``."""
    from gftune.desired import paths

    problems: list[tuple[tuple[str | int, ...], str]] = []
    if not isinstance(doc, Mapping):
        return problems

    def check_pattern(where: tuple[str | int, ...], pattern: str) -> None:
        if pattern == STATUS_FIELD:
            return
        try:
            paths.parse(pattern.replace("[*]", "[any]").replace(".*.", ".any.").removesuffix(".*"))
        except paths.PathError as exc:
            problems.append((where, f"{pattern!r} is not a field path ({exc})"))

    for index, pattern in enumerate(doc.get("ignore") or ()):
        if isinstance(pattern, str):
            check_pattern(("tuning", "drift", "ignore", index), pattern)
    tolerance = doc.get("tolerance")
    if isinstance(tolerance, Mapping):
        for pattern, value in tolerance.items():
            where = ("tuning", "drift", "tolerance", str(pattern))
            if str(pattern) == STATUS_FIELD:
                problems.append((where, "status has no tolerance (ignore it instead)"))
                continue
            check_pattern(where, str(pattern))
            try:
                Tolerance.parse(str(pattern), value)
            except ValueError as exc:
                problems.append((where, str(exc)))
    return problems
