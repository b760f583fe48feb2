"""The run journal: atomic round trip, redaction of secrets, the failpoint hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gftune.apply import journal as jn
from gftune.apply import state as rec

LIVE = {
    "pipeline_id": "orders-dedup",
    "sources": [{"source_id": "orders", "connection_params": {"brokers": ["k:9092"], "password": "kafka-pw-123"}}],
    "sink": {"connection_params": {"host": "ch", "password": "ch-pw-456"}, "max_batch_size": 1000},
}


def _journal():
    run = rec.PipelineRun("orders-dedup", "update", {"pipeline_id": "orders-dedup", "changes": []},
                         steps=[rec.Step("apply", "stop"), rec.Step("apply", "wait_status", {"status": "Stopped"})])
    run.before = {"status": "Running", "config": rec.redact(LIVE), "resources": {"sink": {"replicas": 2}}}
    return rec.RunJournal("20250101T000000Z-abcdef", "plan-1", "abc123", "me@host", 1.0,
                         pipelines={"orders-dedup": run})


def test_round_trip_and_no_secret_on_disk(tmp_path):
    store = jn.JournalStore(tmp_path)
    journal = _journal()
    path = store.save(journal)
    text = path.read_text()
    assert "kafka-pw-123" not in text and "ch-pw-456" not in text
    assert rec.REDACTED in text
    again = store.load(journal.run_id)
    assert again.to_dict() == journal.to_dict()
    assert again.pipelines["orders-dedup"].current().name == "apply.stop"
    assert store.run_ids() == [journal.run_id]
    assert [j.run_id for j in store.unfinished()] == [journal.run_id]
    assert not list(tmp_path.joinpath(".gftune/runs").glob("*.tmp"))


def test_unredact_fills_from_live_and_reports_missing():
    redacted = rec.redact(LIVE)
    assert redacted["sink"]["connection_params"]["password"] == rec.REDACTED
    assert LIVE["sink"]["connection_params"]["password"] == "ch-pw-456"  # input untouched
    restored, missing = rec.unredact(redacted, LIVE)
    assert restored == LIVE and missing == []
    live_without = json.loads(json.dumps(LIVE))
    del live_without["sink"]["connection_params"]["password"]
    restored, missing = rec.unredact(redacted, live_without)
    assert missing == ["sink.connection_params.password"]


def test_load_errors_are_clear(tmp_path):
    store = jn.JournalStore(tmp_path)
    with pytest.raises(rec.JournalError, match="no journal for run nope"):
        store.load("nope")
    with pytest.raises(rec.JournalError, match="invalid run id"):
        store.path("../etc/passwd")
    store.directory.mkdir(parents=True)
    (store.directory / "bad.json").write_text("{")
    with pytest.raises(rec.JournalError, match="not a valid journal"):
        store.load("bad")
    (store.directory / "old.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(rec.JournalError, match="format_version"):
        store.load("old")


def test_skip_pending_and_current():
    run = _journal().pipelines["orders-dedup"]
    run.steps[0].state = rec.DONE
    assert run.current().action == "wait_status"
    run.skip_pending("apply", "refused")
    assert run.current() is None and run.steps[1].state == rec.SKIPPED


def test_new_run_ids_are_sortable_and_unique():
    a, b = jn.new_run_id(0), jn.new_run_id(1)
    assert a < b and a.startswith("19700101T000000Z-")
    assert len({jn.new_run_id(5) for _ in range(50)}) == 50


@pytest.mark.parametrize(("spec", "killed"), [("stop:before", True), ("apply.stop:before", True),
                                              ("stop:after", False), ("edit:before", False)])
def test_failpoint_kills_only_at_the_named_moment(spec, killed):
    code = ("from gftune.apply import journal as jn, state as rec; "
            "jn.failpoint(rec.Step('apply', 'stop'), 'before'); print('alive')")
    env = {**os.environ, jn.FAILPOINT_ENV: spec}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    if killed:
        assert proc.returncode == -9 and "alive" not in proc.stdout
    else:
        assert proc.returncode == 0 and "alive" in proc.stdout
