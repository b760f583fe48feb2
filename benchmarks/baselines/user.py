"""What a user's own controller has: PromQL answers from Prometheus and the GlassFlow API.

Readings are in the units of the metrics (records, records per simulated second, 0..1); the
simulator divides its counters by the time scale, so ``rate()`` over wall-clock windows is per
simulated second, while a gauge's ``deriv()`` is time-scale times its per-simulated-second slope
(divided back here). A change is what GlassFlow lets a user do: stop, wait for Stopped, ``PUT
/resources`` (resources only) or ``POST /edit`` (the whole document, when a pipeline field
changes; it carries the resources), then wait for Running — the operator resumes by itself.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from gftune.desired import paths
from gftune.glassflow.quantities import QuantityError, parse_quantity
from gftune.metrics.naming import Naming, detect

Json = dict[str, Any]


@dataclass(frozen=True)
class Readings:
    """One look at the metrics; None where the metrics say nothing."""

    at: float  # simulated seconds
    read_rate: float | None  # records/s read from Kafka
    sink_rate: float | None  # rows/s written to ClickHouse
    lag: float | None  # Kafka consumer-group lag, records
    lag_growth: float | None  # records/s
    depth: float | None  # messages stored in the pipeline's NATS streams
    lag_avg: float | None  # the two above averaged over the window
    depth_avg: float | None
    backpressure: float | None  # share of the window the ingestor held back (0..1)
    batch_p95: float | None  # rows per insert
    retry_rate: float | None  # sink_retries_total{outcome="retry"} per second
    exhausted_rate: float | None
    partitions: float | None  # of the source topic (kafka_exporter)


@dataclass(frozen=True)
class LiveConfig:
    """The knobs of a single-source, non-join pipeline, as GET returns them."""

    source_id: str
    topic: str
    ingestor_replicas: int
    ingestor_cpu: float | None  # cores
    sink_replicas: int
    sink_cpu: float | None
    max_batch_size: int
    max_msgs: float  # the stream's message limit; inf when unlimited
    doc: Json


def cores(value: Any) -> float | None:
    try:
        return float(parse_quantity(str(value))) if value not in (None, "") else None
    except QuantityError:
        return None


class PromReader:
    """Instant PromQL queries against a Prometheus that scrapes the simulator."""

    def __init__(self, url: str, pipeline_id: str, topic: str, time_scale: float, *, namespace: str = "glassflow",
                 client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.pipeline_id = pipeline_id
        self.topic = topic
        self.time_scale = time_scale
        self.namespace = namespace
        self.client = client or httpx.Client(timeout=10)
        self._naming: Naming | None = None

    def close(self) -> None:
        self.client.close()

    def naming(self) -> Naming:
        """Namespace and naming mode, detected from the names Prometheus has (once they are known)."""
        if self._naming is None or "undetermined" in self._naming.detail:
            names = self.client.get(f"{self.url}/api/v1/label/__name__/values").json().get("data", [])
            self._naming = detect(names, namespace=self.namespace)
        return self._naming

    def window(self, sim_seconds: float) -> str:
        """A PromQL range covering ``sim_seconds`` of simulated time."""
        return f"{max(1, round(sim_seconds * 1000 / self.time_scale))}ms"

    def value(self, promql: str) -> float | None:
        """The sum of an instant vector; None when it is empty or not a number."""
        response = self.client.get(f"{self.url}/api/v1/query", params={"query": promql})
        response.raise_for_status()
        result = response.json()["data"]["result"]
        values = [float(r["value"][1]) for r in result]
        values = [v for v in values if math.isfinite(v)]
        return sum(values) if values else None

    def readings(self, at: float, window_s: float) -> Readings:
        n = self.naming()
        sel = f'{{pipeline_id="{self.pipeline_id}"}}'
        topic = f'{{topic="{self.topic}"}}'
        w = self.window(window_s)

        def rate(logical: str, labels: str = "") -> float | None:
            inner = f'pipeline_id="{self.pipeline_id}"' + (f",{labels}" if labels else "")
            return self.value(f"sum(rate({n.metric(logical)}{{{inner}}}[{w}]))")

        growth = self.value(f"sum(deriv(kafka_consumergroup_lag{topic}[{w}]))")
        bp = self.value(f"max(avg_over_time({n.metric('ingestor_backpressure_active')}{sel}[{w}]))")
        depth = self.value(f"sum(max by (stream) ({n.metric('stream_depth')}{sel}))")
        depth_avg = self.value(f"sum(max by (stream) (avg_over_time({n.metric('stream_depth')}{sel}[{w}])))")
        return Readings(
            at=at,
            read_rate=rate("kafka_records_read_total"),
            sink_rate=rate("clickhouse_records_written_total"),
            lag=self.value(f"sum(kafka_consumergroup_lag{topic})"),
            lag_growth=None if growth is None else growth / self.time_scale,
            depth=depth,
            lag_avg=self.value(f"sum(avg_over_time(kafka_consumergroup_lag{topic}[{w}]))"),
            depth_avg=depth_avg,
            # the gauge appears only once the ingestor has recorded a value; a pipeline whose depth is
            # reported but has no gauge has not held back yet
            backpressure=bp if bp is not None else (0.0 if depth is not None else None),
            batch_p95=self.value(f"histogram_quantile(0.95, sum by (le) "
                                 f"(rate({n.metric('sink_batch_size_records')}_bucket{sel}[{w}])))"),
            retry_rate=rate("sink_retries_total", 'outcome="retry"'),
            exhausted_rate=rate("sink_retries_total", 'outcome="exhausted"'),
            partitions=self.value(f"max(kafka_topic_partitions{topic})"),
        )


class PipelineApi:
    """The GlassFlow API of one pipeline, as a user's script calls it."""

    def __init__(self, api_url: str, pipeline_id: str, now: Callable[[], float], time_scale: float, *,
                 poll_s: float = 2.0, timeout_s: float = 1200.0) -> None:
        self.base = f"{api_url.rstrip('/')}/api/v1/pipeline/{pipeline_id}"
        self.pipeline_id = pipeline_id
        self.now = now
        self.time_scale = time_scale
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.client = httpx.Client(timeout=10)

    def close(self) -> None:
        self.client.close()

    def _ok(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise RuntimeError(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                               f"{response.text[:300]}")
        return response.json() if response.content else None

    def document(self) -> Json:
        return self._ok(self.client.get(self.base))

    def status(self) -> str:
        return self._ok(self.client.get(f"{self.base}/health"))["overall_status"]

    def config(self) -> LiveConfig:
        doc = self.document()
        sources = doc.get("sources") or []
        if len(sources) != 1 or doc.get("join"):
            raise ValueError("the baselines handle single-source pipelines without a join")
        source = sources[0]
        sid = source["source_id"]
        res = doc.get("resources") or {}
        ingestor = next((s for s in res.get("sources") or [] if s.get("source_id") == sid), {})
        sink = res.get("sink") or {}
        max_msgs = float(((res.get("nats") or {}).get("stream") or {}).get("maxMsgs") or -1)
        return LiveConfig(
            source_id=sid, topic=source.get("topic") or sid,
            ingestor_replicas=int(ingestor.get("replicas") or 1),
            ingestor_cpu=cores((ingestor.get("limits") or {}).get("cpu")),
            sink_replicas=int(sink.get("replicas") or 1), sink_cpu=cores((sink.get("limits") or {}).get("cpu")),
            max_batch_size=int(doc["sink"]["max_batch_size"]),
            max_msgs=max_msgs if max_msgs > 0 else math.inf, doc=doc)

    def wait_for(self, wanted: str) -> None:
        deadline = self.now() + self.timeout_s
        while True:
            status = self.status()
            if status == wanted:
                return
            if status == "Failed" and wanted == "Running":
                raise RuntimeError("the pipeline went Failed after the change")
            if self.now() > deadline:
                raise RuntimeError(f"still {status} after {self.timeout_s:.0f} simulated seconds")
            time.sleep(self.poll_s / self.time_scale)

    def change(self, changes: Mapping[str, Any]) -> Json:
        """Apply ``changes`` (gftune field paths -> values) in one stop -> update -> resume cycle;
        returns when the pipeline runs again, with the simulated times of each step."""
        t0 = self.now()
        doc = self.document()
        pipeline_fields = [p for p in changes if not p.startswith("resources.")]
        if self.status() not in ("Stopped", "Failed"):
            self._ok(self.client.post(f"{self.base}/stop"))
            self.wait_for("Stopped")
        t_stopped = self.now()
        if pipeline_fields:
            edited = copy.deepcopy(doc)
            for path, value in changes.items():
                paths.set_value(edited, path, value)
            self._ok(self.client.post(f"{self.base}/edit", json=edited))
            call = "edit"
        else:
            body = self._ok(self.client.get(f"{self.base}/resources"))["pipeline_resources"]
            for path, value in changes.items():
                paths.set_value(body, internal_path(path), value)
            self._ok(self.client.put(f"{self.base}/resources", json={"pipeline_resources": body}))
            call = "put_resources"
        self.wait_for("Running")
        return {"t_request": t0, "t_stopped": t_stopped, "t_running": self.now(), "call": call,
                "changes": dict(changes)}


def internal_path(path: str) -> str:
    """A v3 document's resource path as ``PUT /resources`` names it (single source, no join):
    ``resources.sources[orders].replicas`` -> ``ingestor.base.replicas``."""
    steps = path.split(".")
    if steps[0] != "resources" or len(steps) < 3:
        raise ValueError(f"not a resource path: {path}")
    head, rest = steps[1], steps[2:]
    if head.startswith("sources["):
        return ".".join(["ingestor", "base", *rest])
    if head.startswith("transform"):
        return ".".join(["transform", *rest])
    return ".".join([head, *rest])
