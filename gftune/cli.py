"""The ``gftune`` command line: a thin click group; each verb lives in ``gftune/commands/<verb>.py``.

Commands are imported only when invoked so that ``gftune validate`` does not pay for the
simulator's or the GitHub client's imports.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from gftune import __version__, exitcodes

# verb -> module in gftune.commands that defines ``command`` (a click.Command)
COMMANDS: dict[str, str] = {
    "init": "init",
    "import": "import_",
    "validate": "validate",
    "schema": "schema",
    "plan": "plan",
    "apply": "apply",
    "tune": "tune",
    "drift": "drift",
    "policy": "policy",
    "unlock": "unlock",
    "sim": "sim",
    "demo": "demo",
}

HELP = {
    "init": "Start a gftune repository for a real cluster: gftune.yaml, the built-in policies, next steps.",
    "import": "Write pipelines/<id>.yaml for live pipelines (defaults left out, secrets as ${env:...}).",
    "validate": "Check pipelines, policies and gftune.yaml (schema + API rules), no network.",
    "schema": "Print the JSON Schema of a gftune file kind.",
    "plan": "Diff desired state against the live API and metrics; say what would change and why.",
    "apply": "Apply a saved plan (or plan and apply), verify it with metrics, revert on regression.",
    "tune": "Evaluate tuning policies and write bounded proposals into pipelines/*.yaml.",
    "drift": "Nightly drift report: live state that differs from git.",
    "policy": "Policy tools: `gftune policy test` runs policy unit tests.",
    "unlock": "Release a pipeline lock left by an interrupted apply.",
    "sim": "Run the embedded GlassFlow API + metrics simulator.",
    "demo": "Start the simulator and show plan -> tune -> apply -> verify end to end.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        try:
            module = importlib.import_module(f"gftune.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gftune.commands.{module_name}":
                raise
            return _not_built(cmd_name)
        return module.command

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Usage errors exit 1, not click's default 2: in gftune's contract 2 means "changes
        found", and CI must never read a mistyped flag as a plan with changes."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(exitcodes.ERROR)
        except click.exceptions.ClickException as exc:
            exc.show()
            sys.exit(exitcodes.ERROR)
        sys.exit(result if isinstance(result, int) else exitcodes.OK)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, HELP.get(name, "")) for name in COMMANDS])


def _not_built(name: str) -> click.Command:
    @click.command(name=name, help=HELP.get(name), context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def placeholder(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"`gftune {name}` is not available in this build")

    return placeholder


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gftune")
def cli() -> None:
    """gftune: GitOps reconciler and policy-as-code tuning for GlassFlow pipelines."""


def main(args: list[str] | None = None) -> None:
    cli.main(args=args, prog_name="gftune")
