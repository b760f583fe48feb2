"""``/metrics``: names, labels, buckets, naming modes and the time-scale convention (reference §5)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gftune.glassflow import instruments as ins
from gftune.glassflow.topology import consumer_group
from gftune.sim import Simulator
from gftune.sim.clock import ManualClock


def _scrape(sim) -> dict[str, list]:
    text = httpx.get(sim.metrics_url).text
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _one(samples, name, **labels):
    found = [s for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0].value


@pytest.fixture
def manual(request):
    """A started simulator whose clock only moves when the test says so."""
    started = []

    def make(scenarios, time_scale=10.0, **options):
        clock = ManualClock(time_scale=time_scale)
        sim = Simulator(scenarios, time_scale=time_scale, clock=clock, **options).start()
        started.append(sim)
        return sim, clock

    yield make
    for sim in started:
        sim.stop()


def test_counters_are_divided_by_the_time_scale_and_gauges_are_not(manual):
    sim, clock = manual(["backpressure-sink-bound"], time_scale=10, naming="documented")
    clock.advance(100)  # pods push at 10, 20, ..., 100 s: the scrape shows the values of t = 100
    samples = _scrape(sim)
    pid = "orders-backpressure"
    model = sim.store.row(pid).model
    for replica in model.sources[0].pods:
        pod = replica.meter.resource.instance
        read = replica.meter.counter(ins.KAFKA_RECORDS_READ, ("ingestor", pid))
        assert read > 0
        assert _one(samples, "glassflow_gfm_kafka_records_read_total", pipeline_id=pid, instance=pod) == \
            pytest.approx(read / 10)
        # the stream is full (DiscardNew at maxMsgs 8000): the ratio is 1 and each ingestor is in backpressure
        assert _one(samples, "glassflow_gfm_stream_depth_ratio", pipeline_id=pid, instance=pod) == pytest.approx(1.0)
        assert _one(samples, "glassflow_gfm_stream_depth", pipeline_id=pid, instance=pod) == pytest.approx(8000)
        assert _one(samples, "glassflow_gfm_ingestor_backpressure_active", pipeline_id=pid, instance=pod) == 1
    sink = model.sinks[0].meter
    batches = sink.histograms[(ins.SINK_BATCH_SIZE_RECORDS, (pid,))]
    assert _one(samples, "glassflow_gfm_sink_batch_size_records_count", pipeline_id=pid, instance="sink-0") == \
        pytest.approx(batches.count / 10)


def test_documented_names_labels_and_buckets(manual):
    sim, clock = manual(["dedup-storage", "retry-exhaustion"], naming="documented")
    clock.advance(60)
    samples = _scrape(sim)
    dedup = "orders-dedup-storage"
    for component, stage in [("ingestor", "batch"), ("dedup_filter", "lookup"), ("dedup_write", "commit"),
                             ("sink", "per_message"), ("sink", "schema_mapping"), ("sink", "total_preparation")]:
        les = [s.labels["le"] for s in samples["glassflow_gfm_processing_duration_seconds_bucket"]
               if s.labels["pipeline_id"] == dedup and s.labels["component"] == component and s.labels["stage"] == stage
               and s.labels["instance"].endswith("-0")]
        assert les == ["0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30",
                       "60", "120", "+Inf"], (component, stage)
    assert [s.labels["le"] for s in samples["glassflow_gfm_sink_batch_size_records_bucket"]
            if s.labels["pipeline_id"] == dedup and s.labels["instance"] == "sink-0"] == \
        ["1", "10", "100", "1000", "10000", "100000", "+Inf"]
    assert [s.labels["le"] for s in samples["glassflow_gfm_sink_batch_size_bytes_bucket"]
            if s.labels["pipeline_id"] == dedup and s.labels["instance"] == "sink-0"] == \
        ["1024", "10240", "102400", "1048576", "10485760", "104857600", "+Inf"]
    assert _one(samples, "glassflow_gfm_processor_messages_total", pipeline_id=dedup, component="dedup",
                status="success") > 0
    assert _one(samples, "glassflow_gfm_bytes_processed_total", pipeline_id=dedup, component="sink",
                direction="out", instance="sink-0") > 0
    exhausted = "orders-exhaustion"  # TOO_MANY_PARTS is "unknown": the batch goes to the DLQ, never retried
    assert _one(samples, "glassflow_gfm_sink_retries_total", pipeline_id=exhausted, outcome="exhausted",
                instance="sink-0") > 0
    assert _one(samples, "glassflow_gfm_dlq_records_written_total", pipeline_id=exhausted, component="sink",
                reason="sink_rejection_TOO_MANY_PARTS", instance="sink-0") > 0
    assert _one(samples, "glassflow_gfm_sink_errors_by_classification_total", pipeline_id=exhausted,
                classification="unknown", error_name="TOO_MANY_PARTS", instance="sink-0") > 0
    assert not [s for s in samples.get("glassflow_gfm_sink_nack_messages_total", [])
                if s.labels["pipeline_id"] == exhausted]
    # what kafka_exporter would show next to GlassFlow
    lags = [s for s in samples["kafka_consumergroup_lag"] if s.labels["consumergroup"] == consumer_group(exhausted)]
    assert sorted(s.labels["partition"] for s in lags) == ["0", "1", "2", "3"]
    assert {s.labels["topic"] for s in lags} == {exhausted}  # the scenario's topic is its pipeline id


def test_collector_naming_mode_and_namespace(manual):
    sim, clock = manual(["backpressure-sink-bound"], namespace="etl")  # the collector's names are the default
    clock.advance(100)
    samples = _scrape(sim)
    pid = "orders-backpressure"
    for pod in ("ingestor-0-0", "ingestor-0-1"):
        assert _one(samples, "etl_gfm_ingestor_backpressure_active_ratio", pipeline_id=pid, instance=pod) == 1
        assert _one(samples, "etl_gfm_component_backpressure_active_ratio", pipeline_id=pid, component="ingestor",
                    instance=pod) == 1
        # the absolute depth under the ratio's name, the ratio with a per-second suffix
        assert _one(samples, "etl_gfm_stream_depth_ratio", pipeline_id=pid, instance=pod) == pytest.approx(8000)
        assert _one(samples, "etl_gfm_stream_depth_ratio_per_second", pipeline_id=pid, instance=pod) == \
            pytest.approx(1.0)
    assert "etl_gfm_kafka_records_read_total" in samples
    assert not any(name.startswith("glassflow_") for name in samples)
    assert "etl_gfm_stream_depth" not in samples


def test_api_request_metrics_use_route_templates(manual):
    sim, _clock = manual(["healthy"], naming="documented")
    httpx.get(sim.api_url + "/api/v1/pipeline/orders-healthy")
    httpx.get(sim.api_url + "/api/v1/pipeline/orders-healthy/health")
    httpx.get(sim.api_url + "/api/v1/pipeline/missing-one/health")
    httpx.get(sim.api_url + "/definitely/not/a/route")
    httpx.get(sim.api_url + "/_sim/clock")
    samples = _scrape(sim)
    series = samples["glassflow_gfm_http_server_request_count_total"]
    assert {s.labels["job"] for s in series} == {"glassflow/glassflow-api"}  # and no instance: the API sets none
    assert not [s for s in series if "instance" in s.labels]
    counts = {(s.labels["method"], s.labels["path"], s.labels["status"]): s.value for s in series}
    assert counts == {("GET", "/api/v1/pipeline/{id}", "200"): 0.1,  # 1 request / time scale 10
                      ("GET", "/api/v1/pipeline/{id}/health", "200"): 0.1,
                      ("GET", "/api/v1/pipeline/{id}/health", "404"): 0.1,
                      ("GET", "unknown", "404"): 0.1}
    assert "glassflow_gfm_http_server_request_duration_seconds_bucket" in samples


def test_a_stopped_pipelines_series_linger_until_the_collector_expires_them(manual):
    """Stopping deletes the pods: their last pushed values stay on the collector for its 5-minute
    metric_expiration, then the series are gone; a resumed pipeline's new pods count from zero."""
    sim, clock = manual(["healthy"], naming="documented")
    pid = "orders-healthy"
    clock.advance(30)
    sim.store.operate(pid, "stop")
    clock.advance(10)
    before = _one(_scrape(sim), "glassflow_gfm_kafka_records_read_total", pipeline_id=pid, instance="ingestor-0-0")
    clock.advance(60)
    assert _one(_scrape(sim), "glassflow_gfm_kafka_records_read_total", pipeline_id=pid,
                instance="ingestor-0-0") == before > 0
    clock.advance(300)
    assert not [s for s in _scrape(sim).get("glassflow_gfm_kafka_records_read_total", [])
                if s.labels["pipeline_id"] == pid]
    sim.store.operate(pid, "resume")
    clock.advance(40)  # Running after 10 s, the first push 10 s later
    again = _one(_scrape(sim), "glassflow_gfm_kafka_records_read_total", pipeline_id=pid, instance="ingestor-0-0")
    read_since_resume = sim.truth(pid)["records"]["read"] - 2 * before * 10  # two replicas read alike
    assert 0 < again * 10 <= read_since_resume / 2 + 1e-6


