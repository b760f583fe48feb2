"""The loop every rule-based baseline runs: tick every period of simulated time until the horizon,
and what it is given to do so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from benchmarks.baselines.user import PipelineApi, PromReader

Json = dict[str, Any]


@dataclass
class Context:
    now: Callable[[], float]  # simulated seconds
    sleep: Callable[[float], None]  # simulated seconds
    horizon: float
    prom: PromReader
    api: PipelineApi
    log: TextIO
    label: str = ""
    truth: Callable[[], Json] | None = None  # the oracle's only; None for every user-side method
    events: list[Json] = field(default_factory=list)  # changes made and verdicts, for the report

    def say(self, text: str) -> None:
        self.log.write(f"[{self.label}] t={self.now():7.0f} {text}\n")
        self.log.flush()

    def change(self, changes: Json, why: str) -> Json:
        self.say(f"change {changes}: {why}")
        record = self.api.change(changes)
        record["why"] = why
        self.events.append({"kind": "change", **record})
        return record


def every(ctx: Context, period_s: float, tick: Callable[[], None]) -> None:
    """Call ``tick`` every ``period_s`` simulated seconds (a tick that acts takes as long as it takes)."""
    while ctx.now() < ctx.horizon:
        started = ctx.now()
        if ctx.api.status() == "Running":
            tick()
        ctx.sleep(min(ctx.horizon, started + period_s) - ctx.now())
