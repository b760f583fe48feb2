"""The operator: asynchronous status transitions, drained stops, timeouts, and time itself.

Every public method of the store brings the affected rows up to "now" through
:meth:`Operator.advance` (fluid model steps and due operator events, in time order), so the state
at sim time ``t`` never depends on when it was read (reference §4.4).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from gftune.glassflow import instruments as ins
from gftune.glassflow.statuses import Status
from gftune.sim.clock import Clock
from gftune.sim.dlq import DlqState
from gftune.sim.faults import Fault, FaultSet
from gftune.sim.rows import Row
from gftune.sim.telemetry import Collector, Meter, Resource

# The operator pod (Deployment <release>-controller-manager in the release namespace) as the
# collector labels it: job <namespace>/glassflow-operator, instance = the pod name.
OPERATOR_RESOURCE = Resource("glassflow/glassflow-operator", "glassflow-controller-manager-6f7c9d8b4-x2k9q",
                             (("service_version", "v3.1.0"),))

Json = dict[str, Any]


@dataclass
class Delays:
    """Operator timings in sim seconds."""

    create: float = 10.0  # Created -> Running
    stop: float = 5.0  # Stopping -> Stopped
    resume: float = 10.0  # Resuming -> Running
    terminate: float = 3.0  # Terminating -> Stopped
    delete: float = 2.0  # row removed after DELETE
    edit_pickup: float = 1.0  # edit / PUT /resources: Stopped -> Resuming
    stop_timeout: float = 300.0  # a stuck stop is forced to Stopped
    reconcile_timeout: float = 900.0  # any other stuck operation goes Failed

    @classmethod
    def from_dict(cls, data: Json | None, base: Delays | None = None) -> Delays:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data or {}) - known)
        if unknown:
            raise ValueError(f"unknown delay(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        merged = {**(base.__dict__ if base else {}), **(data or {})}
        return cls(**{k: float(v) for k, v in merged.items()})


@dataclass(order=True)
class Event:
    due: float
    seq: int
    kind: str = field(compare=False)  # "status", "remove", "self_stop"
    status: str | None = field(default=None, compare=False)
    op: int = field(default=0, compare=False)  # operation generation that scheduled it
    hook: str | None = field(default=None, compare=False)  # "purge" on completion (terminate)
    fault_id: int | None = field(default=None, compare=False)
    drain_since: float | None = field(default=None, compare=False)  # a stop: waits for the drain from then on
    operation: str | None = field(default=None, compare=False)  # the reconcile this event completes
    timed_out: bool = field(default=False, compare=False)  # the operator gives up on the operation


_MODE = {Status.RUNNING: "run", Status.STOPPING: "drain"}
_STUCK = Fault(0, "stuck_transition", {}, None)


class Operator:
    """Schedules and applies the operator's side of every status change for the rows of a store."""

    def __init__(self, clock: Clock, delays: Delays, faults: FaultSet, dt: float,
                 remove: Callable[[str], None], collector: Collector | None = None) -> None:
        self.clock = clock
        self.delays = delays
        self.faults = faults
        self.dt = dt
        self._remove = remove
        self._seq = itertools.count()
        self.collector = collector or Collector()
        self.meter = Meter(OPERATOR_RESOURCE, clock.now())

    # --- time ----------------------------------------------------------------------------------

    def advance(self, row: Row, now: float) -> bool:
        """Bring ``row`` up to sim time ``now``; False once the row has been removed (DELETE)."""
        model = row.model
        while model.t + self.dt <= now + 1e-9:
            if not self._apply_events(row, model.t):
                return False
            status = row.status_at(model.t)
            mode = "off" if status == Status.STOPPING and row.hung else _MODE.get(status, "off")
            step = model.step(mode)
            row.dlq.receive(model.drain_dlq(), model.t)
            if step.oom and row.status == Status.RUNNING:
                row.notes.append(f"t={model.t:.0f}s {step.messages[0]}")
                row.op += 1  # the OOM supersedes any pending transition
                self.set_status(row, Status.FAILED, model.t)
                model.stopped()
        return self._apply_events(row, now)

    # --- events ----------------------------------------------------------------------------------

    def schedule(self, row: Row, due: float, kind: str, status: str | None = None, *,
                 hook: str | None = None, fault_id: int | None = None, drain_since: float | None = None,
                 operation: str | None = None, timed_out: bool = False) -> None:
        heapq.heappush(row.events, Event(due, next(self._seq), kind, status, row.op, hook, fault_id, drain_since,
                                         operation, timed_out))

    def _apply_events(self, row: Row, until: float) -> bool:
        while row.events and row.events[0].due <= until + 1e-9:
            event = heapq.heappop(row.events)
            if event.kind == "remove":
                self._reconciled(row, "delete", event.due)
                self._nats(row, "delete_dlq_stream")
                self._remove(row.pipeline_id)
                return False
            if event.kind == "self_stop":
                fault = next((f for f in self.faults.self_stops() if f.id == event.fault_id), None)
                if fault is not None and row.status == Status.RUNNING:
                    self.faults.consume(fault)
                    row.op += 1
                    self.set_status(row, Status.STOPPING, event.due)
                    self.schedule(row, event.due + self.delays.stop, "status", Status.STOPPED,
                                  drain_since=event.due, operation="stop")
                    row.notes.append(f"t={event.due:.0f}s operator stopped the pipeline by itself")
                continue
            if event.op != row.op:
                continue  # superseded by a later operation
            if event.drain_since is not None and not row.model.drained():
                self._wait_for_drain(row, event)
                continue
            self._complete(row, event)
        return True

    def _complete(self, row: Row, event: Event) -> None:
        """The operator finishes (or gives up on) an operation."""
        if event.hook == "purge":
            row.model.purge()
            row.dlq = DlqState(exists=False)
            self._nats(row, "delete_dlq_stream")
        if event.operation == "stop" and event.status == Status.STOPPED:
            # the components are gone: what is left in the internal streams goes to the DLQ
            self._sweep(row, event.due)
        if event.timed_out:
            self._record_op(event.operation or "unknown", "timeout", row)
            if event.operation == "stop":
                # a forced stop writes Stopped before updatePipelineStatus runs: no transition recorded
                self.set_status(row, event.status, event.due, record=False)
            else:
                self.set_status(row, event.status, event.due)
        else:
            self.set_status(row, event.status, event.due)
            if event.operation is not None:
                if event.status == Status.FAILED:
                    self._record_op(event.operation, "failure", row)
                    self.meter.add(ins.OPERATOR_RECONCILE_ERRORS,
                                   (event.operation, "pipeline components failed to become ready", row.pipeline_id),
                                   1.0)
                else:
                    self._reconciled(row, event.operation, event.due)
        if event.status in (Status.STOPPED, Status.FAILED):
            row.model.stopped()

    # --- the operator's own metrics (glassflow-etl-k8s-operator:internal/observability) -------------

    def _record_op(self, operation: str, status: str, row: Row) -> None:
        self.meter.add(ins.OPERATOR_RECONCILE_OPERATIONS, (operation, status, row.pipeline_id), 1.0)

    def _reconciled(self, row: Row, operation: str, t: float) -> None:
        self._record_op(operation, "success", row)
        if operation in ("create", "resume", "edit"):  # createNATSStreams: the DLQ stream (re)created
            self._nats(row, "create_dlq_stream")

    def _nats(self, row: Row, operation: str) -> None:
        self.meter.add(ins.OPERATOR_NATS_OPERATIONS, (operation, "success", row.pipeline_id), 1.0)

    def _sweep(self, row: Row, t: float) -> None:
        """``sweepMessagesToDLQ``: per internal stream, +1 ``stream_empty`` or +1 ``swept`` per message
        moved to the DLQ (as ``retry_exhausted_on_stop``); ``gfm_dlq_records_written_total`` is untouched."""
        swept = 0.0
        for _stream, component, messages in row.model.sweep():
            if messages < 0.5:
                self.meter.add(ins.OPERATOR_SWEEPED_MESSAGES, (row.pipeline_id, "stream_empty"), 1.0)
                continue
            whole = round(messages)
            self.meter.add(ins.OPERATOR_SWEEPED_MESSAGES, (row.pipeline_id, "swept"), whole)
            row.dlq.receive([(component, ins.SWEEP_DLQ_ERROR, messages)], t)
            swept += messages
        # one read, DLQ publish and delete per message (about 0.5 ms each) plus the stream lookups
        self.meter.observe(ins.OPERATOR_SWEEP_DURATION, (row.pipeline_id,), 0.02 + 0.0005 * swept)

    def push_metrics(self, now: float) -> None:
        self.collector.push_due(self.meter, now)

    def _wait_for_drain(self, row: Row, event: Event) -> None:
        """Stopped only once the consumers have drained; at the stop timeout the operator forces it
        and sweeps what is left to the DLQ (reference §4.4)."""
        retry = max(event.due, row.model.t) + self.dt
        deadline = event.drain_since + self.delays.stop_timeout
        if retry < deadline:
            heapq.heappush(row.events, Event(retry, next(self._seq), event.kind, event.status, event.op,
                                             drain_since=event.drain_since, operation=event.operation))
        else:
            heapq.heappush(row.events, Event(max(deadline, event.due), next(self._seq), event.kind, event.status,
                                             event.op, operation="stop", timed_out=True))

    def set_status(self, row: Row, status: str, t: float, *, record: bool = True) -> None:
        """A status change as the API shows it; the operator's CRD status follows (and is recorded as a
        transition) except for the API-only Created and Terminating."""
        if record and status not in (Status.CREATED, Status.TERMINATING) and row.crd_status != status:
            stamp = str(int(self.clock.wall_time(t).timestamp()))
            self.meter.add(ins.OPERATOR_STATUS_TRANSITIONS, (row.crd_status, str(status), row.pipeline_id, stamp), 1.0)
        if status != Status.TERMINATING:
            row.crd_status = str(status)
        row.hung = False
        row.status = str(status)
        row.updated_at = t
        row.history.append((t, row.status))
        if len(row.history) > 8:
            keep_from = next((i for i, (when, _) in enumerate(row.history) if when > row.model.t), len(row.history))
            row.history = row.history[max(0, keep_from - 1):]

    # --- operations ------------------------------------------------------------------------------

    def transition(self, row: Row, operation: str, now: float, delay: float, final: str, *,
                   hook: str | None = None) -> None:
        """Schedule the operator's completion of ``operation``, honouring slow/stuck faults."""
        fault = self.faults.transition(operation, row.pipeline_id)
        if fault is not None and fault.kind == "slow_transition":
            delay = float(fault.spec.get("delay", delay * float(fault.spec.get("factor", 1.0))))
            # the operator gives up like on a stuck one: a stop is forced, anything else fails
            limit = self.delays.stop_timeout if operation == "stop" else self.delays.reconcile_timeout
            if delay > limit:
                fault = _STUCK
        if fault is not None and fault.kind == "stuck_transition":
            if operation == "stop":
                row.hung = True
                self.schedule(row, now + self.delays.stop_timeout, "status", Status.STOPPED, operation="stop",
                              timed_out=True)
            else:
                self.schedule(row, now + self.delays.reconcile_timeout, "status", Status.FAILED,
                              operation=operation, timed_out=True)
            return
        self.schedule(row, now + delay, "status", final, hook=hook, drain_since=now if operation == "stop" else None,
                      operation=operation)

    def created(self, row: Row, now: float, *, running: bool) -> None:
        """A new row: the operator brings it up (unless preloaded Running) and arms self-stop faults."""
        row.crd_status = Status.RUNNING if running else Status.CREATED
        if not running:
            self.transition(row, "create", now, self.delays.create, Status.RUNNING)
        self.register_self_stops(row, now)

    def request(self, row: Row, operation: str, now: float) -> None:
        """stop / terminate / resume, once the API has written the requested status."""
        if operation == "stop":
            self.transition(row, "stop", now, self.delays.stop, Status.STOPPED)
        elif operation == "terminate":
            self.transition(row, "terminate", now, self.delays.terminate, Status.STOPPED, hook="purge")
        else:
            if not row.dlq.exists:
                row.dlq = DlqState()
            self.transition(row, "resume", now, self.delays.resume, self.resume_outcome(row))

    def auto_resume(self, row: Row, now: float, operation: str) -> None:
        """After edit / PUT /resources the operator moves Stopped -> Resuming -> Running."""
        row.op += 1
        pickup = now + self.delays.edit_pickup
        self.schedule(row, pickup, "status", Status.RESUMING)  # no operation completes here
        if not row.dlq.exists:
            row.dlq = DlqState()
        self.transition(row, operation, pickup, self.delays.resume, self.resume_outcome(row))

    def delete(self, row: Row, now: float) -> None:
        fault = self.faults.transition("delete", row.pipeline_id)
        delay = self.delays.delete
        if fault is not None and fault.kind == "slow_transition":
            delay = float(fault.spec.get("delay", delay * float(fault.spec.get("factor", 1.0))))
        if fault is None or fault.kind != "stuck_transition":
            self.schedule(row, now + delay, "remove")

    def resume_outcome(self, row: Row) -> str:
        return Status.FAILED if self.faults.fail_on_resume(row.pipeline_id) else Status.RUNNING

    # --- self-stop faults ------------------------------------------------------------------------

    def register_self_stops(self, row: Row, now: float) -> None:
        for fault in self.faults.self_stops():
            if fault.pipeline in (None, row.pipeline_id):
                due = max(now, fault.added_at + float(fault.spec.get("after", 0)))
                self.schedule(row, due, "self_stop", fault_id=fault.id)

    def fault_added(self, fault: Fault, rows: list[Row], now: float) -> None:
        if fault.kind == "self_stop":
            for row in rows:
                if fault.pipeline in (None, row.pipeline_id):
                    self.schedule(row, max(now, now + float(fault.spec.get("after", 0))), "self_stop",
                                  fault_id=fault.id)
