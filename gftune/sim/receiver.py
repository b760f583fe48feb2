"""The OTLP receiver: one shared process that takes OTLP requests and publishes their records to the
pipelines' ``…-otlp-out_<k>`` streams (``clickhouse-etl:glassflow-api/internal/otlp-receiver``).

Its meter has the default service name (``job="glassflow"``) and no instance id
(``charts:charts/glassflow-etl/templates/otlp-receiver-configmap.yaml``). Per request it records
``receiver_request_count_total`` and ``…_duration_seconds`` with the pipeline from the request's
header, ``transport`` and ``status`` (``ok``, or ``error`` for an HTTP status ≥ 500;
``internal/otlp-receiver/server/http/middleware.go:25-44``); per published request
``processor_messages_total{component="otlp.<signal>",status="out"}`` and ``bytes_processed_total``
(``in`` = request size, ``out`` = bytes published; ``server/processor/processor.go:147-225``). When the
streams refuse its writes for 5 attempts 1 s apart it records a backpressure *start* for
``component="oltp-receiver"`` (sic) with an empty ``pipeline_id``, at most once per 5 minutes per
pipeline, and never a stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gftune.glassflow import instruments as ins
from gftune.sim.pods import SERVICE_VERSION
from gftune.sim.telemetry import Meter, Resource

RESOURCE = Resource("glassflow", None, (("service_version", SERVICE_VERSION),))
REQUEST_SECONDS = 0.004  # time to take one request (inferred: a decode and an async publish)
ATTEMPTS_S = 5.0  # five write attempts, 1 s apart, before backpressure is signalled
SIGNAL_EVERY = 300.0  # at most one backpressure start per 5 minutes per pipeline
COMPONENT = "oltp-receiver"


@dataclass
class Receiver:
    meter: Meter = field(default_factory=lambda: Meter(RESOURCE, 0.0))
    refused_since: dict[str, float] = field(default_factory=dict)  # pipeline -> start of refused writes
    signalled: dict[str, float] = field(default_factory=dict)  # pipeline -> last backpressure start

    def record(self, pipeline_id: str, signal: str, t: float, arrived: float, taken: float, record_bytes: float,
               records_per_request: float, waiting: float) -> None:
        """One model step of one pipeline's OTLP source: ``arrived`` records sent, ``taken`` published,
        ``waiting`` still refused by the streams (the clients retry them)."""
        per_request = max(1.0, records_per_request)
        ok, refused = taken / per_request, max(0.0, arrived - taken) / per_request
        for status, requests in (("ok", ok), ("error", refused)):
            if requests > 0:
                labels = (signal, pipeline_id, "http", status)
                self.meter.add(ins.RECEIVER_REQUEST_COUNT, labels, requests)
                self.meter.observe(ins.RECEIVER_REQUEST_DURATION, labels, REQUEST_SECONDS, requests)
        if taken > 0:
            self.meter.add(ins.PROCESSOR_MESSAGES, (signal, "out", pipeline_id), taken)
            self.meter.add(ins.BYTES_PROCESSED, (signal, "in", pipeline_id), taken * record_bytes)
            self.meter.add(ins.BYTES_PROCESSED, (signal, "out", pipeline_id), taken * record_bytes)
        if waiting <= 1e-6:
            self.refused_since.pop(pipeline_id, None)
            return
        since = self.refused_since.setdefault(pipeline_id, t)
        last = self.signalled.get(pipeline_id)
        if t - since >= ATTEMPTS_S and (last is None or t - last >= SIGNAL_EVERY):
            self.signalled[pipeline_id] = t
            labels = (COMPONENT, "")  # this process never sets its pipeline id
            self.meter.set(ins.COMPONENT_BACKPRESSURE_ACTIVE, labels, 1.0)
            self.meter.add(ins.COMPONENT_BACKPRESSURE_EVENTS, labels, 1.0)
