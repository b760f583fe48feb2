"""The simulator's ``/metrics`` against GlassFlow's metric inventory, both ways.

The table below is written from the reference (GlassFlow's ``pkg/observability/meter.go``, the
sink's ``internal/sink/clickhouse.go``, the operator's ``internal/observability/metrics.go`` and the
OTel collector's name normalisation), not from the simulator's code: each row gives the name in both
naming styles, the type, the labels, the values a label may take, the pod kind that emits it and
whether the shapes run here must have triggered it. A real scrape (the simulator's HTTP server on
loopback) of several pipeline shapes is then checked:

* every ``gfm_*`` family exposed is a row of the table, with the row's type, exactly its labels
  (plus ``job``/``instance``), allowed values only, and from the right kind of pod;
* every row the shapes trigger is there, with the label values they trigger;
* the old meanings are gone: no ``retry_exhausted`` reason, no depth of a stream that no ingestor
  samples, no backpressure series before an episode, nothing from the join.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gftune.sim import Simulator
from gftune.sim.clock import ManualClock

ANY = None  # any value


@dataclass(frozen=True)
class Row:
    documented: str
    collector: str
    kind: str  # counter | gauge | histogram
    labels: dict[str, frozenset[str] | re.Pattern[str] | None]  # besides job and instance
    pods: frozenset[str]  # ingestor | dedup | sink | api | operator
    expected: bool = True  # the shapes below trigger it
    must_see: dict[str, frozenset[str]] = field(default_factory=dict)  # label values they trigger


def _v(*values: str) -> frozenset[str]:
    return frozenset(values)


PID = re.compile(r"^[a-z][a-z0-9-]*$")
OTLP = _v("otlp.logs", "otlp.metrics", "otlp.traces")
STREAM_BEHIND_INGESTOR = re.compile(r"^gfm-[0-9a-f]{8}-ingestor(_left|_right)?-out_\d+$")
COMPONENT_PODS = frozenset({"ingestor", "dedup", "sink"})

TABLE = [
    Row("gfm_kafka_records_read_total", "gfm_kafka_records_read_total", "counter",
        {"component": _v("ingestor"), "pipeline_id": PID}, _v("ingestor")),
    Row("gfm_processing_duration_seconds", "gfm_processing_duration_seconds", "histogram",
        {"component": _v("ingestor", "sink", "filter", "dedup_filter", "dedup_write", "transform"),
         "stage": _v("batch", "schema_mapping", "total_preparation", "per_message", "filter", "lookup", "commit",
                     "transform"),
         "pipeline_id": PID}, _v("ingestor", "dedup", "sink"),
        must_see={"stage": _v("batch", "schema_mapping", "total_preparation", "per_message", "filter", "lookup",
                              "commit", "transform")}),
    Row("gfm_processor_messages_total", "gfm_processor_messages_total", "counter",
        {"component": _v("filter", "dedup", "transform", "sink", *OTLP),
         "status": _v("success", "filtered", "error", "duplicate", "schema_error", "retry", "out"), "pipeline_id": PID},
        _v("dedup", "sink", "receiver"),
        must_see={"component": _v("filter", "dedup", "transform", "sink", "otlp.metrics", "otlp.traces"),
                  "status": _v("success", "filtered", "duplicate", "retry", "error", "out")}),
    Row("gfm_bytes_processed_total", "gfm_bytes_processed_total", "counter",
        {"component": _v("ingestor", "filter", "dedup", "transform", "sink", *OTLP), "direction": _v("in", "out"),
         "pipeline_id": PID}, _v("ingestor", "dedup", "sink", "receiver"),
        must_see={"component": _v("ingestor", "filter", "dedup", "transform", "sink", "otlp.metrics"),
                  "direction": _v("in", "out")}),
    Row("gfm_clickhouse_records_written_total", "gfm_clickhouse_records_written_total", "counter",
        {"component": _v("sink"), "pipeline_id": PID}, _v("sink")),
    Row("gfm_sink_batch_size_records", "gfm_sink_batch_size_records", "histogram", {"pipeline_id": PID},
        _v("sink")),
    Row("gfm_sink_batch_size_bytes", "gfm_sink_batch_size_bytes", "histogram", {"pipeline_id": PID}, _v("sink")),
    Row("gfm_sink_errors_by_classification_total", "gfm_sink_errors_by_classification_total", "counter",
        {"classification": _v("retryable", "permanent", "unknown"), "error_name": re.compile(r"^[A-Za-z_]+$"),
         "pipeline_id": PID}, _v("sink"),
        must_see={"classification": _v("retryable", "permanent", "unknown")}),
    Row("gfm_sink_nack_messages_total", "gfm_sink_nack_messages_total", "counter", {"pipeline_id": PID}, _v("sink")),
    Row("gfm_sink_retries_total", "gfm_sink_retries_total", "counter",
        {"outcome": _v("retry", "exhausted"), "pipeline_id": PID}, _v("sink"),
        must_see={"outcome": _v("retry", "exhausted")}),
    Row("gfm_dlq_records_written_total", "gfm_dlq_records_written_total", "counter",
        {"component": _v("ingestor", "sink", "dedup"),
         "reason": re.compile(r"^(parse_error|unrecoverable|schema_mismatch|dedup_overflow|sink_rejection_[A-Za-z_]+)$"),
         "pipeline_id": PID}, _v("ingestor", "dedup", "sink"),
        must_see={"component": _v("ingestor", "sink"),
                  "reason": _v("parse_error", "sink_rejection_TOO_MANY_PARTS", "sink_rejection_TYPE_MISMATCH")}),
    Row("gfm_ingestor_backpressure_active", "gfm_ingestor_backpressure_active_ratio", "gauge",
        {"pipeline_id": PID}, _v("ingestor")),
    Row("gfm_ingestor_backpressure_events_total", "gfm_ingestor_backpressure_events_total", "counter",
        {"pipeline_id": PID}, _v("ingestor")),
    Row("gfm_ingestor_backpressure_duration_seconds", "gfm_ingestor_backpressure_duration_seconds", "histogram",
        {"pipeline_id": PID}, _v("ingestor")),
    Row("gfm_component_backpressure_active", "gfm_component_backpressure_active_ratio", "gauge",
        {"component": _v("ingestor", "dedup", "oltp-receiver"), "pipeline_id": PID}, _v("ingestor", "dedup", "receiver"),
        must_see={"component": _v("ingestor", "dedup")}),
    Row("gfm_component_backpressure_events_total", "gfm_component_backpressure_events_total", "counter",
        {"component": _v("ingestor", "dedup", "oltp-receiver"), "pipeline_id": PID}, _v("ingestor", "dedup", "receiver"),
        must_see={"component": _v("ingestor", "dedup")}),
    Row("gfm_component_backpressure_duration_seconds", "gfm_component_backpressure_duration_seconds", "histogram",
        {"component": _v("ingestor", "dedup"), "pipeline_id": PID}, _v("ingestor", "dedup"),
        must_see={"component": _v("ingestor", "dedup")}),
    Row("gfm_stream_depth", "gfm_stream_depth_ratio", "gauge",
        {"stream": STREAM_BEHIND_INGESTOR, "pipeline_id": PID}, _v("ingestor")),
    Row("gfm_stream_depth_ratio", "gfm_stream_depth_ratio_per_second", "gauge",
        {"stream": STREAM_BEHIND_INGESTOR, "pipeline_id": PID}, _v("ingestor")),
    Row("gfm_http_server_request_count_total", "gfm_http_server_request_count_total", "counter",
        {"method": ANY, "path": ANY, "status": re.compile(r"^\d{3}$")}, _v("api")),
    Row("gfm_http_server_request_duration_seconds", "gfm_http_server_request_duration_seconds", "histogram",
        {"method": ANY, "path": ANY, "status": re.compile(r"^\d{3}$")}, _v("api")),
    Row("gfm_receiver_request_count_total", "gfm_receiver_request_count_total", "counter",
        {"component": OTLP, "pipeline_id": PID, "transport": _v("http", "grpc"), "status": _v("ok", "error")},
        _v("receiver"), must_see={"component": _v("otlp.metrics", "otlp.traces"), "status": _v("ok")}),
    Row("gfm_receiver_request_duration_seconds", "gfm_receiver_request_duration_seconds", "histogram",
        {"component": OTLP, "pipeline_id": PID, "transport": _v("http", "grpc"), "status": _v("ok", "error")},
        _v("receiver")),
    Row("gfm_operator_reconcile_operations_total", "gfm_operator_reconcile_operations_total", "counter",
        {"operation": _v("create", "stop", "resume", "edit", "terminate", "delete"),
         "status": _v("success", "failure", "timeout"), "pipeline_id": PID}, _v("operator")),
    Row("gfm_operator_reconcile_errors_total", "gfm_operator_reconcile_errors_total", "counter",
        {"operation": ANY, "error_msg": ANY, "pipeline_id": PID}, _v("operator"), expected=False),
    Row("gfm_operator_pipeline_status_transitions_total", "gfm_operator_pipeline_status_transitions_total",
        "counter", {"from_status": ANY, "to_status": ANY, "pipeline_id": PID, "timestamp": re.compile(r"^\d+$")},
        _v("operator")),
    Row("gfm_operator_nats_operations_total", "gfm_operator_nats_operations_total", "counter",
        {"operation": _v("create_dlq_stream", "delete_dlq_stream"), "status": ANY, "pipeline_id": PID},
        _v("operator")),
    Row("gfm_operator_sweeped_messages_total", "gfm_operator_sweeped_messages_total", "counter",
        {"outcome": _v("swept", "sweep_failed", "already_deleted", "stream_empty"), "pipeline_id": PID},
        _v("operator")),
    Row("gfm_operator_sweep_duration_seconds", "gfm_operator_sweep_duration_seconds", "histogram",
        {"pipeline_id": PID}, _v("operator")),
]

# Pipeline shapes: plain with several replicas (healthy, sink-replicas-batch), sink-bound with
# backpressure, dedup (dedup-sink-bound), join (join-sink-bound), filter + dedup + stateless from an OTLP
# source and a join (demo), and the error scenarios.
SHAPES = ["healthy", "backpressure-sink-bound", "sink-replicas-batch", "dedup-sink-bound", "join-sink-bound",
          "sink-retries", "retry-exhaustion", "terminal-errors", "demo"]
NS = "glassflow"
POD = {"ingestor": re.compile(r"^ingestor-\d+-\d+$"), "dedup": re.compile(r"^dedup-\d+-\d+$"),
       "sink": re.compile(r"^sink-\d+$")}


def _pod_kind(labels: dict[str, str]) -> str:
    job = labels.get("job", "")
    if job == "glassflow/glassflow-operator":
        return "operator"
    if job == "glassflow":  # the OTLP receiver: the default service name, no instance id
        assert "instance" not in labels, labels
        return "receiver"
    if job.startswith("pipeline-") and "/" in job:
        service = job.rsplit("/", 1)[1]
        assert POD[service].match(labels.get("instance", "")), labels  # every replica its own series
        assert job == f"pipeline-{labels['pipeline_id']}/{service}", labels
        return service
    assert labels.get("job") == "glassflow/glassflow-api" and "instance" not in labels, labels
    return "api"


@pytest.fixture(scope="module", params=["collector", "documented"])
def scrape(request):
    """One simulator with every shape on a manual clock: run, stop and resume one pipeline (operator
    series), run on; then one scrape over HTTP."""
    clock = ManualClock(time_scale=10.0)
    sim = Simulator(SHAPES, time_scale=10.0, clock=clock, naming=request.param).start()
    try:
        clock.advance(150)
        early = httpx.get(sim.metrics_url).text
        sim.store.operate("orders-healthy", "stop")
        clock.advance(20)
        sim.store.operate("orders-healthy", "resume")
        clock.advance(120)
        httpx.get(sim.api_url + "/api/v1/pipeline")  # one API request
        text = httpx.get(sim.metrics_url).text
        yield request.param, text, early, sim
    finally:
        sim.stop()


def _families(text: str) -> dict[str, tuple[str, list]]:
    """Exposed name -> (type, samples). Counters are keyed by their ``_total`` name."""
    out = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        out[name] = (family.type, family.samples)
    return out


def _rows(naming: str) -> dict[str, Row]:
    return {f"{NS}_{row.collector if naming == 'collector' else row.documented}": row for row in TABLE}


def _allowed(rule, value: str) -> bool:
    if rule is ANY:
        return True
    if isinstance(rule, re.Pattern):
        return bool(rule.match(value))
    return value in rule


def test_every_exposed_family_is_glassflows_with_its_type_labels_values_and_pod(scrape):
    naming, text, _early, _sim = scrape
    rows = _rows(naming)
    exposed = {name: v for name, v in _families(text).items() if "gfm_" in name}
    assert exposed
    for name, (kind, samples) in exposed.items():
        assert name in rows, f"{name} is not a GlassFlow metric (naming {naming})"
        row = rows[name]
        assert kind == row.kind, (name, kind)
        for sample in samples:
            labels = dict(sample.labels)
            labels.pop("le", None)
            pod = _pod_kind(labels)
            assert pod in row.pods, (name, labels)
            own = {k: v for k, v in labels.items() if k not in ("job", "instance")}
            if own.get("component") == "oltp-receiver":  # the receiver never sets its pipeline id: empty
                own.setdefault("pipeline_id", "")
                assert own["pipeline_id"] == "", labels
                own["pipeline_id"] = "receiver"
            assert set(own) == set(row.labels), (name, sorted(own), sorted(row.labels))
            for key, value in own.items():
                assert _allowed(row.labels[key], value), (name, key, value)


def test_every_row_the_shapes_trigger_is_there(scrape):
    naming, text, _early, _sim = scrape
    exposed = _families(text)
    for name, row in _rows(naming).items():
        if not row.expected:
            assert name not in exposed, f"{name}: the simulator has no process that records it"
            continue
        assert name in exposed, f"{name} missing (naming {naming})"
        _kind, samples = exposed[name]
        for key, wanted in row.must_see.items():
            seen = {s.labels.get(key) for s in samples}
            assert wanted <= seen, (name, key, sorted(wanted - seen))
    # target_info per process that pushed
    targets = exposed[f"{NS}_target_info"][1]
    assert {s.labels["job"].rsplit("/", 1)[-1] for s in targets} >= {"ingestor", "dedup", "sink", "glassflow-operator",
                                                                       "glassflow-api", "glassflow"}


def test_the_old_meanings_are_gone(scrape):
    naming, text, early, _sim = scrape
    families = _families(text)
    dlq = families[f"{NS}_gfm_dlq_records_written_total"][1]
    assert not [s for s in dlq if (s.labels["reason"] in ("retry_exhausted", "sink_rejection", "schema_mismatch")
                and s.labels["component"] != "sink") or s.labels["reason"] == "retry_exhausted"]
    assert not [s for s in dlq if s.labels["component"] in ("filter", "transform", "join")]
    for depth in ("gfm_stream_depth_ratio", "gfm_stream_depth_ratio_per_second", "gfm_stream_depth"):
        for sample in families.get(f"{NS}_{depth}", (None, []))[1]:
            assert "-dedup-out_" not in sample.labels["stream"] and "-join-out_" not in sample.labels["stream"]
    # nothing comes from a join pod
    assert not [s for _t, samples in families.values() for s in samples if s.labels.get("job", "").endswith("/join")]
    # no backpressure series for a pipeline that never had an episode; a depth ratio of 1 where it had
    active = f"{NS}_gfm_ingestor_backpressure_active" + ("_ratio" if naming == "collector" else "")
    ratio = f"{NS}_gfm_stream_depth_ratio" + ("_per_second" if naming == "collector" else "")
    for text_ in (early, text):
        fams = _families(text_)
        bp = {s.labels["pipeline_id"]: s.value for s in fams[active][1]}
        assert "orders-healthy" not in bp and "orders-retries" in bp
        ratios = {s.labels["pipeline_id"]: s.value for s in fams[ratio][1]}
        assert ratios["orders-backpressure"] == pytest.approx(1.0)  # full, not a 0.9 threshold
    # sink_retries counts rows, and errors_by_classification flushes: a retried flush is 1000 rows
    retries = {s.labels["outcome"]: s.value for s in families[f"{NS}_gfm_sink_retries_total"][1]
               if s.labels["pipeline_id"] == "orders-retries"}
    errors = sum(s.value for s in families[f"{NS}_gfm_sink_errors_by_classification_total"][1]
                 if s.labels["pipeline_id"] == "orders-retries")
    assert retries["retry"] == pytest.approx(1000 * errors, rel=0.01)
    assert "exhausted" not in retries
