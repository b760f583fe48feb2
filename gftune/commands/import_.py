"""``gftune import [ID]...``: bring live GlassFlow pipelines under gftune as ``pipelines/<id>.yaml``.

Reads the pipelines (all, the ids given, or those with ``--tag``) from the API, turns each into the file
a person would have written (:mod:`gftune.adopt`: defaults left out, short durations, join resources,
secrets as ``${env:NAME}`` references) and writes it. Nothing is written when any pipeline cannot be
read or any file exists already (unless ``--force``). ``gftune plan`` right afterwards reports no changes
once the secrets' environment variables are set; the command ends by listing them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from gftune import exitcodes
from gftune.commands.common import FORMAT_VERSION, ServerOptions, api_options, echo, echo_json, finish, format_option
from gftune.desired import adopt
from gftune.desired.config import config_path
from gftune.desired.repo import PIPELINES_DIR, display_path, yaml_files


def _labels(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE, e.g. team=payments", ctx=ctx, param=param)
        labels[key.strip()] = text.strip()
    return labels


def select(rows: list[dict[str, Any]], ids: tuple[str, ...], tags: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The ids to import from the API's list rows, and the asked-for ids it does not have."""
    known = [row["pipeline_id"] for row in rows]
    missing = [i for i in ids if i not in known]
    chosen = [i for i in known if not ids or i in ids]
    if tags:
        tags_of = {row["pipeline_id"]: set(((row.get("metadata") or {}).get("tags")) or []) for row in rows}
        chosen = [i for i in chosen if set(tags) <= tags_of[i]]
    return chosen, missing


def existing_files(repo: Path, ids: list[str]) -> dict[str, Path]:
    """Pipeline files already in the repository for ``ids`` (the loader finds them anywhere under pipelines/)."""
    found: dict[str, Path] = {}
    for path in yaml_files(repo / PIPELINES_DIR):
        if path.stem in ids:
            found.setdefault(path.stem, path)
    return found


def secret_report(adopted: list[adopt.Adopted], names: Mapping[tuple[str, str], str],
                  env: Mapping[str, str]) -> list[dict[str, Any]]:
    """One entry per environment variable: where it is used and whether this environment sets it right."""
    report: dict[str, dict[str, Any]] = {}
    for item in adopted:
        for secret in item.secrets:
            name = names[(secret.pipeline_id, secret.path)]
            entry = report.setdefault(name, {"name": name, "used_by": [], "state": "not set"})
            entry["used_by"].append({"pipeline_id": secret.pipeline_id, "path": secret.path})
            if name in env:
                entry["state"] = "set" if env[name] == secret.value else "set to another value"
    return sorted(report.values(), key=lambda e: e["name"])


def describe_uses(used_by: list[dict[str, str]]) -> str:
    """``sink.connection_params.password of a, b and c``: each field once, with the pipelines using it."""
    by_path: dict[str, list[str]] = {}
    for use in used_by:
        by_path.setdefault(use["path"], []).append(use["pipeline_id"])
    return "; ".join(f"{path} of {_some(ids)}" for path, ids in by_path.items())


def _some(ids: list[str], shown: int = 5) -> str:
    """``a, b, c`` or, for many, ``a, b, c, d, e and 45 more`` (the JSON output lists them all)."""
    if len(ids) <= shown + 1:
        return ", ".join(ids)
    return f"{', '.join(ids[:shown])} and {len(ids) - shown} more"


async def _read(config: Any, ids: tuple[str, ...], tags: tuple[str, ...]) -> tuple[list[str], dict[str, Any]]:
    """List the live pipelines, choose, and read the chosen ones (document, resources, health)."""
    from gftune.client import ApiError, GlassFlowClient
    from gftune.live import list_live, read_live

    async with GlassFlowClient.from_config(config) as client:
        try:
            rows = await list_live(client)
        except ApiError as exc:
            raise click.ClickException(f"cannot list the pipelines of {config.api_url}: {exc}") from None
        chosen, missing = select(rows, ids, tags)
        if missing:
            known = ", ".join(sorted(row["pipeline_id"] for row in rows)) or "none"
            raise click.ClickException(f"no live pipeline {', '.join(missing)} at {config.api_url} (it has: {known})")
        if not chosen:
            return [], {}
        return chosen, await read_live(client, chosen)


