"""gftune's living comment on a pull request, as text: its marker, the report that fits GitHub's size
limit (the most detailed rendering that fits, else the last one cut in the middle), the footer and the
history of superseded reports kept in a hidden trailing line. Pure; :mod:`gftune.github` reads and
writes the comment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gftune.desired.secrets import masker

COMMENT_LIMIT = 65_536  # characters; GitHub answers 422 "Body is too long" beyond
HISTORY_KEEP = 20
TRUNCATION_NOTE = ("\n\n> [!WARNING]\n> This report was longer than GitHub's 65,536-character comment limit; "
                   "the middle was cut. The full report is in the job summary and `gftune apply --format json`.\n\n")


@dataclass(frozen=True)
class PullRequest:
    api_url: str
    repository: str  # owner/name
    number: int

    def __str__(self) -> str:
        return f"{self.repository}#{self.number}"


def utf16_len(text: str) -> int:
    # GitHub counts characters; UTF-16 code units are never fewer than code points, so this is safe.
    return len(text.encode("utf-16-le")) // 2


def fit(renderings: Sequence[str], *, limit: int = COMMENT_LIMIT, header: str = "", footer: str = ""
        ) -> tuple[str, int]:
    """The first rendering (most detailed first) that fits between ``header`` and ``footer``, and its index.

    When none fits, the last one is cut in the middle: the head (summary) and the tail (verdicts,
    errors) survive, with a note saying so. Index ``len(renderings)`` means it was cut.
    """
    if not renderings:
        raise ValueError("nothing to fit")
    for index, body in enumerate(renderings):
        full = header + body + footer
        if utf16_len(full) <= limit:
            return full, index
    body = renderings[-1]
    budget = limit - utf16_len(header) - utf16_len(footer) - utf16_len(TRUNCATION_NOTE) - 16
    head_budget = budget * 2 // 3
    head = _take(body, head_budget)
    tail = _take_tail(body, budget - utf16_len(head))
    return header + head + TRUNCATION_NOTE + tail + footer, len(renderings)


def _take(text: str, units: int) -> str:
    out = text[:max(units, 0)]
    while utf16_len(out) > units:
        out = out[:-1]
    cut = out.rfind("\n")
    return out[:cut + 1] if cut > len(out) // 2 else out


def _take_tail(text: str, units: int) -> str:
    out = text[-units:] if units > 0 else ""
    while utf16_len(out) > units:
        out = out[1:]
    cut = out.find("\n")
    return out[cut + 1:] if 0 <= cut < len(out) // 2 else out


def comment_marker(pr: PullRequest) -> str:
    """The first line of gftune's comment on ``pr``: names gftune and the pull request."""
    return f"<!-- gftune: the living comment for {pr.repository}#{pr.number}; gftune edits it in place -->"


_STATE = re.compile(r"\n?<!-- gftune:state ([A-Za-z0-9+/=]+) -->\s*$")


@dataclass
class Entry:
    """One report that was posted in the comment."""

    kind: str  # plan | apply | ...
    title: str
    at: str  # UTC, minutes
    commit: str | None = None
    run: str | None = None
    digest: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "at": self.at, "commit": self.commit, "run": self.run,
                "digest": self.digest}

    @classmethod
    def from_dict(cls, data: Any) -> Entry | None:
        if not isinstance(data, dict) or not isinstance(data.get("title"), str):
            return None
        return cls(kind=str(data.get("kind") or ""), title=data["title"], at=str(data.get("at") or ""),
                   commit=data.get("commit") if isinstance(data.get("commit"), str) else None,
                   run=data.get("run") if isinstance(data.get("run"), str) else None,
                   digest=str(data.get("digest") or ""))


@dataclass
class CommentState:
    current: Entry | None = None
    history: list[Entry] = field(default_factory=list)  # newest first

    def encode(self) -> str:
        data = {"current": self.current.to_dict() if self.current else None,
                "history": [e.to_dict() for e in self.history]}
        return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()

    @classmethod
    def decode(cls, body: str) -> CommentState:
        match = _STATE.search(body)
        if not match:
            return cls()
        try:
            data = json.loads(base64.b64decode(match.group(1)))
        except (ValueError, binascii.Error):
            return cls()
        if not isinstance(data, dict):
            return cls()
        history = [e for e in (Entry.from_dict(x) for x in data.get("history") or []) if e is not None]
        return cls(Entry.from_dict(data.get("current")), history)


def headline(markdown: str) -> str:
    """The first heading of a report (what the history lists), else its first line."""
    lines = [line.strip() for line in markdown.splitlines() if line.strip() and not line.lstrip().startswith("<!--")]
    first = next((line for line in lines if line.startswith("#")), lines[0] if lines else "(empty report)")
    text = re.sub(r"[*_`]", "", first.lstrip("#").strip())
    return text if len(text) <= 140 else text[:139] + "…"


def _history_block(history: Sequence[Entry]) -> str:
    if not history:
        return ""
    rows = ["", "<details><summary>Earlier in this pull request "
            f"({len(history)} superseded report{'s' if len(history) != 1 else ''})</summary>", "",
            "| when (UTC) | commit | report |", "|---|---|---|"]
    for entry in history:
        commit = f"`{entry.commit[:7]}`" if entry.commit else ""
        title = entry.title.replace("|", "\\|")
        rows.append(f"| {entry.at} | {commit} | {f'[{title}]({entry.run})' if entry.run else title} |")
    rows += ["", "</details>"]
    return "\n".join(rows) + "\n"


def _footer(entry: Entry) -> str:
    parts = [f"gftune {entry.kind}"]
    if entry.commit:
        parts.append(f"commit `{entry.commit[:7]}`")
    if entry.run:
        parts.append(f"[workflow run]({entry.run})")
    parts.append(f"{entry.at} UTC")
    return "\n\n<sub>" + " · ".join(parts) + "</sub>\n"


def compose_comment(pr: PullRequest, renderings: Sequence[str], entry: Entry, previous: CommentState
                    ) -> tuple[str, int, CommentState]:
    """The comment's new body: the report (most detailed rendering that fits), a footer, the history.

    The report being replaced joins the history, unless it is the same report again (same digest).
    """
    history = list(previous.history)
    if previous.current is not None and previous.current.digest != entry.digest:
        history.insert(0, previous.current)
    history = history[:HISTORY_KEEP]
    state = CommentState(entry, history)
    marker = comment_marker(pr) + "\n"
    while True:
        trailer = _footer(entry) + _history_block(state.history) + f"<!-- gftune:state {state.encode()} -->"
        if utf16_len(marker + trailer) < COMMENT_LIMIT // 4 or not state.history:
            break
        state.history.pop()  # a report must never be cut for the sake of its history
    body, level = fit([masker.mask(r).rstrip("\n") + "\n" for r in renderings], header=marker, footer=trailer)
    return body, level, state


def digest(renderings: Sequence[str]) -> str:
    return hashlib.sha256(masker.mask(renderings[0] if renderings else "").encode()).hexdigest()[:16]
