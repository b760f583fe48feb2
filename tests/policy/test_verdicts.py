"""A reader's test of the verdicts: every built-in policy's test fixture that proposes or escalates is
rendered into its one-paragraph verdict, and the paragraph must name the bottleneck (and how loaded it
is, or why that is not established), the predicted effect and the cost; an escalation must say what
would help, or that it is not a capacity problem, and the next step. A few fixtures are also read
for their exact numbers, so that a verdict that merely has the right shape cannot pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gftune.glassflow import resources as res
from gftune.live import LiveState
from gftune.plan.build import PlanOptions, proposal_cost
from gftune.plan.verdict import escalation_verdict, proposal_verdict
from gftune.policy.language import parse_policy
from gftune.policy.testing import fixture_evaluation

POLICIES = Path(__file__).resolve().parents[2] / "gftune" / "examples" / "policies"
STAGE = r"(ingestor|transform|sink)"
BOTTLENECK = re.compile(rf"^The {STAGE}( is the bottleneck at \d+% of capacity: [\d,]+/s for [\d,]+/s arriving"
                        rf"| runs at \d+% of capacity: [\d,]+/s of [\d,]+/s"
                        rf"|'s capacity is not established \(.+\))")
PREDICTED = re.compile(r": [\d,]+/s predicted|predicted capacity not established \(.+\); apply verifies \S")
COST = re.compile(r"Cost: (no restart|\d+ restarts? \(~\d+ s of downtime\)); "
                  r"(no resource change|[+-]\d+ \w+.*pods?|requests [+-]|limits [+-])")

FIXTURES = [(f.stem, test["name"], test) for f in sorted(POLICIES.glob("*.yaml"))
            for test in yaml.safe_load(f.read_text(encoding="utf-8")).get("tests") or []]


def verdict_of(policy_name: str, test: dict) -> tuple[str, str] | None:
    """("proposal" | "escalation", the verdict paragraph) of one fixture, as the plan renders it."""
    policy = parse_policy(yaml.safe_load((POLICIES / f"{policy_name}.yaml").read_text(encoding="utf-8")))
    doc, evaluation = fixture_evaluation(policy, test)
    if evaluation.proposal is not None:
        # The fixture's pipeline as the API would show it live (the API's defaults filled in), Running.
        live = LiveState("policy-test", exists=True, pipeline=doc, status="Running",
                         resources=res.merge_with_defaults(res.v3_to_internal(doc), doc))
        return "proposal", proposal_verdict(evaluation.proposal, proposal_cost(evaluation.proposal, live,
                                                                                PlanOptions()))
    if evaluation.escalation is not None:
        return "escalation", escalation_verdict(evaluation.escalation)
    return None


def test_every_built_in_policy_has_a_fixture_with_a_verdict():
    with_verdict = {name for name, _, test in FIXTURES if verdict_of(name, test) is not None}
    assert with_verdict == {f.stem for f in POLICIES.glob("*.yaml")}


@pytest.mark.parametrize(("policy", "name", "test"), FIXTURES, ids=[f"{p}: {n}" for p, n, _ in FIXTURES])
def test_the_verdict_names_the_bottleneck_the_effect_and_the_cost(policy, name, test):
    found = verdict_of(policy, test)
    if found is None:
        assert test["expect"].get("nothing"), "a fixture that expects a finding must render a verdict"
        return
    kind, text = found
    if kind == "proposal":
        assert BOTTLENECK.search(text), text
        assert PREDICTED.search(text), text
        assert COST.search(text), text
    else:
        assert re.match(rf"Needs .+: the {STAGE} .+; no (replica|allowed) change can help \(.+\)\. Next: \S"
                        r"|Not a capacity problem: .+\. No change is proposed\. Next: \S", text), text


EXACT = {
    ("stream-backpressure", "sink-bound backpressure scales the sink in one step"): [
        "The sink is the bottleneck at 162% of capacity: 4,950/s for 8,000/s arriving; 8,000 records queued.",
        # the ingestor is in backpressure: its capacity is not established, so it limits nothing here
        "With sink replicas 1 → 2: 9,900/s predicted, backlog drained in ~4 min.",
        # 1 more sink pod of the test pipeline's 1000m / 500Mi requests
        "Cost: 1 restart (~60 s of downtime); +1 sink pod; requests +1 CPU, +500 MiB.",
    ],
    ("sink-batch-bound", "the seed's example batch-bound sink (5,200/s against 14,800/s)"): [
        "The sink is the bottleneck at 285% of capacity: 5,200/s for 14,800/s arriving.",
        "predicted capacity not established (no capacity model for this change); "
        "apply verifies backpressure share 0.9 -> <=0",
        "Cost: 1 restart (~60 s of downtime); no resource change.",
    ],
    ("underprovisioned-ingestor", "a 250m ingestor gets a full core and more memory"): [
        "The ingestor is the bottleneck at 240% of capacity: 2,500/s for 6,000/s arriving.",
        # limits raised in place on 2 replicas: 2 x (1 - 0.25) cores, 2 x (1Gi - 512Mi)
        "Cost: 1 restart (~60 s of downtime); limits +1.5 CPU, +1 GiB.",
    ],
    ("partition-capped-ingestor", "replicas equal to the partitions escalate with the Kafka-side next step"): [
        "Needs more Kafka partitions (at least 4): the ingestor is the bottleneck at 133% of capacity: "
        "6,000/s for 8,000/s arriving",
        "no replica change can help (the topic has 2 partitions). Next: increase the Kafka topic's partitions",
    ],
    ("dedup-storage", "a slow dedup store gets a shorter window"): [
        "The transform's capacity is not established (",
        "the trigger: dedup_duration_mean 0.111 s (>= 0.08 for 2m)",
        "With transforms[dedup:orders].config.time_window 1h → 19m: predicted capacity not established",
    ],
    ("terminal-errors", "permanent sink errors escalate"): [
        "Not a capacity problem: ClickHouse rejects batches permanently",
        "(sink_terminal_error_rate 0.15 batches/s (> 0.001 for 1m)). No change is proposed. Next: Fix the "
        "configuration",
    ],
}


@pytest.mark.parametrize(("policy", "name"), list(EXACT), ids=[f"{p}: {n}" for p, n in EXACT])
def test_the_verdict_reads_the_fixture_s_numbers(policy, name):
    test = next(t for p, n, t in FIXTURES if (p, n) == (policy, name))
    found = verdict_of(policy, test)
    assert found is not None
    for fragment in EXACT[(policy, name)]:
        assert fragment in found[1], found[1]
