"""Why each git change is in the plan: the commit that set git's value and who made it, or the edit
outside gftune that the change undoes (Terraform's "changed outside of Terraform").

Pure: the edge (``gftune.commands.plan``) reads the pipeline file's history, the provenance tag of
the live pipeline and its health, and hands them in. Who moved a field is drift's attribution
(:func:`gftune.plan.attribution.attribute_fields`), so ``plan`` and ``drift`` never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gftune.desired import secrets
from gftune.glassflow import resources as res
from gftune.plan import attribution
from gftune.plan.canonical import Resolver
from gftune.plan.model import WHY_BOTH, WHY_GIT, WHY_LIVE_EDIT, WHY_NEVER_APPLIED, WHY_UNKNOWN, Why

Json = dict[str, Any]

# drift's words -> the plan's kinds of "why"
KINDS = {attribution.GIT_CHANGED: WHY_GIT, attribution.GIT_AHEAD: WHY_GIT, attribution.OUTSIDE: WHY_LIVE_EDIT,
         attribution.BOTH: WHY_BOTH, attribution.NEVER: WHY_NEVER_APPLIED, attribution.UNKNOWN: WHY_UNKNOWN}


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    author: str
    committed_at: str  # RFC 3339
    subject: str


def value_origins(paths: Sequence[str], desired_spec: Json, history: Iterable[tuple[str, Json]],
                  resolver: Resolver) -> dict[str, str | None]:
    """For each path, the commit that gave git its current value: the oldest commit of the newest
    run of versions of the file that agree with the working tree on that path. None when the value
    is not committed yet (the working tree differs from the newest commit) or there is no history.
    ``history`` (newest first) is read only as far as needed: usually a version or two."""
    origins: dict[str, str | None] = dict.fromkeys(paths)
    open_runs = set(paths)
    for sha, spec in history:
        if not open_runs:
            break
        try:
            changed: set[str] | None = attribution.changed_paths(desired_spec, spec, res.v3_to_internal(spec),
                                                                 resolver, against_resolver=resolver)
        except (secrets.SecretError, ValueError, TypeError, KeyError):
            changed = None  # a version that cannot be compared ends every run
        for path in list(open_runs):
            if changed is None or attribution.covers(path, changed):
                open_runs.discard(path)
            else:
                origins[path] = sha
    return origins


def why_of(attributed: attribution.Attribution, origin: str | None, commits: Mapping[str, CommitInfo], *,
           applied_commit: str | None, live_changed_at: str | None) -> Why:
    """One change's :class:`Why` from drift's attribution of the field and the commit of git's value."""
    kind = KINDS.get(attributed.kind, WHY_LIVE_EDIT if attributed.kind.startswith(attribution.OUTSIDE) else WHY_GIT)
    info = commits.get(origin) if origin else None
    return Why(kind=kind, commit=origin, author=info.author if info else None,
               committed_at=info.committed_at if info else None, subject=info.subject if info else None,
               applied_commit=applied_commit,
               live_changed_at=live_changed_at if kind in (WHY_LIVE_EDIT, WHY_BOTH) else None)


def explain(paths: Sequence[str], *, live_doc: Json, live_resources: Json | None, live_changed_at: str | None,
            head: str | None, applied_commit: str | None, applied_spec: Json | None, desired_spec: Json,
            history: Callable[[], Iterable[tuple[str, Json]]], resolver: Resolver,
            commit_info: Callable[[Sequence[str]], Mapping[str, CommitInfo]]) -> dict[str, Why]:
    """Why each of ``paths`` (the fields a plan changes) is in the plan. ``history`` gives the file's
    versions newest first, read lazily: the whole of it only for a pipeline without a provenance
    tag (drift's attribution then compares live with every version), else as far as the newest
    change of each field git moved."""
    attributed = attribution.attribute_fields(
        paths, live_doc=live_doc, live_resources=live_resources, head=head, applied_commit=applied_commit,
        applied_spec=applied_spec, desired_spec=desired_spec,
        history=list(history()) if applied_commit is None else [], resolver=resolver)
    moved_in_git = [p for p in paths if KINDS.get(attributed[p].kind) != WHY_LIVE_EDIT]
    origins = value_origins(moved_in_git, desired_spec, history(), resolver)
    commits = commit_info([sha for sha in origins.values() if sha])
    return {p: why_of(attributed[p], origins.get(p), commits, applied_commit=applied_commit,
                      live_changed_at=live_changed_at) for p in paths}
