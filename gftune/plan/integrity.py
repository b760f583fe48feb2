"""The integrity of a saved plan: a digest of the desired documents it was made from and of the
payloads it would send, bound together, so that ``apply`` refuses a plan edited on its way.
"""

from __future__ import annotations

from collections.abc import Mapping

from gftune.glassflow import resources as res
from gftune.plan import canonical
from gftune.plan.canonical import Json
from gftune.plan.diff import diff_resources
from gftune.plan.model import CREATE, UPDATE, PipelinePlan, Plan

# --- integrity of a saved plan ------------------------------------------------------------------------
# A saved plan travels (a CI artifact from the pull request's job to the apply job): whoever can write
# it must not be able to make apply send anything but what git says. The plan records a digest of each
# desired document it was made from and of its own payloads; apply refuses a plan whose payloads do
# not match that digest, whose desired files changed since, or whose payloads say something else than
# the files (an edited payload with a recomputed digest).

def payloads_digest(plan: Plan, desired: Json) -> str:
    """The digest of what apply would send for ``plan`` and of the proposals ``tune --plan`` would write
    (their changes and what apply would verify), bound to the desired documents' digests."""
    return canonical.digest({"desired": desired, "pipelines": [
        {"pipeline_id": p.pipeline_id, "action": p.action, "payload": p.payload, "lifecycle": p.lifecycle,
         "proposals": [{"policy": proposal.policy, "changes": [c.to_dict() for c in proposal.changes],
                        "verify": proposal.verify.to_dict() if proposal.verify else None}
                       for proposal in p.proposals]}
        for p in plan.pipelines]})


def seal(plan: Plan, desired_specs: Mapping[str, Json]) -> None:
    """Record the digests of the desired documents (as in git: references, not values) and payloads."""
    desired = {pid: canonical.digest(spec) for pid, spec in sorted(desired_specs.items())}
    plan.digest = {"desired": desired, "payloads": payloads_digest(plan, desired)}


def _payload_disagreements(entry: PipelinePlan, spec: Json) -> list[str]:
    """Where ``entry``'s payload says something else than the desired document ``spec``."""
    found = []
    document = entry.payload.get("document")
    if isinstance(document, dict) and canonical.canonical_config(document) != canonical.canonical_config(spec):
        found.append("its document differs from the pipeline file")
    if isinstance(document, dict):
        internal = res.v3_to_internal(document)
    else:
        internal = (entry.payload.get("resources") or {}).get("pipeline_resources")
    if internal is not None:
        leaves, _ = canonical.desired_resource_leaves(spec)
        found += [f"{d.path} is {d.old} in the plan, {d.new} in the pipeline file"
                  for d in diff_resources(leaves, internal)]
    return found


def seal_problem(plan: Plan) -> str | None:
    """Why ``plan`` is not as ``gftune plan`` wrote it (no digest, or payloads or proposals that do not
    match it); None when the seal holds."""
    digest = plan.digest if isinstance(plan.digest, dict) else None
    if digest is None or not isinstance(digest.get("desired"), dict):
        return "the plan carries no digest (made by hand or by an older gftune): re-run `gftune plan --out`"
    if digest.get("payloads") != payloads_digest(plan, digest["desired"]):
        return ("the plan's payloads or proposals do not match its digest: the file was edited after "
                "`gftune plan` wrote it")
    return None


def integrity_problems(plan: Plan, current_specs: Mapping[str, Json]) -> list[str]:
    """Why a saved plan must not be applied against the repository as it is now (``current_specs``:
    the pipeline documents in git, by id); empty when it may."""
    broken = seal_problem(plan)
    if broken is not None:
        return [broken]
    desired = plan.digest["desired"]
    problems = []
    for entry in plan.pipelines:
        if entry.action not in (CREATE, UPDATE):
            continue
        pid = entry.pipeline_id
        spec = current_specs.get(pid)
        if spec is None:
            problems.append(f"{pid}: its pipeline file is gone since the plan was made")
        elif canonical.digest(spec) != desired.get(pid):
            problems.append(f"{pid}: its pipeline file changed since the plan was made")
        else:
            problems += [f"{pid}: {text}" for text in _payload_disagreements(entry, spec)]
    return problems
