"""Talking to the simulator's GlassFlow API from tests, through gftune's own client: a synchronous
facade for assertions, and the suite's one wait for a pipeline status (a wait on a condition)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from gftune.client import GlassFlowClient


def api(api_url: str) -> Any:
    """A synchronous facade over the async client: ``api(url).get("orders")``."""

    class Sync:
        def __getattr__(self, name: str) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                async def run() -> Any:
                    async with GlassFlowClient(api_url) as client:
                        return await getattr(client, name)(*args, **kwargs)

                return asyncio.run(run())

            return call

    return Sync()


def status(api_url: str, pipeline_id: str) -> str:
    return api(api_url).status(pipeline_id)


def wait_status(api_url: str, pipeline_id: str, wanted: str, timeout: float = 30.0) -> None:
    """Until the pipeline's ``overall_status`` is ``wanted``; fails naming the last one after ``timeout``."""
    deadline = time.monotonic() + timeout
    current = status(api_url, pipeline_id)
    while current != wanted:
        assert time.monotonic() < deadline, f"{pipeline_id} stayed {current}, expected {wanted}"
        time.sleep(0.02)
        current = status(api_url, pipeline_id)
