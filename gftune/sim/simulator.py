"""The in-process simulator: API and metrics servers on background threads.

>>> with Simulator(scenarios=["healthy"], time_scale=10).start() as sim:
...     httpx.get(sim.api_url + "/api/v1/pipeline")
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from typing import Any

import uvicorn

from gftune.glassflow.instruments import DEFAULT_NAMING
from gftune.sim import scenarios as scenario_files
from gftune.sim import truth as truth_module
from gftune.sim.clock import Clock, ScaledClock
from gftune.sim.errors import ApiError, pipeline_not_found
from gftune.sim.faults import FaultSet
from gftune.sim.metrics import NAMING_MODES, HttpStats, SimCollector
from gftune.sim.operator import Delays
from gftune.sim.params import kafka_topics
from gftune.sim.server import ApiApp, ClickHouseMetricsApp, MetricsApp
from gftune.sim.store import Store

Json = dict[str, Any]


class Simulator:
    """A GlassFlow API + metrics twin.

    ``scenarios``: names (``"healthy"``), paths, or scenario mappings. ``time_scale``: sim seconds
    per wall second. ``delays``: operator timings in sim seconds (override the scenarios').
    ``seed``: noise seed (default: the first scenario's ``seed``, else 0).
    """

    def __init__(self, scenarios: list[str | os.PathLike[str] | Json] | None = None, time_scale: float = 1.0,
                 naming: str = DEFAULT_NAMING, namespace: str = "glassflow", seed: int | None = None,
                 delays: Json | None = None, *, dt: float = 1.0, clock: Clock | None = None,
                 nats_exporter: bool = False, clickhouse_metrics: bool = False) -> None:
        if naming not in NAMING_MODES:
            raise ValueError(f"naming must be one of {', '.join(NAMING_MODES)}, got {naming!r}")
        self.scenarios = [scenario_files.load(s) for s in scenarios or []]
        self.time_scale = float(time_scale)
        self.naming = naming
        self.namespace = namespace
        self.nats_exporter = nats_exporter  # also expose the chart's NATS exporter series (jetstream_*)
        # also serve the ClickHouse server's own Prometheus endpoint (ClickHouseProfileEvents_*), on its own port
        self.clickhouse_metrics = clickhouse_metrics
        self.dt = dt
        self._clock = clock
        self.seed = seed if seed is not None else next((s.seed for s in self.scenarios if s.seed is not None), 0)
        chosen = {s.resource_defaults for s in self.scenarios if s.resource_defaults}
        if len(chosen) > 1:
            raise scenario_files.ScenarioError("scenarios disagree on resource_defaults: " + ", ".join(sorted(chosen)))
        self.resource_defaults = scenario_files.RESOURCE_DEFAULTS[chosen.pop() if chosen else "helm"]
        merged_delays: Json = {}
        for scenario in self.scenarios:
            merged_delays.update(scenario.delays)
        merged_delays.update(delays or {})
        self.delays = Delays.from_dict(merged_delays)
        self.truths: dict[str, Json] = {}
        self.model_params: dict[str, Json] = {}
        self.default_model: Json = {}
        seen: dict[str, str] = {}
        topics: dict[str, tuple[int, str, str]] = {}  # topic -> (partitions, pipeline, scenario)
        for scenario in self.scenarios:
            self.default_model = scenario.model or self.default_model
            for spec in scenario.pipelines:
                if spec.pipeline_id in seen:
                    raise scenario_files.ScenarioError(f"pipeline {spec.pipeline_id!r} is declared by both "
                                                       f"{seen[spec.pipeline_id]} and {scenario.source}")
                seen[spec.pipeline_id] = scenario.source
                self.model_params[spec.pipeline_id] = spec.model
                self.truths[spec.pipeline_id] = spec.truth
                for _sid, topic, partitions in kafka_topics(spec.doc, spec.model):
                    first = topics.setdefault(topic, (partitions, spec.pipeline_id, scenario.source))
                    if first[0] != partitions:  # one simulated Kafka cluster: a topic has one partition count
                        raise scenario_files.ScenarioError(
                            f"topic {topic!r} has {first[0]} partitions for pipeline {first[1]} ({first[2]}) but "
                            f"{partitions} for pipeline {spec.pipeline_id} ({scenario.source}); give one of them "
                            "its own topic")
        self.store: Store | None = None
        self.http_stats = HttpStats()
        self._servers: list[uvicorn.Server] = []
        self._thread: threading.Thread | None = None
        self.api_url = ""
        self.metrics_url = ""
        self.host = "127.0.0.1"
        self.port = 0
        self.metrics_port = 0
        self.clickhouse_port = 0
        self.clickhouse_url = ""  # the ClickHouse server's /metrics, when clickhouse_metrics

    # --- lifecycle ------------------------------------------------------------------------------

    def build(self) -> Store:
        """Create the store and preload the scenarios' pipelines at sim time 0 (no servers)."""
        clock = self._clock or ScaledClock(self.time_scale)
        self.store = Store(clock, defaults=self.resource_defaults, delays=self.delays, faults=FaultSet(self.seed),
                           seed=self.seed, dt=self.dt, model_params=self.model_params,
                           default_model=self.default_model)
        for scenario in self.scenarios:
            for spec in scenario.pipelines:
                try:
                    self.store.create(spec.doc, running=spec.running, join_resources=spec.join_resources)
                except ApiError as exc:
                    detail = (exc.details or {}).get("error", "")
                    raise scenario_files.ScenarioError(
                        f"{scenario.source}: pipeline {spec.pipeline_id}: the API rejects it: {exc.message}"
                        + (f": {detail}" if detail else "")) from None
            for fault in scenario.faults:
                self.store.add_fault(fault)
        return self.store

    def start(self, host: str = "127.0.0.1", port: int = 0, metrics_port: int = 0,
              clickhouse_port: int = 0) -> Simulator:
        """Start the servers (API, metrics, and with ``clickhouse_metrics`` ClickHouse's /metrics);
        returns once all accept connections."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        store = self.build()
        api_sock = _bind(host, port)
        metrics_sock = _bind(host, metrics_port)
        self.host = host
        self.port = api_sock.getsockname()[1]
        self.metrics_port = metrics_sock.getsockname()[1]
        url_host = f"[{host}]" if ":" in host else host
        self.api_url = f"http://{url_host}:{self.port}"
        self.metrics_url = f"http://{url_host}:{self.metrics_port}/metrics"
        collector = SimCollector(store, self.http_stats, namespace=self.namespace, naming=self.naming,
                                 time_scale=self.time_scale, nats_exporter=self.nats_exporter)
        api = ApiApp(store, self.http_stats, self.truth)
        apps: list[tuple[Any, socket.socket]] = [(api, api_sock), (MetricsApp(collector, store.faults), metrics_sock)]
        if self.clickhouse_metrics:
            clickhouse_sock = _bind(host, clickhouse_port)
            self.clickhouse_port = clickhouse_sock.getsockname()[1]
            self.clickhouse_url = f"http://{url_host}:{self.clickhouse_port}/metrics"
            apps.append((ClickHouseMetricsApp(store, self.time_scale), clickhouse_sock))
        self._servers = [uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                                       http="h11", loop="asyncio", timeout_keep_alive=30))
                         for app, _ in apps]
        errors: list[BaseException] = []

        async def serve_all() -> None:
            await asyncio.gather(*(server.serve(sockets=[sock])
                                   for server, (_, sock) in zip(self._servers, apps, strict=True)))

        def run() -> None:
            try:
                asyncio.run(serve_all())
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)

        self._thread = threading.Thread(target=run, name=f"gftune-sim-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not all(s.started for s in self._servers):
            if errors or not self._thread.is_alive():
                raise RuntimeError(f"simulator failed to start: {errors[0] if errors else 'server thread exited'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("simulator did not start within 15 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
        self._servers = []

    def __enter__(self) -> Simulator:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- simulator-side helpers (tests and benchmarks) -----------------------------------------------

    @property
    def clock(self) -> Clock:
        assert self.store is not None, "start() or build() first"
        return self.store.clock

    def truth(self, pipeline_id: str) -> Json:
        assert self.store is not None, "start() or build() first"
        with self.store.lock:
            row = self.store.row(pipeline_id)
            if row is None:
                raise pipeline_not_found(pipeline_id)
            return truth_module.compute(row, self.truths.get(pipeline_id))

    def add_fault(self, spec: Json) -> Json:
        assert self.store is not None, "start() or build() first"
        return self.store.add_fault(spec).describe()

    def clear_faults(self) -> int:
        assert self.store is not None, "start() or build() first"
        return self.store.faults.remove()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto is IPPROTO_TCP,
    # and without it a keep-alive client waits ~40 ms (Nagle x delayed ACK) for every response body
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


__all__ = ["Simulator"]
