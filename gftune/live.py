"""Read the live state of many pipelines at once: the document, ``/resources`` and ``/health``.

The three GETs of a pipeline go out together and all pipelines share the client's concurrency
bound. A pipeline that cannot be read gets a :class:`LiveState` with ``error`` set (naming the
route and the answer) so that the others are still planned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gftune.client import ApiError, GlassFlowClient
from gftune.desired import secrets

Json = dict[str, Any]
Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class LiveState:
    pipeline_id: str
    exists: bool
    pipeline: Json | None = None  # GET /pipeline/{id}
    resources: Json | None = None  # GET /resources "pipeline_resources" (internal shape)
    immutable: list[str] = field(default_factory=list)  # GET /resources "fields_policy.immutable"
    status: str | None = None  # GET /health "overall_status"
    health: Json | None = None
    error: str | None = None

    @property
    def tags(self) -> list[str]:
        return [t for t in ((self.pipeline or {}).get("metadata") or {}).get("tags") or [] if isinstance(t, str)]


def _register_live_secrets(document: Json) -> None:
    """Live secrets come back in plain text (reference §2.6): make sure no output can show them."""
    for _, value in secrets.iter_secret_fields(document):
        if isinstance(value, str):
            secrets.masker.add(value)


async def read_one(client: GlassFlowClient, pipeline_id: str, *, strict: bool = False) -> LiveState:
    """The document, resources and health of one pipeline. A pipeline that none of the three routes
    knows does not exist; any other failure is recorded in ``error`` (``strict``: raised instead, so
    that a caller that retries can tell a transient answer from a permanent one)."""
    pipeline, resources, health = await asyncio.gather(
        client.get(pipeline_id), client.get_resources(pipeline_id), client.get_health(pipeline_id),
        return_exceptions=True)
    answers = (pipeline, resources, health)
    for answer in answers:
        if isinstance(answer, BaseException) and not isinstance(answer, ApiError):
            raise answer
    if isinstance(pipeline, ApiError) and pipeline.not_found and all(
            isinstance(a, ApiError) and a.not_found for a in answers):
        return LiveState(pipeline_id, exists=False)
    failures = [a for a in answers if isinstance(a, ApiError)]
    if failures and strict:
        raise failures[0]
    if failures:
        # Deleted between two GETs, or a route failing: either way this pipeline cannot be planned.
        return LiveState(pipeline_id, exists=not isinstance(pipeline, ApiError),
                         error="; ".join(str(f) for f in failures))
    assert isinstance(pipeline, dict) and isinstance(resources, dict) and isinstance(health, dict)
    _register_live_secrets(pipeline)
    policy = resources.get("fields_policy") or {}
    return LiveState(
        pipeline_id, exists=True, pipeline=pipeline, resources=resources.get("pipeline_resources") or {},
        immutable=[p for p in policy.get("immutable") or [] if isinstance(p, str)],
        status=str(health.get("overall_status") or "") or None, health=health)


async def read_status(client: GlassFlowClient, pipeline_id: str) -> LiveState:
    """Only ``/health``: what a poll that waits for a status needs (one request instead of three).
    A pipeline the API does not know does not exist; any other :class:`ApiError` is raised."""
    try:
        health = await client.get_health(pipeline_id)
    except ApiError as exc:
        if exc.not_found:
            return LiveState(pipeline_id, exists=False)
        raise
    return LiveState(pipeline_id, exists=True, status=str(health.get("overall_status") or "") or None, health=health)


async def read_live(client: GlassFlowClient, ids: Iterable[str], *,
                    progress: Progress | None = None) -> dict[str, LiveState]:
    """Every pipeline of ``ids``, concurrently (bounded by the client's ``concurrency``)."""
    ids = list(dict.fromkeys(ids))
    done = 0

    async def one(pipeline_id: str) -> LiveState:
        nonlocal done
        state = await read_one(client, pipeline_id)
        done += 1
        if progress is not None:
            progress(done, len(ids))
        return state

    states = await asyncio.gather(*(one(pid) for pid in ids))
    return {state.pipeline_id: state for state in states}


async def list_live(client: GlassFlowClient) -> list[Json]:
    """The summary rows of every live pipeline (``GET /api/v1/pipeline``)."""
    rows = await client.list()
    return [row for row in rows if isinstance(row, dict) and isinstance(row.get("pipeline_id"), str)]


def read_live_sync(config: Any, ids: Iterable[str]) -> dict[str, LiveState]:
    """:func:`read_live` for callers without an event loop (``config``: a :class:`gftune.desired.config.Config`)."""

    async def run() -> dict[str, LiveState]:
        async with GlassFlowClient.from_config(config) as client:
            return await read_live(client, ids)

    return asyncio.run(run())
