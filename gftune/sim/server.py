"""The HTTP side: the GlassFlow API routes (reference §1.4) and the metrics endpoint, as raw ASGI apps.

Raw ASGI rather than a framework's router, because the real server's edge behaviour must be exact:
gorilla/mux's plain-text ``404 page not found`` for unknown paths, an empty-bodied 405 for a known
path with the wrong method, huma's error bodies, and an empty 200 for an empty DLQ consume.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, generate_latest

from gftune.sim.errors import ApiError, huma_error
from gftune.sim.faults import FaultError, FaultSet
from gftune.sim.metrics import HttpStats, SimCollector
from gftune.sim.profiles import ProfileError
from gftune.sim.scenarios import ScenarioError, check_model
from gftune.sim.store import Store

Json = dict[str, Any]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_BODY = 1 << 20  # huma's default body limit


class Response:
    __slots__ = ("body", "content_type", "status")

    def __init__(self, status: int, body: bytes = b"", content_type: str | None = "application/json") -> None:
        self.status, self.body, self.content_type = status, body, content_type


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data, separators=(",", ":")).encode())


def error_response(error: ApiError) -> Response:
    return json_response(error.body(), error.status)


EMPTY_OK = json_response({})


class Request:
    __slots__ = ("body", "content_type", "method", "params", "path", "query")

    def __init__(self, method: str, path: str, query: dict[str, list[str]], params: dict[str, str],
                 body: bytes, content_type: str) -> None:
        self.method, self.path, self.query, self.params = method, path, query, params
        self.body, self.content_type = body, content_type

    def json(self) -> Any:
        ctype = self.content_type.split(";")[0].strip().lower()
        if ctype and ctype != "application/json" and not ctype.endswith("+json"):
            raise ApiError(415, "", f"unsupported content type: {ctype}")
        if not self.body.strip():
            raise huma_error("unexpected end of JSON input (body: )", status=400)
        try:
            return json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise huma_error(f"{_go_json_error(exc, self.body)} (body: {self.body.decode(errors='replace')})",
                             status=400) from None


def _go_json_error(exc: Exception, body: bytes) -> str:
    """Roughly the wording of Go's encoding/json errors."""
    if isinstance(exc, json.JSONDecodeError):
        if exc.pos >= len(exc.doc.rstrip()):
            return "unexpected end of JSON input"
        char = exc.doc[exc.pos]
        if exc.msg.startswith("Expecting value"):
            return f"invalid character '{char}' looking for beginning of value"
        if exc.msg.startswith("Extra data"):
            return f"invalid character '{char}' after top-level value"
        return f"invalid character '{char}' {exc.msg.lower()}"
    return "invalid UTF-8 in JSON input"


Handler = Callable[["ApiApp", Request], Response]


