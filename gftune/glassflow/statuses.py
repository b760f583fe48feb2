"""The pipeline status machine of the GlassFlow API (``internal/status/validation.go``).

Both sides use this: the simulator to answer exactly like the server, and the reconciler to
know which statuses are transitional and which operations a status allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    CREATED = "Created"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    TERMINATING = "Terminating"
    FAILED = "Failed"
    RESUMING = "Resuming"


TRANSITIONAL = frozenset({Status.RESUMING, Status.STOPPING, Status.TERMINATING})

# StatusValidationMatrix: from -> allowed targets (order as in the server's code).
TRANSITIONS: dict[Status, tuple[Status, ...]] = {
    Status.CREATED: (Status.RUNNING, Status.TERMINATING, Status.FAILED),
    Status.RUNNING: (Status.STOPPING, Status.TERMINATING, Status.FAILED),
    Status.RESUMING: (Status.RUNNING, Status.TERMINATING, Status.FAILED),
    Status.STOPPING: (Status.STOPPED, Status.TERMINATING, Status.FAILED),
    Status.STOPPED: (Status.RESUMING, Status.FAILED),
    Status.TERMINATING: (Status.STOPPED, Status.FAILED),
    Status.FAILED: (Status.RESUMING,),
}

# Statuses in which edit, PUT /resources and delete are accepted.
EDITABLE = frozenset({Status.STOPPED, Status.FAILED})
DELETABLE = EDITABLE


@dataclass(frozen=True)
class TransitionError:
    """A refused status change, carrying the exact code and message the API returns (HTTP 400)."""

    code: str
    message: str
    current: str
    requested: str
    valid_transitions: tuple[str, ...] | None

    def details(self, pipeline_id: str, *, omit_empty_transitions: bool = False) -> dict[str, Any]:
        """The ``details`` object. Resume leaves out an empty ``valid_transitions``; stop and
        terminate send it as ``null``."""
        body: dict[str, Any] = {
            "pipeline_id": pipeline_id,
            "current_status": self.current,
            "requested_status": self.requested,
        }
        if self.valid_transitions:
            body["valid_transitions"] = list(self.valid_transitions)
        elif not omit_empty_transitions:
            body["valid_transitions"] = None
        body["error"] = self.message
        return body


def check_transition(current: str, target: Status) -> TransitionError | None:
    """``ValidatePipelineOperation(current, target)``: None when allowed, else the error."""
    if current == target:
        return TransitionError("PIPELINE_ALREADY_IN_STATE", f"Pipeline is already in {target} state",
                               current, target, None)
    if current in TRANSITIONAL and target != Status.TERMINATING:
        return TransitionError(
            "PIPELINE_IN_TRANSITION",
            f"Pipeline is currently transitioning from {current} state, cannot perform {target} operation",
            current, target, None,
        )
    try:
        allowed = TRANSITIONS[Status(current)]
    except ValueError:
        return TransitionError("UNKNOWN_STATUS", f"Unknown status {current}", current, target, None)
    if target not in allowed:
        return TransitionError(
            "INVALID_STATUS_TRANSITION",
            f"Invalid status transition from {current} to {target}",
            current, target, tuple(str(s) for s in allowed),
        )
    return None


# The status each operation asks for (what the API writes before the operator takes over).
OPERATION_TARGET: dict[str, Status] = {
    "stop": Status.STOPPING,
    "terminate": Status.TERMINATING,
    "resume": Status.RESUMING,
}


def is_transitional(status: str) -> bool:
    return status in TRANSITIONAL
