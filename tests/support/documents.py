"""One pipeline as plain data for the plan's tests: as a user writes it in git, and as the API returns
it (``GET /pipeline/{id}`` and the internal shape of ``GET /resources``), with a secret reference and
the resolver that gives it a value."""

from __future__ import annotations

from gftune.desired import secrets

PASSWORD = "s3cr3t-Value-42"


def desired_doc():
    """A pipeline as a user writes it in git (short durations, defaults left out, a reference)."""
    return {
        "version": "v3",
        "pipeline_id": "orders-dedup",
        "name": "Orders",
        "sources": [{
            "type": "kafka", "source_id": "orders", "topic": "orders",
            "connection_params": {"brokers": ["kafka:9092"], "protocol": "PLAINTEXT", "mechanism": "NO_AUTH"},
            "schema_fields": [{"name": "order_id", "type": "string"}, {"name": "amount", "type": "float"}],
        }],
        "transforms": [
            {"type": "filter", "source_id": "orders", "config": {"expression": "amount > 0"}},
            {"type": "dedup", "source_id": "orders", "config": {"key": "order_id", "time_window": "1h"}},
        ],
        "sink": {
            "type": "clickhouse", "table": "orders", "max_batch_size": 1000, "max_delay_time": "60s",
            "connection_params": {"host": "ch", "port": "9000", "http_port": "8123", "database": "default",
                                  "username": "default", "password": "${env:CH_PASSWORD}", "secure": False},
            "mapping": [{"name": "order_id", "column_name": "order_id", "column_type": "String"},
                        {"name": "amount", "column_name": "amount", "column_type": "Float64"}],
        },
        "resources": {
            "sources": [{"source_id": "orders", "replicas": 2, "limits": {"memory": "1.5Gi", "cpu": "1500m"}}],
            "transform": [{"source_id": "orders", "storage": {"size": "10Gi"}}],
            "sink": {"replicas": 1},
            "nats": {"stream": {"maxAge": "24h"}},
        },
    }


def live_doc():
    """What GET /pipeline/{id} returns for it (reference §2.6)."""
    return {
        "version": "v3",
        "pipeline_id": "orders-dedup",
        "name": "Orders",
        "sources": [{
            "type": "kafka", "source_id": "orders", "topic": "orders", "consumer_group_initial_offset": "earliest",
            "schema_version": "1",
            "connection_params": {"brokers": ["kafka:9092"], "protocol": "PLAINTEXT", "mechanism": "NO_AUTH",
                                  "skip_auth": False},
            "schema_fields": [{"name": "order_id", "type": "string"}, {"name": "amount", "type": "float"}],
        }],
        "transforms": [
            {"type": "dedup", "source_id": "orders", "config": {"key": "order_id", "time_window": "1h0m0s"}},
            {"type": "filter", "source_id": "orders", "config": {"expression": "amount > 0", "time_window": "0s"}},
        ],
        "sink": {
            "type": "clickhouse", "table": "orders", "max_batch_size": 1000, "max_delay_time": "1m0s",
            "connection_params": {"host": "ch", "port": "9000", "http_port": "8123", "database": "default",
                                  "username": "default", "password": PASSWORD, "secure": False},
            "mapping": [{"name": "order_id", "column_name": "order_id", "column_type": "String"},
                        {"name": "amount", "column_name": "amount", "column_type": "Float64"}],
        },
        "metadata": {"tags": None},
        "resources": {"nats": {"stream": {"maxAge": "24h", "maxBytes": "0", "maxMsgs": 8000}}},
    }


def live_internal():
    return {
        "nats": {"stream": {"maxAge": "24h", "maxBytes": "0", "maxMsgs": 8000}},
        "ingestor": {"base": {"replicas": 2, "requests": {"cpu": "1000m", "memory": "256Mi"},
                              "limits": {"cpu": "1.5", "memory": "1536Mi"}}},
        "transform": {"replicas": 1, "requests": {"cpu": "1000m", "memory": "1Gi"},
                      "limits": {"cpu": "2000m", "memory": "2Gi"}, "storage": {"size": "10Gi"}},
        "sink": {"replicas": 1, "requests": {"cpu": "1000m", "memory": "500Mi"},
                 "limits": {"cpu": "1500m", "memory": "1.5Gi"}},
    }


def resolver(env):
    return secrets.Resolver(env, base_dir=__import__("pathlib").Path("."))


ENV = {"CH_PASSWORD": PASSWORD}
