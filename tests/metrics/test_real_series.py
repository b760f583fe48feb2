"""The signals on series shaped the way a real GlassFlow deployment exposes them.

Every exposition here is written by hand to the meanings of GlassFlow's metrics (clickhouse-etl at
c13349c4; docs/signals.md): one series per pod (``job``/``instance`` from the collector, or
``exported_job``/``exported_instance`` behind a Prometheus with ``honor_labels: false``), the
collector's normalised gauge names, stream depth reported by every ingestor replica, the backpressure
gauge absent until the first episode, one ``sink_batch_size_records`` observation per flush and a
``total_preparation`` that leaves the INSERT out. The core reads them through a scrape pair, no I/O.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from gftune.desired.config import Config
from gftune.metrics import naming
from gftune.metrics.expr import ScrapePair
from gftune.metrics.sources import ScrapeSnapshot, parse_exposition
from gftune.policy.evaluate import evaluate
from gftune.policy.facts import PipelineFacts
from gftune.policy.language import parse_policy
from gftune.policy.signals import SignalContext, read_with
from gftune.policy.testing import TEST_PIPELINE
from gftune.policy.views import SnapshotView

PID = "policy-test"
H8 = hashlib.sha256(PID.encode()).hexdigest()[:8]
WINDOW = 300.0  # the default metrics window: a `for: 2m` fits between the two scrapes
NS = "glassflow"


class Exposition:
    """Series of one moment, cumulative counters advanced from per-second rates."""

    def __init__(self, *, honor_labels: bool = True) -> None:
        self.honor_labels = honor_labels
        self.lines: list[str] = []

    def _labels(self, service: str | None, pod: str | None, extra: dict[str, str]) -> str:
        labels = dict(extra)
        if service is not None:
            job, instance = f"pipeline-{PID}/{service}", pod or ""
            if self.honor_labels:
                labels.update(job=job, instance=instance)
            else:  # Prometheus keeps the collector's labels as exported_* and sets its own
                labels.update(exported_job=job, exported_instance=instance, job="glassflow-collector",
                              instance="otel-collector:9090")
        return ",".join(f'{k}="{v}"' for k, v in labels.items())

    def add(self, name: str, value: float, service: str | None = None, pod: str | None = None,
            **extra: str) -> None:
        self.lines.append(f"{NS}_gfm_{name}{{{self._labels(service, pod, {'pipeline_id': PID, **extra})}}} {value}")

    def histogram(self, name: str, count: float, total: float, service: str, pod: str, **extra: str) -> None:
        labels = self._labels(service, pod, {"pipeline_id": PID, **extra})
        self.lines += [f'{NS}_gfm_{name}_bucket{{{labels},le="+Inf"}} {count}',
                       f"{NS}_gfm_{name}_sum{{{labels}}} {total}", f"{NS}_gfm_{name}_count{{{labels}}} {count}"]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def sink_bound(t: float, *, honor_labels: bool = True, ingestors: int = 2, sinks: int = 1, episodes: bool = True,
               flush_rate: tuple[float, ...] = (4.95,), batch: float = 1000.0, t_prep: float = 0.15,
               t_map: float = 0.1, depth: float = 8000.0, max_msgs: float = 8000.0) -> str:
    """A sink saturated behind ``ingestors`` ingestor pods: each sink pod flushes full batches at its
    flush rate, preparing ``t_prep`` s of each cycle; the ingestors read what the sink drains."""
    x = Exposition(honor_labels=honor_labels)
    drained = sum(flush_rate) * batch
    for i in range(ingestors):
        pod = f"ingestor-0-{i}"
        read = drained / ingestors
        x.add("kafka_records_read_total", read * t, "ingestor", pod, component="ingestor")
        # one observation per Kafka batch of 500 records: batch wall time / records (waits included)
        batches = read / 500 * t
        x.histogram("processing_duration_seconds", batches, batches * 0.004, "ingestor", pod,
                    component="ingestor", stage="batch")
        for k in range(sinks):  # every ingestor replica samples every stream behind its subjects
            stream = f"gfm-{H8}-ingestor-out_{k}"
            x.add("stream_depth_ratio", depth, "ingestor", pod, stream=stream)  # the collector's count
            x.add("stream_depth_ratio_per_second", depth / max_msgs, "ingestor", pod, stream=stream)
        if episodes:
            x.add("ingestor_backpressure_active_ratio", 1, "ingestor", pod)
            x.histogram("component_backpressure_duration_seconds", t / 2, 0.8 * t, "ingestor", pod,
                        component="ingestor")
    for k, rate in enumerate(flush_rate):
        pod = f"sink-{k}"
        flushes = rate * t
        x.histogram("sink_batch_size_records", flushes, flushes * batch, "sink", pod)
        x.add("clickhouse_records_written_total", flushes * batch, "sink", pod, component="sink")
        x.histogram("processing_duration_seconds", flushes, flushes * t_prep, "sink", pod, component="sink",
                    stage="total_preparation")
        x.histogram("processing_duration_seconds", flushes, flushes * t_map, "sink", pod, component="sink",
                    stage="schema_mapping")
    return x.text()


def snapshot(build=sink_bound, **kw) -> ScrapeSnapshot:
    before, after = build(1000.0, **kw), build(1000.0 + WINDOW, **kw)
    pair = ScrapePair(parse_exposition(before, 1000.0), parse_exposition(after, 1000.0 + WINDOW))
    detected = naming.detect(pair.before.names() | pair.after.names())
    return ScrapeSnapshot(pair, detected, datetime.fromtimestamp(1000.0 + WINDOW, UTC), WINDOW)


def doc(ingestors: int = 2, sinks: int = 1) -> dict:
    resources = {**TEST_PIPELINE["resources"],
                 "sources": [{**TEST_PIPELINE["resources"]["sources"][0], "replicas": ingestors}],
                 "sink": {**TEST_PIPELINE["resources"]["sink"], "replicas": sinks}}
    return {**TEST_PIPELINE, "resources": resources}


def read(names: list[str], ingestors: int = 2, sinks: int = 1, **kw) -> dict:
    snap = snapshot(ingestors=ingestors, sinks=sinks, **kw)
    return read_with(snap, SignalContext(PID, doc(ingestors, sinks)), names)


@pytest.mark.parametrize("honor_labels", [True, False])
def test_per_replica_series_sum_to_pipeline_rates_and_break_down_by_pod(honor_labels):
    readings = read(["source_rate", "sink_rate", "sink_flush_rate", "sink_replica_flush_rate", "sink_replica_written"],
                    sinks=2, flush_rate=(4.0, 2.0), honor_labels=honor_labels)
    assert readings["source_rate"].value == pytest.approx(6000.0)
    assert readings["sink_rate"].value == pytest.approx(6000.0)
    assert readings["sink_flush_rate"].value == pytest.approx(6.0)
    # keyed by the pod whichever label carries it (exported_instance behind honor_labels: false)
    assert readings["sink_replica_flush_rate"].breakdown == pytest.approx({"sink-0": 4.0, "sink-1": 2.0})
    assert readings["sink_replica_written"].breakdown == pytest.approx({"sink-0": 4000.0, "sink-1": 2000.0})
    assert "by (instance, exported_instance)" in readings["sink_replica_flush_rate"].query


def test_the_collectors_names_are_detected_and_depth_is_counted_once_per_stream():
    snap = snapshot()
    assert snap.naming.mode == naming.COLLECTOR
    readings = read_with(snap, SignalContext(PID, doc()), ["stream_depth", "stream_depth_ratio"])
    # two ingestor replicas report the same stream: max by (stream), then summed over streams
    assert readings["stream_depth"].value == pytest.approx(8000.0)
    assert readings["stream_depth_ratio"].value == pytest.approx(1.0)


def test_a_collector_style_depth_without_a_ratio_is_still_the_count():
    # maxMsgs -1: no ratio series, no backpressure episode yet: only "stream_depth_ratio", the count
    text = sink_bound(1000.0, episodes=False).replace("stream_depth_ratio_per_second", "unrelated_gauge")
    assert naming.detect(parse_exposition(text, 1000.0).names()).mode == naming.COLLECTOR


def test_an_absent_backpressure_gauge_is_zero_where_depth_is_reported():
    readings = read(["ingestor_backpressure", "backpressure_share"], episodes=False, depth=3000.0)
    assert readings["ingestor_backpressure"].value == 0.0 and readings["ingestor_backpressure"].known
    assert readings["backpressure_share"].value == 0.0
    # with nothing that proves the ingestors report, it stays unknown
    empty = read_with(snapshot(), SignalContext("another-pipeline"), ["ingestor_backpressure"])
    assert not empty["ingestor_backpressure"].known


def test_backpressure_share_is_the_busiest_replicas_time_in_finished_episodes():
    readings = read(["backpressure_share", "ingestor_backpressure"])
    assert readings["backpressure_share"].value == pytest.approx(0.8)
    assert readings["ingestor_backpressure"].value == 1.0


def test_the_sink_cycle_comes_from_the_flush_rate_not_from_preparation():
    readings = read(["sink_cycle_seconds", "sink_prepare_seconds", "sink_insert_seconds", "sink_prepare_busy",
                     "sink_insert_share", "sink_batch_mean"])
    assert readings["sink_cycle_seconds"].value == pytest.approx(1 / 4.95)
    assert readings["sink_prepare_seconds"].value == pytest.approx(0.15)
    assert readings["sink_insert_seconds"].value == pytest.approx(1 / 4.95 - 0.15)
    # preparation is a lower bound on busy: 4.95 flushes x 0.15 s
    assert readings["sink_prepare_busy"].value == pytest.approx(0.7425)
    assert readings["sink_insert_share"].value == pytest.approx(1 - 0.7425)
    assert readings["sink_batch_mean"].value == pytest.approx(1000.0)


def test_ingestor_busy_is_per_record_time_times_records_per_batch():
    # 4 ms per record, 500-record batches, 4,950/s read: 4,950 x 0.004 = 19.8 busy replica-s/s
    readings = read(["ingestor_busy", "ingestor_true_rate"])
    assert readings["ingestor_busy"].value == pytest.approx(4950 * 0.004)
    assert readings["ingestor_true_rate"].value == pytest.approx(250.0)


def test_sink_capacity_divides_the_busiest_replica_by_the_largest_share():
    # 3 ingestors -> 2 sinks: streams carry 2/3 and 1/3; sink-0 (2/3) is saturated at 4,000/s
    readings = read(["sink_capacity"], ingestors=3, sinks=2, flush_rate=(4.0, 2.0))
    assert readings["sink_capacity"].value == pytest.approx(4000.0 * 1.5)


STREAM_BACKPRESSURE = Path(__file__).resolve().parents[2] / "policies" / "stream-backpressure.yaml"


def _policy():
    return parse_policy(yaml.safe_load(STREAM_BACKPRESSURE.read_text(encoding="utf-8")))


@pytest.mark.parametrize("honor_labels", [True, False])
def test_a_policy_sizes_the_sink_from_these_series(honor_labels):
    policy = _policy()
    facts = PipelineFacts(PID, doc(), constraints={"partitions": 4})
    view = SnapshotView(snapshot(honor_labels=honor_labels), SignalContext(PID, doc()))
    found = evaluate(policy, facts, view, Config(metrics_window=WINDOW))
    assert found.proposal is not None, found.notes
    changes = {c.path: c.new for c in found.proposal.changes}
    assert changes["resources.sink.replicas"] >= 2
    rationale = found.proposal.rationale
    assert "saturated flush cycle of sink-0" in rationale and "insert + ack 0.052 s" in rationale
    # the ingestors are in backpressure: their capacity is not established, their replicas stay
    assert "resources.sources[orders].replicas" not in changes
    assert any("ingestor: capacity not established (it is in backpressure" in n for n in found.proposal.notes)


def test_without_a_backlog_the_policy_does_not_size_the_sink():
    policy = _policy()
    # flushing what arrives: 2 flushes/s of 1000 with no backpressure episode and a stream ~half full
    view = SnapshotView(snapshot(episodes=False, flush_rate=(2.0,), depth=4000.0), SignalContext(PID, doc()))
    found = evaluate(policy, PipelineFacts(PID, doc()), view, Config(metrics_window=WINDOW))
    assert found.proposal is None and found.escalation is None and not found.incomplete


def test_preparation_is_never_read_as_insert_or_busy_time_and_retries_never_as_attempts():
    """What GlassFlow's sink measures decides what a signal may claim: total_preparation ends before
    the INSERT, and sink_retries_total counts rows. Every signal reading either says so."""
    from gftune.metrics.expr import selectors
    from gftune.policy.signals import SIGNALS

    ctx = SignalContext(PID, doc())
    for name, definition in SIGNALS.items():
        expr = definition.build(ctx)
        if expr is None:
            continue
        read = list(selectors(expr))
        measured_insert = any(s.clickhouse and s.metric == "InsertQueryTimeMicroseconds" for s in read)
        if any(("stage", "=", "total_preparation") in s.matchers for s in read) and not measured_insert:
            # preparation time, its lower bound on busy, or the cycle minus it — never the insert itself
            # (busy time only with the INSERT the ClickHouse server measured added to it)
            assert name in {"sink_prepare_seconds", "sink_prepare_busy", "sink_replica_prepare_busy",
                            "sink_insert_share", "sink_insert_seconds"}, name
            if name.startswith("sink_insert"):
                assert "saturated" in definition.meaning and "Valid only" in definition.meaning
        if any(s.metric == "sink_retries_total" for s in read) and name != "error_rate":
            # rows per second, or a share of rows
            assert definition.unit in ("records/s", "ratio"), name
            assert "rows" in definition.meaning.lower() and "attempt" not in definition.meaning.replace("not attempts", ""), \
                name
