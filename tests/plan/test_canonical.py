"""Canonicalisation and diff on plain data: every normalisation rule of reference §2.6 and §3."""

import copy

import pytest

from gftune.desired import secrets
from gftune.plan import canonical, tags
from gftune.plan.diff import METADATA, NAME, RESOURCES, diff_config, diff_resources
from tests.support.documents import ENV, PASSWORD, desired_doc, live_doc, live_internal, resolver


def config_diff(desired, live, env=ENV):
    return diff_config(canonical.canonical_config(desired, resolver=resolver(env)),
                       canonical.canonical_config(live), desired_display=canonical.masked(desired),
                       live_display=canonical.masked(live), sensitive=canonical.secret_paths(desired, live))


def test_get_normalisation_is_not_a_change():
    assert config_diff(desired_doc(), live_doc()) == []


@pytest.mark.parametrize(("sent", "returned"), [("60s", "1m0s"), ("1h", "1h0m0s"), ("1d", "24h0m0s"),
                                                 ("90m", "1h30m0s"), ("1.5s", "1.5s")])
def test_go_durations_compare_by_value(sent, returned):
    desired, live = desired_doc(), live_doc()
    desired["transforms"][1]["config"]["time_window"] = sent
    live["transforms"][0]["config"]["time_window"] = returned
    assert config_diff(desired, live) == []


def test_zero_sink_delay_means_sixty_seconds():
    desired = desired_doc()
    desired["sink"]["max_delay_time"] = "0s"
    assert config_diff(desired, live_doc()) == []


def test_a_real_duration_change_is_reported_with_the_users_spelling():
    desired = desired_doc()
    desired["transforms"][1]["config"]["time_window"] = "2h"
    [change] = config_diff(desired, live_doc())
    assert change.path == "transforms[dedup:orders].config.time_window"
    assert (change.old, change.new) == ("1h0m0s", "2h")


@pytest.mark.parametrize("tags", [None, [], "absent"])
def test_tags_null_empty_and_absent_are_the_same(tags):
    desired, live = desired_doc(), live_doc()
    if tags == "absent":
        live.pop("metadata")
    else:
        live["metadata"]["tags"] = tags
    desired["metadata"] = {"tags": []}
    assert config_diff(desired, live) == []


def test_gftune_tags_are_ignored_and_tag_order_does_not_matter():
    desired, live = desired_doc(), live_doc()
    desired["metadata"] = {"tags": ["b", "a"]}
    live["metadata"]["tags"] = ["a", "gftune:managed", "gftune:commit=abc", "b"]
    assert config_diff(desired, live) == []
    desired["metadata"]["tags"] = ["a", "c"]
    [change] = config_diff(desired, live)
    assert (change.path, change.area, change.old, change.new) == ("metadata.tags", METADATA, ["a", "b"], ["a", "c"])


def test_server_filled_defaults_are_not_changes():
    desired, live = desired_doc(), live_doc()
    desired["version"] = ""  # empty means v3
    desired["sink"]["type"] = "ClickHouse"  # not checked; GET always says clickhouse
    live["sources"][0]["consumer_group_initial_offset"] = "earliest"
    assert config_diff(desired, live) == []
    desired["sources"][0]["consumer_group_initial_offset"] = "LATEST"
    [change] = config_diff(desired, live)
    assert change.path == "sources[orders].consumer_group_initial_offset"
    assert (change.old, change.new) == ("earliest", "LATEST")


def test_filter_source_and_transform_order():
    desired, live = desired_doc(), live_doc()
    live["transforms"].reverse()
    assert config_diff(desired, live) == []


def test_join_type_and_windows():
    desired = {"pipeline_id": "joined", "sources": [{"source_id": "a"}, {"source_id": "b"}],
               "join": {"enabled": True, "left_source": {"source_id": "a", "key": "k", "time_window": "60s"},
                        "right_source": {"source_id": "b", "key": "k", "time_window": "1h"}}, "sink": {}}
    live = copy.deepcopy(desired)
    live["join"]["type"] = "temporal"
    live["join"]["left_source"]["time_window"] = "1m0s"
    live["join"]["right_source"]["time_window"] = "1h0m0s"
    assert canonical.canonical_config(desired) == canonical.canonical_config(live)


