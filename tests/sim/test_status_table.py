"""Every cell of reference §4.3: operation x status -> HTTP status and error code."""

from __future__ import annotations

import itertools

import httpx
import pytest

from gftune.sim import Simulator
from tests.sim.helpers import orders_doc, wait_status

OK = (200, None)
INVALID = (400, "INVALID_STATUS_TRANSITION")
ALREADY = (400, "PIPELINE_ALREADY_IN_STATE")
IN_TRANSITION = (400, "PIPELINE_IN_TRANSITION")
EDIT_REFUSED = (400, "PIPELINE_NOT_STOPPED_FOR_EDIT")
PUT_REFUSED = (409, "PIPELINE_NOT_STOPPED_FOR_EDIT")
DELETE_REFUSED = (400, "bad_request")

OPERATIONS = ("stop", "terminate", "resume", "edit", "put_resources", "delete", "rename", "metadata")
TABLE = {
    "Created": (INVALID, OK, INVALID, EDIT_REFUSED, PUT_REFUSED, DELETE_REFUSED, OK, OK),
    "Running": (OK, OK, INVALID, EDIT_REFUSED, PUT_REFUSED, DELETE_REFUSED, OK, OK),
    "Stopping": (ALREADY, OK, IN_TRANSITION, EDIT_REFUSED, PUT_REFUSED, DELETE_REFUSED, OK, OK),
    "Stopped": (INVALID, INVALID, OK, OK, OK, OK, OK, OK),
    "Terminating": (IN_TRANSITION, ALREADY, IN_TRANSITION, EDIT_REFUSED, PUT_REFUSED, DELETE_REFUSED, OK, OK),
    "Resuming": (IN_TRANSITION, OK, ALREADY, EDIT_REFUSED, PUT_REFUSED, DELETE_REFUSED, OK, OK),
    "Failed": (INVALID, INVALID, OK, OK, OK, OK, OK, OK),
}
# what the API itself writes when it accepts a status operation (the operator finishes later)
REQUESTED = {"stop": "Stopping", "terminate": "Terminating", "resume": "Resuming"}


@pytest.fixture(scope="module")
def api():
    # transitions finish at once unless a stuck_transition fault holds them; timeouts never fire
    sim = Simulator(delays={"create": 0, "stop": 0, "resume": 0, "terminate": 0, "edit_pickup": 0, "delete": 60,
                            "stop_timeout": 1e6, "reconcile_timeout": 1e6})
    sim.start()
    with httpx.Client(base_url=sim.api_url, timeout=10) as client:
        yield client
    sim.stop()


_ids = itertools.count()


def _fault(api, **spec):
    response = api.post("/_sim/faults", json=spec)
    assert response.status_code == 200, response.text


def _pipeline_in(api, status: str) -> str:
    pid = f"cell-{next(_ids)}"
    if status == "Created":
        _fault(api, kind="stuck_transition", operation="create", pipeline=pid)
    assert api.post("/api/v1/pipeline", json=orders_doc(pid)).status_code == 200
    if status == "Created":
        return pid
    wait_status(api, pid, "Running")
    if status == "Running":
        return pid
    hold = {"Stopping": "stop", "Terminating": "terminate"}.get(status)
    if hold:
        _fault(api, kind="stuck_transition", operation=hold, pipeline=pid)
        assert api.post(f"/api/v1/pipeline/{pid}/{hold}").status_code == 200
        return pid
    api.post(f"/api/v1/pipeline/{pid}/stop")
    wait_status(api, pid, "Stopped")
    if status == "Resuming":
        _fault(api, kind="stuck_transition", operation="resume", pipeline=pid)
        api.post(f"/api/v1/pipeline/{pid}/resume")
    elif status == "Failed":
        _fault(api, kind="fail_on_resume", pipeline=pid)
        api.post(f"/api/v1/pipeline/{pid}/resume")
        wait_status(api, pid, "Failed")
    return pid


def _do(api, pid: str, operation: str) -> httpx.Response:
    if operation in REQUESTED:
        return api.post(f"/api/v1/pipeline/{pid}/{operation}")
    if operation == "edit":
        return api.post(f"/api/v1/pipeline/{pid}/edit", json=orders_doc(pid, patch={"sink": {"max_batch_size": 2000}}))
    if operation == "put_resources":
        current = api.get(f"/api/v1/pipeline/{pid}/resources").json()["pipeline_resources"]
        return api.put(f"/api/v1/pipeline/{pid}/resources", json={"pipeline_resources": current})
    if operation == "delete":
        return api.delete(f"/api/v1/pipeline/{pid}")
    if operation == "rename":
        return api.patch(f"/api/v1/pipeline/{pid}", json={"name": "renamed"})
    return api.patch(f"/api/v1/pipeline/{pid}/metadata", json={"metadata": {"tags": ["t"]}})


@pytest.mark.parametrize(("status", "operation"), list(itertools.product(TABLE, OPERATIONS)))
def test_operation_in_status(api, status, operation):
    pid = _pipeline_in(api, status)
    assert api.get(f"/api/v1/pipeline/{pid}/health").json()["overall_status"] == status
    expected_status, expected_code = TABLE[status][OPERATIONS.index(operation)]
    if operation in REQUESTED:  # hold the operator so that the status the API wrote stays visible
        _fault(api, kind="stuck_transition", operation=operation, pipeline=pid)
    response = _do(api, pid, operation)
    assert response.status_code == expected_status, response.text
    body = response.json()
    if expected_code is not None:
        assert body["code"] == expected_code
        assert body["details"]["pipeline_id"] == pid
        assert body["details"]["current_status"] == status
        return
    if operation == "put_resources":
        assert set(body) == {"pipeline_resources", "fields_policy"}
    else:
        assert body == {}
    health = api.get(f"/api/v1/pipeline/{pid}/health").json()["overall_status"]
    if operation in REQUESTED:
        assert health == REQUESTED[operation]
    elif operation in ("edit", "put_resources"):
        assert health in (status, "Resuming", "Running")  # the operator auto-resumes
    else:
        assert health == status
