"""Secrets: which fields hold them, how git refers to them, and how they are kept out of output.

A pipeline file never holds a secret value. Secret fields hold a *reference*:

* ``${env:NAME}``: the value of environment variable ``NAME`` when gftune runs;
* ``${file:PATH}``: the contents of a file (one trailing newline removed), relative paths
  resolved against ``base_dir`` (callers pass the repository root).

Values are resolved only when a request body needs them, compared by :func:`fingerprint`, and every
string gftune prints or writes goes through :data:`masker`, which knows every value resolved here
(and every literal secret the loader found in a file, so an error message cannot leak one either).
"""

from __future__ import annotations

import copy
import hashlib
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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


def _pattern_steps(pattern: str) -> list[str]:
    return pattern.replace("[*]", ".[*]").split(".")


def iter_secret_locations(doc: Any) -> Iterator[tuple[tuple[str | int, ...], str, Any]]:
    """Every secret field present in ``doc``: (positional path, gftune.desired.paths path, value)."""
    for pattern in SECRET_FIELD_PATTERNS:
        yield from _walk(doc, _pattern_steps(pattern), (), "")


def _walk(node: Any, steps: list[str], positional: tuple[str | int, ...], dotted: str
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


def resolve(value: str, *, env: Mapping[str, str], base_dir: Path) -> str:
    """The value a reference stands for; anything that is not a reference is returned as is."""
    if not is_reference(value):
        return value
    match = REFERENCE.match(value)
    assert match is not None
    kind, target = match["kind"], match["target"]
    if kind == "env":
        if target not in env:
            raise SecretError(f"environment variable {target} is not set (referenced as {value})")
        resolved = env[target]
    else:
        path = Path(target).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        try:
            resolved = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise SecretError(f"cannot read secret file {path} (referenced as {value}): {reason}") from None
        resolved = resolved.removesuffix("\n").removesuffix("\r")
    masker.add(resolved)
    return resolved


def resolve_document(doc: dict, *, env: Mapping[str, str], base_dir: Path) -> dict:
    """A deep copy of ``doc`` with every reference resolved (secret fields and any other string).

    Values of secret fields are registered with :data:`masker`; references in other fields (for
    example a Kafka ``username: ${env:KAFKA_USER}``) are resolved but not treated as secret.
    """
    out = copy.deepcopy(doc)
    secret_paths = {path for path, _, _ in iter_secret_locations(out)}

    def visit(node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, dict):
            return {k: visit(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [visit(v, (*path, i)) for i, v in enumerate(node)]
        if is_reference(node):
            resolved = resolve(node, env=env, base_dir=base_dir)
            if path not in secret_paths:
                masker.discard(resolved)
            return resolved
        return node

    return visit(out, ())


def fingerprint(value: str) -> str:
    """A stable one-way fingerprint, to compare desired and live secrets without showing either."""
    return "sha256:" + hashlib.sha256(_SALT + value.encode("utf-8")).hexdigest()


class Masker:
    """Replaces every known secret value in a text with ``***``.

    Values of four characters or more are replaced wherever they occur; shorter ones only as
    whole words, so that a short password does not shred every message.
    """

    MASK = "***"

    def __init__(self) -> None:
        self._secrets: dict[str, int] = {}  # value -> how many registrations (discard undoes one)
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, secret: str) -> None:
        if not isinstance(secret, str) or not secret.strip():
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

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._pattern = None

    def __contains__(self, secret: object) -> bool:
        return secret in self._secrets

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._secrets:
                parts = []
                for secret in sorted(self._secrets, key=len, reverse=True):
                    escaped = re.escape(secret)
                    parts.append(escaped if len(secret) >= 4 else rf"(?<!\w){escaped}(?!\w)")
                self._pattern = re.compile("|".join(parts))
            return self._pattern

    def mask(self, text: str) -> str:
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        return pattern.sub(self.MASK, text)


masker = Masker()
