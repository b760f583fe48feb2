"""The metric catalog: every instrument GlassFlow records, and the name Prometheus sees it under.

GlassFlow's components (meter ``glassflow-etl``) and operator (meter ``glassflow-operator``) push
OTel metrics every 10 s to the Helm chart's collector, which re-exposes them on ``:9090/metrics``
(``clickhouse-etl:glassflow-api/pkg/observability/meter.go``,
``glassflow-etl-k8s-operator:internal/observability/meter.go``,
``charts:charts/glassflow-etl/templates/otel-collector-configmap.yaml``).

Two naming styles:

* ``documented``: ``<ns>_`` + the instrument name, as GlassFlow's docs write it;
* ``collector``: what the collector's prometheus exporter makes of it (``add_metric_suffixes``, the
  ``NormalizeName`` rules of opentelemetry-collector-contrib ``pkg/translator/prometheus``): a
  monotonic sum ends in one ``_total``, a unit ``s``/``By`` adds ``seconds``/``bytes`` unless the
  name has it, ``x/y`` adds ``per_<y>``, and a gauge with unit ``"1"`` gets ``_ratio``. Only the four
  gauges change: ``…_backpressure_active_ratio``, ``stream_depth_ratio`` (the *absolute* depth) and
  ``stream_depth_ratio_per_second`` (the real 0..1 ratio).
"""

from __future__ import annotations

from dataclasses import dataclass

NAMING_STYLES = ("collector", "documented")
DEFAULT_NAMING = "collector"

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BACKPRESSURE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
BATCH_RECORDS_BUCKETS = (1, 10, 100, 1000, 10000, 100000)
BATCH_BYTES_BUCKETS = (1024, 10240, 102400, 1048576, 10485760, 104857600)
SWEEP_BUCKETS = (0.1, 1, 5, 10, 30, 60, 300, 600)

COMPONENT_METER = "glassflow-etl"
OPERATOR_METER = "glassflow-operator"

_UNIT_WORDS = {"s": "seconds", "By": "bytes", "ms": "milliseconds"}


@dataclass(frozen=True, eq=False)  # one object per instrument: identity is equality, and hashing is cheap
class Instrument:
    name: str  # the OTel instrument name, e.g. gfm_kafka_records_read_total
    kind: str  # counter | gauge | histogram
    unit: str  # "1", "s", "By", "1/s"
    labels: tuple[str, ...]  # data-point attributes (job/instance come from the resource)
    help: str
    buckets: tuple[float, ...] = ()
    meter: str = COMPONENT_METER

    def exposed(self, namespace: str = "glassflow", naming: str = DEFAULT_NAMING) -> str:
        """The family name on the collector's ``/metrics`` (histograms add ``_bucket/_sum/_count``)."""
        if naming not in NAMING_STYLES:
            raise ValueError(f"naming must be one of {', '.join(NAMING_STYLES)}, got {naming!r}")
        name = self.name if naming == "documented" else normalized_name(self.name, self.kind, self.unit)
        return f"{namespace}_{name}" if namespace else name


def normalized_name(name: str, kind: str, unit: str) -> str:
    """The collector's suffix rules for one instrument (without the namespace)."""
    words = [w for w in name.split("_") if w]
    main, _, per = unit.partition("/")
    word = _UNIT_WORDS.get(main)
    if word and word not in words:
        words.append(word)
    if per:
        per_word = {"s": "second", "m": "minute", "h": "hour"}.get(per, per)
        if f"per_{per_word}" not in "_".join(words):
            words += ["per", per_word]
    if kind == "counter":
        words = [w for w in words if w != "total"] + ["total"]
    if kind == "gauge" and unit == "1" and "ratio" not in words[-1:]:
        words.append("ratio")
    return "_".join(words)


def _i(name: str, kind: str, unit: str, labels: tuple[str, ...], help_: str, buckets: tuple[float, ...] = (),
       meter: str = COMPONENT_METER) -> Instrument:
    return Instrument(name, kind, unit, labels, help_, buckets, meter)


# Components (clickhouse-etl:glassflow-api/pkg/observability/meter.go). Label order as recorded.
KAFKA_RECORDS_READ = _i("gfm_kafka_records_read_total", "counter", "1", ("component", "pipeline_id"),
                        "Records read from Kafka")
PROCESSING_DURATION = _i("gfm_processing_duration_seconds", "histogram", "s", ("component", "stage", "pipeline_id"),
                         "Processing duration per batch or message", DURATION_BUCKETS)
PROCESSOR_MESSAGES = _i("gfm_processor_messages_total", "counter", "1", ("component", "status", "pipeline_id"),
                        "Messages processed by a component, by outcome")
BYTES_PROCESSED = _i("gfm_bytes_processed_total", "counter", "1", ("component", "direction", "pipeline_id"),
                     "Payload bytes processed")
CLICKHOUSE_RECORDS_WRITTEN = _i("gfm_clickhouse_records_written_total", "counter", "1",
                                ("component", "pipeline_id"), "Records written to ClickHouse")
SINK_BATCH_SIZE_RECORDS = _i("gfm_sink_batch_size_records", "histogram", "1", ("pipeline_id",),
                             "Messages per sink flush", BATCH_RECORDS_BUCKETS)
SINK_BATCH_SIZE_BYTES = _i("gfm_sink_batch_size_bytes", "histogram", "By", ("pipeline_id",),
                           "Payload bytes per sink flush", BATCH_BYTES_BUCKETS)
