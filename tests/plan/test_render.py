"""Rendering a plan: Terraform-like text, the JSON document, Markdown for PR comments."""

import dataclasses
import json

from gftune.desired import secrets
from gftune.live import LiveState
from gftune.plan.build import PlanOptions, plan_pipeline
from gftune.plan.markdown import render_markdown
from gftune.plan.model import Plan
from gftune.plan.render import lifecycle_line, plan_file_text, render_json, render_text
from gftune.plan.verdict import resources_phrase
from tests.support.documents import PASSWORD, desired_doc, resolver
from tests.support.plans import OPTIONS, Desired, Outcome, live, make_plan, plan_for, proposal


def sample_plan():
    changed = desired_doc()
    changed["resources"]["sources"][0]["replicas"] = 3
    update = plan_for(changed, outcome=Outcome([proposal(new=3)], [], []))
    blocked_spec = desired_doc()
    blocked_spec["resources"]["nats"]["stream"]["maxAge"] = "48h"
    blocked = plan_pipeline(Desired("frozen-pipe", blocked_spec), live(), OPTIONS)
    blocked.pipeline_id = "frozen-pipe"
    create = plan_pipeline(Desired("brand-new", desired_doc()), LiveState("brand-new", exists=False), OPTIONS)
    error = plan_pipeline(Desired("broken", desired_doc()), LiveState("broken", exists=True, error="HTTP 500"), OPTIONS)
    noop = plan_pipeline(Desired("quiet", desired_doc()), live(), OPTIONS)
    noop.pipeline_id = "quiet"
    return make_plan([update, blocked, create, error, noop], api_url="http://127.0.0.1:8081",
                git={"commit": "0123456789abcdef", "branch": "main", "dirty": False})


def test_text_is_terraform_like():
    text = render_text(sample_plan())
    assert "~ orders-dedup" in text and "update (resources)" in text
    assert "resources.sources[orders].replicas: 2 → 3" in text
    assert "lifecycle: stop → wait Stopped → PUT /resources → wait Running" in text
    assert "why: policy scale-ingestor" in text
    assert "sink_rate     5,200  < 10000 for 2m" in text and "query:" not in text  # readings, not queries
    assert "query: rate(x[5m])" in render_text(sample_plan(), verbose=True)
    assert "+ brand-new" in text and "! frozen-pipe" in text and "remedy:" in text
    assert "x broken" in text and "HTTP 500" in text
    assert "= 1 unchanged: quiet" in text
    assert "policies not evaluated" in text
    assert "Plan: 1 to create, 1 to update, 0 to delete, 1 blocked, 1 unchanged; 1 error." in text
    assert "Cost: 1 restart (~42 s of downtime); +3 ingestor, +1 sink, +1 transform pods;" in text
    assert "\x1b[" not in text  # no colour unless asked


def test_text_in_colour_keeps_the_content():
    assert "\x1b[" in render_text(sample_plan(), color=True)


def test_empty_scope_is_said_out_loud():
    text = render_text(make_plan([]))
    assert "No pipelines in scope" in text
    assert "Plan: 0 to create" in text


def test_no_changes_is_said():
    text = render_text(make_plan([plan_for()]))
    assert "No changes" in text


def test_json_is_the_plan_document():
    data = json.loads(render_json(sample_plan()))
    assert data["format_version"] == "1"
    assert [p["action"] for p in data["pipelines"]] == ["update", "blocked", "create", "error", "noop"]
    assert data["summary"]["blocked"] == 1


def test_markdown_has_a_table_and_details():
    md = render_markdown(sample_plan())
    assert md.startswith("### gftune plan: 1 to create, 1 to update, 1 blocked, 1 error · 1 restart (~42 s of "
                         "downtime) · ")
    assert ("| `~` | orders-dedup | `resources.sources[orders].replicas` 2 → 3 | policy scale-ingestor | "
            "1 restart (~42 s of downtime), +1 ingestor |") in md
    assert "**frozen-pipe** blocked (immutable):" in md
    assert "<details><summary>orders-dedup: fields, lifecycle, sizing and queries</summary>" in md
    assert "**Next:** fix the errors above and plan again." in md


