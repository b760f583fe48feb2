"""Pipeline rows, the status machine and the operator's asynchronous transitions.

Every public method takes the store lock, brings the affected rows up to "now" (fluid model steps
and due status events, in time order) and then acts, so the state at sim time ``t`` never depends
on when it was read. Errors are raised as :class:`ApiError` carrying the exact status, code,
message and details of the real API (reference §1.5, §3, §4).
"""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import re
import threading
from dataclasses import dataclass, field, fields
from typing import Any

from gftune.glassflow import resources as res
from gftune.glassflow import rules
from gftune.glassflow.statuses import DELETABLE, EDITABLE, OPERATION_TARGET, Status, check_transition
from gftune.sim import documents, profiles, validation
from gftune.sim.clock import Clock
from gftune.sim.faults import Fault, FaultSet
from gftune.sim.model import DEFAULT_PARAMS, PipelineModel, deep_merge

Json = dict[str, Any]
_ID_RE = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")


class ApiError(Exception):
    """An error answer of the API: ``{"status", "code", "message", "details"?}``."""

    def __init__(self, status: int, code: str, message: str, details: Json | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def body(self) -> Json:
        if self.status == 500:  # the wrapper's sanitisation
            return {"status": 500, "code": self.code or "internal_error", "message": "Internal server error"}
        body: Json = {"status": self.status, "code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def huma_error(message: str, status: int = 422) -> ApiError:
    return ApiError(status, "", f"validation failed: {message}")


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
    hook: str | None = field(default=None, compare=False)  # "purge", "sweep" on completion
    fault_id: int | None = field(default=None, compare=False)
    drain_since: float | None = field(default=None, compare=False)  # a stop: waits for the drain from then on


@dataclass
class DlqState:
    exists: bool = True
    total: float = 0.0
    unconsumed: float = 0.0
    last_received: float | None = None
    last_consumed: float | None = None
    queue: list[list[Any]] = field(default_factory=list)  # [component, reason, records] FIFO
    seq: int = 0


@dataclass
class Row:
    pipeline_id: str
    doc: Json  # stored request document (after the SDK shim), without gftune's own resources handling
    resources: Json  # internal shape, merged with defaults
    name: str
    tags: list[str] | None
    status: str
    created_at: float
    updated_at: float
    model: PipelineModel
    history: list[tuple[float, str]]
    events: list[Event] = field(default_factory=list)
    op: int = 0
    deleting: bool = False
    hung: bool = False  # a stuck stop: the components no longer drain
    dlq: DlqState = field(default_factory=DlqState)
    cached_get: bytes | None = None
    notes: list[str] = field(default_factory=list)

    def status_at(self, t: float) -> str:
        status = self.history[0][1]
        for when, value in self.history:
            if when > t:
                break
            status = value
        return status


_MODE = {Status.RUNNING: "run", Status.STOPPING: "drain"}
_STUCK = Fault(0, "stuck_transition", {}, None)


class Store:
    def __init__(self, clock: Clock, *, defaults: res.ResourceDefaults = res.HELM_DEFAULTS,
                 delays: Delays | None = None, faults: FaultSet | None = None, seed: int = 0,
                 dt: float = 1.0, model_params: dict[str, Json] | None = None,
                 default_model: Json | None = None, put_rewrites_max_bytes: bool = True) -> None:
        self.clock = clock
        self.defaults = defaults
        self.delays = delays or Delays()
        self.faults = faults or FaultSet()
        self.seed = seed
        self.dt = dt
        self.model_params: dict[str, Json] = dict(model_params or {})
        self.default_model = default_model or {}
        self.put_rewrites_max_bytes = put_rewrites_max_bytes
        self.rows: dict[str, Row] = {}
        self.lock = threading.RLock()
        self._seq = itertools.count()

    # --- time ----------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def _advance(self, row: Row, now: float) -> None:
        model = row.model
        while model.t + self.dt <= now + 1e-9:
            self._apply_events(row, model.t)
            if row.pipeline_id not in self.rows:
                return
            status = row.status_at(model.t)
            mode = "off" if status == Status.STOPPING and row.hung else _MODE.get(status, "off")
            step = model.step(mode)
            self._collect_dlq(row, model.t)
            if step.oom and row.status == Status.RUNNING:
                row.notes.append(f"t={model.t:.0f}s {step.messages[0]}")
                row.op += 1  # the OOM supersedes any pending transition
                self._set_status(row, Status.FAILED, model.t)
                model.stopped()
        self._apply_events(row, now)

    def advance_all(self, now: float | None = None) -> float:
        now = self.now() if now is None else now
        for row in list(self.rows.values()):
            self._advance(row, now)
        return now

    def _row(self, pipeline_id: str, now: float) -> Row | None:
        row = self.rows.get(pipeline_id)
        if row is not None:
            self._advance(row, now)
            row = self.rows.get(pipeline_id)
        return row

    # --- events ----------------------------------------------------------------------------------

    def _schedule(self, row: Row, due: float, kind: str, status: str | None = None, *,
                  hook: str | None = None, fault_id: int | None = None, drain_since: float | None = None) -> None:
        heapq.heappush(row.events, Event(due, next(self._seq), kind, status, row.op, hook, fault_id, drain_since))

    def _apply_events(self, row: Row, until: float) -> None:
        while row.events and row.events[0].due <= until + 1e-9:
            event = heapq.heappop(row.events)
            if event.kind == "remove":
                self.rows.pop(row.pipeline_id, None)
                return
            if event.kind == "self_stop":
                fault = next((f for f in self.faults.self_stops() if f.id == event.fault_id), None)
                if fault is not None and row.status == Status.RUNNING:
                    self.faults.consume(fault)
                    row.op += 1
                    self._set_status(row, Status.STOPPING, event.due)
                    self._schedule(row, event.due + self.delays.stop, "status", Status.STOPPED,
                                   drain_since=event.due)
                    row.notes.append(f"t={event.due:.0f}s operator stopped the pipeline by itself")
                continue
            if event.op != row.op:
                continue  # superseded by a later operation
            if event.drain_since is not None and not row.model.drained():
                self._wait_for_drain(row, event)
                continue
            if event.hook == "purge":
                row.model.purge()
                row.dlq = DlqState(exists=False)
            elif event.hook == "sweep":
                row.model.sweep_to_dlq()
                self._collect_dlq(row, event.due)
            self._set_status(row, event.status, event.due)
            if event.status in (Status.STOPPED, Status.FAILED):
                row.model.stopped()

    def _wait_for_drain(self, row: Row, event: Event) -> None:
        """Stopped only once the consumers have drained; at the stop timeout the operator forces it
        and sweeps what is left to the DLQ (reference §4.4)."""
        retry = max(event.due, row.model.t) + self.dt
        deadline = event.drain_since + self.delays.stop_timeout
        if retry < deadline:
            heapq.heappush(row.events, Event(retry, next(self._seq), event.kind, event.status, event.op,
                                             drain_since=event.drain_since))
        else:
            heapq.heappush(row.events, Event(max(deadline, event.due), next(self._seq), event.kind, event.status,
                                             event.op, hook="sweep"))

    def _set_status(self, row: Row, status: str, t: float) -> None:
        row.hung = False
        row.status = str(status)
        row.updated_at = t
        row.history.append((t, row.status))
        if len(row.history) > 8:
            keep_from = next((i for i, (when, _) in enumerate(row.history) if when > row.model.t), len(row.history))
            row.history = row.history[max(0, keep_from - 1):]

    def _collect_dlq(self, row: Row, t: float) -> None:
        new = row.model.drain_dlq()
        if not new or not row.dlq.exists:
            return
        for component, reason, records in new:
            queue = row.dlq.queue
            if queue and queue[-1][0] == component and queue[-1][1] == reason:
                queue[-1][2] += records
            else:
                queue.append([component, reason, records])
            row.dlq.total += records
            row.dlq.unconsumed += records
        row.dlq.last_received = t

    def _transition(self, row: Row, operation: str, now: float, delay: float, final: str, *,
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
                self._schedule(row, now + self.delays.stop_timeout, "status", Status.STOPPED, hook="sweep")
            else:
                self._schedule(row, now + self.delays.reconcile_timeout, "status", Status.FAILED)
            return
        self._schedule(row, now + delay, "status", final, hook=hook, drain_since=now if operation == "stop" else None)

    def _resume_outcome(self, row: Row) -> str:
        return Status.FAILED if self.faults.fail_on_resume(row.pipeline_id) else Status.RUNNING

    # --- helpers ---------------------------------------------------------------------------------

    def _new_model(self, pipeline_id: str, doc: Json, resources: Json, now: float) -> PipelineModel:
        params = self.model_params.get(pipeline_id, self.default_model)
        start = now - (now % self.dt)
        return PipelineModel(pipeline_id, doc, resources, params, seed=self.seed, t0=start, dt=self.dt)

    @staticmethod
    def _check_schema(body: Any) -> Json:
        """huma's checks, before any handler: SDK shim, strict schema, Go duration decoding."""
        body, _notes = documents.sdk_compat(validation.canonical_keys("pipeline", body))
        message = validation.first_error("pipeline", body) or validation.duration_error(body)
        if message:
            raise huma_error(message)
        return body

    @staticmethod
    def _to_model(doc: Json) -> list[rules.Violation]:
        """``toModel()``: the first model violation is a 422; the rest is returned for later checks."""
        violations = rules.validate_document(doc)
        model = next((v for v in violations if v.kind == "model"), None)
        if model is not None:
            raise ApiError(422, "unprocessable_entity", "failed to convert request to pipeline model",
                           {"error": model.message})
        return violations

    @staticmethod
    def _check_resources(violations: list[rules.Violation]) -> None:
        problem = next((v for v in violations if v.kind == "resources"), None)
        if problem is not None:
            raise ApiError(422, "unprocessable_entity", problem.message)

    def _not_found(self, pipeline_id: str) -> ApiError:
        return ApiError(404, "not_found", f'pipeline with id "{pipeline_id}" does not exist',
                        {"pipeline_id": pipeline_id, "error": "load pipeline: no pipeline with given id exists"})

    def _existing(self, pipeline_id: str, missing: ApiError | str, now: float | None = None) -> Row:
        """The row brought up to ``now``, or the route's 404."""
        row = self._row(pipeline_id, self.now() if now is None else now)
        if row is None:
            raise missing if isinstance(missing, ApiError) else ApiError(404, "not_found", missing)
        return row

    @staticmethod
    def _require_editable(row: Row, status: int) -> None:
        """Edit (400) and PUT /resources (409) need Stopped or Failed."""
        if row.status not in EDITABLE:
            raise ApiError(status, "PIPELINE_NOT_STOPPED_FOR_EDIT",
                           f"Pipeline must be stopped before editing, current status: {row.status}",
                           {"pipeline_id": row.pipeline_id, "current_status": row.status})

    def _invalidate(self, row: Row) -> None:
        row.cached_get = None

    def _register_self_stops(self, row: Row, now: float) -> None:
        for fault in self.faults.self_stops():
            if fault.pipeline in (None, row.pipeline_id):
                due = max(now, fault.added_at + float(fault.spec.get("after", 0)))
                self._schedule(row, due, "self_stop", fault_id=fault.id)

    # --- create / read ---------------------------------------------------------------------------

    def create(self, body: Any, *, running: bool = False, join_resources: Json | None = None) -> None:
        """POST /api/v1/pipeline. ``running`` pre-creates it Running (scenario preload);
        ``join_resources`` (scenario preload of a gftune pipeline file's ``resources.join``) are set
        as the PUT /resources that follows a create would set them."""
        doc = self._check_schema(body)
        violations = self._to_model(doc)
        self._check_resources(violations)
        if any(v.kind == "id" for v in violations):
            raise ApiError(400, "bad_request", "pipeline id is invalid")
        join = res.v3_to_internal({"resources": {"join": join_resources}}) if join_resources is not None else {}
        problems = res.validate_internal(join)
        if problems:
            raise ApiError(422, "unprocessable_entity", f"invalid pipeline resources: {problems[0][1]}")
        with self.lock:
            now = self.now()
            pipeline_id = doc["pipeline_id"].strip()
            existing = self._row(pipeline_id, now)
            if existing is not None:
                raise ApiError(409, "conflict", "pipeline with this ID already exists")
            internal = res.merge_with_defaults({**res.v3_to_internal(doc), **join}, doc, self.defaults)
            status = Status.RUNNING if running else Status.CREATED
            row = Row(pipeline_id, doc, internal, doc.get("name", ""), (doc.get("metadata") or {}).get("tags"),
                      status, now, now, self._new_model(pipeline_id, doc, internal, now), [(now, status)])
            self.rows[pipeline_id] = row
            self._join_topics(row)
            if not running:
                self._transition(row, "create", now, self.delays.create, Status.RUNNING)
            self._register_self_stops(row, now)

    def list(self) -> list[Json]:
        with self.lock:
            self.advance_all()
            out = []
            for row in self.rows.values():
                out.append({
                    "pipeline_id": row.pipeline_id,
                    "name": row.name,
                    "transformation_type": documents.transformation_type(row.doc),
                    "created_at": self.clock.timestamp(row.created_at),
                    "updated_at": self.clock.timestamp(row.updated_at),
                    "status": row.status or "Created",
                    "metadata": {"tags": row.tags},
                })
            return out

    def get(self, pipeline_id: str, schema_selection: list[str] | None = None) -> bytes:
        if not _ID_RE.match(pipeline_id) or "--" in pipeline_id or len(pipeline_id) > 40:
            raise ApiError(500, "internal_error", "invalid pipeline id")  # storage's ErrInvalidPipelineID
        with self.lock:
            row = self._existing(pipeline_id, self._not_found(pipeline_id))
            if schema_selection:
                self._check_schema_selection(row, schema_selection)
            if row.cached_get is None:
                view = documents.normalized(row.doc, row.resources, name=row.name, tags=row.tags)
                row.cached_get = json.dumps(view, separators=(",", ":")).encode()
            return row.cached_get

    def _check_schema_selection(self, row: Row, entries: list[str]) -> None:
        chosen: dict[str, str] = {}
        versions = {s.get("source_id"): (s.get("schema_version") or "1") for s in row.doc.get("sources") or []}
        for entry in entries:
            source_id, sep, version = entry.partition(":")
            if not sep or not source_id or not version or ":" in version:
                raise ApiError(400, "bad_request",
                               f'invalid schema query parameter "{entry}": expected sourceId:version')
            if chosen.get(source_id, version) != version:
                raise ApiError(400, "bad_request", f'schema for source "{source_id}" selected with two versions')
            chosen[source_id] = version
            if versions.get(source_id) != version:
                raise ApiError(400, "bad_request",
                               f'schema version "{version}" not found for source "{source_id}"')

    def health(self, pipeline_id: str) -> Json:
        with self.lock:
            row = self._existing(pipeline_id, self._not_found(pipeline_id))
            return {"pipeline_id": row.pipeline_id, "pipeline_name": row.name, "overall_status": row.status,
                    "created_at": self.clock.timestamp(row.created_at),
                    "updated_at": self.clock.timestamp(row.updated_at)}

    # --- status operations ---------------------------------------------------------------------------

    _NOT_FOUND_OP = {"stop": "no active pipeline with given id to stop",
                     "terminate": "no active pipeline with given id to terminate",
                     "resume": "no pipeline with given id to resume"}

    def operate(self, pipeline_id: str, operation: str) -> None:
        """POST stop / terminate / resume."""
        with self.lock:
            now = self.now()
            row = self._existing(pipeline_id, self._NOT_FOUND_OP[operation], now)
            target = OPERATION_TARGET[operation]
            error = check_transition(row.status, target)
            if error is not None:
                raise ApiError(400, error.code, error.message,
                               error.details(pipeline_id, omit_empty_transitions=operation == "resume"))
            row.op += 1
            self._set_status(row, target, now)
            if operation == "stop":
                self._transition(row, "stop", now, self.delays.stop, Status.STOPPED)
            elif operation == "terminate":
                self._transition(row, "terminate", now, self.delays.terminate, Status.STOPPED, hook="purge")
            else:
                if not row.dlq.exists:
                    row.dlq = DlqState()
                self._transition(row, "resume", now, self.delays.resume, self._resume_outcome(row))

    def _auto_resume(self, row: Row, now: float, operation: str) -> None:
        """After edit / PUT /resources the operator moves Stopped -> Resuming -> Running."""
        row.op += 1
        pickup = now + self.delays.edit_pickup
        self._schedule(row, pickup, "status", Status.RESUMING)
        if not row.dlq.exists:
            row.dlq = DlqState()
        self._transition(row, operation, pickup, self.delays.resume, self._resume_outcome(row))

    def edit(self, pipeline_id: str, body: Any) -> None:
        doc = self._check_schema(body)
        if doc.get("pipeline_id") != pipeline_id:
            raise ApiError(400, "bad_request", "pipeline ID in request body must match the route parameter",
                           {"route_id": pipeline_id, "json_id": doc.get("pipeline_id")})
        violations = self._to_model(doc)
        with self.lock:
            now = self.now()
            row = self._existing(pipeline_id, f'no pipeline with id "{pipeline_id}" to edit', now)
            self._require_editable(row, 400)
            self._check_resources(violations)
            raw = res.v3_to_internal(doc)
            if doc.get("resources"):  # no resources block: defaults as-is, no validation (reference §3.5)
                problem = res.check_immutability(row.resources, raw, res.immutable_paths(row.doc))
                if problem:
                    raise ApiError(422, "unprocessable_entity",
                                   f"validate pipeline resources: invalid pipeline resources: {problem}")
            row.doc = doc
            row.name = doc.get("name", "")
            row.tags = (doc.get("metadata") or {}).get("tags")
            row.resources = res.merge_with_defaults(raw, doc, self.defaults)
            row.model.configure(doc, row.resources)
            self._join_topics(row)
            self._invalidate(row)
            self._auto_resume(row, now, "edit")

    def delete(self, pipeline_id: str) -> None:
        with self.lock:
            now = self.now()
            row = self._existing(pipeline_id, self._not_found(pipeline_id), now)
            if row.status not in DELETABLE:
                raise ApiError(400, "bad_request",
                               f"pipeline can only be deleted if it's stopped, current status: {row.status}",
                               {"pipeline_id": pipeline_id, "current_status": row.status})
            if not row.deleting:
                row.deleting = True
                fault = self.faults.transition("delete", pipeline_id)
                delay = self.delays.delete
                if fault is not None and fault.kind == "slow_transition":
                    delay = float(fault.spec.get("delay", delay * float(fault.spec.get("factor", 1.0))))
                if fault is None or fault.kind != "stuck_transition":
                    self._schedule(row, now + delay, "remove")

    def rename(self, pipeline_id: str, body: Any) -> None:
        body = validation.canonical_keys("rename_body", body)
        message = validation.first_error("rename_body", body)
        if message:
            raise huma_error(message)
        with self.lock:
            now = self.now()
            row = self._existing(pipeline_id, "no pipeline with given id found", now)
            row.name = body["name"]
            row.updated_at = now
            self._invalidate(row)

    def update_metadata(self, pipeline_id: str, body: Any) -> None:
        body = validation.canonical_keys("metadata_body", body)
        message = validation.first_error("metadata_body", body)
        if message:
            raise huma_error(message)
        with self.lock:
            now = self.now()
            row = self._existing(pipeline_id, "no pipeline with given id found", now)
            row.tags = body["metadata"]["tags"]
            row.updated_at = now
            self._invalidate(row)

    # --- resources ------------------------------------------------------------------------------------

    def get_resources(self, pipeline_id: str) -> Json:
        with self.lock:
            row = self._existing(pipeline_id, f'resources for pipeline "{pipeline_id}" not found')
            return {"pipeline_resources": copy.deepcopy(row.resources),
                    "fields_policy": {"immutable": res.immutable_paths(row.doc)}}

    def resources_validation(self, pipeline_id: str) -> Json:
        with self.lock:
            row = self._existing(pipeline_id, f'pipeline "{pipeline_id}" not found')
            return {"fields_policy": {"immutable": res.immutable_paths(row.doc)}}

    def put_resources(self, pipeline_id: str, body: Any) -> Json:
        body = validation.canonical_keys("resources_put_body", body)
        message = validation.first_error("resources_put_body", body)
        if message:
            raise huma_error(message)
        new = body["pipeline_resources"]
        with self.lock:
            now = self.now()
            row = self._existing(pipeline_id, f'pipeline "{pipeline_id}" not found', now)
            self._require_editable(row, 409)
            problems = res.validate_internal(new)
            if problems:
                raise ApiError(422, "unprocessable_entity", f"invalid pipeline resources: {problems[0][1]}")
            problem = res.check_immutability(row.resources, new, res.immutable_paths(row.doc))
            if problem:
                raise ApiError(422, "unprocessable_entity", f"invalid pipeline resources: {problem}")
            merged = res.merge_with_defaults(new, row.doc, self.defaults)
            stream = merged["nats"]["stream"]
            if self.put_rewrites_max_bytes and stream.get("maxBytes") == "0":
                stream["maxBytes"] = "-1"  # the k8s orchestrator rewrites the shared value (reference §3.5)
            row.resources = merged
            row.model.configure(row.doc, merged)
            self._invalidate(row)
            self._auto_resume(row, now, "edit")
            return {"pipeline_resources": copy.deepcopy(merged),
                    "fields_policy": {"immutable": res.immutable_paths(row.doc)}}

    # --- DLQ ----------------------------------------------------------------------------------------

    def _dlq_row(self, pipeline_id: str) -> Row:
        row = self._row(pipeline_id, self.now())
        if row is None or not row.dlq.exists:
            raise ApiError(404, "not_found", f'dlq for pipeline_id "{pipeline_id}" does not exist')
        return row

    def dlq_state(self, pipeline_id: str) -> Json:
        with self.lock:
            dlq = self._dlq_row(pipeline_id).dlq
            return {
                "last_received_at": self.clock.timestamp(dlq.last_received) if dlq.last_received is not None else None,
                "last_consumed_at": self.clock.timestamp(dlq.last_consumed) if dlq.last_consumed is not None else None,
                "total_messages": int(dlq.total),
                "unconsumed_messages": int(dlq.unconsumed),
            }

    def dlq_consume(self, pipeline_id: str, batch_size: int) -> list[Json]:
        with self.lock:
            row = self._dlq_row(pipeline_id)
            dlq = row.dlq
            available = int(dlq.unconsumed)
            count = min(batch_size, available)
            out: list[Json] = []
            while len(out) < count and dlq.queue:
                head = dlq.queue[0]
                take = min(count - len(out), int(head[2]) if head[2] >= 1 else 1)
                for _ in range(take):
                    dlq.seq += 1
                    out.append(_dlq_message(row, head[0], head[1], dlq.seq))
                head[2] -= take
                if head[2] < 1:
                    dlq.queue.pop(0)
            dlq.unconsumed = max(0.0, dlq.unconsumed - len(out))
            if out:
                dlq.last_consumed = self.now()
            return out

    def dlq_purge(self, pipeline_id: str) -> None:
        with self.lock:
            row = self._dlq_row(pipeline_id)
            row.dlq = DlqState(last_received=row.dlq.last_received, last_consumed=row.dlq.last_consumed)

    # --- simulator-only views ----------------------------------------------------------------------

    def rows_snapshot(self) -> list[Row]:
        with self.lock:
            self.advance_all()
            return list(self.rows.values())

    def row(self, pipeline_id: str) -> Row | None:
        with self.lock:
            return self._row(pipeline_id, self.now())

    def patch_model(self, pipeline_id: str, params: Json) -> Json:
        """Change the world outside GlassFlow (Kafka partitions, load, ClickHouse) from now on.

        ``params`` is deep-merged into the pipeline's model parameters; state is kept.
        """
        with self.lock:
            now = self.now()
            row = self._existing(pipeline_id, self._not_found(pipeline_id), now)
            model = row.model
            merged = deep_merge(model.params, params)
            for source in merged.get("sources", {}).values():
                profiles.check_profile(deep_merge(DEFAULT_PARAMS["source"], source)["profile"])
            model.params = merged
            model.configure(row.doc, row.resources)
            self.model_params[pipeline_id] = deep_merge(self.model_params.get(pipeline_id, {}), params)
            for source in model.sources if model.kafka else []:  # partitions belong to the topic, not the reader
                for other, theirs in self._topic_readers(source.topic, row):
                    if theirs.partitions != source.partitions:
                        self._advance(other, now)  # the change applies from now on, to every reader
                        self._set_partitions(other, theirs.source_id, source.partitions)
            return model.params

    # --- Kafka topics: one simulated cluster ------------------------------------------------------

    def _topic_readers(self, topic: str, exclude: Row) -> list[tuple[Row, Any]]:
        return [(other, source) for other in self.rows.values() if other is not exclude and other.model.kafka
                for source in other.model.sources if source.topic == topic]

    def _join_topics(self, row: Row) -> None:
        """A pipeline reading a topic that others already read sees the topic's partition count."""
        for source in row.model.sources if row.model.kafka else []:
            readers = self._topic_readers(source.topic, row)
            if readers and readers[0][1].partitions != source.partitions:
                self._set_partitions(row, source.source_id, readers[0][1].partitions, remember=False)

    def _set_partitions(self, row: Row, source_id: str, partitions: int, *, remember: bool = True) -> None:
        patch = {"sources": {source_id: {"partitions": partitions}}}
        row.model.params = deep_merge(row.model.params, patch)
        row.model.configure(row.doc, row.resources)
        if remember:  # like patch_model: a pipeline re-created under this id keeps it
            base = self.model_params.get(row.pipeline_id, self.default_model)
            self.model_params[row.pipeline_id] = deep_merge(base, patch)

    def add_fault(self, spec: Any) -> Fault:
        with self.lock:
            now = self.advance_all()
            fault = self.faults.add(spec, now)
            if fault.kind == "self_stop":
                for row in self.rows.values():
                    if fault.pipeline in (None, row.pipeline_id):
                        self._schedule(row, max(now, now + float(fault.spec.get("after", 0))), "self_stop",
                                       fault_id=fault.id)
            return fault


_DLQ_ERRORS = {
    "retry_exhausted": "failed to insert batch after {retries} retries: code: 252, message: Too many parts. "
                       "Merges are processing significantly slower than inserts",
    "dedup_overflow": "dedup store is full: cannot store key for deduplication",
    "schema_mismatch": "message does not match the source schema",
    "unrecoverable": "stop timed out: message swept to the DLQ",
}


def _dlq_message(row: Row, component: str, reason: str, seq: int) -> Json:
    sources = row.doc.get("sources") or [{}]
    fields_ = sources[0].get("schema_fields") or [{"name": "id", "type": "string"}]
    sample = {f.get("name"): _sample_value(f.get("type"), seq) for f in fields_}
    if reason.startswith("sink_rejection_"):
        error = f"clickhouse rejected the row: {reason.removeprefix('sink_rejection_')}"
    else:
        error = _DLQ_ERRORS.get(reason, reason).format(retries=row.model.params["sink"]["max_retries"])
    return {"component": component, "error": error, "original_message": json.dumps(sample, separators=(",", ":"))}


def _sample_value(field_type: Any, seq: int) -> Any:
    if field_type in ("int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64"):
        return seq
    if field_type in ("float", "float32", "float64"):
        return seq + 0.5
    if field_type == "bool":
        return seq % 2 == 0
    if field_type == "array":
        return [f"item-{seq}"]
    if field_type == "map":
        return {"k": f"v{seq}"}
    return f"value-{seq}"
