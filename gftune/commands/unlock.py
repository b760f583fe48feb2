"""``gftune unlock ID``: remove a pipeline lock left by an interrupted apply.

Refuses someone else's unexpired lock unless ``--force`` is given (say why in the team's channel:
the run that holds it may still be changing the pipeline). An interrupted run of your own is
better continued with ``gftune apply --resume RUN_ID``, which also releases its lock.
"""

from __future__ import annotations

import asyncio
import os
import time

import click

from gftune import exitcodes
from gftune.apply import lock
from gftune.apply.journal import JournalStore
from gftune.client import ApiError, GlassFlowClient
from gftune.commands.common import ServerOptions, api_options, echo, finish


@click.command(name="unlock")
@click.argument("pipeline_id")
@api_options
@click.option("--force", is_flag=True, help="Also remove a lock held by someone else that has not expired.")
def command(pipeline_id: str, opts: ServerOptions, force: bool) -> None:
    """Release the gftune lock on pipeline ID (exit 0 released or none, 1 refused or error)."""
    config = opts.load_config()
    me = lock.default_owner(dict(os.environ))

    async def run() -> list[lock.Lock]:
        async with GlassFlowClient.from_config(config) as client:
            return await lock.unlock(client, pipeline_id, force=force, me=me)

    try:
        removed = asyncio.run(run())
    except lock.LockError as exc:
        echo(f"error: {exc}", err=True)
        holder = exc.holder
        if holder is not None and holder.run_id in JournalStore(opts.repo).run_ids():
            echo(f"hint: run {holder.run_id} has a journal here: `gftune apply --resume {holder.run_id}` continues "
                 "it and releases the lock", err=True)
        finish(exitcodes.ERROR)
    except ApiError as exc:
        echo(f"error: {exc}", err=True)
        finish(exitcodes.ERROR)
    if not removed:
        echo(f"{pipeline_id}: not locked")
    now = time.time()
    for held in removed:
        echo(f"{pipeline_id}: removed the lock of {held.describe(now)}")
    finish(exitcodes.OK)
