"""The pods of a pipeline as the collector sees them: one OTel meter per replica, with the resource
the operator gives it (``glassflow-etl-k8s-operator:internal/controller/create_components.go``:
``GLASSFLOW_OTEL_SERVICE_NAME``/``…_NAMESPACE``/``…_PIPELINE_ID``/``…_SERVICE_INSTANCE_ID``), so that
``job`` is ``pipeline-<id>/<service>`` and ``instance`` the pod name (``ingestor-0-1``, ``sink-2``).
"""

from __future__ import annotations

from gftune.glassflow import topology as topo
from gftune.sim.telemetry import Meter, Resource

SERVICE_VERSION = "v3.1.0"  # the chart's appVersion (charts:charts/glassflow-etl/Chart.yaml)


def meter(pipeline_id: str, node: topo.Node, ordinal: int, started: float) -> Meter:
    """A fresh meter for replica ``ordinal`` of ``node``, its process started at sim time ``started``."""
    resource = Resource(topo.job(pipeline_id, node.service), topo.pod_name(node.statefulset, ordinal),
                        (("pipeline_id", pipeline_id), ("service_version", SERVICE_VERSION)))
    return Meter(resource, started)