def _route(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")


class ApiApp:
    """The GlassFlow API (``/api/...``) plus the simulator's own ``/_sim/...`` routes."""

    def __init__(self, store: Store, http_stats: HttpStats, truth: Callable[[str], Json]) -> None:
        self.store = store
        self.http_stats = http_stats
        self.truth = truth
        self.routes: list[tuple[str, re.Pattern[str], dict[str, Handler], bool]] = []
        for template, methods in ROUTES.items():
            self.routes.append((template, _route(template), methods, not template.startswith("/_sim")))

    def match(self, path: str) -> tuple[str | None, dict[str, Handler], dict[str, str], bool]:
        for template, regex, methods, is_api in self.routes:
            found = regex.match(path)
            if found:
                return template, methods, found.groupdict(), is_api
        return None, {}, {}, True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        template, methods, params, is_api = self.match(path)
        body = b""
        too_large = False
        more = True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            if len(body) + len(chunk) > MAX_BODY:
                too_large = True
            else:
                body += chunk
            more = message.get("more_body", False)
        if template is None:
            response = Response(404, b"404 page not found\n", "text/plain; charset=utf-8")
        elif method not in methods:
            response = Response(405, b"", None)
        else:
            pipeline_id = params.get("id")
            fault = self.store.faults.match_http(method, path, template, pipeline_id) if is_api else None
            response = None
            if fault is not None and fault.kind == "timeout":
                await asyncio.sleep(float(fault.spec.get("seconds", 30)))
            elif fault is not None:
                response = _fault_response(fault.spec)
            if response is None:
                if too_large:
                    response = error_response(ApiError(413, "", "request body is too large"))
                else:
                    headers = dict(scope.get("headers") or [])
                    request = Request(method, path, parse_qs(scope.get("query_string", b"").decode()), params, body,
                                      headers.get(b"content-type", b"").decode())
                    try:
                        response = methods[method](self, request)
                    except ApiError as error:
                        response = error_response(error)
        headers = [(b"content-length", str(len(response.body)).encode())]
        if response.content_type:
            headers.append((b"content-type", response.content_type.encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
        if is_api:
            self.http_stats.observe(method, template or "unknown", response.status, time.perf_counter() - started)


def _fault_response(spec: Json) -> Response:
    status = int(spec.get("status", 503))
    if status == 500 and spec.get("body", "json") == "json":
        return json_response({"status": 500, "code": "internal_error", "message": "Internal server error"}, 500)
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return Response(status, f"{status} {phrase}\n".encode(), "text/plain; charset=utf-8")


# --- handlers ---------------------------------------------------------------------------------------

def _healthz_v1(app: ApiApp, req: Request) -> Response:
    return Response(200, b"", None)


def _healthz_v2(app: ApiApp, req: Request) -> Response:
    return json_response({"status": "ok"})


def _platform(app: ApiApp, req: Request) -> Response:
    return json_response({"orchestrator": "k8s"})


def _list(app: ApiApp, req: Request) -> Response:
    return json_response(app.store.list())


def _create(app: ApiApp, req: Request) -> Response:
    app.store.create(req.json())
    return EMPTY_OK


def _get(app: ApiApp, req: Request) -> Response:
    return Response(200, app.store.get(req.params["id"], req.query.get("schema")))


def _rename(app: ApiApp, req: Request) -> Response:
    app.store.rename(req.params["id"], req.json())
    return EMPTY_OK


def _delete(app: ApiApp, req: Request) -> Response:
    app.store.delete(req.params["id"])
    return EMPTY_OK


def _metadata(app: ApiApp, req: Request) -> Response:
    app.store.update_metadata(req.params["id"], req.json())
    return EMPTY_OK


def _operation(name: str) -> Handler:
    def handler(app: ApiApp, req: Request) -> Response:
        app.store.operate(req.params["id"], name)
        return EMPTY_OK

    return handler


def _edit(app: ApiApp, req: Request) -> Response:
    app.store.edit(req.params["id"], req.json())
    return EMPTY_OK


def _health(app: ApiApp, req: Request) -> Response:
    return json_response(app.store.health(req.params["id"]))


def _get_resources(app: ApiApp, req: Request) -> Response:
    return json_response(app.store.get_resources(req.params["id"]))


def _put_resources(app: ApiApp, req: Request) -> Response:
    return json_response(app.store.put_resources(req.params["id"], req.json()))


def _resources_validation(app: ApiApp, req: Request) -> Response:
    return json_response(app.store.resources_validation(req.params["id"]))


def _dlq_state(app: ApiApp, req: Request) -> Response:
    return json_response(app.store.dlq_state(req.params["id"]))


def _dlq_consume(app: ApiApp, req: Request) -> Response:
    values = req.query.get("batch_size")
    batch_size = 1  # DLQDefaultBatchSize
    if values:
        text = values[0]
        try:
            batch_size = int(text)
        except ValueError:
            raise huma_error(f"invalid integer (query.batch_size: {text})") from None
        if batch_size < 1:
            raise huma_error(f"expected number >= 1 (query.batch_size: {text})")
        if batch_size > 1000:
            raise huma_error(f"expected number <= 1000 (query.batch_size: {text})")
    messages = app.store.dlq_consume(req.params["id"], batch_size)
    if not messages:
        return Response(200, b"", None)  # the handler returns nil output: an empty body
    return json_response(messages)


def _dlq_purge(app: ApiApp, req: Request) -> Response:
    app.store.dlq_purge(req.params["id"])
    return EMPTY_OK


def _not_simulated(app: ApiApp, req: Request) -> Response:
    """Routes of the real API that the simulator does not reproduce: a clear 501, not a misleading 404/405."""
    raise ApiError(501, "not_implemented", f"{req.method} {req.path} is not simulated by gftune sim")


# --- simulator routes (benchmarks and tests only; gftune's tuner never reads them) ----------------

def _sim_truth(app: ApiApp, req: Request) -> Response:
    return json_response(app.truth(req.params["id"]))


def _sim_faults_list(app: ApiApp, req: Request) -> Response:
    return json_response(app.store.faults.list())


def _sim_faults_add(app: ApiApp, req: Request) -> Response:
    spec = req.json()
    specs = spec if isinstance(spec, list) else [spec]
    try:
        added = [app.store.add_fault(s).describe() for s in specs]
    except FaultError as exc:
        raise ApiError(422, "invalid_fault", str(exc)) from None
    return json_response(added if isinstance(spec, list) else added[0])


def _sim_faults_clear(app: ApiApp, req: Request) -> Response:
    return json_response({"removed": app.store.faults.remove()})


def _sim_fault_delete(app: ApiApp, req: Request) -> Response:
    try:
        fault_id = int(req.params["fid"])
    except ValueError:
        raise ApiError(404, "not_found", "no such fault") from None
    removed = app.store.faults.remove(fault_id)
    if not removed:
        raise ApiError(404, "not_found", f"no fault with id {fault_id}")
    return json_response({"removed": removed})


def _sim_model(app: ApiApp, req: Request) -> Response:
    body = req.json()
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_model", "the body must be an object of model parameters")
    try:
        check_model(body, "model")
        params = app.store.patch_model(req.params["id"], body)
    except (ScenarioError, ProfileError) as exc:
        raise ApiError(422, "invalid_model", str(exc)) from None
    return json_response(params)


def _sim_clock(app: ApiApp, req: Request) -> Response:
    clock = app.store.clock
    return json_response({"sim_seconds": clock.now(), "time_scale": clock.time_scale,
                          "epoch": clock.timestamp(0.0)})


ROUTES: dict[str, dict[str, Handler]] = {
    "/api/v1/healthz": {"GET": _healthz_v1},
    "/api/v2/healthz": {"GET": _healthz_v2},
    "/api/v1/platform": {"GET": _platform},
    "/api/v1/pipeline": {"GET": _list, "POST": _create},
    # matched before /{id}, as in the real router
    "/api/v1/pipeline/migrate-preview": {"POST": _not_simulated},
    "/api/v1/filter/validate": {"POST": _not_simulated},
    "/api/v1/transform/expression/evaluate": {"POST": _not_simulated},
    "/api/v1/openapi.json": {"GET": _not_simulated},
    "/api/v1/docs": {"GET": _not_simulated},
    "/internal/pipelines/{id}/otlp-config": {"GET": _not_simulated},
    "/api/v1/pipeline/{id}": {"GET": _get, "PATCH": _rename, "DELETE": _delete},
    "/api/v1/pipeline/{id}/metadata": {"PATCH": _metadata},
    "/api/v1/pipeline/{id}/stop": {"POST": _operation("stop")},
    "/api/v1/pipeline/{id}/terminate": {"POST": _operation("terminate")},
    "/api/v1/pipeline/{id}/resume": {"POST": _operation("resume")},
    "/api/v1/pipeline/{id}/edit": {"POST": _edit},
    "/api/v1/pipeline/{id}/health": {"GET": _health},
    "/api/v1/pipeline/{id}/resources": {"GET": _get_resources, "PUT": _put_resources},
    "/api/v1/pipeline/{id}/resources/validation": {"GET": _resources_validation},
    "/api/v1/pipeline/{id}/dlq/state": {"GET": _dlq_state},
    "/api/v1/pipeline/{id}/dlq/consume": {"GET": _dlq_consume},
    "/api/v1/pipeline/{id}/dlq/purge": {"POST": _dlq_purge},
    "/_sim/truth/{id}": {"GET": _sim_truth},
    "/_sim/faults": {"GET": _sim_faults_list, "POST": _sim_faults_add, "DELETE": _sim_faults_clear},
    "/_sim/faults/{fid}": {"DELETE": _sim_fault_delete},
    "/_sim/model/{id}": {"PATCH": _sim_model},
    "/_sim/clock": {"GET": _sim_clock},
}


class MetricsApp:
    """``GET /metrics`` in the Prometheus text format (prometheus_client's exposition); HTTP faults
    on the route ``GET /metrics`` make scrapes fail or hang (missing scrapes)."""

    def __init__(self, collector: SimCollector, faults: FaultSet | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        scrape = scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD")
        fault = self.faults.match_http(scope["method"], "/metrics", "/metrics", None) \
            if scrape and self.faults is not None else None
        if scope["path"] != "/metrics":
            status, body, ctype = 404, b"404 page not found\n", b"text/plain; charset=utf-8"
        elif not scrape:
            status, body, ctype = 405, b"", b"text/plain; charset=utf-8"
        elif fault is not None and fault.kind == "http_error":
            response = _fault_response(fault.spec)
            status, body, ctype = response.status, response.body, (response.content_type or "").encode()
        else:
            if fault is not None:  # a timeout: the scrape hangs first
                await asyncio.sleep(float(fault.spec.get("seconds", 30)))
            body = await asyncio.to_thread(generate_latest, self.registry)
            status, ctype = 200, b"text/plain; version=0.0.4; charset=utf-8"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})


class ClickHouseMetricsApp:
    """``GET /metrics`` of the simulated ClickHouse server (its ``<prometheus>`` endpoint, by
    convention on its own port 9363): the text the store's
    :class:`~gftune.sim.clickhouse_server.ClickHouseServer` writes, counters without ``_total`` as
    ClickHouse writes them."""

    def __init__(self, store: Store, time_scale: float = 1.0) -> None:
        self.store = store
        self.time_scale = time_scale

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            status, body = 404, b"404 Not Found\n"
        elif scope["method"] not in ("GET", "HEAD"):
            status, body = 405, b""
        else:
            await asyncio.to_thread(self.store.rows_snapshot)  # the models run up to now, as for /metrics
            status, body = 200, self.store.clickhouse.exposition(self.time_scale).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; version=0.0.4; charset=UTF-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})
