"""Actuation: the API steps of a plan's lifecycle (stop, edit, put resources, create, resume, ...) and
the tags apply writes on a pipeline (provenance, reverted policies).

Every API step is *observe → decide → act* until :func:`gftune.apply.lifecycle.decide` says it is
done: the live pipeline is read, what the step sends is computed from the plan (or, for a restore,
from the configuration captured before the change), and an action whose effect is already visible
is not sent again. That makes a resumed run safe at any point.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime

from gftune.apply.context import ApplyContext, Json, StepFailed, is_transient
from gftune.apply.lifecycle import (
    FAIL,
    WAIT,
    Observation,
    config_matches,
    decide,
    motivating_proposals,
    resources_match,
    running_timeout,
    with_live_immutables,
)
from gftune.apply.records import RecordCounter
from gftune.apply.state import DONE, PipelineRun, Step, unredact
from gftune.client import ApiError
from gftune.desired import secrets
from gftune.glassflow import resources as res
from gftune.glassflow.statuses import Status
from gftune.live import LiveState
from gftune.plan import build as planbuild
from gftune.plan import canonical, tags


class Actuation:
    """Carries out the API steps of the pipelines of one run."""

    def __init__(self, ctx: ApplyContext, say: Callable[[str, str], None]) -> None:
        self.ctx = ctx
        self.say = say
        self.before_docs: dict[str, Json] = {}  # full "before" documents, in memory only (secrets)
        self.counter = RecordCounter(ctx.client, ctx.metrics)

    async def _count_records(self, run: PipelineRun, step: Step, when: str) -> None:
        """The DLQ and sweep counters just before a stop is sent, and once the pipeline is Stopped."""
        open_entry = bool(run.records) and "dlq_after" not in run.records[-1]
        if when == "before" and open_entry and run.records[-1].get("step") == step.name:
            return  # a retried stop: the counts from before its first attempt stand
        read = await self.counter.read(run.pipeline_id)
        if when == "before":
            run.records.append({"step": step.name, **{f"{k}_before": v for k, v in read.items() if k != "detail"},
                                **({"detail": read["detail"]} if "detail" in read else {})})
        elif open_entry:
            run.records[-1].update({f"{k}_after": v for k, v in read.items() if k != "detail"})

    # -- targets -----------------------------------------------------------------------------------
    def remember_before(self, pipeline_id: str, document: Json) -> None:
        """The live document before the change, secrets included: what a restore sends back."""
        self.before_docs[pipeline_id] = copy.deepcopy(document)

    def _resolve(self, doc: Json) -> Json:
        try:
            return secrets.resolve_document(doc, self.ctx.resolver, secret_fields=self.ctx.config.secret_fields)
        except secrets.SecretError as exc:
            raise StepFailed(f"cannot resolve a secret reference: {exc}") from None

    def before_doc(self, run: PipelineRun, live: LiveState) -> Json:
        if run.pipeline_id in self.before_docs:
            doc = copy.deepcopy(self.before_docs[run.pipeline_id])
        else:
            # resumed in a new process: secrets were never written down; take them from the live pipeline
            doc, missing = unredact((run.before or {}).get("config") or {}, live.pipeline or {})
            if missing:
                raise StepFailed(f"cannot rebuild the previous configuration: secret field(s) {', '.join(missing)} "
                                 "are not in the live pipeline")
            run.notes.append("previous configuration rebuilt after a restart: secret values are the live ones")
        doc = planbuild.without_join_resources(doc)
        doc["resources"] = canonical.edit_resources(self._before_resources(run, live), doc)
        return doc

    @staticmethod
    def _before_resources(run: PipelineRun, live: LiveState) -> Json:
        before = run.before or {}
        return with_live_immutables(before.get("resources") or {}, live.resources,
                                    res.immutable_paths(before.get("config") or {}))

    def _target(self, run: PipelineRun, step: Step, live: LiveState) -> Json | None:
        """What the step sends: a document (edit, create), internal resources (put), tags, or a name."""
        payload = run.entry.get("payload") or {}
        source = step.params.get("payload")
        if step.action in ("edit", "create"):
            doc = self.before_doc(run, live) if source == "before" else self._resolve(payload.get("document") or {})
            return tags.with_live_gftune_tags(doc, live.pipeline) if step.action == "edit" else doc
        if step.action == "put_resources":
            if source == "before":
                return self._before_resources(run, live)
            if source == "join_restore":
                target = copy.deepcopy(live.resources or {})
                target["join"] = copy.deepcopy((payload.get("join_restore") or {}).get("join"))
                return target
            return copy.deepcopy((payload.get("resources") or {}).get("pipeline_resources") or {})
        if step.action == "patch_metadata":
            wanted = (payload.get("metadata") or {}).get("tags") or []
            return {"tags": list(dict.fromkeys([*(t for t in wanted if not tags.is_gftune_tag(t)),
                                                *tags.gftune_tags(live.pipeline)]))}
        if step.action == "rename":
            return {"name": payload.get("name", "")}
        return None

    @staticmethod
    def _matches(step: Step, target: Json | None, live: LiveState) -> bool | None:
        if target is None or not live.exists:
            return None
        if step.action in ("edit", "create"):
            return config_matches(target, live.pipeline, live.resources)
        if step.action == "put_resources":
            return resources_match(target, live.resources)
        if step.action == "patch_metadata":
            return sorted(tags.tags_of(live.pipeline)) == sorted(target["tags"])
        if step.action == "rename":
            return (live.pipeline or {}).get("name") == target["name"]
        return None

    async def _send(self, pid: str, call: str, target: Json | None) -> None:
        client = self.ctx.client
        if call == "stop":
            await client.stop(pid)
        elif call == "resume":
            await client.resume(pid)
        elif call == "edit":
            await client.edit(pid, target or {})
        elif call == "put_resources":
            await client.put_resources(pid, target or {})
        elif call == "create":
            await client.create(target or {})
        elif call == "delete":
            await client.delete(pid)
        elif call == "patch_metadata":
            await client.patch_metadata(pid, (target or {}).get("tags"))
        elif call == "rename":
            await client.rename(pid, (target or {}).get("name", ""))
        else:
            raise StepFailed(f"unknown call {call!r}")

    # -- one API step: observe → decide → act, until done ------------------------------------------
    async def api_step(self, run: PipelineRun, step: Step) -> None:
        pid = run.pipeline_id
        needs_docs = step.action in ("edit", "put_resources", "create", "rename", "patch_metadata")
        timeout = float(step.params.get("timeout_s") or running_timeout(self.ctx.config))
        grace = self.ctx.scaled(30.0)
        started = self.ctx.clock()
        stopped_since: float | None = None
        first_status: str | None = None
        changed = False
        failures = 0
        sends = 0
        while True:
            live = await self.ctx.read(pid, docs=needs_docs)
            now = self.ctx.clock()
            stopped_since = (stopped_since or now) if live.status == Status.STOPPED else None
            first_status = first_status or live.status
            changed = changed or live.status != first_status
            target = self._target(run, step, live) if needs_docs else None
            obs = Observation(live.exists, live.status, self._matches(step, target, live), now - started,
                              now - stopped_since if stopped_since is not None else 0.0, changed)
            step.observed = live.status
            decision = decide(step.action, step.params, obs, timeout_s=timeout, resume_grace_s=grace)
            if decision.kind == DONE:
                step.detail = decision.reason if sends == 0 or step.action == "wait_status" else step.detail
                if step.action == "wait_status" and step.params.get("status") == Status.STOPPED:
                    await self._count_records(run, step, "after")
                return
            if decision.kind == FAIL:
                raise StepFailed(decision.reason)
            if decision.kind == WAIT:
                self.ctx.reporter.waiting(pid, step.name, now - started, timeout, live.status)
                await self.ctx.sleep(self.ctx.poll_s)
                continue
            if (decision.call or step.action) == "stop":
                await self._count_records(run, step, "before")
            try:
                await self._send(pid, decision.call or step.action, target)
            except ApiError as exc:
                failures += 1
                if not is_transient(exc) or failures >= self.ctx.max_attempts:
                    raise StepFailed(f"{decision.call or step.action}: {exc}") from None
                self.say(pid, f"{step.name}: {exc}; retrying ({failures}/{self.ctx.max_attempts - 1})")
                await self.ctx.sleep(max(0.05, self.ctx.scaled(0.5 * 2 ** failures)))
                continue
            sends += 1
            changed = True  # after our own resume, a Failed status is an answer, not a leftover
            step.detail = decision.reason or f"sent {decision.call or step.action}"
            self.say(pid, f"{step.name}: {step.detail}")
            if decision.call == step.action and step.action not in ("wait_status",):
                return  # sent; the next step waits for the effect
            await self.ctx.sleep(self.ctx.poll_s)

    async def join_reset_needed(self, run: PipelineRun) -> bool:
        join = ((run.entry.get("payload") or {}).get("join_restore") or {}).get("join")
        if not join:
            return False
        live = await self.ctx.read(run.pipeline_id, docs=True)
        return not resources_match({"join": join}, live.resources)

    # -- gftune's tags on the pipeline -----------------------------------------------------------------
    async def record_revert(self, run: PipelineRun, step: Step) -> None:
        policies = list(step.params.get("policies", ()))
        at = datetime.fromisoformat(step.params["at"])
        pid = run.pipeline_id

        async def patch() -> list[str]:
            written = tags.with_reverted(tags.tags_of(await self.ctx.client.get(pid)), policies, at)
            await self.ctx.client.patch_metadata(pid, written)
            return written

        await self.ctx.retrying("record the revert", patch)
        step.detail = ", ".join(tags.reverted_tag(p, at) for p in policies)

    async def provenance(self, run: PipelineRun, step: Step, commit: str | None) -> None:
        """The commit now live, and which policies motivated the kept change, as of now: it has been
        watched for its settle and window, so the metrics from here on are the new configuration's
        (``gftune:applied=``, read by the policies' cooldown)."""
        pid = run.pipeline_id
        policies = [proposal["policy"] for proposal, _ in motivating_proposals(run.entry)]
        at = datetime.fromtimestamp(self.ctx.clock(), UTC)

        async def patch() -> list[str]:
            written = tags.provenance_tags(tags.tags_of(await self.ctx.client.get(pid)), commit)
            written = tags.with_applied(written, policies, at)
            await self.ctx.client.patch_metadata(pid, written)
            return written

        await self.ctx.retrying("record provenance", patch)
        step.detail = (f"gftune:commit={commit[:12]}" if commit else "no git commit to record") + \
            f"; {tags.applied_tag(policies, at)}"
