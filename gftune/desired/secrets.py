"""Secrets: which fields hold them, how git refers to them, and how they are kept out of output.

A pipeline file never holds a secret value. Secret fields hold a *reference*:

* ``${env:NAME}``: the value of environment variable ``NAME`` when gftune runs;
* ``${file:PATH}``: the contents of a file (one trailing newline removed), relative paths
  resolved against the repository; only inside the repository or a directory allowed in
  gftune.yaml (``files.allow``), a regular file, at most :data:`MAX_SECRET_BYTES` (docs/security.md).

Values are resolved by a :class:`Resolver` that commands build and pass in, only when a request body
needs them, compared by :func:`fingerprint`, and every string gftune prints or writes goes through
:data:`masker`, which knows the value of every secret field sent or read (and every literal secret
the loader found in a file, so an error message cannot leak one either). It replaces whole values,
never a piece of a longer word.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from gftune.desired.yamlio import FileMissing, FileRefused, read_user_file, vet_user_file

# gftune.desired.paths-style patterns; ``[*]`` is every item of the list.
SECRET_FIELD_PATTERNS: tuple[str, ...] = (
    "sources[*].connection_params.password",
    "sources[*].connection_params.client_key",
    "sources[*].connection_params.kerberos_keytab",
    "sources[*].schema_registry.api_key",
    "sources[*].schema_registry.api_secret",
    "sink.connection_params.password",
)

REFERENCE = re.compile(r"^\$\{(?P<kind>env|file):(?P<target>[^{}]+)\}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLACEHOLDER = re.compile(r"^\$\{[^{}]*\}$")  # looks like a reference, e.g. the demos' ${KAFKA_PASSWORD}
_SALT = b"gftune/secret-fingerprint/v1\x00"


class SecretError(Exception):
    """A reference that cannot be resolved. The message names the reference, never a value."""


@cache
def _pattern_steps(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.replace("[*]", ".[*]").split("."))


def iter_secret_locations(doc: Any) -> Iterator[tuple[tuple[str | int, ...], str, Any]]:
    """Every secret field present in ``doc``: (positional path, gftune.desired.paths path, value)."""
    for pattern in SECRET_FIELD_PATTERNS:
        yield from _walk(doc, _pattern_steps(pattern), (), "")


def _walk(node: Any, steps: tuple[str, ...], positional: tuple[str | int, ...], dotted: str
          ) -> Iterator[tuple[tuple[str | int, ...], str, Any]]:
    if not steps:
        yield positional, dotted, node
        return
    step, rest = steps[0], steps[1:]
    if step == "[*]":
        if isinstance(node, list):
            for i, item in enumerate(node):
                sid = item.get("source_id") if isinstance(item, dict) else None
                selector = f"[{sid}]" if isinstance(sid, str) and sid and "]" not in sid else f"[{i}]"
                yield from _walk(item, rest, (*positional, i), dotted + selector)
        return
    if isinstance(node, dict) and step in node:
        yield from _walk(node[step], rest, (*positional, step), f"{dotted}.{step}" if dotted else step)


def iter_secret_fields(doc: dict) -> Iterator[tuple[str, Any]]:
    """Every secret field present in ``doc`` as (gftune.desired.paths path, value)."""
    for _, dotted, value in iter_secret_locations(doc):
        yield dotted, value


def is_reference(value: Any) -> bool:
    """True for ``${env:NAME}`` (a valid variable name) and ``${file:PATH}``."""
    if not isinstance(value, str):
        return False
    match = REFERENCE.match(value)
    if not match:
        return False
    return match["kind"] == "file" or bool(_ENV_NAME.match(match["target"]))


def is_literal_secret(value: Any) -> bool:
    """A non-empty value in a secret field that is not a reference."""
    return isinstance(value, str) and value != "" and not is_reference(value)


MAX_SECRET_BYTES = 64 * 1024  # keytabs, certificates and keys are a few KB; /dev/zero is not a secret


def file_reference_path(target: str, base_dir: Path) -> Path:
    """Where ``${file:TARGET}`` points: relative to ``base_dir`` (the repository), ``~`` expanded."""
    path = Path(target).expanduser()
    return path if path.is_absolute() else base_dir / path


def file_reference_problem(target: str, *, base_dir: Path, roots: Sequence[Path]) -> str | None:
    """Why ``${file:TARGET}`` would be refused, without reading the file (None: acceptable, or not
    there yet: a missing file is reported when it is needed, like an unset variable)."""
    try:
        vet_user_file(file_reference_path(target, base_dir), roots=roots, max_bytes=MAX_SECRET_BYTES)
    except FileMissing:
        return None
    except FileRefused as exc:
        return str(exc)
    return None


class Resolver:
    """What a reference stands for: the edge that reads the environment and secret files.

    Commands build one (``Resolver(env, base_dir=repo, roots=readable_roots(repo, config))``) and
    pass it to the plan and apply cores, which never read a file or the environment themselves.
    ``${file:}`` is read only through :func:`gftune.yamlio.read_user_file`: inside ``roots`` after
    symlinks, a regular file, at most :data:`MAX_SECRET_BYTES`. Resolving registers nothing with a
    masker: :func:`resolve_document` does that for secret fields only.
    """

    def __init__(self, env: Mapping[str, str], *, base_dir: Path, roots: Sequence[Path] | None = None) -> None:
        self.env = env
        self.base_dir = Path(base_dir)
        self.roots = list(roots) if roots is not None else [Path(os.path.realpath(self.base_dir))]

    def __call__(self, value: str) -> str:
        """The value ``value`` stands for; anything that is not a reference is returned as is."""
        if not is_reference(value):
            return value
        match = REFERENCE.match(value)
        assert match is not None
        kind, target = match["kind"], match["target"]
        if kind == "env":
            if target not in self.env:
                raise SecretError(f"environment variable {target} is not set (referenced as {value})")
            return self.env[target]
        path = file_reference_path(target, self.base_dir)
        try:
            raw = read_user_file(path, roots=self.roots, max_bytes=MAX_SECRET_BYTES)
            text = raw.decode("utf-8")
        except FileRefused as exc:
            raise SecretError(f"secret file {path} refused (referenced as {value}): {exc}") from None
        except UnicodeDecodeError:
            raise SecretError(f"secret file {path} is not valid UTF-8 (referenced as {value})") from None
        return text.removesuffix("\n").removesuffix("\r")


def resolve_document(doc: dict, resolver: Callable[[str], str], *, into: Masker | None = None,
                     secret_fields: Iterable[str] = ()) -> dict:
    """A deep copy of ``doc`` with every reference resolved (secret fields and any other string).

    Values of secret fields (the built-in ones and ``secret_fields``, gftune.yaml ``secrets.fields``)
    are registered with ``into`` (default :data:`masker`), as whole values; references in other
    fields (a Kafka ``username: ${env:KAFKA_USER}``) are resolved but not treated as secret, so that
    a user called ``default`` does not turn "defaults" into "***s".
    """
    out = copy.deepcopy(doc)
    extra = [_pattern_steps(field) for field in secret_fields]
    secret_paths = {path for path, _, _ in iter_secret_locations(out)}
    secret_paths |= {path for steps in extra for path, _, _ in _walk(out, steps, (), "")}
    target = masker if into is None else into

    def visit(node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, dict):
            return {k: visit(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [visit(v, (*path, i)) for i, v in enumerate(node)]
        value = resolver(node) if is_reference(node) else node
        if path in secret_paths and isinstance(value, str):
            target.add(value)
        return value

    return visit(out, ())


def fingerprint(value: str) -> str:
    """A stable one-way fingerprint, to compare desired and live secrets without showing either."""
    return "sha256:" + hashlib.sha256(_SALT + value.encode("utf-8")).hexdigest()


class Masker:
    """Replaces every known secret value in a text with ``***``, as a whole value.

    A secret is replaced where it stands on its own: not where it is only part of a longer word
    (a password ``default`` masks "the default" but leaves "defaults" alone). Its JSON-escaped form
    is known too, so that a report encoded before masking cannot carry it either.
    """

    MASK = "***"

    def __init__(self) -> None:
        self._secrets: dict[str, int] = {}  # value -> how many registrations (discard undoes one)
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, secret: str) -> None:
        # A reference is what git holds and what plans print on purpose: a live pipeline created with
        # "${env:X}" as its password (a simulator fed a pipeline file as is) must not make every plan's
        # payload unreadable, nor turn the references apply resolves into "***".
        if not isinstance(secret, str) or not secret.strip() or is_reference(secret):
            return
        with self._lock:
            self._secrets[secret] = self._secrets.get(secret, 0) + 1
            self._pattern = None

    def discard(self, secret: str) -> None:
        with self._lock:
            count = self._secrets.get(secret, 0)
            if count <= 1:
                self._secrets.pop(secret, None)
            else:
                self._secrets[secret] = count - 1
            self._pattern = None

    @contextmanager
    def isolated(self) -> Iterator[None]:
        """Registrations made inside are forgotten when it ends: one process checking many
        repositories (tests, a fuzzing worker) must not let one repository's secrets mask another's."""
        with self._lock:
            saved = dict(self._secrets)
        try:
            yield
        finally:
            with self._lock:
                self._secrets, self._pattern = saved, None

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._pattern = None

    def __contains__(self, secret: object) -> bool:
        return secret in self._secrets

    @staticmethod
    def _alternative(secret: str) -> str:
        """The secret as a regular expression that does not match inside a longer word.

        A secret without a letter or a digit (``","``, ``"!!"``) is masked only as a token of its own
        (between spaces, quotes or line ends): anywhere else it would shred ordinary punctuation.
        """
        parts = []
        for form in _forms(secret):
            escaped = re.escape(form)
            if not _ALNUM.search(form):
                parts.append(rf"(?<![^\s\"']){escaped}(?![^\s\"'])")
                continue
            before = r"(?<!\w)" if _WORD.match(form[0]) else ""  # no letter, digit or _ just before
            after = r"(?!\w)" if _WORD.match(form[-1]) else ""
            parts.append(before + escaped + after)
        return "|".join(parts)

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._secrets:
                ordered = sorted(self._secrets, key=len, reverse=True)  # the longest first: "ab" inside "abc"
                self._pattern = re.compile("|".join(self._alternative(s) for s in ordered))
            return self._pattern

    def mask(self, text: str) -> str:
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        return pattern.sub(self.MASK, text)

    def mask_data(self, data: Any) -> Any:
        """Every string of JSON-able data (keys too) masked, before it is encoded."""
        if isinstance(data, dict):
            return {self.mask_data(k): self.mask_data(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.mask_data(v) for v in data]
        if isinstance(data, str):
            return self.mask(data)
        return data

    def dumps(self, data: Any, **options: Any) -> str:
        """JSON of ``data`` with its strings masked: masking the encoded text instead could break the
        document (a secret ``","`` or ``"\\"``) and miss an escaped secret."""
        options = {"default": str, **options}
        text = json.dumps(data, **options)
        # JSON encodes a string character by character, so a string holding a secret leaves the secret's
        # encoded form in the text. Where no form of any secret is in it (a plan of references), the text
        # is already what masking would give, and a regular expression per string (a plan of 1,000
        # pipelines has ~40,000) is spared.
        with self._lock:
            forms = [form for secret in self._secrets for form in _forms(secret)]
        if not any(form in text for form in forms):
            return text
        return json.dumps(self.mask_data(data), **options)


def _forms(secret: str) -> list[str]:
    """The secret as written, and as JSON writes it inside a string (escaped, with or without ASCII only)."""
    return list(dict.fromkeys([secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]]))


_WORD = re.compile(r"\w")  # a letter, a digit or _ (any script): what a word is made of
_ALNUM = re.compile(r"[^\W_]")  # a letter or a digit
masker = Masker()
