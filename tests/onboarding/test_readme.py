"""The README's commands are real: every `gftune VERB --flag` in its shell blocks is a command with that
flag, so the path from the demo to a cluster cannot drift from the CLI (issue 14)."""

from __future__ import annotations

import re
import shlex

import click

from gftune.cli import cli
from tests.support.repos import ROOT

README = (ROOT / "README.md").read_text()


def shell_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.strip()]


def gftune_invocations() -> list[list[str]]:
    found = []
    for line in shell_lines():
        for part in re.split(r"&&|;", line):
            words = shlex.split(part)
            if words and words[0].endswith("gftune"):
                found.append(words[1:])
    return found


def test_the_readme_shows_the_first_hour():
    verbs = {words[0] for words in gftune_invocations() if words}
    assert {"sim", "plan", "init", "import", "validate"} <= verbs
    # Exactly two set-up commands in the quick start.
    quick = re.search(r"## Quick start\n(.*?)\n## ", README, re.S).group(1)
    assert re.findall(r"^\./scripts/\w+", quick, re.M) == ["./scripts/start", "./scripts/test"]


def test_every_readme_invocation_uses_a_real_command_and_real_flags():
    ctx = click.Context(cli)
    for words in gftune_invocations():
        command = cli.get_command(ctx, words[0])
        assert command is not None, f"README: no command `gftune {words[0]}`"
        flags = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for word in words[1:]:
            if word.startswith("--"):
                assert word.split("=", 1)[0] in flags, f"README: `gftune {words[0]}` has no {word}"