def test_stateless_unused_window_is_dropped():
    desired = desired_doc()
    desired["transforms"].append({"type": "stateless", "source_id": "orders",
                                  "config": {"transforms": [{"expression": "1", "output_name": "x",
                                                             "output_type": "int"}]}})
    live = live_doc()
    live["transforms"].append({"type": "stateless", "source_id": "orders",
                               "config": {"transforms": [{"expression": "1", "output_name": "x",
                                                          "output_type": "int"}], "time_window": "0s"}})
    assert config_diff(desired, live) == []


def test_source_order_does_not_matter_but_mapping_order_does():
    desired, live = desired_doc(), live_doc()
    desired["transforms"], live["transforms"] = [], []  # (a filter needs a single source)
    second = copy.deepcopy(desired["sources"][0]) | {"source_id": "users"}
    desired["sources"] = [second, desired["sources"][0]]
    live["sources"].append(copy.deepcopy(live["sources"][0]) | {"source_id": "users"})
    assert config_diff(desired, live) == []
    desired["sink"]["mapping"].reverse()
    changes = {c.path: c for c in config_diff(desired, live)}
    assert changes["sink.mapping[0].name"].old == "order_id"
    assert changes["sink.mapping[0].name"].new == "amount"
    assert all(path.startswith("sink.mapping[") for path in changes)


def test_secret_compared_by_fingerprint_and_never_shown():
    desired, live = desired_doc(), live_doc()
    assert config_diff(desired, live) == []
    changes = config_diff(desired, live, env={"CH_PASSWORD": "another-value"})
    [change] = changes
    assert change.path == "sink.connection_params.password" and change.sensitive
    assert change.old == "(sensitive)"
    assert change.new == "${env:CH_PASSWORD}"  # the reference is safe to show
    assert PASSWORD not in repr(changes) and "another-value" not in repr(changes)


def test_unresolvable_reference_names_the_reference():
    with pytest.raises(secrets.SecretError, match="CH_PASSWORD"):
        canonical.canonical_config(desired_doc(), resolver=resolver({}))


def test_canonical_form_holds_no_secret():
    text = repr(canonical.canonical_config(live_doc())) + repr(canonical.masked(live_doc()))
    assert PASSWORD not in text


def test_omitted_false_flags_equal_explicit_false():
    desired = desired_doc()
    desired["sources"][0]["connection_params"]["skip_tls_verification"] = False
    assert config_diff(desired, live_doc()) == []


def test_name_change_is_its_own_area():
    desired = desired_doc()
    desired["name"] = "Orders v2"
    [change] = config_diff(desired, live_doc())
    assert (change.path, change.area) == ("name", NAME)


def test_added_source_field_and_removed_transform():
    desired = desired_doc()
    desired["sources"][0]["topic"] = "orders-v2"
    desired["transforms"] = desired["transforms"][1:]  # drop the filter
    changes = {c.path: c for c in config_diff(desired, live_doc())}
    assert changes["sources[orders].topic"].new == "orders-v2"
    assert changes["transforms[filter:orders]"].new is None
    assert changes["transforms[filter:orders]"].old["config"]["expression"] == "amount > 0"


# --- resources -------------------------------------------------------------------------------

def leaves(doc):
    found, _warnings = canonical.desired_resource_leaves(doc)
    return found


def test_v3_resources_map_to_internal_shape_and_compare_by_value():
    found = {leaf.path: leaf.internal for leaf in leaves(desired_doc())}
    assert found["resources.sources[orders].replicas"] == ("ingestor", "base", "replicas")
    assert found["resources.sources[orders].limits.memory"] == ("ingestor", "base", "limits", "memory")
    assert found["resources.transform[orders].storage.size"] == ("transform", "storage", "size")
    assert found["resources.nats.stream.maxAge"] == ("nats", "stream", "maxAge")
    # 1.5Gi = 1536Mi, 1500m = 1.5, and absent fields (requests) are not managed
    assert diff_resources(leaves(desired_doc()), live_internal()) == []


