"""YAML in and out of the user's repository.

``load_yaml`` reads one YAML document into plain JSON-like data (dict, list, str, int, float,
bool, None) and a :class:`LocationIndex` that knows the line and column of every JSON path, so
that every later check can point at ``file:line:col``. Broken input never raises anything but
:class:`YamlError`, which carries a located :class:`~gftune.desired.problems.Problem`.

Files come from a pull request, so nothing in them is trusted (docs/security.md): :func:`read_user_file`
reads a file only when it resolves (after symlinks) inside the repository or a directory the user
allowed, is a regular file (never a FIFO, a device or ``/proc``) and is at most a stated size; alias
and merge-key (``<<``) expansion and nesting are bounded; text that is not valid UTF-8, or holds an
escape that is no character (a lone surrogate such as ``"\\ud800"``), is a located problem.

Scalars are read with the YAML 1.2 core schema (``yes``/``no``/``on``/``off`` stay strings, as
they do for ruamel.yaml, which ``tune`` uses for the comment-preserving round trip below), and
dates stay strings. Duplicate keys, unsupported tags and recursive aliases are reported as
problems instead of being silently resolved.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gftune.desired.problems import Problem
from gftune.glassflow.rules import json_path

JsonPath = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_MAX_DEPTH = 100
# An alias bomb (``<<: [*a, *a]`` nested 29 deep is 2^29 values) is stopped here; the largest real
# documents (a pipeline with hundreds of mapping entries) stay far below.
MAX_VALUES = 200_000
# The cap on a pipeline, policy or config file. The examples are 2-4 KB; a file a thousand times
# larger is a mistake or an attack, and reading it whole is what the cap prevents.
MAX_YAML_BYTES = 1 << 20
_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


class YamlError(Exception):
    """A file that cannot be read as one YAML document.

    ``problem`` is the first thing wrong, ``problems`` all of them (e.g. several duplicate keys).
    """

    def __init__(self, problem: Problem, more: Sequence[Problem] = ()) -> None:
        super().__init__(problem.render())
        self.problem = problem
        self.problems = [problem, *more]


class FileRefused(Exception):
    """A file gftune will not read; the message says why (never what is in it)."""


class FileMissing(FileRefused):
    """The file does not exist."""


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def vet_user_file(path: Path, *, roots: Sequence[Path], max_bytes: int) -> Path:
    """The resolved path of a file named by the repository, if gftune may read it; without opening it.

    ``roots`` are resolved directories (the repository, and those the user allowed); the file's
    resolved path must be inside one of them and not inside a ``.git`` directory (``actions/checkout``
    keeps the job's token in ``.git/config``); it must be a regular file of at most ``max_bytes``.
    Raises :class:`FileRefused` (:class:`FileMissing` when it does not exist).
    """
    real = Path(os.path.realpath(path))
    root = next((r for r in roots if _within(real, r)), None)
    if root is None:
        shown = f"resolves to {real}, " if real != Path(os.path.abspath(path)) else ""
        raise FileRefused(f"{shown}outside the repository and the directories allowed in gftune.yaml "
                          "(files.allow)")
    if ".git" in real.relative_to(root).parts:
        raise FileRefused("inside a .git directory, which may hold the CI job's credentials")
    try:
        info = os.stat(real)  # before opening: opening a device or a FIFO can block or act
    except FileNotFoundError:
        raise FileMissing("cannot read: no such file") from None
    except OSError as exc:
        raise FileRefused(f"cannot read: {exc.strerror or exc}") from None
    _check_regular(info, max_bytes)
    return real


def _check_regular(info: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused(f"not a regular file: {_kind(info.st_mode)}")
    if info.st_size > max_bytes:
        raise FileRefused(f"{info.st_size} bytes, over the cap of {max_bytes} bytes")


def read_user_file(path: Path, *, roots: Sequence[Path], max_bytes: int) -> bytes:
    """The bytes of a file named by the repository, read only if :func:`vet_user_file` accepts it,
    and never more than ``max_bytes + 1`` of them (a file growing while read is refused too)."""
    real = vet_user_file(path, roots=roots, max_bytes=max_bytes)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise FileRefused(f"cannot read: {exc.strerror or exc}") from None
    try:
        _check_regular(os.fstat(fd), max_bytes)  # what was opened, in case the path changed since
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise FileRefused(f"over the cap of {max_bytes} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise FileRefused(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


class _Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's implicit types (no 1.1 booleans, no dates)."""

    yaml_implicit_resolvers: dict = {}


_Loader.add_implicit_resolver(
    _TAG + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    _TAG + "int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _TAG + "float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))
