"""The API's pipeline store: every route's operation on the stored rows (reference §1.5, §3, §4).

Each public method takes the store lock, has the operator bring the affected rows up to "now"
(``gftune.sim.operator``) and then acts, so the state at sim time ``t`` never depends on when it
was read. Errors are raised as :class:`ApiError` carrying the exact status, code, message and
details of the real API. The DLQ lives in ``gftune.sim.dlq``, the shared Kafka topics in
``gftune.sim.topics``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from typing import Any

from gftune.glassflow import resources as res
from gftune.glassflow import rules
from gftune.glassflow.statuses import DELETABLE, EDITABLE, OPERATION_TARGET, Status, check_transition
from gftune.sim import documents, profiles, topics, validation
from gftune.sim.clickhouse_server import ClickHouseServer
from gftune.sim.clock import Clock
from gftune.sim.errors import ApiError, huma_error, pipeline_not_found
from gftune.sim.faults import Fault, FaultSet
from gftune.sim.model import PipelineModel
from gftune.sim.operator import Delays, Operator
from gftune.sim.params import DEFAULT_PARAMS, deep_merge
from gftune.sim.receiver import RESOURCE as RECEIVER_RESOURCE
from gftune.sim.receiver import Receiver
from gftune.sim.rows import Row
from gftune.sim.telemetry import Collector, Meter

Json = dict[str, Any]
_ID_RE = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")

__all__ = ["Store"]


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
        self.collector = Collector()  # the chart's OTel collector (operator series; see telemetry)
        self.receiver = Receiver(Meter(RECEIVER_RESOURCE, clock.now()))  # the shared OTLP receiver process
        self.clickhouse = ClickHouseServer()  # the ClickHouse every sink inserts into (its ProfileEvents)
        self.operator = Operator(clock, self.delays, self.faults, dt, lambda pid: self.rows.pop(pid, None),
                                 self.collector)

    # --- time ----------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def advance_all(self, now: float | None = None) -> float:
        now = self.now() if now is None else now
        for row in list(self.rows.values()):
            self.operator.advance(row, now)
        return now

    def _row(self, pipeline_id: str, now: float) -> Row | None:
        row = self.rows.get(pipeline_id)
        if row is not None and not self.operator.advance(row, now):
            return None
        return row

    # --- helpers ---------------------------------------------------------------------------------

    def _new_model(self, pipeline_id: str, doc: Json, resources: Json, now: float) -> PipelineModel:
        params = self.model_params.get(pipeline_id, self.default_model)
        start = now - (now % self.dt)
        return PipelineModel(pipeline_id, doc, resources, params, seed=self.seed, t0=start, dt=self.dt,
                             collector=self.collector, receiver=self.receiver, clickhouse=self.clickhouse)

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
            topics.join_topics(row, self.rows.values(), self.default_model)
            self.operator.created(row, now, running=running)

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
            row = self._existing(pipeline_id, pipeline_not_found(pipeline_id))
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
            row = self._existing(pipeline_id, pipeline_not_found(pipeline_id))
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
            self.operator.set_status(row, target, now)
            self.operator.request(row, operation, now)

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
            topics.join_topics(row, self.rows.values(), self.default_model)
            self._invalidate(row)
            self.operator.auto_resume(row, now, "edit")

    def delete(self, pipeline_id: str) -> None:
        with self.lock:
            now = self.now()
            row = self._existing(pipeline_id, pipeline_not_found(pipeline_id), now)
            if row.status not in DELETABLE:
                raise ApiError(400, "bad_request",
                               f"pipeline can only be deleted if it's stopped, current status: {row.status}",
                               {"pipeline_id": pipeline_id, "current_status": row.status})
            if not row.deleting:
                row.deleting = True
                self.operator.delete(row, now)

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
            self.operator.auto_resume(row, now, "edit")
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
            return self._dlq_row(pipeline_id).dlq.view(self.clock)

    def dlq_consume(self, pipeline_id: str, batch_size: int) -> list[Json]:
        with self.lock:
            row = self._dlq_row(pipeline_id)
            return row.dlq.consume(batch_size, row.doc, self.now())

    def dlq_purge(self, pipeline_id: str) -> None:
        with self.lock:
            row = self._dlq_row(pipeline_id)
            row.dlq = row.dlq.purged()

    # --- simulator-only views ----------------------------------------------------------------------

    def rows_snapshot(self) -> list[Row]:
        """Every row brought up to now, with the operator's pushes due by then delivered."""
        with self.lock:
            now = self.advance_all()
            self.operator.push_metrics(now)
            self.collector.push_due(self.receiver.meter, now)
            self.collector.expire(now)
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
            row = self._existing(pipeline_id, pipeline_not_found(pipeline_id), now)
            model = row.model
            merged = deep_merge(model.params, params)
            for source in merged.get("sources", {}).values():
                profiles.check_profile(deep_merge(DEFAULT_PARAMS["source"], source)["profile"])
            model.params = merged
            model.configure(row.doc, row.resources)
            self.model_params[pipeline_id] = deep_merge(self.model_params.get(pipeline_id, {}), params)
            # partitions belong to the topic, not the reader: the change applies to every reader from now on
            topics.spread_partitions(row, self.rows.values(), self.model_params, self.default_model,
                                     lambda other: self.operator.advance(other, now))
            return model.params

    def add_fault(self, spec: Any) -> Fault:
        with self.lock:
            now = self.advance_all()
            fault = self.faults.add(spec, now)
            self.operator.fault_added(fault, list(self.rows.values()), now)
            return fault
