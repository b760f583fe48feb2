"""Metrics: the expression model and its PromQL (``expr``, ``prommath``), naming detection (``naming``),
snapshots and their answers (``snapshots``, ``recorded``), and the sources that take them at the edge
(``sources``: a Prometheus server, or two direct scrapes of ``/metrics``)."""