def test_kafka_exporter_series_are_unambiguous_with_every_scenario_loaded(manual):
    from pathlib import Path

    names = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml"))
    sim, clock = manual(names)
    clock.advance(120)
    samples = _scrape(sim)
    partitions = {s.labels["topic"]: s.value for s in samples["kafka_topic_partitions"]}
    assert len(partitions) == len(samples["kafka_topic_partitions"]), "one series per topic"
    lags = samples["kafka_consumergroup_lag"]
    readers: dict[str, set[str]] = {}
    for sample in lags:
        readers.setdefault(sample.labels["topic"], set()).add(sample.labels["consumergroup"])
    sources = {pid: httpx.get(f"{sim.api_url}/api/v1/pipeline/{pid}").json()["sources"] for pid in sim.store.rows}
    kafka = {pid: {s["source_id"]: s["topic"] for s in srcs if s["type"] == "kafka"} for pid, srcs in sources.items()}
    assert sum(len(topics) for topics in kafka.values()) == len(readers), "every Kafka source reads its own topic"
    assert all(len(groups) == 1 for groups in readers.values()), readers
    assert {"otlp-traces", "ran-5g-telemetry"} <= {pid for pid, topics in kafka.items() if not topics}
    assert len(kafka["join-demo-pipeline"]) == 2
    for pid, topics in kafka.items():
        truth = sim.truth(pid)
        series = [s for s in lags if s.labels["consumergroup"] == consumer_group(pid)]
        assert {s.labels["topic"] for s in series} == set(topics.values()), pid  # none for an OTLP source
        for source_id, topic in topics.items():
            assert partitions[topic] == truth["details"]["partitions"][source_id], pid
            assert len([s for s in series if s.labels["topic"] == topic]) == partitions[topic]
        if topics:
            assert sum(s.value for s in series) == pytest.approx(truth["records"]["kafka_lag"])
    assert partitions["orders-partition-capped"] == 2