@click.command(name="import")
@click.argument("pipeline_ids", nargs=-1, metavar="[ID]...")
@api_options
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Only live pipelines that have this GlassFlow tag (metadata.tags); repeatable, all must match.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", callback=_labels,
              help="Label the written files (metadata.labels, which policies select by); repeatable.")
@click.option("--force", is_flag=True, help="Overwrite pipeline files that exist already.")
@format_option("text", "json")
def command(pipeline_ids: tuple[str, ...], opts: ServerOptions, tags: tuple[str, ...], labels: dict[str, str],
            force: bool, fmt: str) -> None:
    """Write pipelines/<id>.yaml for live pipelines: all of them, the IDs given, or those with --tag.

    Defaults the server fills in are left out, secrets become ${env:NAME} references (listed at the end),
    and `gftune plan` right afterwards reports no changes. Exit 0 written (or nothing to import), 1 error."""
    config = opts.load_config(fmt=fmt)
    chosen, live = asyncio.run(_read(config, pipeline_ids, tags))
    if not chosen:
        what = f" with tag {', '.join(tags)}" if tags else ""
        echo(f"no live pipeline{what} at {config.api_url}: nothing to import", err=True)
        if fmt == "json":
            echo_json({"format_version": FORMAT_VERSION, "api_url": config.api_url, "imported": [], "secrets": []})
        finish(exitcodes.ERROR if tags else exitcodes.OK)
    unreadable = [state for state in live.values() if state.error or not state.exists]
    if unreadable:
        for state in unreadable:
            echo(f"error: {state.pipeline_id}: {state.error or 'deleted while importing'}", err=True)
        echo("nothing written", err=True)
        finish(exitcodes.ERROR)

    repo = opts.repo
    present = existing_files(repo, chosen)
    if present and not force:
        for pipeline_id, path in present.items():
            echo(f"error: {display_path(path, repo)} exists (pipeline {pipeline_id}); --force overwrites it", err=True)
        echo("nothing written", err=True)
        finish(exitcodes.ERROR)

    known = adopt.defaults_in_use((live[i].pipeline, live[i].resources) for i in chosen)
    adopted = [adopt.adopt(live[i].pipeline, live[i].resources, known=known) for i in chosen]
    names = adopt.secret_names([s for item in adopted for s in item.secrets], os.environ)
    header = [f"Imported by `gftune import` from {config.api_url}. Secrets are ${{env:NAME}} references.",
              "Fields left out hold the server's defaults; gftune leaves them as they are live."]
    written = []
    for item in adopted:
        path = present.get(item.pipeline_id) or repo / PIPELINES_DIR / f"{item.pipeline_id}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = adopt.pipeline_file_text(adopt.with_references(item, names), labels=labels, header=header)
        path.write_text(text, encoding="utf-8")
        written.append({"pipeline_id": item.pipeline_id, "file": display_path(path, repo),
                        "status": live[item.pipeline_id].status, "overwritten": item.pipeline_id in present})
    report = secret_report(adopted, names, os.environ)
    if fmt == "json":
        echo_json({"format_version": FORMAT_VERSION, "api_url": config.api_url, "imported": written,
                   "secrets": report})
        finish(exitcodes.OK)
    echo(f"Imported {len(written)} pipeline(s) from {config.api_url}:")
    for entry in written:
        verb = "overwrote" if entry["overwritten"] else "wrote"
        echo(f"  {verb} {entry['file']}  ({entry['status'] or 'status unknown'})")
    if report:
        echo("")
        echo("Secrets are not written to the files; set these environment variables before `gftune plan`/`apply`:")
        for entry in report:
            echo(f"  {entry['name']} ({entry['state']}): {describe_uses(entry['used_by'])}")
    echo("")
    if config_path(repo) is None:
        echo("No gftune.yaml here yet: `gftune init` writes one (API URL, metrics) with the built-in policies.")
    echo("Next: `gftune validate`, then `gftune plan` (it reports no changes for the imported pipelines).")
    finish(exitcodes.OK)
