"""Faults on demand: ``/_sim/faults`` and a scenario's ``faults:`` (same format)."""

from __future__ import annotations

import httpx
import pytest

from gftune.sim import ScenarioError, Simulator
from tests.sim.helpers import orders_doc, wait_status


@pytest.fixture
def api(sim_factory):
    sim = sim_factory("healthy", time_scale=20, delays={"stop": 2, "resume": 4, "create": 2})
    with httpx.Client(base_url=sim.api_url, timeout=10) as client:
        yield client


def test_http_errors_on_a_route_for_n_requests(api):
    fault = api.post("/_sim/faults", json={"kind": "http_error", "route": "GET /api/v1/pipeline/{id}/health",
                                           "status": 503, "times": 2}).json()
    assert fault["remaining"] == 2
    for _ in range(2):
        failed = api.get("/api/v1/pipeline/orders-healthy/health")
        assert (failed.status_code, failed.text) == (503, "503 Service Unavailable\n")
    assert api.get("/api/v1/pipeline/orders-healthy").status_code == 200  # other routes unaffected
    assert api.get("/api/v1/pipeline/orders-healthy/health").status_code == 200
    assert api.get("/_sim/faults").json() == []


def test_a_500_fault_has_the_sanitised_json_body(api):
    api.post("/_sim/faults", json={"kind": "http_error", "route": "POST /api/v1/pipeline/*/stop", "status": 500})
    response = api.post("/api/v1/pipeline/orders-healthy/stop")
    assert (response.status_code, response.json()) == (
        500, {"status": 500, "code": "internal_error", "message": "Internal server error"})
    assert api.get("/api/v1/pipeline/orders-healthy/health").json()["overall_status"] == "Running"  # not applied
    assert api.delete("/_sim/faults").json() == {"removed": 1}
    assert api.post("/api/v1/pipeline/orders-healthy/stop").status_code == 200


def test_a_timeout_holds_the_request_longer_than_the_client_waits(api):
    fault = api.post("/_sim/faults", json={"kind": "timeout", "route": "GET /api/v1/pipeline", "seconds": 2,
                                           "times": 1}).json()
    with pytest.raises(httpx.ReadTimeout):
        api.get("/api/v1/pipeline", timeout=0.3)
    assert api.get("/api/v1/pipeline").status_code == 200
    assert api.get("/_sim/faults").json() == []
    assert fault["kind"] == "timeout"


def test_fault_on_one_pipeline_only_and_delete_by_id(api):
    api.post("/api/v1/pipeline", json=orders_doc())
    fault = api.post("/_sim/faults", json={"kind": "http_error", "route": "* /api/v1/pipeline/{id}",
                                           "pipeline": "orders-test"}).json()
    assert api.get("/api/v1/pipeline/orders-test").status_code == 503
    assert api.get("/api/v1/pipeline/orders-healthy").status_code == 200
    assert api.delete(f"/_sim/faults/{fault['id']}").json() == {"removed": 1}
    assert api.get("/api/v1/pipeline/orders-test").status_code == 200
    assert api.delete(f"/_sim/faults/{fault['id']}").status_code == 404


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "nope"}, "unknown fault kind 'nope'"),
    ({"kind": "http_error", "route": "GET /x", "status": 404}, "http_error status must be a 5xx code"),
    ({"kind": "slow_transition", "operation": "resume"}, "slow_transition needs 'delay'"),
    ({"kind": "self_stop", "after": 5, "route": "x"}, "does not take route"),
])
def test_invalid_faults_are_refused(api, spec, message):
    response = api.post("/_sim/faults", json=spec)
    assert response.status_code == 422
    assert message in response.json()["message"]


def test_slow_and_stuck_transitions(api):
    api.post("/_sim/faults", json={"kind": "slow_transition", "operation": "stop", "delay": 40,
                                   "pipeline": "orders-healthy"})
    api.post("/api/v1/pipeline/orders-healthy/stop")
    wait_status(api, "orders-healthy", "Stopped", timeout=10)  # 40 sim s = 2 wall s
    api.post("/_sim/faults", json={"kind": "stuck_transition", "operation": "resume"})
    api.post("/api/v1/pipeline/orders-healthy/resume")
    # a stuck resume goes Failed after the reconcile timeout (900 sim s = 45 wall s at 20x): not waited for here
    assert api.get("/api/v1/pipeline/orders-healthy/health").json()["overall_status"] == "Resuming"


def test_failed_on_resume_and_self_stop(sim_factory):
    sim = sim_factory("healthy", time_scale=20, delays={"stop": 2, "resume": 4})
    api = httpx.Client(base_url=sim.api_url)
    api.post("/_sim/faults", json={"kind": "self_stop", "after": 10, "pipeline": "orders-healthy"})
    wait_status(api, "orders-healthy", "Stopping", timeout=10)
    wait_status(api, "orders-healthy", "Stopped", timeout=10)
    api.post("/_sim/faults", json={"kind": "fail_on_resume"})
    api.post("/api/v1/pipeline/orders-healthy/resume")
    wait_status(api, "orders-healthy", "Failed", timeout=10)
    api.post("/api/v1/pipeline/orders-healthy/resume")  # Failed -> Resuming is allowed; the fault was used up
    wait_status(api, "orders-healthy", "Running", timeout=10)
    notes = sim.store.row("orders-healthy").notes
    assert any("stopped the pipeline by itself" in note for note in notes)


def test_scenario_faults_use_the_same_format(sim_factory):
    sim = sim_factory({"name": "flaky", "pipelines": [{"spec": orders_doc("orders-flaky")}],
                       "faults": [{"kind": "http_error", "route": "GET /api/v1/pipeline", "status": 502, "times": 1}]},
                      time_scale=10)
    assert httpx.get(sim.api_url + "/api/v1/pipeline").status_code == 502
    assert httpx.get(sim.api_url + "/api/v1/pipeline").status_code == 200
    with pytest.raises(ScenarioError, match=r"faults\[0\]: unknown fault kind"):
        Simulator([{"name": "bad", "faults": [{"kind": "explode"}]}])


def test_missing_scrapes_with_a_probability_reproducible_per_seed(sim_factory):
    def pattern(seed: int) -> list[int]:
        sim = sim_factory("healthy", time_scale=20, seed=seed)
        sim.add_fault({"kind": "http_error", "route": "GET /metrics", "status": 503, "probability": 0.3})
        with httpx.Client(timeout=10) as client:
            codes = [client.get(sim.metrics_url).status_code for _ in range(40)]
            assert client.get(sim.api_url + "/api/v1/pipeline/orders-healthy").status_code == 200  # API unaffected
        return codes

    first = pattern(7)
    assert set(first) == {200, 503} and 4 <= first.count(503) <= 20  # about 12 of 40 fail
    assert pattern(7) == first  # the same seed fails the same scrapes
    assert pattern(8) != first
    with pytest.raises(ValueError, match=r"probability' must be a number in \(0, 1\]"):
        sim_factory("healthy").add_fault({"kind": "http_error", "route": "GET /metrics", "probability": 0})
