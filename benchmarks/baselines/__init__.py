"""Baselines for the economy benchmark: what a user would otherwise run instead of gftune.

One module per method, each a pure rule (tested in ``tests/benchmarks``) plus a small loop that
reads Prometheus and changes the pipeline through the GlassFlow API (:mod:`.user`):

* :mod:`.manual` — the seed's procedure (GlassFlow's ``tune-pipeline`` skill): match a symptom row,
  change one knob, wait, verify, revert what did not help;
* :mod:`.hpa` — the Kubernetes HPA's proportional rule on the backlog metrics KEDA would feed it;
* :mod:`.numaflow` — Numaflow's autoscaler rule (±2 replicas a step, cooldowns, backpressure veto);
* :mod:`.oracle` — the minimum sufficient configuration from the simulator's truth, in one step.

Only the oracle reads the truth; the others see what gftune sees.
"""

from __future__ import annotations

from benchmarks.baselines import hpa, manual, numaflow, oracle

METHODS = {"manual": manual.run, "hpa": hpa.run, "numaflow": numaflow.run, "oracle": oracle.run}
