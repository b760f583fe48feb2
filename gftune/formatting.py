"""How gftune writes measured numbers and durations for people: plans, policy notes and evidence,
reports, lock descriptions. One way each, so that the same value reads the same everywhere.

(Configuration values are shown as JSON, :func:`gftune.plan.render.value`; Go durations as the API
returns them are :func:`gftune.glassflow.durations.format_duration`; a PromQL range is
:func:`gftune.metrics.expr.format_window`: those are formats of other systems, not prose.)
"""

from __future__ import annotations

# A measured value's unit -> how it is written after the number ("5,200/s"); others get " <unit>".
_SUFFIX = {"records/s": "/s", "1/s": "/s", "records": "", "ratio": "", "0/1": "", "s": " s"}


def number(value: float | None, unit: str = "") -> str:
    """A measured value: ``5,200/s``, ``0.35``, ``1.5 s``; ``unknown`` when there is none (never 0)."""
    if value is None:
        return "unknown"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1 or value == 0:
        text = f"{value:,.2f}".rstrip("0").rstrip(".")
    else:
        text = f"{value:.3g}"
    return text + _SUFFIX.get(unit, f" {unit}" if unit else "")


def duration(seconds: float | None) -> str:
    """A duration, compact: ``0.25s``, ``12.3s``, ``90s``, ``1m``, ``5m``, ``3m05s``, ``1h``, ``2h05m``;
    ``—`` when unknown. Seconds below two minutes (unless a whole minute), then minutes and seconds,
    then hours and minutes; a zero last part is left out (``5m``, not ``5m00s``)."""
    if seconds is None:
        return "—"
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 10:
        return f"{sign}{seconds:.3g}s"
    if seconds < 120 and not (seconds >= 60 and seconds % 60 == 0):
        return f"{sign}{round(seconds, 1):g}s"
    whole = round(seconds)
    if whole < 7200 and whole % 3600:
        minutes, rest = divmod(whole, 60)
        return f"{sign}{minutes}m" + (f"{rest:02d}s" if rest else "")
    hours, minutes = divmod(round(whole / 60), 60)
    return f"{sign}{hours}h" + (f"{minutes:02d}m" if minutes else "")
