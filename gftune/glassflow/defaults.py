"""What the API fills in for what a pipeline document leaves out, as ``GET /api/v1/pipeline/{id}`` shows it.

Citations are files of github.com/glassflow/clickhouse-etl at c13349c4 (docs/upstream.md):

* a Kafka source's ``consumer_group_initial_offset`` defaults to ``earliest``
  (``glassflow-api/internal/models/configs.go:201-206``);
* its ``schema_version`` to ``"1"`` (``glassflow-api/internal/api/pipeline_to_model.go:309-312``);
* the join type to ``temporal`` (``glassflow-api/internal/api/pipeline_from_model.go:126-128``);
* the sink type is always reported as ``clickhouse`` (``pipeline_from_model.go:158``), whatever was sent;
* a zero ``max_delay_time`` becomes 60 s (``pipeline_to_model.go:594-596``), shown as ``1m0s``;
* filter and stateless transforms report an unused ``time_window`` of ``0s``: ``omitempty`` does not drop
  the zero ``JSONDuration`` struct (``glassflow-api/internal/api/pipeline.go:254-256``).

Resource defaults live with the resources (:mod:`gftune.glassflow.resources`).
"""

from __future__ import annotations

INITIAL_OFFSET = "earliest"
SCHEMA_VERSION = "1"
JOIN_TYPE = "temporal"
SINK_TYPE = "clickhouse"
ZERO_MAX_DELAY = "1m0s"  # what a max_delay_time of 0 comes back as
UNUSED_TIME_WINDOW = "0s"
