"""The oracle: the minimum sufficient configuration for the current load (the simulator's truth,
``min_config``), applied in one change-set once it has been the same for one metrics window.

It is the cost floor, not the backlog floor: it sizes every stage to utilisation <= 0.85 of the
load, so a backlog built up before the change drains with the 15% left over; it never buys
catch-up capacity. Detection is one window (60 s, as anchors-tuning §11.1 describes the oracle
controller: one window to detect, no thinking time, the real actuation cost).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from benchmarks.baselines.loop import Context, every

Json = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    period_s: float = 15.0
    detect_s: float = 60.0


@dataclass
class Watch:
    """The wanted change-set and since when it has been the same."""

    wanted: str = ""
    since: float = 0.0


def wanted_changes(min_config: Json) -> Json:
    """The fields whose minimum-sufficient value differs from the live one, to those values."""
    changes = min_config.get("changes") or {}
    return {path: change["to"] for path, change in changes.items()}


def due(changes: Json, now: float, watch: Watch, settings: Settings) -> bool:
    """Whether the change-set has been wanted, unchanged, for a whole detection window."""
    key = json.dumps(changes, sort_keys=True, default=str)
    if key != watch.wanted:
        watch.wanted, watch.since = key, now
    return bool(changes) and now - watch.since >= settings.detect_s


def run(ctx: Context, settings: Settings = Settings()) -> None:
    if ctx.truth is None:
        raise ValueError("the oracle needs the simulator's truth")
    watch = Watch()

    def tick() -> None:
        truth = ctx.truth()
        changes = wanted_changes(truth["min_config"])
        if due(changes, ctx.now(), watch, settings):
            ctx.change(changes, f"minimum sufficient configuration for {truth['load']['source_total']:,.0f}/s")
            watch.wanted = ""

    every(ctx, settings.period_s, tick)
