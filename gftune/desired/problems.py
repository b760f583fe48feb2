"""One located finding about a file in the user's repository.

Every check (YAML syntax, JSON Schema, the API's model rules, gftune's own rules, policy checks)
reports :class:`Problem` objects so that ``validate``, ``plan`` and ``tune`` print them the same
way: ``path:line:col: json.path: message``, the format editors and CI annotations understand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    file: str  # path as given, relative to the repository root when inside it
    line: int | None
    col: int | None
    json_path: str  # gftune.glassflow.rules.json_path style, "$" for the whole document
    message: str
    severity: str = ERROR  # "error" | "warning"

    def render(self) -> str:
        """``path:line:col: json.path: message`` (warnings say so before the message)."""
        location = self.file
        if self.line is not None:
            location += f":{self.line}:{self.col if self.col is not None else 1}"
        prefix = "warning: " if self.severity == WARNING else ""
        return f"{location}: {self.json_path}: {prefix}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        return cls(**data)


def sort_key(problem: Problem) -> tuple[str, int, int, str]:
    return (problem.file, problem.line or 0, problem.col or 0, problem.json_path)


def sorted_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Stable order for output: by file, then line and column; exact duplicates dropped."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=sort_key)


def has_errors(problems: Iterable[Problem]) -> bool:
    return any(p.is_error for p in problems)
