"""``gftune validate``: schema and semantic checks of the repository, no network.

Exit codes: 0 valid (warnings allowed), 1 invalid. Every problem is reported (not just the first)
as ``path:line:col: json.path: message``.
"""

from __future__ import annotations

from pathlib import Path

import click

from gftune import exitcodes
from gftune.commands.common import (
    FORMAT_VERSION,
    echo,
    echo_json,
    finish,
    format_option,
    problems_json,
    render_problems,
    repo_option,
)
from gftune.desired.problems import Problem, sorted_problems
from gftune.desired.validate import internal_error_problem
from gftune.orchestration.desired import validate_repo


def _plural(count: int, word: str) -> str:
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word[:-1]}ies" if word.endswith("y") else f"{count} {word}s"


@click.command(name="validate")
@repo_option
@format_option("text", "json")
@click.option("--allow-empty", is_flag=True, help="Do not fail when the repository has no pipeline files.")
def command(repo: Path, fmt: str, allow_empty: bool) -> None:
    """Check gftune.yaml, pipelines/*.yaml and policies/*.yaml: JSON Schema, the rules the GlassFlow
    API applies, and gftune's own rules. Exit 0 when valid, 1 otherwise."""
    pipelines: list[str] = []
    policies: list[str] = []
    files: list[str] = []
    try:
        state = validate_repo(repo, allow_empty=allow_empty)
        problems = state.problems
        pipelines, policies, files = sorted(state.pipelines), [p.name for p in state.policies], state.files
    except Exception as exc:  # never a traceback: a bug becomes a located problem and exit 1
        problems = [internal_error_problem(str(repo), exc)]
    problems = sorted_problems(problems)
    errors = [p for p in problems if p.is_error]
    warnings = len(problems) - len(errors)
    if fmt == "json":
        echo_json({"format_version": FORMAT_VERSION, "valid": not errors, "problems": problems_json(problems),
                   "files": len(files), "pipelines": pipelines, "policies": policies})
    else:
        for line in render_problems(problems):
            echo(line)
        echo(_summary(errors, warnings, files, pipelines, policies))
    finish(exitcodes.ERROR if errors else exitcodes.OK)


def _summary(errors: list[Problem], warnings: int, files: list[str], pipelines: list[str],
             policies: list[str]) -> str:
    if errors:
        text = f"invalid: {_plural(len(errors), 'error')}"
        if warnings:
            text += f", {_plural(warnings, 'warning')}"
        return text + f" in {_plural(len({p.file for p in errors}), 'file')}"
    text = f"valid: {_plural(len(pipelines), 'pipeline')}, {_plural(len(policies), 'policy')}"
    text += f" ({_plural(len(files), 'file')} checked)"
    return text + (f", {_plural(warnings, 'warning')}" if warnings else "")
