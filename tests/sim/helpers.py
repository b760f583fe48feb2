"""Small helpers for the simulator's tests: a valid v3 document and status polling."""

from __future__ import annotations

import copy
import time
from typing import Any

import httpx

from gftune.sim.model import deep_merge

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
