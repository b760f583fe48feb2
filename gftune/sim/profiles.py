"""Source rate profiles: records per sim second as a function of sim time (noise is added by the model)."""

from __future__ import annotations

import math
from typing import Any

PROFILE_KINDS = ("constant", "step", "ramp", "sine", "spike")


class ProfileError(ValueError):
    pass


def check_profile(profile: dict[str, Any]) -> None:
    """Raise :class:`ProfileError` naming the bad key, so scenario files get a clear message."""
    kind = profile.get("kind", "constant")
    required = {
        "constant": ("rate",),
        "step": ("rate", "to", "at"),
        "ramp": ("from", "to", "duration"),
        "sine": ("mean", "amplitude", "period"),
        "spike": ("rate", "spike_rate", "at", "duration"),
    }
    if kind not in required:
        raise ProfileError(f"unknown profile kind {kind!r}; expected one of {', '.join(PROFILE_KINDS)}")
    for key in required[kind]:
        if key not in profile:
            raise ProfileError(f"profile kind {kind!r} needs {key!r}")
    for key, value in profile.items():
        if key != "kind" and not isinstance(value, int | float):
            raise ProfileError(f"profile {key!r} must be a number, got {value!r}")


def rate_at(profile: dict[str, Any], t: float) -> float:
    """The noise-free arrival rate at sim time ``t`` (never negative)."""
    kind = profile.get("kind", "constant")
    if kind == "constant":
        rate = profile["rate"]
    elif kind == "step":
        rate = profile["to"] if t >= profile["at"] else profile["rate"]
    elif kind == "ramp":
        start = profile.get("start", 0.0)
        frac = min(1.0, max(0.0, (t - start) / profile["duration"])) if profile["duration"] > 0 else 1.0
        rate = profile["from"] + (profile["to"] - profile["from"]) * frac
    elif kind == "sine":
        phase = profile.get("phase", 0.0)
        rate = profile["mean"] + profile["amplitude"] * math.sin(2 * math.pi * (t / profile["period"]) + phase)
    elif kind == "spike":
        inside = profile["at"] <= t < profile["at"] + profile["duration"]
        rate = profile["spike_rate"] if inside else profile["rate"]
    else:  # pragma: no cover - check_profile rejects it first
        raise ProfileError(f"unknown profile kind {kind!r}")
    return max(0.0, float(rate))


def peak_rate(profile: dict[str, Any]) -> float:
    kind = profile.get("kind", "constant")
    if kind == "constant":
        return float(profile["rate"])
    if kind == "step":
        return float(max(profile["rate"], profile["to"]))
    if kind == "ramp":
        return float(max(profile["from"], profile["to"]))
    if kind == "sine":
        return float(profile["mean"] + abs(profile["amplitude"]))
    return float(max(profile["rate"], profile["spike_rate"]))