SINK_ERRORS_BY_CLASSIFICATION = _i("gfm_sink_errors_by_classification_total", "counter", "1",
                                   ("classification", "error_name", "pipeline_id"),
                                   "Failed sink preparations and schema-batch sends, by classification")
SINK_NACK_MESSAGES = _i("gfm_sink_nack_messages_total", "counter", "1", ("pipeline_id",),
                        "Messages NAKed by the sink (redelivered after 5 s)")
SINK_RETRIES = _i("gfm_sink_retries_total", "counter", "1", ("outcome", "pipeline_id"),
                  "Rows of failed sends: NAKed (retry) or sent to the DLQ (exhausted)")
DLQ_RECORDS_WRITTEN = _i("gfm_dlq_records_written_total", "counter", "1", ("component", "reason", "pipeline_id"),
                         "Records written to the DLQ")
INGESTOR_BACKPRESSURE_ACTIVE = _i("gfm_ingestor_backpressure_active", "gauge", "1", ("pipeline_id",),
                                  "Ingestor backpressure episode in progress (1) or ended (0)")
INGESTOR_BACKPRESSURE_EVENTS = _i("gfm_ingestor_backpressure_events_total", "counter", "1", ("pipeline_id",),
                                  "Ingestor backpressure episodes started")
INGESTOR_BACKPRESSURE_DURATION = _i("gfm_ingestor_backpressure_duration_seconds", "histogram", "s", ("pipeline_id",),
                                    "Length of finished ingestor backpressure episodes", BACKPRESSURE_BUCKETS)
COMPONENT_BACKPRESSURE_ACTIVE = _i("gfm_component_backpressure_active", "gauge", "1", ("component", "pipeline_id"),
                                   "Component backpressure episode in progress (1) or ended (0)")
COMPONENT_BACKPRESSURE_EVENTS = _i("gfm_component_backpressure_events_total", "counter", "1",
                                   ("component", "pipeline_id"), "Component backpressure episodes started")
COMPONENT_BACKPRESSURE_DURATION = _i("gfm_component_backpressure_duration_seconds", "histogram", "s",
                                     ("component", "pipeline_id"),
                                     "Length of finished component backpressure episodes", BACKPRESSURE_BUCKETS)
STREAM_DEPTH = _i("gfm_stream_depth", "gauge", "1", ("stream", "pipeline_id"),
                  "Messages stored in the stream (JetStream State.Msgs)")
STREAM_DEPTH_RATIO = _i("gfm_stream_depth_ratio", "gauge", "1/s", ("stream", "pipeline_id"),
                        "Messages stored / the stream's MaxMsgs")
HTTP_REQUEST_COUNT = _i("gfm_http_server_request_count_total", "counter", "1", ("method", "path", "status"),
                        "API requests")
HTTP_REQUEST_DURATION = _i("gfm_http_server_request_duration_seconds", "histogram", "s", ("method", "path", "status"),
                           "API request duration", DURATION_BUCKETS)
RECEIVER_REQUEST_COUNT = _i("gfm_receiver_request_count_total", "counter", "1",
                            ("component", "pipeline_id", "transport", "status"), "OTLP receiver requests")
RECEIVER_REQUEST_DURATION = _i("gfm_receiver_request_duration_seconds", "histogram", "s",
                               ("component", "pipeline_id", "transport", "status"),
                               "OTLP receiver request duration", DURATION_BUCKETS)

# Operator (glassflow-etl-k8s-operator:internal/observability/metrics.go, meter.go).
OPERATOR_RECONCILE_OPERATIONS = _i("gfm_operator_reconcile_operations_total", "counter", "1",
                                   ("operation", "status", "pipeline_id"),
                                   "Reconcile operations by operation type and status", meter=OPERATOR_METER)
OPERATOR_RECONCILE_ERRORS = _i("gfm_operator_reconcile_errors_total", "counter", "1",
                               ("operation", "error_msg", "pipeline_id"), "Reconcile errors", meter=OPERATOR_METER)
OPERATOR_STATUS_TRANSITIONS = _i("gfm_operator_pipeline_status_transitions_total", "counter", "1",
                                 ("from_status", "to_status", "pipeline_id", "timestamp"),
                                 "Pipeline status transitions", meter=OPERATOR_METER)
OPERATOR_NATS_OPERATIONS = _i("gfm_operator_nats_operations_total", "counter", "1",
                              ("operation", "status", "pipeline_id"), "NATS operations", meter=OPERATOR_METER)
OPERATOR_SWEEPED_MESSAGES = _i("gfm_operator_sweeped_messages_total", "counter", "1", ("pipeline_id", "outcome"),
                               "Orphaned messages handled by the stop-time sweep, by outcome", meter=OPERATOR_METER)
OPERATOR_SWEEP_DURATION = _i("gfm_operator_sweep_duration_seconds", "histogram", "s", ("pipeline_id",),
                             "Duration of the stop-time orphan sweep per pipeline", SWEEP_BUCKETS,
                             meter=OPERATOR_METER)

CATALOG: tuple[Instrument, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Instrument))
BY_NAME = {i.name: i for i in CATALOG}

# The stop-time sweep's outcomes (glassflow-etl-k8s-operator:internal/controller/messages_sweep.go).
SWEEP_OUTCOMES = ("swept", "sweep_failed", "already_deleted", "stream_empty")
# The error an envelope swept at stop carries in the DLQ.
SWEEP_DLQ_ERROR = "retry_exhausted_on_stop"
