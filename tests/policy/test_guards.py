"""Always-on guards on plain data: clamps carry a note, refusals carry the next step."""

import copy

from gftune.plan.evidence import FieldChange
from gftune.policy.guards import GuardContext, apply_guards, field_kind, from_number, parse_amount, to_number
from gftune.policy.testing import TEST_PIPELINE

DEDUP = {**copy.deepcopy(TEST_PIPELINE),
         "transforms": [{"type": "dedup", "source_id": "orders", "config": {"key": "id", "time_window": "1h"}}]}
DEDUP["resources"]["transform"] = [{"source_id": "orders", "replicas": 1, "storage": {"size": "10Gi"}}]


def guard(changes, doc=TEST_PIPELINE, **kw):
    return apply_guards([FieldChange(*c) for c in changes], GuardContext(doc=copy.deepcopy(doc), **kw))


def test_ingestor_replicas_stop_at_the_partitions():
    out = guard([("resources.sources[orders].replicas", 2, 6)], constraints={"partitions": 4})
    assert [(c.path, c.new) for c in out.changes] == [("resources.sources[orders].replicas", 4)]
    assert "4 partitions" in out.notes[0]
    at_cap = guard([("resources.sources[orders].replicas", 4, 6)], constraints={"partitions": 4})
    assert not at_cap.changes and "increase the Kafka topic's partitions" in at_cap.blocked[0].next_step
    measured = guard([("resources.sources[orders].replicas", 2, 6)], measured_partitions=3)
    assert measured.changes[0].new == 3


def test_replicas_stay_within_max_replicas_and_at_least_one():
    assert guard([("resources.sink.replicas", 1, 40)]).changes[0].new == 10  # default max_replicas
    assert guard([("resources.sink.replicas", 1, 40)], constraints={"max_replicas": 6}).changes[0].new == 6
    assert guard([("resources.sink.replicas", 2, 0)]).changes[0].new == 1


def test_join_stays_at_one_and_dedup_freezes_transform_replicas():
    join = guard([("resources.join.replicas", 1, 2)])
    assert not join.changes and "exactly 1 replica" in join.blocked[0].reason
    frozen = guard([("resources.transform[orders].replicas", 1, 3)], doc=DEDUP)
    assert not frozen.changes and "frozen" in frozen.blocked[0].reason


def test_immutable_stream_and_storage_fields_are_never_changed_in_place():
    out = guard([("resources.nats.stream.maxMsgs", 8000, 80000),
                 ("resources.transform[orders].storage.size", "10Gi", "20Gi")], doc=DEDUP)
    assert not out.changes
    assert {b.path for b in out.blocked} == {"resources.nats.stream.maxMsgs", "resources.transform[orders].storage.size"}
    assert all("new pipeline" in b.next_step for b in out.blocked)
    # before the pipeline exists the same change is fine (within the storage ceiling)
    fresh = guard([("resources.transform[orders].storage.size", "10Gi", "300Gi")], doc=DEDUP, exists=False,
                  constraints={"storage_ceiling": "200Gi"})
    assert fresh.changes[0].new == "200Gi" and "storage_ceiling" in fresh.notes[0]


def test_batch_memory_raises_the_limit_within_the_ceiling_else_clamps_the_batch():
    doc = copy.deepcopy(TEST_PIPELINE)
    doc["resources"]["sink"]["limits"] = {"cpu": "5", "memory": "512Mi"}  # 3 workers
    doc["resources"]["nats"]["stream"]["maxMsgs"] = -1  # an unlimited stream: only memory bounds the batch
    raised = guard([("sink.max_batch_size", 1000, 50000)], doc=doc, row_bytes=1024)
    memory = {c.path: c.new for c in raised.changes}["resources.sink.limits.memory"]
    # 128Mi + 50000 x 3 x 1024 x 2 = 128Mi + 293Mi, at 80% -> 527Mi... rounded up to whole MiB
    assert to_number("memory", memory) * 0.8 >= 128 * 2**20 + 50000 * 3 * 1024 * 2
    assert "raised" in raised.notes[0]
    clamped = guard([("sink.max_batch_size", 1000, 500000)], doc=doc, row_bytes=1024,
                    constraints={"memory_ceiling": "1Gi"})
    changes = {c.path: c.new for c in clamped.changes}
    assert changes["resources.sink.limits.memory"] == "1Gi"
    assert 1000 < changes["sink.max_batch_size"] < 500000 and "clamped" in clamped.notes[-1]
    # more workers (a CPU raise) need memory too, even without a batch change
    cpu = guard([("resources.sink.limits.cpu", "5", "8")], doc=doc, row_bytes=200_000)
    assert "resources.sink.limits.memory" in {c.path for c in cpu.changes}


def test_memory_ceiling_caps_any_memory_change():
    out = guard([("resources.sources[orders].limits.memory", "512Mi", "16Gi")], constraints={"memory_ceiling": "4Gi"})
    assert out.changes[0].new == "4Gi"


def test_field_values_keep_their_kind():
    assert field_kind("resources.sink.limits.cpu") == "cpu" and to_number("cpu", "1500m") == 1.5
    assert from_number("cpu", 2.0) == "2" and from_number("cpu", 0.25) == "250m"
    assert from_number("memory", 3 * 2**30) == "3Gi" and from_number("memory", 1.5 * 2**30) == "1536Mi"
    assert from_number("duration", 1188, rounding="down") == "19m" and from_number("duration", 2.5) == "2.5s"
    assert from_number("int", 2.2, rounding="up") == 3 and from_number("int", 2.8, rounding="down") == 2
    assert parse_amount("int", "50%", 8) == 4 and parse_amount("memory", "1Gi") == 2**30


def test_a_batch_must_fit_the_stream_twice():
    # maxMsgs 8000 (8 x the batch at creation, immutable) with one worker: at most 4000 rows
    out = guard([("sink.max_batch_size", 1000, 20000)], row_bytes=512)
    assert out.changes[0].new == 4000 and "maxMsgs" in out.notes[0]
    doc = copy.deepcopy(TEST_PIPELINE)
    doc["resources"]["nats"]["stream"]["maxMsgs"] = -1  # unlimited
    assert guard([("sink.max_batch_size", 1000, 20000)], doc=doc, row_bytes=512).changes[0].new == 20000
