"""The simulator answers like the real API (reference §1.2-§1.5, §2.6, §3.3-§3.5)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.sim.helpers import dedup_doc, orders_doc, wait_gone, wait_status


@pytest.fixture
def api(sim_factory):
    # quick create/stop; resume keeps its 10 s (0.5 s wall) so that Resuming is observable
    sim = sim_factory(time_scale=20, delays={"create": 2, "stop": 1, "terminate": 1})
    with httpx.Client(base_url=sim.api_url, timeout=10) as client:
        yield client


def _running(api, doc):
    assert api.post("/api/v1/pipeline", json=doc).status_code == 200
    wait_status(api, doc["pipeline_id"], "Running")


def _stopped(api, doc):
    _running(api, doc)
    assert api.post(f"/api/v1/pipeline/{doc['pipeline_id']}/stop").status_code == 200
    wait_status(api, doc["pipeline_id"], "Stopped")


# --- edges of the HTTP surface -------------------------------------------------------------------

def test_liveness_platform_and_router_edges(api):
    v1 = api.get("/api/v1/healthz")
    assert (v1.status_code, v1.content) == (200, b"")
    assert api.get("/api/v2/healthz").json() == {"status": "ok"}
    assert api.get("/api/v1/platform").json() == {"orchestrator": "k8s"}
    unknown = api.get("/api/v1/nope")
    assert (unknown.status_code, unknown.text) == (404, "404 page not found\n")
    assert unknown.headers["content-type"].startswith("text/plain")
    wrong_method = api.put("/api/v1/pipeline")
    assert (wrong_method.status_code, wrong_method.content) == (405, b"")
    not_simulated = api.post("/api/v1/pipeline/migrate-preview", json={})
    assert (not_simulated.status_code, not_simulated.json()["code"]) == (501, "not_implemented")


def test_create_returns_empty_object_and_list_rows_have_the_api_shape(api):
    created = api.post("/api/v1/pipeline", json=dedup_doc(metadata={"tags": ["team-a"]}))
    assert (created.status_code, created.json()) == (200, {})
    [row] = api.get("/api/v1/pipeline").json()
    assert set(row) == {"pipeline_id", "name", "transformation_type", "created_at", "updated_at", "status", "metadata"}
    assert row["transformation_type"] == "Deduplication"
    assert row["status"] == "Created"
    assert row["metadata"] == {"tags": ["team-a"]}
    assert row["created_at"].endswith("Z")
    health = api.get("/api/v1/pipeline/orders-dedup-test/health").json()
    assert set(health) == {"pipeline_id", "pipeline_name", "overall_status", "created_at", "updated_at"}
    assert health["pipeline_name"] == "Orders"


def test_duplicate_create_is_a_409_conflict(api):
    api.post("/api/v1/pipeline", json=orders_doc())
    again = api.post("/api/v1/pipeline", json=orders_doc())
    assert (again.status_code, again.json()) == (
        409, {"status": 409, "code": "conflict", "message": "pipeline with this ID already exists"})


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["sink"]["connection_params"].pop("http_port"),
     "validation failed: expected required property http_port to be present (body.sink.connection_params: "
     "map[database:default host:ch password:pw port:9000 secure:false username:default])"),
    (lambda d: d.update(resources={"nats": {"stream": {"max_age": "24h"}}}),
     "validation failed: unexpected property (body.resources.nats.stream.max_age: 24h)"),
    (lambda d: d["sink"].update(max_batch_size="1000"),
     "validation failed: expected integer (body.sink.max_batch_size: 1000)"),
    (lambda d: d.pop("name"),
     "validation failed: expected required property name to be present (body: map[pipeline_id:orders-test "
     "sink:map[connection_params:map[database:default host:ch http_port:8123 password:pw port:9000 secure:false "
     "username:default] mapping:[map[column_name:order_id column_type:String name:order_id] map[column_name:amount "
     "column_type:Float64 name:amount]] max_batch_size:1000 max_delay_time:60s table:orders type:clickhouse] "
     "sources:[map[connection_params:map[brokers:[kafka:9092] mechanism:NO_AUTH protocol:PLAINTEXT] "
     "schema_fields:[map[name:order_id type:string] map[name:amount type:float]] source_id:orders topic:orders "
     "type:kafka]] version:v3])"),
    (lambda d: d["sink"].update(max_delay_time="abc"),
     'validation failed: unable to parse as duration: time: invalid duration "abc" (body.sink.max_delay_time: abc)'),
])
def test_schema_violations_are_huma_422s_with_an_empty_code(api, mutate, message):
    doc = orders_doc()
    mutate(doc)
    response = api.post("/api/v1/pipeline", json=doc)
    assert response.status_code == 422
    assert response.json() == {"status": 422, "code": "", "message": message}


def test_property_names_match_case_insensitively_like_huma(api):
    doc = orders_doc()
    doc["Pipeline_ID"] = doc.pop("pipeline_id")
    doc["sink"]["Max_Batch_Size"] = doc["sink"].pop("max_batch_size")
    assert api.post("/api/v1/pipeline", json=doc).status_code == 200
    assert api.get("/api/v1/pipeline/orders-test").json()["sink"]["max_batch_size"] == 1000


def test_model_violations_are_422_with_details_error(api):
    response = api.post("/api/v1/pipeline", json=orders_doc("abc"))
    assert response.status_code == 422
    assert response.json() == {"status": 422, "code": "unprocessable_entity",
                               "message": "failed to convert request to pipeline model",
                               "details": {"error": "pipeline ID must be at least 5 characters"}}
    empty_password = orders_doc(patch={"sink": {"connection_params": {"password": ""}}})
    assert api.post("/api/v1/pipeline", json=empty_password).json()["details"] == {
        "error": "clickhouse password cannot be empty"}


def test_storage_id_rules_are_a_400(api):
    response = api.post("/api/v1/pipeline", json=orders_doc("Orders-Upper"))
    assert (response.status_code, response.json()) == (
        400, {"status": 400, "code": "bad_request", "message": "pipeline id is invalid"})


def test_resource_quantity_errors_are_422_without_details(api):
    doc = orders_doc(resources={"sink": {"limits": {"cpu": "abc"}}})
    body = api.post("/api/v1/pipeline", json=doc).json()
    assert body["status"] == 422 and body["code"] == "unprocessable_entity" and "details" not in body
    assert body["message"].startswith('validate pipeline resources: invalid pipeline resources: invalid cpu quantity "abc"')


def test_malformed_json_is_a_400(api):
    response = api.post("/api/v1/pipeline", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("validation failed: invalid character 'n'")
    assert response.json()["message"].endswith("(body: {nope)")


# --- GET normalisation (§2.6) ----------------------------------------------------------------------

def test_get_normalises_like_the_server(api):
    doc = orders_doc("orders-norm", patch={"sink": {"max_delay_time": "90s"}})
    doc["transforms"] = [
        {"type": "stateless", "source_id": "orders",
         "config": {"transforms": [{"expression": "amount * 2", "output_name": "double", "output_type": "float"}]}},
        {"type": "filter", "source_id": "orders", "config": {"expression": "amount > 1"}},
        {"type": "dedup", "source_id": "orders", "config": {"key": "order_id", "time_window": "1d"}},
    ]
    doc["sink"]["mapping"] = [{"name": "double", "column_name": "double", "column_type": "Float64"}]
    doc["sources"][0]["consumer_group_initial_offset"] = "LATEST"
    assert api.post("/api/v1/pipeline", json=doc).status_code == 200
    got = api.get("/api/v1/pipeline/orders-norm").json()
    assert list(got) == ["version", "pipeline_id", "name", "sources", "transforms", "sink", "metadata", "resources"]
    source = got["sources"][0]
    assert source["consumer_group_initial_offset"] == "latest"
    assert source["schema_version"] == "1"
    assert [t["type"] for t in got["transforms"]] == ["dedup", "filter", "stateless"]
    assert got["transforms"][0]["config"] == {"key": "order_id", "time_window": "24h0m0s"}
    assert got["transforms"][1]["config"] == {"expression": "amount > 1", "time_window": "0s"}
    assert got["transforms"][2]["config"]["time_window"] == "0s"
    assert got["sink"]["max_delay_time"] == "1m30s"
    assert got["sink"]["connection_params"]["password"] == "pw"  # secrets come back in clear
    assert got["metadata"] == {"tags": None}
    resources = got["resources"]
    assert resources["nats"] == {"stream": {"maxAge": "24h", "maxBytes": "0", "maxMsgs": 8000}}
    assert resources["sources"] == [{"source_id": "orders", "requests": {"cpu": "1000m", "memory": "256Mi"},
                                     "limits": {"cpu": "1500m", "memory": "512Mi"}, "replicas": 1}]
    # one internal transform block, shown per dedup source and for the stateless output
    assert [t["source_id"] for t in resources["transform"]] == ["orders", "orders-norm-stateless"]
    assert resources["transform"][0]["storage"] == {"size": "40Gi"}


def test_get_defaults_first_offset_and_zero_delay(api):
    doc = orders_doc("orders-zero", patch={"sink": {"max_delay_time": "0s"}})
    api.post("/api/v1/pipeline", json=doc)
    got = api.get("/api/v1/pipeline/orders-zero").json()
    assert got["sources"][0]["consumer_group_initial_offset"] == "earliest"
    assert got["sink"]["max_delay_time"] == "1m0s"
    assert "transforms" not in got


def test_get_errors(api):
    missing = api.get("/api/v1/pipeline/no-such-pipeline")
    assert missing.status_code == 404
    assert missing.json() == {"status": 404, "code": "not_found",
                              "message": 'pipeline with id "no-such-pipeline" does not exist',
                              "details": {"pipeline_id": "no-such-pipeline",
                                          "error": "load pipeline: no pipeline with given id exists"}}
    invalid = api.get("/api/v1/pipeline/Upper-Case")
    assert (invalid.status_code, invalid.json()) == (
        500, {"status": 500, "code": "internal_error", "message": "Internal server error"})
    api.post("/api/v1/pipeline", json=orders_doc())
    assert api.get("/api/v1/pipeline/orders-test", params={"schema": "orders:1"}).status_code == 200
    for bad in ("orders", "orders:2", "nope:1"):
        answer = api.get("/api/v1/pipeline/orders-test", params={"schema": bad})
        assert (answer.status_code, answer.json()["code"]) == (400, "bad_request"), bad


# --- rename, metadata ----------------------------------------------------------------------------------

def test_rename_and_metadata_work_in_any_status(api):
    api.post("/api/v1/pipeline", json=orders_doc())
    renamed = api.patch("/api/v1/pipeline/orders-test", json={"name": ""})
    assert (renamed.status_code, renamed.json()) == (200, {})
    assert api.get("/api/v1/pipeline/orders-test").json()["name"] == ""
    tagged = api.patch("/api/v1/pipeline/orders-test/metadata", json={"metadata": {"tags": ["x", "y"]}})
    assert (tagged.status_code, tagged.json()) == (200, {})
    assert api.get("/api/v1/pipeline/orders-test").json()["metadata"] == {"tags": ["x", "y"]}
    assert api.patch("/api/v1/pipeline/orders-test/metadata", json={"metadata": {}}).json()["message"] == (
        "validation failed: expected required property tags to be present (body.metadata: map[])")
    missing = api.patch("/api/v1/pipeline/nope-nope/metadata", json={"metadata": {"tags": None}})
    assert (missing.status_code, missing.json()["message"]) == (404, "no pipeline with given id found")


# --- resources (§3) ---------------------------------------------------------------------------------------

def test_resources_views(api):
    api.post("/api/v1/pipeline", json=dedup_doc())
    body = api.get("/api/v1/pipeline/orders-dedup-test/resources").json()
    assert set(body) == {"pipeline_resources", "fields_policy"}
    assert body["fields_policy"] == {"immutable": ["nats/stream/maxAge", "nats/stream/maxBytes",
                                                   "nats/stream/maxMsgs", "transform/storage/size",
                                                   "transform/replicas"]}
    assert set(body["pipeline_resources"]) == {"nats", "ingestor", "transform", "sink"}
    assert api.get("/api/v1/pipeline/orders-dedup-test/resources/validation").json() == {
        "fields_policy": body["fields_policy"]}
    missing = api.get("/api/v1/pipeline/nope-nope/resources")
    assert missing.json()["message"] == 'resources for pipeline "nope-nope" not found'


def test_put_resources_while_running_is_409(api):
    _running(api, orders_doc())
    current = api.get("/api/v1/pipeline/orders-test/resources").json()["pipeline_resources"]
    response = api.put("/api/v1/pipeline/orders-test/resources", json={"pipeline_resources": current})
    assert response.status_code == 409
    assert response.json() == {"status": 409, "code": "PIPELINE_NOT_STOPPED_FOR_EDIT",
                               "message": "Pipeline must be stopped before editing, current status: Running",
                               "details": {"pipeline_id": "orders-test", "current_status": "Running"}}


def test_put_resources_changing_max_age_is_422(api):
    _stopped(api, orders_doc())
    current = api.get("/api/v1/pipeline/orders-test/resources").json()["pipeline_resources"]
    current["nats"]["stream"]["maxAge"] = "1440m"  # the same duration, but the check is textual
    response = api.put("/api/v1/pipeline/orders-test/resources", json={"pipeline_resources": current})
    assert (response.status_code, response.json()) == (422, {
        "status": 422, "code": "unprocessable_entity",
        "message": 'invalid pipeline resources: immutable field "nats/stream/maxAge" cannot be changed'})


def test_put_resources_merges_defaults_rewrites_max_bytes_and_auto_resumes(api):
    _stopped(api, orders_doc())
    current = api.get("/api/v1/pipeline/orders-test/resources").json()["pipeline_resources"]
    current["sink"] = {"replicas": 3, "limits": {"cpu": "5"}}
    response = api.put("/api/v1/pipeline/orders-test/resources", json={"pipeline_resources": current})
    assert response.status_code == 200
    merged = response.json()["pipeline_resources"]
    assert merged["sink"] == {"replicas": 3, "limits": {"cpu": "5"}, "requests": {"cpu": "1000m", "memory": "500Mi"}}
    assert merged["nats"]["stream"]["maxBytes"] == "-1"  # the k8s orchestrator's rewrite of "0" (§3.5)
    wait_status(api, "orders-test", "Resuming")
    wait_status(api, "orders-test", "Running")
    assert api.get("/api/v1/pipeline/orders-test").json()["resources"]["sink"]["replicas"] == 3
    # echoing "0" again now trips the textual immutability check
    api.post("/api/v1/pipeline/orders-test/stop")
    wait_status(api, "orders-test", "Stopped")
    merged["nats"]["stream"]["maxBytes"] = "0"
    again = api.put("/api/v1/pipeline/orders-test/resources", json={"pipeline_resources": merged})
    assert again.json()["message"] == 'invalid pipeline resources: immutable field "nats/stream/maxBytes" cannot be changed'


def test_put_leaving_a_block_out_resets_it_and_bypasses_immutability(api):
    _stopped(api, dedup_doc())
    current = api.get("/api/v1/pipeline/orders-dedup-test/resources").json()["pipeline_resources"]
    del current["nats"], current["transform"]
    merged = api.put("/api/v1/pipeline/orders-dedup-test/resources", json={"pipeline_resources": current}).json()
    assert merged["pipeline_resources"]["nats"]["stream"]["maxAge"] == "24h"
    assert merged["pipeline_resources"]["transform"]["replicas"] == 1


def test_put_rejects_the_v3_shape(api):
    _stopped(api, orders_doc())
    response = api.put("/api/v1/pipeline/orders-test/resources",
                       json={"pipeline_resources": {"sources": [{"source_id": "orders", "replicas": 2}]}})
    assert response.status_code == 422
    assert response.json()["message"].startswith("validation failed: unexpected property (body.pipeline_resources.sources")


# --- edit ------------------------------------------------------------------------------------------------

def test_edit_while_running_is_400_not_stopped(api):
    _running(api, orders_doc())
    response = api.post("/api/v1/pipeline/orders-test/edit", json=orders_doc())
    assert response.status_code == 400
    assert response.json() == {"status": 400, "code": "PIPELINE_NOT_STOPPED_FOR_EDIT",
                               "message": "Pipeline must be stopped before editing, current status: Running",
                               "details": {"pipeline_id": "orders-test", "current_status": "Running"}}


def test_edit_checks_in_the_servers_order(api):
    mismatch = api.post("/api/v1/pipeline/orders-test/edit", json=orders_doc("orders-other"))
    assert mismatch.json() == {"status": 400, "code": "bad_request",
                               "message": "pipeline ID in request body must match the route parameter",
                               "details": {"route_id": "orders-test", "json_id": "orders-other"}}
    missing = api.post("/api/v1/pipeline/orders-test/edit", json=orders_doc())
    assert (missing.status_code, missing.json()["message"]) == (404, 'no pipeline with id "orders-test" to edit')
    bad_model = orders_doc(patch={"sink": {"max_batch_size": 0}})
    assert api.post("/api/v1/pipeline/orders-test/edit", json=bad_model).json()["details"] == {
        "error": "max_batch_size cannot be 0"}


def test_edit_when_stopped_auto_resumes_keeps_created_at_and_checks_immutability(api):
    _stopped(api, dedup_doc())
    created = api.get("/api/v1/pipeline").json()[0]["created_at"]
    changed = dedup_doc(resources={"transform": [{"source_id": "orders", "storage": {"size": "80Gi"}}]})
    refused = api.post("/api/v1/pipeline/orders-dedup-test/edit", json=changed)
    assert (refused.status_code, refused.json()) == (422, {
        "status": 422, "code": "unprocessable_entity",
        "message": 'validate pipeline resources: invalid pipeline resources: immutable field '
                   '"transform/storage/size" cannot be changed'})
    edited = dedup_doc(window="30m", patch={"sink": {"max_batch_size": 5000}})
    assert api.post("/api/v1/pipeline/orders-dedup-test/edit", json=edited).json() == {}
    wait_status(api, "orders-dedup-test", "Running")
    got = api.get("/api/v1/pipeline/orders-dedup-test").json()
    assert got["sink"]["max_batch_size"] == 5000
    assert got["transforms"][0]["config"]["time_window"] == "30m0s"
    assert got["resources"]["nats"]["stream"]["maxMsgs"] == 40000  # no resources sent: defaults as-is (§3.5)
    assert api.get("/api/v1/pipeline").json()[0]["created_at"] == created


# --- delete and status operations ------------------------------------------------------------------------

def test_delete_only_when_stopped_and_the_row_goes_a_little_later(sim_factory):
    sim = sim_factory(time_scale=1, delays={"create": 0, "stop": 0, "delete": 0.5})
    api = httpx.Client(base_url=sim.api_url)
    _running(api, orders_doc())
    refused = api.delete("/api/v1/pipeline/orders-test")
    assert refused.json() == {"status": 400, "code": "bad_request",
                              "message": "pipeline can only be deleted if it's stopped, current status: Running",
                              "details": {"pipeline_id": "orders-test", "current_status": "Running"}}
    api.post("/api/v1/pipeline/orders-test/stop")
    wait_status(api, "orders-test", "Stopped")
    assert api.delete("/api/v1/pipeline/orders-test").json() == {}
    assert api.get("/api/v1/pipeline/orders-test").status_code == 200  # the operator removes it later
    wait_gone(api, "orders-test")
    assert api.delete("/api/v1/pipeline/orders-test").status_code == 404


@pytest.mark.parametrize(("operation", "message"), [
    ("stop", "no active pipeline with given id to stop"),
    ("terminate", "no active pipeline with given id to terminate"),
    ("resume", "no pipeline with given id to resume"),
])
def test_operations_on_a_missing_pipeline(api, operation, message):
    response = api.post(f"/api/v1/pipeline/nope-nope/{operation}")
    assert response.json() == {"status": 404, "code": "not_found", "message": message}


def test_state_errors_carry_the_transition_details(api):
    _stopped(api, orders_doc())
    response = api.post("/api/v1/pipeline/orders-test/stop")
    assert response.json() == {
        "status": 400, "code": "INVALID_STATUS_TRANSITION", "message": "Invalid status transition from Stopped to Stopping",
        "details": {"pipeline_id": "orders-test", "current_status": "Stopped", "requested_status": "Stopping",
                    "valid_transitions": ["Resuming", "Failed"],
                    "error": "Invalid status transition from Stopped to Stopping"}}


# --- DLQ ---------------------------------------------------------------------------------------------------

def test_dlq_routes(sim_factory):
    sim = sim_factory("terminal-errors", time_scale=50)
    api = httpx.Client(base_url=sim.api_url)
    pid = "orders-schema-mismatch"
    deadline = time.monotonic() + 10
    while api.get(f"/api/v1/pipeline/{pid}/dlq/state").json()["unconsumed_messages"] < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    state = api.get(f"/api/v1/pipeline/{pid}/dlq/state").json()
    assert set(state) == {"last_received_at", "last_consumed_at", "total_messages", "unconsumed_messages"}
    assert state["last_consumed_at"] is None and state["last_received_at"].endswith("Z")
    one = api.get(f"/api/v1/pipeline/{pid}/dlq/consume").json()  # the default batch size is 1
    assert len(one) == 1 and set(one[0]) == {"component", "error", "original_message"}
    three = api.get(f"/api/v1/pipeline/{pid}/dlq/consume", params={"batch_size": 3}).json()
    assert len(three) == 3
    assert {m["component"] for m in one + three} <= {"ingestor", "sink"}
    assert api.get(f"/api/v1/pipeline/{pid}/dlq/state").json()["last_consumed_at"] is not None
    for bad in ("0", "1001", "x"):
        assert api.get(f"/api/v1/pipeline/{pid}/dlq/consume", params={"batch_size": bad}).status_code == 422
    assert api.post(f"/api/v1/pipeline/{pid}/dlq/purge").json() == {}
    assert api.get("/api/v1/pipeline/nope-nope/dlq/state").json()["message"] == (
        'dlq for pipeline_id "nope-nope" does not exist')


def test_empty_dlq_consume_is_an_empty_200(api):
    api.post("/api/v1/pipeline", json=orders_doc())
    response = api.get("/api/v1/pipeline/orders-test/dlq/consume", params={"batch_size": 10})
    assert (response.status_code, response.content) == (200, b"")
    assert api.get("/api/v1/pipeline/orders-test/dlq/state").json() == {
        "last_received_at": None, "last_consumed_at": None, "total_messages": 0, "unconsumed_messages": 0}