_Loader.add_implicit_resolver(_TAG + "null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Loader.add_implicit_resolver(_TAG + "merge", re.compile(r"^<<$"), ["<"])


if getattr(yaml, "__with_libyaml__", False):
    class _CLoader(yaml.CSafeLoader):
        """The same schema on libyaml's parser: ~10x faster, which matters with 1,000 pipeline files."""

        yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
else:  # pragma: no cover - PyYAML built without libyaml
    _CLoader = None


def _compose(text: str) -> Node | None:
    """Compose with libyaml when it can; any error is left to the pure-Python parser, whose wording
    and marks the problems are written for (so broken files read exactly as before)."""
    if _CLoader is not None:
        try:
            return yaml.compose(text, Loader=_CLoader)
        except (yaml.YAMLError, RecursionError):
            pass
    return yaml.compose(text, Loader=_Loader)


class LocationIndex:
    """Line and column (1-based) of every JSON path of one loaded document.

    Mapping entries point at their key, list items at the item. ``locate`` falls back to the
    nearest existing ancestor, so a missing required key points at its parent object.
    """

    def __init__(self, positions: dict[JsonPath, tuple[int, int]] | None = None) -> None:
        self._positions: dict[JsonPath, tuple[int, int]] = dict(positions or {})
        self._positions.setdefault((), (1, 1))

    def locate(self, path: Sequence[str | int]) -> tuple[int, int]:
        path = tuple(path)
        while path not in self._positions:
            path = path[:-1]
        return self._positions[path]

    def has(self, path: Sequence[str | int]) -> bool:
        return tuple(path) in self._positions

    def __len__(self) -> int:
        return len(self._positions)


def load_yaml(path: Path, *, display: str | None = None, roots: Sequence[Path] | None = None,
              max_bytes: int = MAX_YAML_BYTES) -> tuple[Any, LocationIndex]:
    """Read one YAML document from ``path``; ``display`` is the name used in problems.

    ``roots``: where the file may resolve to (see :func:`read_user_file`); default: its own directory.
    """
    name = display if display is not None else str(path)
    allowed = roots if roots is not None else [Path(os.path.realpath(Path(path).parent))]
    try:
        raw = read_user_file(Path(path), roots=allowed, max_bytes=max_bytes)
    except FileRefused as exc:
        raise YamlError(Problem(name, None, None, "$", f"file refused: {exc}")) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlError(Problem(name, line, col, "$",
                                f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})")) from None
    return load_yaml_text(text, display=name)


def load_yaml_text(text: str, *, display: str = "<string>") -> tuple[Any, LocationIndex]:
    """Like :func:`load_yaml` for text already in memory (tests, stdin)."""
    try:
        text.encode("utf-8")  # text from a file was decoded strictly; text given as is may hold anything
    except UnicodeEncodeError as exc:
        line, col = _line_col(text, exc.start)
        raise YamlError(Problem(display, line, col, "$", f"invalid text: U+{ord(text[exc.start]):04X} is half of "
                                "a UTF-16 surrogate pair, not a character")) from None
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        raise YamlError(_syntax_problem(display, exc)) from None
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        raise YamlError(Problem(display, line, col, "$",
                                f"invalid YAML: character {exc.character!r} is not allowed in YAML")) from None
    except yaml.YAMLError as exc:
        raise YamlError(Problem(display, 1, 1, "$", f"invalid YAML: {type(exc).__name__}")) from None
    except RecursionError:
        raise YamlError(Problem(display, 1, 1, "$", "invalid YAML: document is nested too deeply")) from None
    if node is None:
        return None, LocationIndex()
    builder = _Builder(display)
    data = builder.build(node, ())
    if builder.problems:
        raise YamlError(builder.problems[0], builder.problems[1:])
    return data, LocationIndex(builder.positions)


def _line_col(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def _syntax_problem(display: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = exc.problem or "syntax error"
    if "'\\t'" in problem:
        message = "invalid YAML: tab character where YAML expects spaces (indent with spaces, not tabs)"
    elif exc.context and problem.startswith("but "):
        message = f"invalid YAML: {exc.context}, {problem}"
    else:
        message = f"invalid YAML: {problem}"
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            context = exc.context.removeprefix("while ")
            message += f" (while {context} at line {exc.context_mark.line + 1})"
        elif exc.context:
            message += f" ({exc.context})"
    return Problem(display, line, col, "$", message)


class _Builder:
    """Turns a composed node graph into plain data, recording positions and problems."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.positions: dict[JsonPath, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._active: set[int] = set()
        self._count = 0

    def _problem(self, node: Node, message: str, path: JsonPath) -> None:
        mark = node.start_mark
        self.problems.append(Problem(self.display, mark.line + 1, mark.column + 1, json_path(path), message))

    def _at(self, path: JsonPath, node: Node) -> None:
        self.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))

    def build(self, node: Node, path: JsonPath) -> Any:
        self._count += 1
        if self._count > MAX_VALUES:
            if self._count == MAX_VALUES + 1:
                self._problem(node, f"document expands to more than {MAX_VALUES} values: aliases (*name) or merge "
                              "keys (<<) repeat the same content over and over", path)
            return None
        if len(path) > _MAX_DEPTH:
            self._problem(node, f"document is nested more than {_MAX_DEPTH} levels deep", path)
            return None
        if id(node) in self._active:
            self._problem(node, "recursive alias: a value cannot contain itself", path)
            return None
        self._at(path, node)
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _TAG + "seq":
                    self._problem(node, f"unsupported YAML tag {node.tag}", path)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if node.tag != _TAG + "map":
                self._problem(node, f"unsupported YAML tag {node.tag}", path)
            return self._mapping(node, path)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: MappingNode, path: JsonPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        seen: dict[str, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _TAG + "merge":
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self._problem(key_node, "mapping keys must be plain strings", path)
                continue
            key = key_node.value
            if not _encodable(key):
                self._problem(key_node, _SURROGATE, path)
                continue
            if key in seen:
                self._problem(key_node, f'duplicate key "{key}" (first defined at line {seen[key]})', (*path, key))
                continue
            seen[key] = key_node.start_mark.line + 1
            self._at((*path, key), key_node)
            result[key] = self.build(value_node, (*path, key))
        for value_node in merges:  # explicit keys win over merged ones (<<: *defaults)
            self._merge(value_node, path, result)
        return result

    def _merge(self, value_node: Node, path: JsonPath, result: dict[str, Any]) -> None:
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, MappingNode):
                self._problem(source, "a merge key (<<) needs a mapping or a list of mappings", path)
                continue
            scratch = _Builder(self.display)
            scratch._active, scratch._count = self._active, self._count
            value = scratch.build(source, path)
            self._count = scratch._count
            self.problems.extend(scratch.problems)
            if not isinstance(value, dict):  # past a bound: the problem is already recorded
                continue
            added = {key for key in value if key not in result}
            for key in added:
                result[key] = value[key]
            for sub_path, position in scratch.positions.items():
                if len(sub_path) > len(path) and sub_path[len(path)] in added:
                    self.positions.setdefault(sub_path, position)

    def _scalar(self, node: ScalarNode, path: JsonPath) -> Any:
        tag, value = node.tag, node.value
        if not _encodable(value):
            self._problem(node, _SURROGATE, path)
            return value.encode("utf-8", "replace").decode("utf-8")
        try:
            if tag == _TAG + "str":
                return value
            if tag == _TAG + "null":
                return None
            if tag == _TAG + "bool":
                if value.lower() not in ("true", "false"):
                    raise ValueError
                return value.lower() == "true"
            if tag == _TAG + "int":
                return _int(value)
            if tag == _TAG + "float":
                return _float(value)
        except ValueError:
            self._problem(node, f"cannot read this value as {tag.removeprefix(_TAG)}", path)
            return value
        self._problem(node, f"unsupported YAML tag {tag}", path)
        return value


_SURROGATE = ("invalid text: an escape such as \\ud800 stands for half of a UTF-16 surrogate pair, which is "
              "no character (JSON and the GlassFlow API need valid UTF-8)")


def _encodable(text: str) -> bool:
    """False for text holding a lone surrogate (YAML's ``"\\ud800"``), which no UTF-8 output can carry."""
    if text.isascii():  # nearly every key and value: no encoding needed to tell
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _int(text: str) -> int:
    text = text.replace("_", "")
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body.startswith("0o"):
        return sign * int(body[2:], 8)
    if body.startswith("0x"):
        return sign * int(body[2:], 16)
    return sign * int(body, 10)


def _float(text: str) -> float:
    lowered = text.lower()
    if lowered.lstrip("+-") == ".inf":
        return float("-inf") if lowered.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(text.replace("_", ""))


# --- comment-preserving round trip (tune writes proposals back into pipelines/*.yaml) ----------

def _roundtrip_yaml() -> Any:
    from ruamel.yaml import YAML

    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)
    return rt


def load_roundtrip(text: str) -> Any:
    """Load for editing: ruamel's CommentedMap/CommentedSeq keep comments, order and quoting."""
    return _roundtrip_yaml().load(text)


def dump_roundtrip(data: Any) -> str:
    """Dump data loaded by :func:`load_roundtrip`; unchanged parts come out as they went in."""
    out = io.StringIO()
    _roundtrip_yaml().dump(data, out)
    return out.getvalue()