def test_markdown_lists_a_create_s_fields():
    md = render_markdown(sample_plan())
    assert "| `+` | brand-new | new pipeline |" in md
    section = md[md.index("**brand-new**: new pipeline"):]
    for field in ("sources: orders (kafka topic orders)", "transforms: filter:orders, dedup:orders",
                  "sink: clickhouse table orders (batch 1000, delay 60s)", "replicas: orders ingestor x2, sink x1"):
        assert f"- {field}" in section


def test_conditional_steps_are_bracketed():
    steps = [{"action": "edit"}, {"action": "wait_status", "status": "Running"},
             {"action": "stop", "when": "join_reset"}, {"action": "put_resources", "when": "join_reset"},
             {"action": "stop"}]
    assert lifecycle_line(steps) == ("POST /edit → wait Running → [if the edit reset join resources: stop → "
                                     "PUT /resources] → stop")


def test_no_surface_shows_a_secret():
    secrets.masker.add(PASSWORD)
    rotated = "a-brand-new-password"
    plan = make_plan([plan_for(options=PlanOptions(resolver=resolver({"CH_PASSWORD": rotated})))])
    for text in (render_text(plan), render_json(plan), render_markdown(plan), plan_file_text(plan)):
        assert PASSWORD not in text and rotated not in text
        assert "sink.connection_params.password" in text


def test_evidence_values_read_like_the_seed_report():
    from gftune.plan.evidence import Evidence

    backpressure = Evidence("p", "ingestor_backpressure", "max(...)", "5m", 1.0, ">= 1 for 2m", unit="0/1")
    assert backpressure.describe() == "ingestor_backpressure = 1 (threshold >= 1 for 2m, window 5m)"
    rate = Evidence("p", "source_rate", "sum(rate(...))", "5m", 5200.4, "sizing input: input read from Kafka",
                    unit="records/s")
    assert rate.describe() == "source_rate = 5,200/s (sizing input: input read from Kafka; window 5m)"
    assert Evidence("p", "x", "q", "5m", None, "> 1").describe().startswith("x = unknown (")


def test_verbose_proposal_lines_put_each_query_and_each_sized_stage_on_its_own_line():
    from gftune.plan.evidence import Evidence, Expectation, FieldChange, Proposal
    from gftune.plan.render import proposal_lines

    proposal = Proposal("p", "stream-backpressure", (FieldChange("resources.sink.replicas", 1, 4),),
                        (Evidence("stream-backpressure", "stream_depth_ratio", "max(depth)", "5m", 0.9, ">= 0.8"),),
                        (Expectation("stream_depth_ratio", "<=", 0.5),),
                        rationale="NATS stream filling. | input 8,000/s; ingestor: 2 replicas; sink: 1 -> 4 replicas")
    assert proposal_lines(proposal) == [
        "policy stream-backpressure: NATS stream filling.",
        "  sizing: input 8,000/s", "  sizing: ingestor: 2 replicas", "  sizing: sink: 1 -> 4 replicas",
        "  evidence: stream_depth_ratio = 0.9 (threshold >= 0.8, window 5m)", "    query: max(depth)",
        "  predicted: stream_depth_ratio <= 0.5",
    ]


def test_cost_and_risk_at_a_glance():
    # An update of a Running pipeline (sink 1 -> 3 replicas: one restart) and a delete (irreversible).
    changed = desired_doc()
    changed["resources"]["sink"]["replicas"] = 3
    update = plan_for(changed)
    doomed = live()
    doomed.pipeline_id = "old-pipeline"
    delete = plan_pipeline(None, doomed, OPTIONS)
    plan = make_plan([update, delete])
    md = render_markdown(plan)
    headline = md.splitlines()[0]
    assert headline == ("### gftune plan: 1 to update, 1 to delete · 1 restart (~42 s of downtime) · "
                        # +2 sink pods of 1000m / 500Mi requested; the deleted pipeline frees its own pods
                        f"{resources_phrase(plan.cost.resources)} · **irreversible: deleting old-pipeline loses the "
                        "messages buffered in its NATS streams and its dedup state**")
    assert plan.cost.resources.pods["sink"] == 2 - 1  # +2 on the update, -1 on the delete
    text = render_text(plan)
    assert "Cost: 1 restart (~42 s of downtime); " in text
    assert "irreversible: deleting old-pipeline loses the messages buffered in its NATS streams" in text
    quiet = render_markdown(make_plan([plan_for()])).splitlines()[0]
    assert quiet == "### gftune plan: no changes · nothing irreversible"


