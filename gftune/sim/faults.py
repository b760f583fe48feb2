"""Faults on demand: from a scenario's ``faults:`` list or ``POST /_sim/faults`` (same format).

Kinds:

* ``http_error``: answer a route with a 5xx (``status``, default 503) instead of handling it.
* ``timeout``: hold the request for ``seconds`` wall seconds (default 30, longer than usual client
  timeouts) before handling it.
* ``slow_transition``: an operator transition (``operation``: create, stop, resume, terminate,
  delete, edit) takes ``delay`` sim seconds, or ``factor`` x its configured delay.
* ``stuck_transition``: it never finishes by itself; like the real operator, a stuck stop is
  forced to ``Stopped`` after the stop timeout (300 s) and any other operation goes ``Failed``
  after the reconcile timeout (900 s).
* ``fail_on_resume``: the next resume (including the auto-resume after edit or PUT /resources)
  ends ``Failed``.
* ``self_stop``: the operator stops a Running pipeline by itself ``after`` sim seconds.

Common keys: ``pipeline`` (only this pipeline id), ``times`` (only the next N matches; default:
unlimited, for ``fail_on_resume`` 1). HTTP faults take ``route``: ``"METHOD PATH"`` where PATH is
a route template (``/api/v1/pipeline/{id}/stop``) or a glob over the concrete path
(``/api/v1/pipeline/*``); METHOD may be ``*``. ``GET /metrics`` is the metrics endpoint's route (a
fault there is a failed or slow scrape). HTTP faults may take ``probability`` (0 < p <= 1, default 1):
each matching request is faulted with that probability, drawn from an RNG seeded with the
simulator's seed; a request that is spared does not use one of the fault's ``times``.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = ("http_error", "timeout", "slow_transition", "stuck_transition", "fail_on_resume", "self_stop")
OPERATIONS = ("create", "stop", "resume", "terminate", "delete", "edit")


class FaultError(ValueError):
    pass


@dataclass
class Fault:
    id: int
    kind: str
    spec: dict[str, Any]
    remaining: int | None
    pipeline: str | None = None
    method: str = "*"
    path: str = "*"
    added_at: float = 0.0
    hits: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, **self.spec, "remaining": self.remaining, "hits": self.hits}


def parse_fault(spec: Any, fault_id: int, now: float) -> Fault:
    if not isinstance(spec, dict):
        raise FaultError(f"a fault must be a mapping, got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; expected one of {', '.join(KINDS)}")
    allowed = {"kind", "pipeline", "times"} | {
        "http_error": {"route", "status", "body", "probability"},
        "timeout": {"route", "seconds", "probability"},
        "slow_transition": {"operation", "delay", "factor"},
        "stuck_transition": {"operation"},
        "fail_on_resume": set(),
        "self_stop": {"after"},
    }[kind]
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise FaultError(f"fault kind {kind!r} does not take {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(allowed))}")
    times = spec.get("times", 1 if kind == "fail_on_resume" else None)
    if times is not None and (not isinstance(times, int) or times < 1):
        raise FaultError(f"fault 'times' must be a positive integer, got {times!r}")
    fault = Fault(fault_id, kind, dict(spec), times, spec.get("pipeline"), added_at=now)
    if kind in ("http_error", "timeout"):
        route = spec.get("route")
        if not isinstance(route, str) or not route.strip():
            raise FaultError(f"fault kind {kind!r} needs a route like 'POST /api/v1/pipeline/{{id}}/stop'")
        method, _, path = route.strip().partition(" ")
        if not path:
            method, path = "*", method
        fault.method, fault.path = method.upper(), path.strip()
        if kind == "http_error":
            status = spec.get("status", 503)
            if not isinstance(status, int) or not 500 <= status <= 599:
                raise FaultError(f"http_error status must be a 5xx code, got {status!r}")
        elif not isinstance(spec.get("seconds", 30), int | float):
            raise FaultError("timeout 'seconds' must be a number")
        probability = spec.get("probability", 1)
        if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 < probability <= 1:
            raise FaultError(f"fault 'probability' must be a number in (0, 1], got {probability!r}")
    if kind in ("slow_transition", "stuck_transition"):
        if spec.get("operation") not in OPERATIONS:
            raise FaultError(f"fault kind {kind!r} needs operation: one of {', '.join(OPERATIONS)}")
        if kind == "slow_transition" and not any(isinstance(spec.get(k), int | float) for k in ("delay", "factor")):
            raise FaultError("slow_transition needs 'delay' (sim seconds) or 'factor'")
    if kind == "self_stop" and not isinstance(spec.get("after", 0), int | float):
        raise FaultError("self_stop 'after' must be a number of sim seconds")
    return fault


class FaultSet:
    """The active faults; thread-safe. Matching a fault with ``times`` uses one of its shots."""

    def __init__(self, seed: int | None = None) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)  # draws for faults with a probability: reproducible per seed

    def add(self, spec: Any, now: float = 0.0) -> Fault:
        with self._lock:
            fault = parse_fault(spec, next(self._ids), now)
            self._faults.append(fault)
            return fault

    def remove(self, fault_id: int | None = None) -> int:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if fault_id is not None and f.id != fault_id]
            return before - len(self._faults)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._faults]

    def _use(self, fault: Fault) -> None:
        fault.hits += 1
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)

    def match_http(self, method: str, path: str, template: str | None, pipeline_id: str | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind not in ("http_error", "timeout"):
                    continue
                if fault.method not in ("*", method):
                    continue
                if fault.path != template and not fnmatch.fnmatchcase(path, fault.path):
                    continue
                if fault.pipeline is not None and fault.pipeline != pipeline_id:
                    continue
                if self._rng.random() >= float(fault.spec.get("probability", 1)):
                    continue  # spared this time
                self._use(fault)
                return fault
        return None

    def transition(self, operation: str, pipeline_id: str) -> Fault | None:
        """A slow/stuck fault for this operation on this pipeline, if any (uses one shot)."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in ("slow_transition", "stuck_transition") \
                        and fault.spec["operation"] == operation \
                        and fault.pipeline in (None, pipeline_id):
                    self._use(fault)
                    return fault
        return None

    def fail_on_resume(self, pipeline_id: str) -> bool:
        with self._lock:
            for fault in self._faults:
                if fault.kind == "fail_on_resume" and fault.pipeline in (None, pipeline_id):
                    self._use(fault)
                    return True
        return False

    def self_stops(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if f.kind == "self_stop"]

    def consume(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._use(fault)
