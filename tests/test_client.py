"""The async API client against the simulator: typed errors, retries with backoff, timeouts, bound."""

from __future__ import annotations

import asyncio
import copy
import time

import httpx
import pytest

from gftune.client import ApiError, GlassFlowClient
from gftune.desired import secrets
from gftune.live import read_live
from tests.support.documents import live_doc

PIPE = "orders-dedup"


def document():
    doc = live_doc()
    doc.pop("resources")
    doc["sink"]["connection_params"]["password"] = "client-test-password"
    return doc


def run(coro):
    return asyncio.run(coro)


async def _created(api_url: str) -> None:
    async with GlassFlowClient(api_url) as api:
        await api.create(document())


def test_routes_and_typed_errors(sim):
    async def scenario():
        async with GlassFlowClient(sim.api_url, retries=0) as api:
            assert await api.list() == []
            await api.create(document())
            with pytest.raises(ApiError) as conflict:
                await api.create(document())
            assert (conflict.value.status, conflict.value.code) == (409, "conflict")
            assert (await api.get(PIPE))["pipeline_id"] == PIPE
            body = await api.get_resources(PIPE)
            assert "pipeline_resources" in body and "immutable" in body["fields_policy"]
            assert (await api.get_resources_validation(PIPE))["fields_policy"]["immutable"]
            assert (await api.get_health(PIPE))["pipeline_id"] == PIPE
            await api.patch_metadata(PIPE, ["a", "gftune:managed"])
            await api.rename(PIPE, "Renamed")
            row = (await api.list())[0]
            assert row["metadata"]["tags"] == ["a", "gftune:managed"] and row["name"] == "Renamed"
            with pytest.raises(ApiError) as missing:
                await api.get("no-such-pipeline")
            assert missing.value.not_found and "does not exist" in missing.value.message
            with pytest.raises(ApiError) as invalid:
                await api.create({"version": "v3", "pipeline_id": "x"})
            assert invalid.value.status == 422
            with pytest.raises(ApiError) as unknown_route:
                await api.request("GET", "/api/v1/nothing-here")
            assert unknown_route.value.status == 404 and "404 page not found" in unknown_route.value.message
            assert await api.exists(PIPE) and not await api.exists("no-such-pipeline")

    run(scenario())


def test_status_operations(sim_factory):
    sim = sim_factory(time_scale=200)

    async def wait(api, status):
        for _ in range(500):
            if await api.status(PIPE) == status:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"never {status}")

    async def scenario():
        async with GlassFlowClient(sim.api_url) as api:
            await api.create(document())
            await wait(api, "Running")
            with pytest.raises(ApiError) as wrong:
                await api.resume(PIPE)
            assert (wrong.value.status, wrong.value.code) == (400, "INVALID_STATUS_TRANSITION")
            assert wrong.value.details["current_status"] == "Running"
            await api.stop(PIPE)
            await wait(api, "Stopped")
            body = (await api.get_resources(PIPE))["pipeline_resources"]
            body["sink"]["replicas"] = 2
            await api.put_resources(PIPE, body)
            await wait(api, "Running")  # the operator resumes after PUT
            await api.terminate(PIPE)
            await wait(api, "Stopped")
            edited = document() | {"name": "edited"}
            await api.edit(PIPE, edited)
            await wait(api, "Running")
            assert (await api.get(PIPE))["name"] == "edited"
            await api.stop(PIPE)
            await wait(api, "Stopped")
            await api.delete(PIPE)
            for _ in range(500):
                if not await api.exists(PIPE):
                    break
                await asyncio.sleep(0.01)
            assert not await api.exists(PIPE)

    run(scenario())


def test_5xx_on_a_read_is_retried(sim):
    run(_created(sim.api_url))
    sim.add_fault({"kind": "http_error", "route": "GET /api/v1/pipeline/{id}/resources", "status": 503, "times": 2})

    async def scenario():
        async with GlassFlowClient(sim.api_url, retries=2, backoff=0.01) as api:
            return await api.get_resources(PIPE)

    assert "pipeline_resources" in run(scenario())


def test_5xx_on_a_write_is_not_retried(sim):
    run(_created(sim.api_url))
    sim.add_fault({"kind": "http_error", "route": "PATCH /api/v1/pipeline/{id}/metadata", "status": 500,
                   "times": 1})
    sim.add_fault({"kind": "http_error", "route": "POST /api/v1/pipeline/{id}/stop", "status": 502, "times": 1})

    async def scenario():
        async with GlassFlowClient(sim.api_url, retries=3, backoff=0.01) as api:
            await api.patch_metadata(PIPE, ["x"])  # idempotent: retried
            with pytest.raises(ApiError) as failed:
                await api.stop(PIPE)  # not idempotent: the caller decides
            return failed.value

    error = run(scenario())
    assert error.status == 502 and error.retryable


def test_retries_give_up_with_the_last_answer(sim):
    run(_created(sim.api_url))
    sim.add_fault({"kind": "http_error", "route": "GET /api/v1/pipeline/{id}/health", "status": 503})

    async def scenario():
        async with GlassFlowClient(sim.api_url, retries=2, backoff=0.01) as api:
            return await read_live(api, [PIPE])

    state = run(scenario())[PIPE]
    assert state.error and "503" in state.error and "/health" in state.error
    assert sim.clear_faults() == 1


def test_timeouts_are_transport_errors(sim):
    run(_created(sim.api_url))
    sim.add_fault({"kind": "timeout", "route": "GET /api/v1/pipeline/{id}", "seconds": 3, "times": 2})

    async def scenario():
        async with GlassFlowClient(sim.api_url, timeout=0.3, retries=1, backoff=0.01) as api:
            return await api.get(PIPE)

    started = time.monotonic()
    with pytest.raises(ApiError) as timed_out:
        run(scenario())
    assert timed_out.value.transport and "2 attempt" in timed_out.value.message
    assert time.monotonic() - started < 2.5


def test_connection_refused_is_named():
    async def scenario():
        async with GlassFlowClient("http://127.0.0.1:9", retries=1, backoff=0.01) as api:
            await api.list()

    with pytest.raises(ApiError) as refused:
        run(scenario())
    assert refused.value.transport and "GET /api/v1/pipeline" in str(refused.value)


def test_error_text_never_shows_a_secret(sim):
    secret = "client-test-password"
    secrets.masker.add(secret)
    bad = copy.deepcopy(document())
    del bad["sink"]["connection_params"]["http_port"]  # huma prints the whole object in its message

    async def scenario():
        async with GlassFlowClient(sim.api_url) as api:
            await api.create(bad)

    with pytest.raises(ApiError) as rejected:
        run(scenario())
    error = rejected.value
    assert error.status == 422 and "***" in error.message  # the answer echoed it: masked on arrival
    assert secret not in str(error) and secret not in error.message and secret not in repr(error.details)


def test_concurrency_is_bounded(sim):
    class Counting(httpx.AsyncBaseTransport):
        """The real transport, counting the requests in flight through it."""

        def __init__(self) -> None:
            self.inner, self.in_flight, self.peak = httpx.AsyncHTTPTransport(), 0, 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                return await self.inner.handle_async_request(request)
            finally:
                self.in_flight -= 1

        async def aclose(self) -> None:
            await self.inner.aclose()

    async def scenario():
        transport = Counting()
        async with GlassFlowClient(sim.api_url, concurrency=3, transport=transport) as api:
            await asyncio.gather(*(api.list() for _ in range(30)))
        return transport.peak

    assert run(scenario()) == 3