def test_notes_that_say_the_same_thing_for_many_pipelines_are_said_once():
    first, second, third = plan_for(), plan_for(), plan_for()
    first.pipeline_id, second.pipeline_id, third.pipeline_id = "a-pipe", "b-pipe", "c-pipe"
    same = "retry-exhaustion: not evaluated (no data is not zero): sink_exhausted_rate (unknown: no data)"
    for p in (first, second, third):
        p.policy_notes = [same]
    third.policy_notes.append("no policy matched")
    plan = make_plan([first, second, third])
    assert "2 policy notes (how the policies were evaluated): --verbose shows them" in render_text(plan)
    verbose = render_text(plan, verbose=True)
    assert verbose.count(same) == 1 and f"{same} — all 3 pipelines" in verbose
    assert "no policy matched — c-pipe" in verbose
    md = render_markdown(plan)
    assert md.count(same) == 1 and "<details><summary>Policy notes (2)</summary>" in md


def test_a_proposal_that_rides_on_two_changes_is_told_once():
    from gftune.plan.evidence import FieldChange

    spec = desired_doc()
    spec["resources"]["sources"][0]["replicas"] = 3
    spec["sink"]["max_batch_size"] = 2000
    both = dataclasses.replace(proposal(new=3), changes=(
        FieldChange("resources.sources[orders].replicas", 2, 3), FieldChange("sink.max_batch_size", 1000, 2000)))
    entry = plan_for(spec, outcome=Outcome([both], [], []))
    assert all(c.proposal is not None for c in entry.changes) and len(entry.changes) == 2
    for plan in (make_plan([entry]), Plan.from_dict(json.loads(render_json(make_plan([entry]))))):
        assert render_text(plan).count("why: policy scale-ingestor:") == 1
        assert render_markdown(plan).count("· policy scale-ingestor:") == 1


def test_a_proposal_block_fits_twelve_lines_even_with_wide_numbers():
    # The demo's proposal (issue 16: at most 12 lines), with every number as wide as a long backlog makes it.
    from gftune.plan.assessment import Assessment, Cost, Figure, ResourceDelta
    from gftune.plan.evidence import Evidence, FieldChange

    readings = tuple(Evidence("stream-backpressure", name, "max(x)", "5m", value, threshold)
                     for name, value, threshold in (("ingestor_backpressure", 1.0, ">= 1 for 2m"),
                                                    ("stream_depth_ratio", 0.9, ">= 0.8 for 2m"),
                                                    ("sink_insert_share", 0.257, "< 0.5")))
    wide = dataclasses.replace(
        proposal(), policy="stream-backpressure", evidence=readings,
        changes=(FieldChange("resources.sources[users].replicas", 2, 3), FieldChange("resources.sink.replicas", 1, 4),
                 FieldChange("sink.max_batch_size", 1000, 2000)),
        assessment=Assessment("sink", Figure(4950.5, "records/s"), Figure(17962.1, "records/s"),
                              Figure(118_400_000, "records"), Figure(117_554.2, "records/s"), "transform",
                              Figure(12_345, "s")),
        cost=Cost(1, 60.0, ResourceDelta({"sink": 13, "ingestor": 11}, 12.5, 11_756 * 2**20, 19.5, 19 * 2**30)))
    entry = plan_for(outcome=Outcome([wide], [], []))
    text = render_text(make_plan([entry]), width=120)
    block = text[text.index("= orders-dedup"):text.index("\n\n", text.index("= orders-dedup"))]
    assert "The sink is the bottleneck at 363% of capacity" in block and "Cost: 1 restart" in block
    assert len(block.splitlines()) <= 12, block
