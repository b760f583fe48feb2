"""``gftune schema pipeline|policy|config``: print a file kind's JSON Schema (draft 2020-12).

Point an editor at it, e.g. with yaml-language-server::

    gftune schema pipeline > .schemas/pipeline.schema.json
    # first line of pipelines/orders.yaml:
    # yaml-language-server: $schema=../.schemas/pipeline.schema.json
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from gftune.commands.common import echo
from gftune.desired.schemas import SCHEMA_KINDS, schema_for


@click.command(name="schema")
@click.argument("kind", type=click.Choice(SCHEMA_KINDS))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the schema to this file instead of standard output.")
def command(kind: str, output: Path | None) -> None:
    """Print the self-contained JSON Schema of a gftune file KIND (pipeline, policy or config)."""
    text = json.dumps(schema_for(kind), indent=2) + "\n"
    if output is None:
        echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    echo(f"wrote {output}", err=True)