@pytest.mark.parametrize(("where", "a", "b"), [
    (("limits", "memory"), "1.5Gi", "1536Mi"), (("limits", "cpu"), "1500m", "1.5"), (("requests", "cpu"), "2", "2000m"),
    (("storage", "size"), "1Ti", "1024Gi"), (("memory",), "1G", "1000M"), (("cpu",), "100m", "0.1"),
    (("nats", "stream", "maxAge"), "24h", "24h0m0s"), (("maxAge",), "1440m", "24h"),
    (("maxBytes",), "25GB", "25Gi"), (("maxBytes",), "0", "-1"), (("replicas",), 2, "2"),
])
def test_quantity_and_duration_equivalences(where, a, b):
    assert canonical.resource_values_equal(where, a, b)


@pytest.mark.parametrize(("where", "a", "b"), [
    (("memory",), "1Gi", "1G"), (("cpu",), "1", "1001m"), (("maxAge",), "24h", "25h"), (("maxMsgs",), 0, -1),
    (("replicas",), 1, 2), (("maxBytes",), "1GB", "1G"),
])
def test_real_resource_differences(where, a, b):
    assert not canonical.resource_values_equal(where, a, b)


def test_resource_change_reports_v3_path_and_values():
    desired = desired_doc()
    desired["resources"]["sources"][0]["replicas"] = 4
    desired["resources"]["sink"]["limits"] = {"memory": "3Gi"}
    changes = {c.path: c for c in diff_resources(leaves(desired), live_internal())}
    assert set(changes) == {"resources.sources[orders].replicas", "resources.sink.limits.memory"}
    replicas = changes["resources.sources[orders].replicas"]
    assert (replicas.old, replicas.new, replicas.area) == (2, 4, RESOURCES)
    assert changes["resources.sink.limits.memory"].old == "1.5Gi"


def test_maxmsgs_zero_and_empty_fields_are_server_defaults():
    desired = desired_doc()
    desired["resources"]["nats"]["stream"] |= {"maxMsgs": 0, "maxBytes": ""}
    assert [leaf.path for leaf in leaves(desired) if "nats" in leaf.path] == ["resources.nats.stream.maxAge"]


def test_join_sources_map_left_and_right():
    doc = {"pipeline_id": "joined", "sources": [{"source_id": "a", "type": "kafka"},
                                               {"source_id": "b", "type": "kafka"}],
           "join": {"enabled": True, "left_source": {"source_id": "b"}, "right_source": {"source_id": "a"}},
           "resources": {"sources": [{"source_id": "a", "replicas": 2}, {"source_id": "b", "replicas": 3}],
                         "join": {"replicas": 1, "limits": {"memory": "1Gi"}}}}
    found = {leaf.path: leaf.internal for leaf in leaves(doc)}
    assert found["resources.sources[a].replicas"] == ("ingestor", "right", "replicas")
    assert found["resources.sources[b].replicas"] == ("ingestor", "left", "replicas")
    assert found["resources.join.limits.memory"] == ("join", "limits", "memory")
    assert canonical.path_internal(doc, "resources.sources[b].replicas") == ("ingestor", "left", "replicas")


def test_entries_the_api_ignores_are_warned_about():
    doc = desired_doc()
    doc["resources"]["sources"].append({"source_id": "other", "replicas": 9})
    doc["resources"]["transform"].append({"source_id": "x", "replicas": 5})
    found, warnings = canonical.desired_resource_leaves(doc)
    assert not any("other" in leaf.path or leaf.path.startswith("resources.transform[x]") for leaf in found)
    assert len(warnings) == 2


def test_edit_resources_keeps_filter_only_transform_block():
    doc = desired_doc()
    doc["transforms"] = [doc["transforms"][0]]  # filter only
    internal = live_internal()
    internal["transform"].pop("storage")
    v3 = canonical.edit_resources(internal, doc)
    assert v3["transform"] == [{"source_id": "orders", **internal["transform"]}]
    assert v3["sources"] == [{"source_id": "orders", **internal["ingestor"]["base"]}]


def test_provenance_and_managed_tags():
    live = ["team:x", "gftune:managed", "gftune:commit=abc123"]
    assert tags.is_managed(live)
    assert tags.provenance_commit(live) == "abc123"
    assert tags.provenance_commit(["x"]) is None
