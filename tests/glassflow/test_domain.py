"""The GlassFlow domain facts shared by the simulator and the reconciler (reference §2-§4)."""

import json
from pathlib import Path

import pytest

from gftune.glassflow import resources as res
from gftune.glassflow import rules
from gftune.glassflow.durations import DurationError, format_duration, normalize_duration, parse_duration
from gftune.glassflow.quantities import is_valid_quantity, parse_nats_bytes, parse_quantity
from gftune.glassflow.statuses import OPERATION_TARGET, Status, check_transition

DEMOS = Path(__file__).resolve().parents[1] / "fixtures" / "glassflow-demos"  # copies of the shared demo files


@pytest.mark.parametrize(
    ("sent", "returned"),
    [("60s", "1m0s"), ("1h", "1h0m0s"), ("1d", "24h0m0s"), ("1.5s", "1.5s"), ("500ms", "500ms"),
     ("90m", "1h30m0s"), ("0", "0s"), ("1h30m", "1h30m0s"), ("2us", "2µs"), ("1d12h", "36h0m0s")],
)
def test_durations_come_back_in_go_string_form(sent, returned):
    assert normalize_duration(sent, allow_days=True) == returned


@pytest.mark.parametrize("bad", ["", "abc", "1", "1x", "1.s.", "h", "--1s"])
def test_invalid_durations_are_rejected_like_go(bad):
    with pytest.raises(DurationError):
        parse_duration(bad)


def test_days_only_where_glassflow_allows_them():
    assert parse_duration("1d", allow_days=True) == parse_duration("24h")
    with pytest.raises(DurationError):
        parse_duration("1d")


def test_format_is_inverse_of_parse():
    for text in ("1h0m0s", "1m0s", "1.5s", "250ms", "3h2m1.5s"):
        assert format_duration(parse_duration(text)) == text


def test_quantities_compare_by_value():
    assert parse_quantity("1.5Gi") == parse_quantity("1536Mi")
    assert parse_quantity("1500m") == parse_quantity("1.5")
    assert parse_quantity("2e3") == 2000
    assert not is_valid_quantity("1GB")
    assert not is_valid_quantity("abc")
    assert parse_nats_bytes("25GB") == 25 * 1024**3


@pytest.mark.parametrize(
    ("status", "op", "code"),
    [("Created", "stop", "INVALID_STATUS_TRANSITION"), ("Created", "terminate", None),
     ("Running", "resume", "INVALID_STATUS_TRANSITION"), ("Stopping", "stop", "PIPELINE_ALREADY_IN_STATE"),
     ("Stopping", "resume", "PIPELINE_IN_TRANSITION"), ("Stopping", "terminate", None),
     ("Stopped", "terminate", "INVALID_STATUS_TRANSITION"), ("Terminating", "terminate", "PIPELINE_ALREADY_IN_STATE"),
     ("Resuming", "stop", "PIPELINE_IN_TRANSITION"), ("Failed", "resume", None), ("Failed", "stop", "INVALID_STATUS_TRANSITION")],
)
def test_status_machine_matches_reference_table(status, op, code):
    error = check_transition(status, OPERATION_TARGET[op])
    assert (error.code if error else None) == code


def test_transition_error_details_follow_the_api():
    error = check_transition("Stopped", Status.STOPPING)
    details = error.details("orders-dedup")
    assert details["valid_transitions"] == ["Resuming", "Failed"]
    assert error.message == "Invalid status transition from Stopped to Stopping"
    resume_error = check_transition("Running", Status.RESUMING)
    assert resume_error.details("x", omit_empty_transitions=True)["valid_transitions"] == ["Stopping", "Terminating", "Failed"]
    already = check_transition("Stopping", Status.STOPPING)
    assert "valid_transitions" not in already.details("x", omit_empty_transitions=True)
    assert already.details("x")["valid_transitions"] is None


@pytest.mark.parametrize("path", sorted(DEMOS.glob("*.json")), ids=lambda p: p.name)
def test_real_demo_files_pass_the_model_rules(path):
    assert rules.validate_document(json.loads(path.read_text())) == []


def _demo(name):
    return json.loads((DEMOS / name).read_text())


def test_rules_report_each_problem_with_its_path():
    doc = _demo("deduplication_pipeline.json")
    doc["pipeline_id"] = "Bad--ID"
    doc["transforms"][0]["config"]["key"] = "nope"
    doc["sink"]["connection_params"]["password"] = ""
    doc["sink"]["mapping"][0]["column_type"] = "Nullable(String)"
    found = {(v.dotted, v.message) for v in rules.validate_document(doc)}
    assert ("pipeline_id", "pipeline id is invalid: must start with a lowercase letter") in found
    assert ("pipeline_id", "pipeline id is invalid: must not contain '--'") in found
    assert ("transforms[0].config.key", 'dedup key "nope" is not a field of source "users"') in found
    assert ("sink.connection_params.password", "clickhouse password cannot be empty") in found
    assert ("sink.mapping[0].column_type", 'unsupported ClickHouse column type: "Nullable(String)"') in found


