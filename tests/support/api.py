"""Talking to the simulator's GlassFlow API from tests: a synchronous facade over gftune's own client
for assertions, the suite's one wait for a pipeline status (a wait on a condition), and what someone
does by hand through the API or UI (stop a pipeline, edit it), which gftune must notice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from gftune.client import GlassFlowClient
from gftune.desired import paths


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


def live(api_url: str, pipeline_id: str, route: str = "") -> dict[str, Any]:
    """The pipeline as the API serves it (``route``: ``/resources``, ``/health``), as plain JSON."""
    return httpx.get(f"{api_url}/api/v1/pipeline/{pipeline_id}{route}", timeout=10).json()


def stop_by_hand(api_url: str, pipeline_id: str) -> None:
    """An operator stops the pipeline through the API; returns once it is Stopped."""
    answer = httpx.post(f"{api_url}/api/v1/pipeline/{pipeline_id}/stop", timeout=10)
    assert answer.status_code < 300, answer.text
    wait_status(api_url, pipeline_id, "Stopped")


def edit_by_hand(api_url: str, pipeline_id: str, changes: dict[str, Any], *, metadata: bool = True) -> None:
    """What someone does through the API or UI: stop, POST /edit with ``changes`` (field paths as gftune
    names them), and the pipeline runs again. Without ``metadata`` in the body the server drops the
    pipeline's tags, gftune's included."""
    doc = live(api_url, pipeline_id)
    for field_path, value in changes.items():
        paths.set_value(doc, field_path, value)
    if not metadata:
        doc.pop("metadata", None)
    stop_by_hand(api_url, pipeline_id)
    answer = httpx.post(f"{api_url}/api/v1/pipeline/{pipeline_id}/edit", json=doc, timeout=10)
    assert answer.status_code < 300, answer.text
    wait_status(api_url, pipeline_id, "Running")
