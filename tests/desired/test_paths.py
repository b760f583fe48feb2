import pytest

from gftune.desired import paths


def test_select_by_source_id_and_type():
    doc = {"transforms": [{"type": "filter", "source_id": "a", "config": {}},
                          {"type": "dedup", "source_id": "a", "config": {"time_window": "1h"}}]}
    assert paths.get(doc, "transforms[dedup:a].config.time_window") == "1h"
    assert paths.get(doc, "transforms[1].type") == "dedup"
    assert paths.get(doc, "transforms[dedup:b].config", "none") == "none"


def test_set_creates_objects_and_selected_items():
    doc: dict = {}
    paths.set_value(doc, "resources.sources[orders].replicas", 3)
    paths.set_value(doc, "resources.sink.limits.cpu", "2")
    paths.set_value(doc, "resources.sources[orders].limits.memory", "1Gi")
    assert doc == {"resources": {"sources": [{"source_id": "orders", "replicas": 3, "limits": {"memory": "1Gi"}}],
                                 "sink": {"limits": {"cpu": "2"}}}}


def test_round_trip_format():
    for text in ("sink.max_batch_size", "resources.sources[orders].replicas", "transforms[dedup:x].config.key",
                 "sink.mapping[0].name"):
        assert paths.format_path(paths.parse(text)) == text


@pytest.mark.parametrize("bad", ["", "a[]", "a..b]"])
def test_bad_paths(bad):
    with pytest.raises(paths.PathError):
        paths.parse(bad)
