"""Small helpers for the simulator's tests: a valid v3 document, status polling, a manual-clock world."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import httpx

from gftune.sim import Simulator
from gftune.sim.clock import ManualClock
from gftune.sim.params import deep_merge

ORDERS: dict[str, Any] = {
    "version": "v3",
    "pipeline_id": "orders-test",
    "name": "Orders",
    "sources": [{
        "type": "kafka", "source_id": "orders", "topic": "orders",
        "connection_params": {"brokers": ["kafka:9092"], "protocol": "PLAINTEXT", "mechanism": "NO_AUTH"},
        "schema_fields": [{"name": "order_id", "type": "string"}, {"name": "amount", "type": "float"}],
    }],
    "sink": {
        "type": "clickhouse", "table": "orders", "max_batch_size": 1000, "max_delay_time": "60s",
        "connection_params": {"host": "ch", "port": "9000", "http_port": "8123", "database": "default",
                              "username": "default", "password": "pw", "secure": False},
        "mapping": [{"name": "order_id", "column_name": "order_id", "column_type": "String"},
                    {"name": "amount", "column_name": "amount", "column_type": "Float64"}],
    },
}


def orders_doc(pipeline_id: str = "orders-test", patch: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    doc = copy.deepcopy(ORDERS)
    doc["pipeline_id"] = pipeline_id
    doc.update(copy.deepcopy(top))
    return deep_merge(doc, patch) if patch else doc


def dedup_doc(pipeline_id: str = "orders-dedup-test", window: str = "1h", **top: Any) -> dict[str, Any]:
    doc = orders_doc(pipeline_id, **top)
    doc["transforms"] = [{"type": "dedup", "source_id": "orders", "config": {"key": "order_id", "time_window": window}}]
    return doc


def wait_status(client: httpx.Client, pipeline_id: str, wanted: str, timeout: float = 10.0) -> dict[str, Any]:
    """Poll /health until ``overall_status`` is ``wanted``; return the health body."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        response = client.get(f"/api/v1/pipeline/{pipeline_id}/health")
        body = response.json() if response.status_code == 200 else {"overall_status": response.status_code}
        if not seen or seen[-1] != body["overall_status"]:
            seen.append(body["overall_status"])
        if body["overall_status"] == wanted:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{pipeline_id} never reached {wanted}; statuses seen: {seen}")
        time.sleep(0.02)


def wait_gone(client: httpx.Client, pipeline_id: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/api/v1/pipeline/{pipeline_id}").status_code != 404:
        if time.monotonic() > deadline:
            raise AssertionError(f"{pipeline_id} still there after {timeout}s")
        time.sleep(0.02)


class World:
    """A simulator store on a manual clock, with helpers to measure rates over sim time."""

    def __init__(self, *scenarios, **options):
        self.clock = ManualClock()
        self.sim = Simulator(list(scenarios), clock=self.clock, **options)
        self.store = self.sim.build()

    def run(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.store.advance_all()

    def pid(self) -> str:
        return next(iter(self.store.rows))

    def counters(self, pid: str) -> dict:
        """Every counter and histogram sum/count the pipeline's running pods have recorded, summed over
        the pods, keyed ``<instrument without gfm_ and _total><labels without pipeline_id>``."""
        out: dict[str, float] = {}
        for meter in self.store.row(pid).model._meters():
            for (instrument, labels), value in meter.counters.items():
                key = f"{_short(instrument.name)}{_without_pid(instrument, labels)}"
                out[key] = out.get(key, 0.0) + value
            for (instrument, labels), hist in meter.histograms.items():
                key = f"{_short(instrument.name)}{_without_pid(instrument, labels)}"
                out[key + "_sum"] = out.get(key + "_sum", 0.0) + hist.total
                out[key + "_count"] = out.get(key + "_count", 0.0) + hist.count
        return out

    def gauges(self, pid: str) -> dict:
        """The last value of every gauge per pod: ``{(short name, labels without pipeline_id, pod): value}``."""
        out = {}
        for meter in self.store.row(pid).model._meters():
            for (instrument, labels), value in meter.gauges.items():
                out[(_short(instrument.name), _without_pid(instrument, labels), meter.resource.instance)] = value
        return out

    def rates(self, pid: str, seconds: float = 60) -> dict:
        before = self.counters(pid)
        self.run(seconds)
        after = self.counters(pid)
        return {k: (v - before.get(k, 0.0)) / seconds for k, v in after.items()}

    def read_rate(self, pid: str, seconds: float = 60) -> float:
        return self.rates(pid, seconds).get("kafka_records_read('ingestor',)", 0.0)

    def backpressure(self, pid: str, component: str = "ingestor") -> float | None:
        """The highest ``backpressure_active`` gauge of the pipeline's running pods of ``component``
        (``component_backpressure_active{component}``); None while no episode was ever recorded."""
        values = [v for (name, labels, _pod), v in self.gauges(pid).items()
                  if name == "component_backpressure_active" and labels == (component,)]
        return max(values) if values else None

    def depth_ratio(self, pid: str) -> float | None:
        """The highest sampled ``stream_depth_ratio`` of the pipeline; None before the first sample."""
        values = [v for (name, _labels, _pod), v in self.gauges(pid).items() if name == "stream_depth_ratio"]
        return max(values) if values else None

    def status(self, pid: str) -> str:
        return self.store.health(pid)["overall_status"]

    def truth(self, pid: str) -> dict:
        return self.sim.truth(pid)

    def wait_for(self, pid: str, wanted: str, limit: float = 400.0) -> float:
        """Step one sim second at a time until ``pid`` is ``wanted``; the sim seconds it took."""
        waited = 0.0
        while self.status(pid) != wanted:
            assert waited < limit, f"{pid} not {wanted} after {limit:.0f} sim s (still {self.status(pid)})"
            self.run(1)
            waited += 1
        return waited

    def stop(self, pid: str) -> None:
        """Stop and wait until the operator reports Stopped (once the consumers have drained)."""
        self.store.operate(pid, "stop")
        self.wait_for(pid, "Stopped")

    def doc(self, pid: str) -> dict[str, Any]:
        return json.loads(self.store.get(pid))

    def put_resources(self, pid: str, change) -> None:
        self.stop(pid)
        current = self.store.get_resources(pid)["pipeline_resources"]
        change(current)
        self.store.put_resources(pid, {"pipeline_resources": current})
        self.wait_for(pid, "Running")

    def edit(self, pid: str, change) -> None:
        self.stop(pid)
        doc = self.doc(pid)
        change(doc)
        self.store.edit(pid, doc)
        self.wait_for(pid, "Running")


def _short(name: str) -> str:
    return name.removeprefix("gfm_").removesuffix("_total")


def _without_pid(instrument, labels: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v for k, v in zip(instrument.labels, labels, strict=True) if k != "pipeline_id")