def test_a_topic_has_one_partition_count_for_all_its_readers(manual):
    from gftune.sim import ScenarioError
    from tests.sim.helpers import orders_doc

    def reader(pid, partitions):
        return {"pipelines": [{"spec": orders_doc(pid), "model": {"source": {"partitions": partitions}}}]}

    with pytest.raises(ScenarioError, match=r"topic 'orders'.* 4 partitions .*a-orders.* 8 .*b-orders"):
        Simulator([reader("a-orders", 4), reader("b-orders", 8)], clock=ManualClock())
    sim, clock = manual([reader("a-orders", 4), reader("b-orders", 4)])
    clock.advance(10)
    sim.store.patch_model("a-orders", {"sources": {"orders": {"partitions": 6}}})  # a Kafka-side change
    assert sim.truth("b-orders")["details"]["partitions"] == {"orders": 6}
    sim.store.create(orders_doc("c-orders"))  # created through the API on the same topic
    assert sim.truth("c-orders")["details"]["partitions"] == {"orders": 6}
    clock.advance(30)
    samples = _scrape(sim)
    assert [s.value for s in samples["kafka_topic_partitions"] if s.labels["topic"] == "orders"] == [6]
    assert len([s for s in samples["kafka_consumergroup_lag"] if s.labels["topic"] == "orders"]) == 3 * 6


