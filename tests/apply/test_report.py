"""Report rendering: text in the seed's format, JSON, Markdown levels and the Mermaid chart."""

from __future__ import annotations

import json

from gftune.apply import report, verify
from gftune.apply import state as rec
from gftune.desired.secrets import masker
from gftune.plan.evidence import Evidence, Expectation, FieldChange, Proposal

NOW = 1_700_000_100.0  # the reader's clock: these journals have finished, so it is not used


def _reading(name, value, unit=None):
    unit = unit or ("ratio" if name.endswith("ratio") else "records/s")
    return {"name": name, "value": value, "unit": unit, "query": f"q_{name}", "window_s": 15.0,
            "at": "2025-01-01T00:00:00+00:00", "status": "ok" if value is not None else "unknown",
            "detail": "", "breakdown": {}}


def _journal(outcome="verified"):
    proposal = Proposal("orders-dedup", "sink-batch-bound", (FieldChange("resources.sink.replicas", 1, 3),),
                        (Evidence("sink-batch-bound", "sink_source_ratio", "rate(a)/rate(b)", "5m", 0.35, "< 0.9"),),
                        predictions=(Expectation("sink_rate", ">=", 14000, "sink rate >= 14,000/s"),))
    entry = {"pipeline_id": "orders-dedup", "action": "update",
             "changes": [{"path": "resources.sink.replicas", "old": 1, "new": 3, "area": "resources",
                          "source": "git", "sensitive": False, "proposal": proposal.to_dict()},
                         {"path": "sink.connection_params.password", "old": "(sensitive)", "new": "(sensitive)",
                          "area": "config", "source": "git", "sensitive": True, "proposal": None}]}
    run = rec.PipelineRun("orders-dedup", "update", entry)
    t0 = 1_700_000_000.0
    for i, (phase, action, status) in enumerate([("apply", "stop", None), ("apply", "wait_status", "Stopped"),
                                                 ("apply", "put_resources", None), ("apply", "wait_status", "Running")]):
        params = {"status": status} if status else {}
        run.steps.append(rec.Step(phase, action, params, rec.DONE, t0 + i * 2, t0 + i * 2 + 1.5, 1, status))
    run.baseline = {n: _reading(n, v) for n, v in
                    [("source_rate", 14800), ("sink_rate", 5200), ("sink_source_ratio", 0.35)]}
    run.baseline["ingestor_backpressure"] = _reading("ingestor_backpressure", 1.0, "0/1")
    run.after = {n: _reading(n, v) for n, v in
                 [("source_rate", 14900), ("sink_rate", 14700), ("sink_source_ratio", 0.99)]}
    run.after["ingestor_backpressure"] = _reading("ingestor_backpressure", None, "0/1")
    run.series = {"t": [0, 5, 10, 15], "source": [14800, 14900, 14850, 14900], "sink": [9000, 14000, 14700, 14800]}
    v = verify.judge(status="Running", before={}, after={}, metrics=False)
    run.verdict = {**v.to_dict(), "window_s": 15.0}
    run.outcome = outcome
    return rec.RunJournal("run-1", "plan-1", "0123456789abcdef", "me@host", t0, {"orders-dedup": run},
                         finished_at=t0 + 30, exit_code=0)


def test_text_report_follows_the_seed_format():
    text = report.render_text(report.build(_journal(), now=NOW))
    assert "Change applied:" in text
    assert "resources.sink.replicas: 1 -> 3  [policy sink-batch-bound]" in text
    assert "sink.connection_params.password: (sensitive) -> (sensitive)" in text
    assert "Symptom metric: sink/source ratio" in text
    assert "Before: 0.35" in text and "After:  0.99" in text
    assert "sink rate:" in text and "5,200/s -> 14,700/s" in text
    assert "ingestor backpressure:" in text and "1 -> n/a" in text
    assert "Observation window: 15s" in text
    assert "Next move: accept" in text
    assert "apply.wait_status(Stopped)" in text


def test_json_report_is_versioned_and_complete():
    doc = json.loads(report.render_json(report.build(_journal(), now=NOW, exit_code=0)))
    assert doc["format_version"] == "1" and doc["exit_code"] == 0
    p = doc["pipelines"][0]
    assert p["outcome"] == "verified" and p["policies"] == ["sink-batch-bound"]
    assert [s["name"] for s in p["signals"]][:3] == ["sink_source_ratio", "sink_rate", "source_rate"]
    assert [s["duration_s"] for s in p["timeline"]] == [1.5, 1.5, 1.5, 1.5]
    assert doc["summary"] == {"verified": 1}


def test_markdown_levels_shrink_and_keep_the_summary():
    doc = report.build(_journal("reverted"), now=NOW)
    full, compact, summary = report.markdown_renderings(doc)
    assert len(full) > len(compact) > len(summary)
    for text in (full, compact, summary):
        assert "| `orders-dedup` | ↩️ reverted |" in text
    assert "```mermaid" in full and "xychart-beta" in full
    assert "line [14800, 14900, 14850, 14900]" in full and "line [9000, 14000, 14700, 14800]" in full
    assert 'x-axis "seconds after Running" [0, 5, 10, 15]' in full
    assert "<summary>Lifecycle timeline</summary>" in full and "Lifecycle" not in compact
    assert "| **sink/source ratio** (symptom) | 0.35 | 0.99 |" in compact
    assert "| sink/source ratio |" not in summary


def test_chart_is_left_out_without_enough_points():
    p = {"pipeline_id": "x", "chart": {"t": [0], "source": [1.0], "sink": [float("nan")]}}
    assert report.mermaid_chart(p) == []


def test_every_rendering_masks_secrets():
    j = _journal()
    j.pipelines["orders-dedup"].error = "sink refused password hunter2-secret"
    masker.add("hunter2-secret")
    try:
        doc = report.build(j, now=NOW)
        for text in (report.render_text(doc), report.render_json(doc), *report.markdown_renderings(doc)):
            assert "hunter2-secret" not in text
        assert "refused password ***" in report.render_text(doc)
    finally:
        masker.discard("hunter2-secret")
