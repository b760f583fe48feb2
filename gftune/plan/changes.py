"""Which pipelines a branch changed (``--changed-since REF``): the pure part.

A pull request that edits one pipeline must plan that pipeline and nothing else; an unapplied commit
or an edit made through the API on another pipeline is not this pull request's business (and would
be undone by its merge). From the files that differ since the merge base (read by
:func:`gftune.gitrepo.changed_files`), a pipeline is **selected** when

* its file was added or modified (``pipelines/<id>.yaml``), or
* a policy file that selects it was added, modified or deleted (the policy's selector before and
  after the change both count: a policy that stops selecting a pipeline changes that pipeline's plan).

A pipeline file that was **deleted** names a pipeline (the file name is the pipeline id) that the
plan deletes only with ``--allow-delete``. Every other pipeline in git is **left alone**, and the
plan says so. A change to ``gftune.yaml`` alone selects nothing (it holds endpoints and defaults,
not a pipeline's desired state); the selection records it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

Selector = Callable[[str, Mapping[str, str]], bool]  # (pipeline id, labels) -> selected


@dataclass(frozen=True)
class ChangedFile:
    path: str  # relative to the repository root, posix
    status: str  # added | modified | deleted


@dataclass
class Selection:
    ref: str
    base: str | None  # the merge base of ref and HEAD
    selected: dict[str, list[str]] = field(default_factory=dict)  # pipeline id -> why
    deleted: list[str] = field(default_factory=list)  # pipeline files deleted in git
    left_alone: list[str] = field(default_factory=list)  # in git, not changed
    settings_changed: bool = False  # gftune.yaml

    @property
    def ids(self) -> list[str]:
        """Every pipeline this selection lets a plan touch (selected and deleted)."""
        return sorted(set(self.selected) | set(self.deleted))

    def to_dict(self) -> dict[str, Any]:
        return {"changed_since": self.ref, "base": self.base,
                "selected": {k: list(v) for k, v in sorted(self.selected.items())},
                "deleted": list(self.deleted), "left_alone": list(self.left_alone),
                "settings_changed": self.settings_changed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Selection:
        return cls(ref=str(data.get("changed_since", "")), base=data.get("base"),
                   selected={str(k): list(v) for k, v in (data.get("selected") or {}).items()},
                   deleted=list(data.get("deleted") or ()), left_alone=list(data.get("left_alone") or ()),
                   settings_changed=bool(data.get("settings_changed")))

    def summary(self) -> str:
        """One line for people: what was planned because of what, and what was left alone."""
        short = (self.base or "")[:12]
        parts = [f"changed since {self.ref}" + (f" (merge base {short})" if short and short != self.ref else "")]
        parts.append(f"{len(self.selected)} pipeline(s) selected" + (
            ": " + "; ".join(f"{pid} ({', '.join(why)})" for pid, why in sorted(self.selected.items()))
            if self.selected else ""))
        if self.deleted:
            parts.append("deleted in git: " + ", ".join(self.deleted))
        if self.left_alone:
            parts.append(f"left alone (not changed): {len(self.left_alone)} ({', '.join(self.left_alone)})")
        if self.settings_changed:
            parts.append("gftune.yaml changed (settings; no pipeline is planned for that alone)")
        return "; ".join(parts)


def _pipeline_id(path: str) -> str:
    return PurePosixPath(path).stem


def select_changed(ref: str, base: str | None, files: Iterable[ChangedFile],
                   pipelines: Mapping[str, tuple[str, Mapping[str, str]]],
                   policy_selectors: Mapping[str, Iterable[Selector]]) -> Selection:
    """The selection for ``files`` (what changed since the merge base).

    ``pipelines``: every pipeline in git now, ``{id: (file path, labels)}``. ``policy_selectors``:
    for each changed policy file, its selectors (the old and the new version's, when they parse).
    """
    files = list(files)
    by_file = {file: pid for pid, (file, _) in pipelines.items()}
    selection = Selection(ref=ref, base=base)

    def select(pid: str, why: str) -> None:
        reasons = selection.selected.setdefault(pid, [])
        if why not in reasons:
            reasons.append(why)

    for change in files:
        if change.path.startswith("pipelines/"):
            if change.status == "deleted":
                pid = _pipeline_id(change.path)
                if pid not in pipelines and pid not in selection.deleted:
                    selection.deleted.append(pid)
            elif change.path in by_file:
                select(by_file[change.path], f"{change.path} {change.status}")
        elif change.path.startswith("policies/"):
            name = PurePosixPath(change.path).stem
            for selector in policy_selectors.get(change.path, ()):
                for pid, (_, labels) in pipelines.items():
                    if selector(pid, labels):
                        select(pid, f"policy {name} {change.status}")
        elif change.path == "gftune.yaml":
            selection.settings_changed = True
    selection.deleted.sort()
    selection.left_alone = sorted(pid for pid in pipelines if pid not in selection.selected)
    return selection
