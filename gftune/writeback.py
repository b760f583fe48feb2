"""``gftune tune``'s core: proposals written back into ``pipelines/*.yaml``, committed on a branch.

Write-back changes only the targeted values. ruamel.yaml's round-trip loader finds where each value
sits (line and column); the new scalar is spliced into the original text at exactly that place,
keeping its quoting. A key that is missing is inserted as new lines after its parent's last line,
in the file's own indentation (block style) or inside the braces (flow style). Every other byte of
the file (comments, key order, quoting, blank lines) stays as it was; the edited text is parsed
again and checked to hold the new values before anything is written.

Committing uses GitPython: a new branch (default ``gftune/tune-<date>-<short hash>``) from HEAD,
the edited files added, and a commit message carrying the evidence. :func:`pr_body` renders the
Markdown a pull request needs: what changes, why (measured values), the predicted effect and how
``apply`` will verify it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from gftune.desired import paths
from gftune.desired.secrets import masker
from gftune.plan.evidence import Escalation, FieldChange, Proposal


class TuneError(Exception):
    """A proposal that cannot be written (file changed, not a scalar, git refuses)."""


# --- YAML text surgery ---------------------------------------------------------------------------

_PLAIN_SAFE = re.compile(r"^[A-Za-z_./][A-Za-z0-9_./:+-]*$|^[0-9][A-Za-z0-9_./:+-]*[A-Za-z][A-Za-z0-9_./:+-]*$")
_YAML_SPECIAL = re.compile(r"^(?:true|false|null|yes|no|on|off|~|[-+]?(?:\d[\d_]*)?\.?\d+(?:[eE][-+]?\d+)?"
                           r"|0x[0-9a-fA-F]+|0o[0-7]+|\.inf|\.nan)$", re.IGNORECASE)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def render_scalar(value: Any, quote: str | None = None) -> str:
    """A YAML scalar for ``value``; strings keep ``quote`` and are quoted when plain would change type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    if quote == '"':
        return json.dumps(text)
    needs_quotes = not _PLAIN_SAFE.match(text) or bool(_YAML_SPECIAL.match(text))
    if quote == "'" or needs_quotes:
        return "'" + text.replace("'", "''") + "'"
    return text


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return render_scalar(value)


