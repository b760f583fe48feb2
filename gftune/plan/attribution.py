"""Who moved a field that differs between git and a live pipeline (pure; used by drift and plan).

With the provenance tag that apply leaves (``gftune:commit=<sha>``) and the pipeline file as it was
at that commit:

* git is what was applied (the tag names HEAD) → **changed outside gftune**;
* git changed the field since the applied commit and live still has the applied value → **git
  changed since the last apply**; live moved too → **changed in git and outside gftune**; only live
  moved → **changed outside gftune**.

An edit through the API without ``metadata`` replaces the tags, so the tag can be gone. Then the
pipeline file's history answers instead, field by field: live has the value of an older commit C
of the file → **git ahead, not applied since C**; live has a value git never had → **changed
outside gftune**. With neither a tag nor history (not a git repository, a shallow clone) the
answer is **never applied by gftune**.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gftune.desired import secrets
from gftune.glassflow import resources as res
from gftune.plan import canonical
from gftune.plan.diff import diff_config, diff_resources

OUTSIDE = "changed outside gftune"
GIT_CHANGED = "git changed since the last apply"
GIT_AHEAD = "git ahead, not applied since"  # + the commit live still matches
BOTH = "changed in git and outside gftune"
NEVER = "never applied by gftune"
UNKNOWN = "applied from a commit not available here: cannot tell git changes from outside changes"
NO_TAGS_NOTE = ("the live pipeline carries no gftune tags (never applied by gftune, or an edit through the API "
                "without metadata removed them): attributed from the file's git history")

Json = dict[str, Any]


@dataclass(frozen=True)
class Attribution:
    kind: str  # one of the constants above
    commit: str | None = None  # GIT_AHEAD: the commit live matches; GIT_CHANGED/BOTH: the applied commit

    @property
    def text(self) -> str:
        if self.kind == GIT_AHEAD and self.commit:
            return f"{GIT_AHEAD} {self.commit[:12]}"
        return self.kind


def changed_paths(spec: Json, against_doc: Json, against_internal: Json | None, resolver: canonical.Resolver, *,
                  against_resolver: canonical.Resolver | None = None) -> set[str]:
    """Field paths where ``spec`` (a git document) differs from another document + internal resources."""
    config = diff_config(canonical.canonical_config(spec, resolver=resolver),
                         canonical.canonical_config(against_doc, resolver=against_resolver))
    leaves, _ = canonical.desired_resource_leaves(spec)
    return {d.path for d in config} | {d.path for d in diff_resources(leaves, against_internal)}


def covers(path: str, paths: set[str]) -> bool:
    """``path`` or one of its parents/children is in ``paths`` (a whole transform added covers its fields)."""
    return any(path == p or path.startswith(p + ".") or path.startswith(p + "[") or p.startswith(path + ".")
               or p.startswith(path + "[") for p in paths)


def attribute_fields(paths: Sequence[str], *, live_doc: Json, live_resources: Json | None, head: str | None,
                     applied_commit: str | None, applied_spec: Json | None, desired_spec: Json,
                     history: Sequence[tuple[str, Json]], resolver: canonical.Resolver) -> dict[str, Attribution]:
    """Who moved each of ``paths`` (fields where git and live differ).

    ``applied_commit`` is the provenance tag's commit (None when the pipeline has none) and
    ``applied_spec`` the file's spec at that commit (None when that commit is not here).
    ``history``: ``(commit, spec)`` of the pipeline file, newest first (only read without a tag).
    """
    if applied_commit is not None:
        if applied_commit == head:
            return {p: Attribution(OUTSIDE) for p in paths}  # git is what was applied: live moved
        if applied_spec is None:
            return {p: Attribution(UNKNOWN, applied_commit) for p in paths}
        outside = changed_paths(applied_spec, live_doc, live_resources, resolver)
        in_git = changed_paths(desired_spec, applied_spec, res.v3_to_internal(applied_spec), resolver,
                               against_resolver=resolver)
        out: dict[str, Attribution] = {}
        for path in paths:
            git_moved, live_moved = covers(path, in_git), covers(path, outside)
            kind = BOTH if git_moved and live_moved else GIT_CHANGED if git_moved else OUTSIDE
            out[path] = Attribution(kind, applied_commit if kind != OUTSIDE else None)
        return out
    if not history:
        return {p: Attribution(NEVER) for p in paths}
    versions: list[tuple[str, set[str]]] = []
    for commit, spec in history:
        try:
            versions.append((commit, changed_paths(spec, live_doc, live_resources, resolver)))
        except (secrets.SecretError, ValueError, TypeError, KeyError):
            continue  # an old version that cannot be compared (e.g. a secret no longer set) tells nothing
    out = {}
    for path in paths:
        match = next((commit for commit, differing in versions if not covers(path, differing)), None)
        out[path] = Attribution(GIT_AHEAD, match) if match else Attribution(OUTSIDE)
    return out


def spec_of(text: str | None, loads: Callable[[str], Any]) -> Json | None:
    """The ``spec`` of a pipeline file's text (None when it is not one)."""
    if text is None:
        return None
    try:
        doc = loads(text)
    except Exception:  # an old version that does not parse tells nothing
        return None
    spec = doc.get("spec") if isinstance(doc, Mapping) else None
    return spec if isinstance(spec, dict) else None
