"""The model's parameters (scenario ``model:`` sections) and their defaults: a comfortable, healthy pipeline."""

from __future__ import annotations

import copy
from typing import Any

Json = dict[str, Any]

DEFAULT_PARAMS: Json = {
    "source": {
        "profile": {"kind": "constant", "rate": 1000.0},
        "noise": 0.0,  # relative standard deviation of the per-step arrival rate
        "partitions": 4,
        "record_bytes": 512,
        "parse_error_fraction": 0.0,  # records the ingestor sends to the DLQ (parse_error)
        "records_per_request": 500,  # OTLP sources: records per request to the receiver
    },
    "sources": {},  # per source_id overrides of "source"
    "ingestor": {"per_replica_rate": 20000.0, "cpu_need": 1.0, "batch_records": 1000},
    "transform": {
        "per_replica_rate": 50000.0,
        "duplicate_fraction": 0.0, "filter_pass": 1.0,
        "filter_error_fraction": 0.0,  # filter evaluation errors (DLQ dedup_overflow)
        "transform_error_fraction": 0.0,  # stateless transform failures (DLQ dedup_overflow)
        "key_bytes": 128, "lookup_slowdown": 4.0, "initial_fill": 0.0,
    },
    "join": {"rate": 20000.0, "output_ratio": 1.0},
    # seconds until the NATS server acks a publish; above 1 s the ingestor's full pending-ack window
    # (min(4000, 10000 / replicas) PubAcks) is a backpressure episode of its own
    "nats": {"ack_latency": 0.001},
    "sink": {
        "insert_overhead": 0.1,  # a: seconds per insert, whatever its size
        "insert_per_row": 2e-6,  # b: seconds per row inserted
        "prepare_per_row": 1e-5,  # p: CPU seconds per row to parse and map, shared by the workers
        "base_memory": "128Mi",
        "row_memory_bytes": None,  # default: 2 x record_bytes
    },
    "clickhouse": {
        "insert_budget": 20.0,  # inserts per second ClickHouse absorbs for this table
        "error_rate": 0.0,  # share of INSERTs that fail with error_name (its class decides: NAK or DLQ)
        "error_name": "NETWORK_ERROR",
        "budget_error_name": "TOO_MANY_SIMULTANEOUS_QUERIES",  # INSERTs above insert_budget fail with it
        "permanent_error_fraction": 0.0,  # rows whose Append fails (DLQ sink_rejection_<name>, one by one)
        "permanent_error_name": "TYPE_MISMATCH",
    },
}


def deep_merge(base: Json, override: Json | None) -> Json:
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def source_params(params: Json | None, source_id: str) -> Json:
    """One source's parameters: the defaults, the model's ``source`` and its ``sources.<source_id>``."""
    merged = deep_merge(DEFAULT_PARAMS, params)
    return deep_merge(merged["source"], (merged.get("sources") or {}).get(source_id))


def kafka_topics(doc: Json, params: Json | None) -> list[tuple[str, str, int]]:
    """``(source_id, topic, partitions)`` for each Kafka source of a v3 document under ``params``."""
    out = []
    for index, source in enumerate(doc.get("sources") or []):
        if source.get("type", "kafka") != "kafka":
            continue
        sid = source.get("source_id", f"source{index}")
        out.append((sid, source.get("topic") or sid, max(1, int(source_params(params, sid)["partitions"]))))
    return out