def _scalar_extent(line: str, col: int, flow: bool) -> tuple[int, int, str | None]:
    """(start, end, quote) of the scalar token starting at ``col``."""
    if col < len(line) and line[col] in "'\"":
        quote = line[col]
        i = col + 1
        while i < len(line):
            if line[i] == quote:
                if quote == "'" and i + 1 < len(line) and line[i + 1] == "'":
                    i += 2
                    continue
                if quote == '"' and line[i - 1] == "\\":
                    i += 1
                    continue
                return col, i + 1, quote
            i += 1
        raise TuneError("unterminated quoted scalar")
    end = len(line)
    comment = line.find(" #", col)
    if comment != -1:
        end = comment
    if flow:
        for stop in (",", "}", "]"):
            position = line.find(stop, col, end)
            if position != -1:
                end = position
    while end > col and line[end - 1] == " ":
        end -= 1
    return col, end, None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_filler(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _block_end(lines: list[str], start: int, col: int) -> int:
    """Index of the last line that belongs to a block node whose content starts at ``(start, col)``."""
    last = start
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if _is_filler(line):
            continue
        indent = _indent(line)
        if indent > col or (indent == col and line.lstrip().startswith("- ") and not
                            lines[start][col:].lstrip().startswith("- ")):
            last = i
            continue
        break
    return last


def _detect_style(text: str) -> tuple[int, int]:
    """(mapping indent step, dash offset of block sequences under a key)."""
    lines = text.splitlines()
    step, offset = 2, 2
    for i, line in enumerate(lines[:-1]):
        if re.match(r"^\s*[^\s#-][^:#]*:\s*$", line):
            following = next((n for n in lines[i + 1:] if not _is_filler(n)), None)
            if following is None:
                continue
            if following.lstrip().startswith("- "):
                offset = _indent(following) - _indent(line)
            else:
                step = max(1, _indent(following) - _indent(line))
            break
    return step, max(0, offset)


def _block_lines(data: dict[str, Any], col: int, step: int, offset: int) -> list[str]:
    out: list[str] = []
    for key, value in data.items():
        pad = " " * col
        if isinstance(value, dict):
            out.append(f"{pad}{key}:")
            out += _block_lines(value, col + step, step, offset)
        elif isinstance(value, list):
            out.append(f"{pad}{key}:")
            for item in value:
                out += _item_lines(item, col + offset, step, offset)
        else:
            out.append(f"{pad}{key}: {render_scalar(value)}")
    return out


def _item_lines(item: Any, dash_col: int, step: int, offset: int) -> list[str]:
    if not isinstance(item, dict):
        return [" " * dash_col + "- " + render_scalar(item)]
    inner = _block_lines(item, dash_col + 2, step, offset)
    inner[0] = " " * dash_col + "- " + inner[0].lstrip(" ")
    return inner


def _subtree(steps: Sequence[paths.Step], value: Any) -> Any:
    """The data a missing path adds: ``[limits, cpu] = '2'`` -> ``{"limits": {"cpu": "2"}}``."""
    if not steps:
        return value
    step = steps[0]
    rest = _subtree(steps[1:], value)
    if isinstance(step, paths.Key):
        return {step.name: rest}
    item = step.new_item()
    if isinstance(rest, dict):
        item.update(rest)
    return [item]


def _find(node: Any, step: paths.Step) -> tuple[bool, Any, Any]:
    """(found, key-or-index, child)."""
    if isinstance(step, paths.Key):
        if isinstance(node, CommentedMap) and step.name in node:
            return True, step.name, node[step.name]
        return False, step.name, None
    if isinstance(node, CommentedSeq):
        for index, item in enumerate(node):
            if step.matches(index, item):
                return True, index, item
    return False, None, None


def set_in_text(text: str, steps: Sequence[paths.Step], value: Any) -> str:
    """``text`` with the value at ``steps`` replaced (or inserted); nothing else changes."""
    data = _yaml().load(text)
    lines = text.split("\n")
    node: Any = data
    for depth, step in enumerate(steps):
        found, key, child = _find(node, step)
        last = depth == len(steps) - 1
        if found and last:
            if isinstance(child, CommentedMap | CommentedSeq):
                raise TuneError(f"{paths.format_path(tuple(steps))} holds a {type(child).__name__}, not a value")
            line_no, col = node.lc.value(key) if isinstance(node, CommentedMap) else node.lc.item(key)
            flow = isinstance(node, CommentedMap | CommentedSeq) and node.fa.flow_style()
            line = lines[line_no]
            start, end, quote = _scalar_extent(line, col, bool(flow))
            lines[line_no] = line[:start] + render_scalar(value, quote) + line[end:]
            return "\n".join(lines)
        if found and child is not None and isinstance(child, CommentedMap | CommentedSeq):
            node = child
            continue
        return _insert(text, lines, node, key, steps[depth:], value)
    raise TuneError("empty path")


def _insert(text: str, lines: list[str], node: Any, key: Any, steps: Sequence[paths.Step], value: Any) -> str:
    step, offset = _detect_style(text)
    addition = _subtree(steps, value)
    if isinstance(node, CommentedMap):
        assert isinstance(addition, dict)
        if node.fa.flow_style():
            last_key = list(node)[-1]
            line_no, col = node.lc.value(last_key)
            close = lines[line_no].find("}", col)
            if close == -1:
                raise TuneError("cannot find the end of a flow mapping spanning lines")
            inner = ", ".join(f"{k}: {_flow(v)}" for k, v in addition.items())
            lines[line_no] = lines[line_no][:close] + ", " + inner + lines[line_no][close:]
            return "\n".join(lines)
        if not node:
            raise TuneError("cannot insert into an empty mapping")
        first_key = next(iter(node))
        _, key_col = node.lc.key(first_key)
        last_key = list(node)[-1]
        end = _block_end(lines, node.lc.key(last_key)[0], key_col)
        new = _block_lines(addition, key_col, step, offset)
        return "\n".join(lines[:end + 1] + new + lines[end + 1:])
    if isinstance(node, CommentedSeq):
        assert isinstance(addition, list)
        item = addition[0]
        if node.fa.flow_style() or not node:
            raise TuneError("cannot insert into a flow-style or empty sequence")
        item_line, item_col = node.lc.item(len(node) - 1)
        dash_col = lines[item_line].rfind("-", 0, item_col)
        if dash_col == -1:
            raise TuneError("cannot find the sequence's dash")
        end = _block_end(lines, item_line, dash_col)
        new = _item_lines(item, dash_col, step, offset)
        return "\n".join(lines[:end + 1] + new + lines[end + 1:])
    raise TuneError(f"cannot insert {key!r} here")


# --- file edits ----------------------------------------------------------------------------------

@dataclass
class FileEdit:
    pipeline_id: str
    path: Path
    file: str  # as shown to users (relative to the repository)
    changes: list[FieldChange]
    before: str
    after: str
    policies: list[str] = field(default_factory=list)

    def diff(self) -> str:
        return "".join(difflib.unified_diff(self.before.splitlines(keepends=True), self.after.splitlines(keepends=True),
                                            f"a/{self.file}", f"b/{self.file}"))


def _check(after: str, spec_changes: list[tuple[tuple[paths.Step, ...], Any]]) -> None:
    data = _yaml().load(after)
    for steps, value in spec_changes:
        got = paths.get(data, steps, default=KeyError)
        if got is KeyError or (got != value and str(got) != str(value)):
            raise TuneError(f"write-back check failed at {paths.format_path(steps)}: expected {value!r}, got {got!r}")


def edit_for(pipeline: Any, proposals: Iterable[Proposal]) -> FileEdit | None:
    """The edit of one pipeline file for its proposals (nothing written yet)."""
    proposals = [p for p in proposals if p.changes]
    if not proposals:
        return None
    path = Path(pipeline.path)
    before = path.read_text(encoding="utf-8")
    text = before
    changes: list[FieldChange] = []
    checks: list[tuple[tuple[paths.Step, ...], Any]] = []
    for proposal in proposals:
        for change in proposal.changes:
            steps = (paths.Key("spec"), *paths.parse(change.path))
            current = paths.get(_yaml().load(text), steps)
            if current == change.new:
                continue
            text = set_in_text(text, steps, change.new)
            changes.append(change)
            checks.append((steps, change.new))
    if text == before:
        return None
    _check(text, checks)
    return FileEdit(pipeline.pipeline_id, path, getattr(pipeline, "file", "") or path.name, changes, before, text,
                    sorted({p.policy for p in proposals}))


def plan_edits(state: Any, proposals: Iterable[Proposal]) -> list[FileEdit]:
    by_pipeline: dict[str, list[Proposal]] = {}
    for proposal in proposals:
        by_pipeline.setdefault(proposal.pipeline_id, []).append(proposal)
    edits: list[FileEdit] = []
    for pipeline_id, items in sorted(by_pipeline.items()):
        pipeline = state.pipelines.get(pipeline_id)
        if pipeline is None:
            raise TuneError(f"no pipeline file for {pipeline_id}")
        edit = edit_for(pipeline, items)
        if edit is not None:
            edits.append(edit)
    return edits


def write_edits(edits: Iterable[FileEdit]) -> None:
    for edit in edits:
        current = edit.path.read_text(encoding="utf-8")
        if current != edit.before:
            raise TuneError(f"{edit.file} changed while gftune was planning; run gftune tune again")
        edit.path.write_text(edit.after, encoding="utf-8")


# --- messages ------------------------------------------------------------------------------------

def _value(value: Any) -> str:
    return "unset" if value is None else str(value)


def commit_message(proposals: Sequence[Proposal]) -> str:
    ids = sorted({p.pipeline_id for p in proposals})
    title = f"tune: {', '.join(sorted({p.policy for p in proposals}))} for {', '.join(ids)}"
    if len(title) > 72:
        title = f"tune: {len(proposals)} policy proposal(s) for {len(ids)} pipeline(s)"
    body: list[str] = []
    for p in proposals:
        body.append(f"{p.pipeline_id} ({p.policy}):")
        body += [f"  {c.path}: {_value(c.old)} -> {_value(c.new)}" for c in p.changes]
        body += [f"  evidence: {e.describe()}" for e in p.evidence]
        body += [f"  predicted: {x.describe()}" for x in p.predictions]
        body += [f"  note: {n}" for n in p.notes]
        body.append("")
    return masker.mask(title + "\n\n" + "\n".join(body).rstrip() + "\n\nProposed by gftune tune.\n")


def branch_name(proposals: Sequence[Proposal], now: datetime) -> str:
    digest = hashlib.sha256(json.dumps([p.to_dict() for p in proposals], sort_keys=True, default=str).encode())
    return f"gftune/tune-{now.strftime('%Y%m%d')}-{digest.hexdigest()[:7]}"


def _md(text: Any) -> str:
    return masker.mask(str(text)).replace("|", "\\|")


def pr_body(proposals: Sequence[Proposal], edits: Sequence[FileEdit] = (), escalations: Sequence[Escalation] = (),
            *, source: str | None = None, reviewed_plan: str | None = None,
            since_review: Sequence[Any] | None = None) -> str:
    """Markdown for the pull request: what, and per proposal its verdict (bottleneck, predicted
    effect, cost), the readings behind it and how apply verifies it; the sizing, inputs, queries and
    notes folded in ``<details>``.

    ``reviewed_plan``: the id of the saved plan the proposals were compared with or taken from;
    ``since_review``: :class:`gftune.policy.review.Revision` s when the policies were evaluated again
    (None: the proposals are the reviewed plan's own)."""
    from gftune.plan.render import proposal_lines, readings_rows
    from gftune.plan.verdict import escalation_verdict, proposal_verdict

    out = ["## gftune tune: policy proposals", ""]
    if source:
        out += [f"Metrics: {source}.", ""]
    if reviewed_plan and since_review is None:
        out += [f"These are the proposals of the reviewed plan `{_md(reviewed_plan)}`, written as reviewed "
                "(not evaluated again).", ""]
    elif reviewed_plan and since_review:
        out += [f"### Since the reviewed plan `{_md(reviewed_plan)}`", "",
                "The policies were evaluated again; these values differ from the ones reviewed:", ""]
        out += [f"- `{r.pipeline_id}` {_md(r.describe())}" for r in since_review]
        out.append("")
    elif reviewed_plan:
        out += [f"The policies were evaluated again: the same proposals as the reviewed plan "
                f"`{_md(reviewed_plan)}`.", ""]
    out += ["| pipeline | field | current | proposed | policy |", "|---|---|---|---|---|"]
    for p in proposals:
        for c in p.changes:
            out.append(f"| `{p.pipeline_id}` | `{c.path}` | {_md(_value(c.old))} | **{_md(_value(c.new))}** | "
                       f"{_md(p.policy)} |")
    for p in proposals:
        out += ["", f"### `{p.pipeline_id}`: {_md(p.policy)}", "", _md(proposal_verdict(p)), ""]
        rows = readings_rows(p.evidence)
        if rows:
            out += ["| reading | value | threshold |", "|---|---|---|"]
            out += [f"| `{signal}` | **{_md(value)}** | {_md(threshold)} |" for signal, value, threshold in rows]
            out.append("")
        if p.verify is not None:
            expected = ", ".join(_md(x.describe()) for x in p.predictions)
            out += [f"**Verification:** `gftune apply` waits {p.verify.settle_s:g}s after the pipeline is Running, "
                    f"then reads the signals over {p.verify.window_s:g}s (tolerance {p.verify.tolerance:.0%}) and "
                    "reverts the change if the prediction is missed" + (f": {expected}." if expected else ".")]
        out += ["", "<details><summary>Sizing, inputs, queries and notes</summary>", ""]
        out += [f"- {_md(line.strip())}" if not line.startswith("    ") else f"  - {_md(line.strip())}"
                for line in proposal_lines(p)]
        out += ["", "</details>"]
    if escalations:
        out += ["", "### Not changed: needs a human", ""]
        out += [f"- `{e.pipeline_id}` ({_md(e.policy)}): {_md(escalation_verdict(e))}" for e in escalations]
    if edits:
        out += ["", "<details><summary>Diff</summary>", "", "```diff"]
        out += [masker.mask(edit.diff()).rstrip("\n") for edit in edits]
        out += ["```", "", "</details>"]
    return "\n".join(out) + "\n"


# --- git -----------------------------------------------------------------------------------------

@dataclass
class CommitInfo:
    branch: str
    sha: str
    files: list[str]


def commit_edits(root: Path, edits: Sequence[FileEdit], message: str, branch: str) -> CommitInfo:
    """Create ``branch`` at HEAD, switch to it, write the edits and commit them (GitPython)."""
    import git

    try:
        repo = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise TuneError(f"{root} is not a git repository: --write commits on a branch") from exc
    workdir = Path(repo.working_tree_dir or root).resolve()
    relative = [str(edit.path.resolve().relative_to(workdir)) for edit in edits]
    dirty = {item.a_path for item in repo.index.diff(None)} | {item.a_path for item in repo.index.diff("HEAD")} \
        if repo.head.is_valid() else set()
    touched = sorted(dirty & set(relative))
    if touched:
        raise TuneError(f"uncommitted changes in {', '.join(touched)}: commit or stash them first")
    if branch in repo.heads:
        raise TuneError(f"branch {branch} already exists; pass another --branch")
    try:
        head = repo.create_head(branch)
        head.checkout()
    except git.GitCommandError as exc:
        raise TuneError(f"cannot create branch {branch}: {exc.stderr.strip() or exc}") from exc
    write_edits(edits)
    repo.index.add(relative)
    commit = repo.index.commit(message)
    return CommitInfo(branch, commit.hexsha, relative)