def test_join_and_mapping_rules():
    doc = _demo("join_pipeline.json")
    doc["sink"]["mapping"][0]["name"] = "missing_field"
    doc["join"]["left_source"]["key"] = "no_such_key"
    found = {(v.dotted, v.message) for v in rules.validate_document(doc)}
    assert ("sink.mapping[0].name", 'mapping field "missing_field" does not exist in the sink\'s upstream schema') in found
    assert ("join.left_source.key", 'join key "no_such_key" is not a field of source "orders"') in found


def test_filter_rejects_precision_field_types():
    doc = _demo("fraud_detection_pipeline.json")
    doc["sources"][0]["schema_fields"][0]["type"] = "int32"
    messages = [v.message for v in rules.validate_document(doc)]
    assert any('filter validation does not support field type "int32"' in m for m in messages)


def test_v3_and_internal_views_round_trip_for_join():
    doc = _demo("join_pipeline.json")
    doc["resources"] = {"sources": [{"source_id": "orders", "replicas": 3}, {"source_id": "user_events", "replicas": 2}]}
    internal = res.v3_to_internal(doc)
    assert internal["ingestor"] == {"left": {"replicas": 3}, "right": {"replicas": 2}}
    merged = res.merge_with_defaults(internal, doc, res.HELM_DEFAULTS)
    assert merged["join"]["replicas"] == 1
    assert merged["ingestor"]["left"]["limits"] == {"cpu": "1500m", "memory": "512Mi"}
    assert merged["nats"]["stream"] == {"maxAge": "24h", "maxBytes": "0", "maxMsgs": 8000}
    view = res.internal_to_v3(merged, doc)
    assert [s["source_id"] for s in view["sources"]] == ["orders", "user_events"]


def test_merge_fills_whole_objects_only():
    doc = _demo("deduplication_pipeline.json")
    doc["resources"] = {"sink": {"requests": {"cpu": "2"}}}
    merged = res.merge_with_defaults(res.v3_to_internal(doc), doc)
    assert merged["sink"]["requests"] == {"cpu": "2"}  # no memory added inside a present object
    assert merged["sink"]["limits"] == {"cpu": "1500m", "memory": "1.5Gi"}
    assert merged["transform"]["storage"] == {"size": "10Gi"}


def test_stateless_transform_block_is_shown_per_source():
    doc = _demo("traces-pipeline.json")
    merged = res.merge_with_defaults(res.v3_to_internal(doc), doc)
    view = res.internal_to_v3(merged, doc)
    assert [t["source_id"] for t in view["transform"]] == ["traces", "otlp-traces-stateless"]
    assert view["transform"][0]["replicas"] == view["transform"][1]["replicas"]
    assert rules.validate_document({**doc, "resources": view}) == []


def test_immutability_is_textual_and_only_when_present_on_both_sides():
    paths = res.BASE_IMMUTABLE
    stored = {"nats": {"stream": {"maxAge": "24h"}}}
    assert res.check_immutability(stored, {"nats": {"stream": {"maxAge": "1440m"}}}, list(paths)) == \
        'immutable field "nats/stream/maxAge" cannot be changed'
    assert res.check_immutability(stored, {"nats": {"stream": {}}}, list(paths)) is None
    assert res.check_immutability(stored, {"nats": {"stream": {"maxAge": "24h"}}}, list(paths)) is None


def test_transform_replicas_immutable_only_with_dedup():
    assert "transform/replicas" in res.immutable_paths(_demo("deduplication_pipeline.json"))
    assert "transform/replicas" not in res.immutable_paths(_demo("join_pipeline.json"))


def test_resource_validation_messages():
    problems = res.validate_internal({"sink": {"limits": {"cpu": "abc"}}, "nats": {"stream": {"maxAge": "1d", "maxMsgs": -2}}})
    paths = [p for p, _ in problems]
    assert paths == ["sink/limits/cpu", "nats/stream/maxAge", "nats/stream/maxMsgs"]
    assert problems[0][1].startswith('invalid cpu quantity "abc"')


def test_api_duration_is_the_get_form_and_leaves_invalid_text_alone():
    from gftune.glassflow.durations import api_duration

    assert api_duration("60s") == "1m0s"
    assert api_duration("0s", zero_as="1m0s") == "1m0s"
    assert api_duration("1d") == "24h0m0s"
    assert api_duration("soon") == "soon"
    assert api_duration(5) == 5
