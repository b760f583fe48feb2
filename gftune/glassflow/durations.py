"""Go duration strings, as the GlassFlow API parses and prints them.

The API stores durations as Go ``time.Duration`` and prints them with ``Duration.String()``,
so ``"60s"`` comes back as ``"1m0s"`` and ``"1d"`` as ``"24h0m0s"``. Config durations
(``time_window``, ``max_delay_time``) also accept a ``d`` (day) unit; ``nats.stream.maxAge``
does not. Durations are handled here as integer nanoseconds, like Go does, so that
round-tripping never loses precision.
"""

from __future__ import annotations

import re

NANOSECOND = 1
MICROSECOND = 1_000
MILLISECOND = 1_000_000
SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "µs": MICROSECOND,  # U+00B5 micro sign
    "μs": MICROSECOND,  # U+03BC greek mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_MAX_NS = (1 << 63) - 1
_TERM = re.compile(r"(\d*)(?:\.(\d*))?([a-zµμ]+)")


class DurationError(ValueError):
    """A string that Go's ``time.ParseDuration`` would reject."""


def parse_duration(text: str, *, allow_days: bool = False) -> int:
    """Parse a Go duration string into nanoseconds.

    ``allow_days`` adds the ``d`` unit that GlassFlow accepts for config durations.
    Raises :class:`DurationError` with Go's wording for anything Go would reject.
    """
    if not isinstance(text, str):
        raise DurationError(f"time: invalid duration {text!r}")
    original = text
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise DurationError(f'time: invalid duration "{original}"')
    total = 0
    pos = 0
    while pos < len(text):
        match = _TERM.match(text, pos)
        if not match or (not match.group(1) and not match.group(2)):
            raise DurationError(f'time: invalid duration "{original}"')
        whole, frac, unit = match.group(1), match.group(2) or "", match.group(3)
        if unit == "d" and allow_days:
            scale = DAY
        elif unit in _UNITS:
            scale = _UNITS[unit]
        elif unit.startswith(tuple(_UNITS)) or unit == "d":
            raise DurationError(f'time: unknown unit "{unit}" in duration "{original}"')
        else:
            raise DurationError(f'time: unknown unit "{unit}" in duration "{original}"')
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // (10 ** len(frac))
        total += value
        if total > _MAX_NS:
            raise DurationError(f'time: invalid duration "{original}"')
        pos = match.end()
    return sign * total


def is_valid_duration(text: object, *, allow_days: bool = False) -> bool:
    try:
        parse_duration(text, allow_days=allow_days)  # type: ignore[arg-type]
    except DurationError:
        return False
    return True


def format_duration(nanoseconds: int) -> str:
    """Format nanoseconds exactly as Go's ``Duration.String()`` does."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    ns = abs(nanoseconds)
    if ns < SECOND:
        for unit, scale in (("ms", MILLISECOND), ("µs", MICROSECOND), ("ns", NANOSECOND)):
            if ns >= scale:
                return sign + _fixed(ns, scale) + unit
    hours, rest = divmod(ns, HOUR)
    minutes, rest = divmod(rest, MINUTE)
    seconds = _fixed(rest, SECOND)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{seconds}s"


def _fixed(value: int, scale: int) -> str:
    whole, frac = divmod(value, scale)
    if not frac:
        return str(whole)
    digits = len(str(scale)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def normalize_duration(text: str, *, allow_days: bool = False) -> str:
    """The string the API returns on GET for a duration that was sent as ``text``."""
    return format_duration(parse_duration(text, allow_days=allow_days))


def to_seconds(text: str, *, allow_days: bool = True) -> float:
    return parse_duration(text, allow_days=allow_days) / SECOND


def api_duration(value: object, *, zero_as: str | None = None) -> object:
    """What GET returns for a config duration that was stored as ``value``.

    Anything that is not a valid duration string comes back unchanged (validation reports it
    elsewhere; comparing raw text is the honest fallback). ``zero_as`` replaces a zero duration,
    e.g. ``max_delay_time`` where the API turns ``0s`` into ``1m0s``.
    """
    if not isinstance(value, str):
        return value
    try:
        text = normalize_duration(value, allow_days=True)
    except DurationError:
        return value
    return zero_as if zero_as is not None and text == "0s" else text
