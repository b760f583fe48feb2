"""The official SDK (glassflow==4.1.0) as an independent client: a full lifecycle, and every error
class it maps, provoked against the simulator (reference clients §3, §5, §7)."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from tests.sim.helpers import dedup_doc, wait_status

CONFIG = dedup_doc("sdk-orders", name="SDK Orders", patch={"sink": {"max_delay_time": "1s"}})


@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    """Import the SDK with a throwaway HOME (it writes ~/.glassflow/clickhouse.conf on import) and
    usage statistics off (reference clients §7)."""
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(tmp_path_factory.mktemp("gf-home"))
    os.environ["GF_USAGESTATS_ENABLED"] = "false"
    try:
        import glassflow.etl as sdk_module
        from glassflow.etl import errors
    finally:
        if old_home is not None:
            os.environ["HOME"] = old_home
    return sdk_module, errors


@pytest.fixture
def env(sdk, sim_factory):
    sdk_module, errors = sdk
    sim = sim_factory(time_scale=20, delays={"create": 2, "stop": 2, "resume": 4, "terminate": 2, "delete": 1})
    client = sdk_module.Client(host=sim.api_url)
    client.disable_usagestats()
    import httpx

    with httpx.Client(base_url=sim.api_url) as raw:
        yield SimpleNamespace(client=client, errors=errors, raw=raw, sim=sim)


def test_full_lifecycle(env):
    client, errors, raw = env.client, env.errors, env.raw
    client.create_pipeline(CONFIG)
    wait_status(raw, "sdk-orders", "Running")
    assert "sdk-orders" in [p["pipeline_id"] for p in client.list_pipelines()]
    pipeline = client.get_pipeline("sdk-orders")
    assert pipeline.config.pipeline_id == "sdk-orders"
    assert pipeline.health()["overall_status"] == "Running"

    pipeline.stop()
    wait_status(raw, "sdk-orders", "Stopped")
    pipeline.update({"sink": {"max_batch_size": 5000}})  # GET, GET health, POST /edit with the full config
    wait_status(raw, "sdk-orders", "Running")  # the operator resumes after an edit
    assert client.get_pipeline("sdk-orders").config.sink.max_batch_size == 5000

    pipeline.stop()
    wait_status(raw, "sdk-orders", "Stopped")
    pipeline.resume()
    wait_status(raw, "sdk-orders", "Running")

    state = pipeline.dlq.state()
    assert state["total_messages"] == 0 and state["unconsumed_messages"] == 0

    client.stop_pipeline("sdk-orders", terminate=True)
    wait_status(raw, "sdk-orders", "Stopped")
    client.delete_pipeline("sdk-orders")
    deadline = time.monotonic() + 10
    while True:
        try:
            client.get_pipeline("sdk-orders")
        except errors.PipelineNotFoundError:
            break
        assert time.monotonic() < deadline, "the deleted pipeline never went away"
        time.sleep(0.05)


def test_each_error_class_the_sdk_maps(env):
    client, errors, raw = env.client, env.errors, env.raw
    client.create_pipeline(CONFIG)
    # duplicate: the real API answers 409 conflict (the SDK's PipelineAlreadyExistsError is for 403)
    with pytest.raises(errors.ConflictError):
        client.create_pipeline(CONFIG)
    # 400 state codes, each to its own exception class
    env.sim.add_fault({"kind": "stuck_transition", "operation": "create", "pipeline": "sdk-created"})
    client.create_pipeline({**CONFIG, "pipeline_id": "sdk-created"})
    with pytest.raises(errors.InvalidStatusTransitionError):
        client.stop_pipeline("sdk-created")  # Created -> Stopping is not a valid transition
    wait_status(raw, "sdk-orders", "Running")
    pipeline = client.get_pipeline("sdk-orders")
    with pytest.raises(errors.InvalidStatusTransitionError):
        pipeline.resume()  # Running -> Resuming
    pipeline.stop()
    with pytest.raises(errors.PipelineAlreadyInStateError):
        pipeline.stop()  # already Stopping
    with pytest.raises(errors.PipelineInTransitionError):
        pipeline.resume()  # Stopping is a transition
    # delete while not stopped: the backend's message does not match the SDK's prefix check
    client.create_pipeline({**CONFIG, "pipeline_id": "sdk-running"})
    with pytest.raises(errors.ValidationError) as excinfo:
        client.delete_pipeline("sdk-running")
    assert "can only be deleted if it's stopped" in str(excinfo.value)
    # 404
    with pytest.raises(errors.PipelineNotFoundError):
        client.get_pipeline("no-such-pipeline")
    # 422: valid for the SDK, refused by the API's model rules (details.error is appended)
    bad = {**CONFIG, "pipeline_id": "sdk-bad", "sink": {**CONFIG["sink"], "connection_params": {
        **CONFIG["sink"]["connection_params"], "password": ""}}}
    with pytest.raises(errors.PipelineInvalidConfigurationError) as excinfo:
        client.create_pipeline(bad)
    assert "clickhouse password cannot be empty" in str(excinfo.value)


def test_the_sdk_wire_format_is_accepted_and_get_returns_schema_fields(env):
    client, raw = env.client, env.raw
    client.create_pipeline(CONFIG)  # SDK 4.1.0 sends sources[].schema.fields and skip_tls_verification
    got = raw.get("/api/v1/pipeline/sdk-orders").json()
    assert "schema" not in got["sources"][0]
    assert got["sources"][0]["schema_fields"] == CONFIG["sources"][0]["schema_fields"]
    assert got["sources"][0]["connection_params"]["skip_tls_verification"] is False