def _operator(samples, name, pid):
    return {tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("job", "instance", "pipeline_id"))): s.value
            for s in samples.get(f"glassflow_gfm_operator_{name}", []) if s.labels["pipeline_id"] == pid}


def test_the_operator_reports_its_reconciles_transitions_and_stop_time_sweeps(manual):
    """The operator's own meter (reference §2, operator table): one transition series per change,
    labelled with the wall-clock second; a sweep at every stop; a forced stop sweeps what is left."""
    from tests.sim.helpers import orders_doc

    sim, clock = manual([], time_scale=1.0)
    pid = "orders-operator"
    sim.store.create(orders_doc(pid))
    clock.advance(30)  # Created -> Running after 10 s
    sim.store.operate(pid, "stop")
    clock.advance(30)
    samples = _scrape(sim)
    operator_series = [s for s in samples["glassflow_gfm_operator_reconcile_operations_total"]]
    assert {(s.labels["job"], s.labels["instance"]) for s in operator_series} == \
        {("glassflow/glassflow-operator", "glassflow-controller-manager-6f7c9d8b4-x2k9q")}
    transitions = _operator(samples, "pipeline_status_transitions_total", pid)
    epoch = int(sim.clock.wall_time(0).timestamp())
    assert transitions == {
        (("from_status", "Created"), ("timestamp", str(epoch + 10)), ("to_status", "Running")): 1,
        (("from_status", "Running"), ("timestamp", str(epoch + 30)), ("to_status", "Stopping")): 1,
        (("from_status", "Stopping"), ("timestamp", str(epoch + 35)), ("to_status", "Stopped")): 1,
    }
    assert _operator(samples, "reconcile_operations_total", pid) == {
        (("operation", "create"), ("status", "success")): 1, (("operation", "stop"), ("status", "success")): 1}
    assert _operator(samples, "nats_operations_total", pid) == {
        (("operation", "create_dlq_stream"), ("status", "success")): 1}
    # a drained stop leaves every stream empty: one stream_empty per stream, nothing swept
    assert _operator(samples, "sweeped_messages_total", pid) == {(("outcome", "stream_empty"),): 1}
    assert _one(samples, "glassflow_gfm_operator_sweep_duration_seconds_count", pipeline_id=pid) == 1

    # a stop whose components hang is forced after the stop timeout and sweeps the rest to the DLQ
    sim.store.operate(pid, "resume")
    clock.advance(60)
    sim.store.patch_model(pid, {"sink": {"insert_overhead": 30.0}})  # ClickHouse crawls: a backlog builds
    clock.advance(120)
    sim.add_fault({"kind": "stuck_transition", "operation": "stop", "pipeline": pid})
    sim.store.operate(pid, "stop")
    clock.advance(301)
    assert sim.store.health(pid)["overall_status"] == "Stopped"
    samples = _scrape(sim)
    swept = _operator(samples, "sweeped_messages_total", pid)[(("outcome", "swept"),)]
    assert swept > 1000
    assert sim.store.dlq_state(pid)["total_messages"] == swept  # the DLQ grew by what was swept
    assert "glassflow_gfm_dlq_records_written_total" not in samples or not [
        s for s in samples["glassflow_gfm_dlq_records_written_total"] if s.labels["pipeline_id"] == pid]
    ops = _operator(samples, "reconcile_operations_total", pid)
    assert ops[(("operation", "stop"), ("status", "timeout"))] == 1
    # a forced stop writes Stopped before updatePipelineStatus: no Stopping -> Stopped transition for it
    stopped = [k for k in _operator(samples, "pipeline_status_transitions_total", pid) if ("to_status", "Stopped") in k]
    assert len(stopped) == 1

    sim.store.operate(pid, "resume")
    clock.advance(20)
    sim.store.operate(pid, "terminate")
    clock.advance(10)
    samples = _scrape(sim)
    assert (("from_status", "Running"), ("timestamp", str(int(sim.clock.wall_time(clock.now() - 7).timestamp()))),
            ("to_status", "Stopped")) in _operator(samples, "pipeline_status_transitions_total", pid)
    assert _operator(samples, "nats_operations_total", pid)[(("operation", "delete_dlq_stream"), ("status", "success"))] == 1
