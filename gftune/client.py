"""Async client for the GlassFlow API (reference §1): every route gftune uses, typed errors, retries.

* One :class:`httpx.AsyncClient` with keep-alive, and a bound on requests in flight
  (``concurrency``), so that reading 1,000 pipelines neither opens 3,000 sockets nor queues behind
  one.
* Errors are :class:`ApiError` ``(status, code, message, details)`` parsed from the API's error
  body (§1.2); a transport failure is an ``ApiError`` with status 0 and code ``transport_error``.
  Their text goes through the secret masker (huma echoes request bodies in validation errors).
* Retries with exponential backoff and jitter: transport errors and 5xx answers for safe requests
  (GET); for other methods only failures to connect (the request never reached the server), unless
  the caller says the request may be repeated (``retry_unsafe=True``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from gftune import __version__
from gftune.desired.secrets import masker

Json = dict[str, Any]

API = "/api/v1"
SAFE_METHODS = frozenset({"GET", "HEAD"})
OK_STATUSES = (200, 204)  # Body struct{} endpoints answer 200 {} (reference §1.3); accept 204 too


class ApiError(Exception):
    """An error answer of the API, or a transport failure (``status`` 0)."""

    def __init__(self, status: int, code: str, message: str, details: Json | None = None, *,
                 method: str = "", path: str = "") -> None:
        self.status = status
        self.code = code
        # Masked as soon as they exist: huma echoes request bodies (secrets included) in its messages.
        self.message = masker.mask(message)
        self.details = {k: masker.mask(v) if isinstance(v, str) else v for k, v in (details or {}).items()}
        self.method = method
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.method} {self.path}: " if self.method else ""
        what = f"HTTP {self.status}" if self.status else "no answer"
        code = f" {self.code}" if self.code else ""
        detail = self.details.get("error") if isinstance(self.details, dict) else None
        extra = f" ({detail})" if isinstance(detail, str) and detail and detail != self.message else ""
        return masker.mask(f"{where}{what}{code}: {self.message}{extra}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def transport(self) -> bool:
        return self.status == 0

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status >= 500


def _error_from(response: httpx.Response, method: str, path: str) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "message" in body:
        return ApiError(response.status_code, str(body.get("code") or ""), str(body.get("message") or ""),
                        body.get("details") if isinstance(body.get("details"), dict) else None,
                        method=method, path=path)
    text = response.text.strip()[:300] or response.reason_phrase
    return ApiError(response.status_code, "", text, method=method, path=path)


class GlassFlowClient:
    """``async with GlassFlowClient(url) as api: await api.get("orders-dedup")``."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, concurrency: int = 16, retries: int = 3,
                 backoff: float = 0.2, max_backoff: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = max(1, concurrency)
        self._slots = asyncio.Semaphore(self.concurrency)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout), transport=transport,
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
            headers={"User-Agent": f"gftune/{__version__}", "Accept": "application/json"},
        )

    @classmethod
    def from_config(cls, config: Any) -> GlassFlowClient:
        """From a :class:`gftune.desired.config.Config` (api_url, api_timeout, api_concurrency, api_retries)."""
        return cls(config.api_url, timeout=config.api_timeout, concurrency=config.api_concurrency,
                   retries=config.api_retries)

    async def __aenter__(self) -> GlassFlowClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- the one request path ----------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * (2 ** attempt)) * random.uniform(0.5, 1.0)

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: Sequence[tuple[str, str]] | Mapping[str, Any] | None = None,
                      retry_unsafe: bool = False) -> Any:
        """Send one request; return the decoded JSON body (None when empty) or raise :class:`ApiError`."""
        safe = method in SAFE_METHODS or retry_unsafe
        attempt = 0
        while True:
            try:
                async with self._slots:
                    response = await self._http.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
                if attempt < self.retries and (safe or never_sent):
                    await asyncio.sleep(self._delay(attempt))
                    attempt += 1
                    continue
                reason = str(exc) or type(exc).__name__
                raise ApiError(0, "transport_error", f"{reason} (after {attempt + 1} attempt(s))",
                               method=method, path=path) from None
            if response.status_code in OK_STATUSES:
                if not response.content:
                    return None
                try:
                    return response.json()
                except ValueError:
                    raise ApiError(response.status_code, "bad_response", "answer is not JSON",
                                   method=method, path=path) from None
            error = _error_from(response, method, path)
            if error.retryable and safe and attempt < self.retries:
                await asyncio.sleep(self._delay(attempt))
                attempt += 1
                continue
            raise error

    # --- routes (reference §1.4) -------------------------------------------------------------

    @staticmethod
    def _p(pipeline_id: str, suffix: str = "") -> str:
        return f"{API}/pipeline/{pipeline_id}{suffix}"

    async def healthz(self) -> Json:
        return await self.request("GET", "/api/v2/healthz") or {}

    async def platform(self) -> Json:
        return await self.request("GET", f"{API}/platform") or {}

    async def list(self) -> list[Json]:
        """Summary rows: pipeline_id, name, transformation_type, created_at, updated_at, status, metadata."""
        return await self.request("GET", f"{API}/pipeline") or []

    async def get(self, pipeline_id: str, *, schema: Sequence[str] = ()) -> Json:
        """The v3 document as the server rebuilds it (normalised; secrets in plain text)."""
        params = [("schema", s) for s in schema] or None
        return await self.request("GET", self._p(pipeline_id), params=params)

    async def exists(self, pipeline_id: str) -> bool:
        try:
            await self.get(pipeline_id)
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return True

    async def get_resources(self, pipeline_id: str) -> Json:
        """``{"pipeline_resources": <internal shape>, "fields_policy": {"immutable": [...]}}``."""
        return await self.request("GET", self._p(pipeline_id, "/resources"))

    async def get_resources_validation(self, pipeline_id: str) -> Json:
        return await self.request("GET", self._p(pipeline_id, "/resources/validation"))

    async def get_health(self, pipeline_id: str) -> Json:
        """``{pipeline_id, pipeline_name, overall_status, created_at, updated_at}``."""
        return await self.request("GET", self._p(pipeline_id, "/health"))

    async def status(self, pipeline_id: str) -> str:
        return str((await self.get_health(pipeline_id)).get("overall_status") or "")

    async def create(self, document: Json) -> None:
        await self.request("POST", f"{API}/pipeline", json=document)

    async def edit(self, pipeline_id: str, document: Json) -> None:
        """Replace the config (Stopped or Failed only); the operator resumes it by itself afterwards."""
        await self.request("POST", self._p(pipeline_id, "/edit"), json=document)

    async def put_resources(self, pipeline_id: str, pipeline_resources: Json) -> Json:
        """Send the *full* internal resources (a partial block resets fields, reference §3.5)."""
        return await self.request("PUT", self._p(pipeline_id, "/resources"),
                                  json={"pipeline_resources": pipeline_resources})

    async def stop(self, pipeline_id: str) -> None:
        await self.request("POST", self._p(pipeline_id, "/stop"))

    async def terminate(self, pipeline_id: str) -> None:
        await self.request("POST", self._p(pipeline_id, "/terminate"))

    async def resume(self, pipeline_id: str) -> None:
        await self.request("POST", self._p(pipeline_id, "/resume"))

    async def delete(self, pipeline_id: str) -> None:
        """Stopped or Failed only; the row disappears a little later (poll :meth:`exists`)."""
        await self.request("DELETE", self._p(pipeline_id))

    async def rename(self, pipeline_id: str, name: str) -> None:
        await self.request("PATCH", self._p(pipeline_id), json={"name": name}, retry_unsafe=True)

    async def patch_metadata(self, pipeline_id: str, tags: list[str] | None) -> None:
        """Replace the whole tag list (any status, no restart)."""
        await self.request("PATCH", self._p(pipeline_id, "/metadata"), json={"metadata": {"tags": tags}},
                           retry_unsafe=True)

    async def dlq_state(self, pipeline_id: str) -> Json:
        """``{last_received_at, last_consumed_at, total_messages, unconsumed_messages}``."""
        return await self.request("GET", self._p(pipeline_id, "/dlq/state"))
