"""What every part of the executor shares: the context of a run (the API client, the settings, the
journal store, the metric source, the clock), the two ways a step fails, and reading one pipeline
with retries on transient answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gftune.apply import lock
from gftune.apply.journal import JournalStore
from gftune.client import ApiError, GlassFlowClient
from gftune.desired import secrets
from gftune.desired.config import Config
from gftune.live import LiveState, read_one, read_status

Json = dict[str, Any]

# 400/409 answers that mean "the status moved under us": observe again and decide again.
STATE_RACE_CODES = frozenset({"PIPELINE_IN_TRANSITION", "PIPELINE_NOT_STOPPED_FOR_EDIT", "PIPELINE_ALREADY_IN_STATE",
                              "INVALID_STATUS_TRANSITION"})


def is_transient(error: ApiError) -> bool:
    """Transport errors, 5xx, and state races (the status moved between our read and our call)."""
    if error.status == 0 or error.status >= 500:
        return True
    return error.status in (400, 409) and error.code in STATE_RACE_CODES


class StepFailed(Exception):
    """A step cannot complete; ``permanent`` errors are not retried."""


class Refused(StepFailed):
    """The pipeline must not be touched (stale, locked by someone else)."""


class Reporter(Protocol):
    def event(self, pipeline_id: str, message: str) -> None: ...

    def waiting(self, pipeline_id: str, what: str, elapsed: float, timeout: float | None,
                status: str | None) -> None: ...


class QuietReporter:
    def event(self, pipeline_id: str, message: str) -> None:
        pass

    def waiting(self, pipeline_id: str, what: str, elapsed: float, timeout: float | None,
                status: str | None) -> None:
        pass


@dataclass
class ApplyContext:
    client: GlassFlowClient
    config: Config
    store: JournalStore
    metrics: Any = None  # a gftune.metrics MetricSource, or None (health-only verification)
    owner: str = field(default_factory=lock.default_owner)
    # what ${env:}/${file:} references stand for (secrets.Resolver): the edge that reads them
    resolver: Callable[[str], str] = field(default_factory=lambda: secrets.Resolver({}, base_dir=Path(".")))
    reporter: Reporter = field(default_factory=QuietReporter)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    lock_settle_s: float = 0.5  # an HTTP race window, not a simulated duration: never time-scaled
    max_attempts: int = 6

    def scaled(self, seconds: float) -> float:
        return self.config.scaled(seconds)

    @property
    def poll_s(self) -> float:
        return min(2.0, max(0.05, self.scaled(2.0)))

    async def retrying(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call()``, again after a growing pause while the API answers with a transient error."""
        delay = self.scaled(1.0)
        for attempt in range(self.max_attempts):
            try:
                return await call()
            except ApiError as exc:
                if not is_transient(exc) or attempt == self.max_attempts - 1:
                    raise StepFailed(f"{what}: {exc}") from None
            await self.sleep(max(0.05, delay))
            delay = min(delay * 2, self.scaled(16.0))
        raise AssertionError("unreachable")

    async def read(self, pipeline_id: str, *, docs: bool) -> LiveState:
        """The live pipeline (with its document and resources when ``docs``; else only its status)."""
        if docs:
            return await self.retrying(f"GET {pipeline_id}", lambda: read_one(self.client, pipeline_id, strict=True))
        return await self.retrying(f"GET {pipeline_id} health", lambda: read_status(self.client, pipeline_id))
