"""``gftune demo``: the whole loop on an embedded simulator, in about a minute.

1. start the GlassFlow simulator in-process (free ports, time scale) with the ``demo`` scenario:
   the example repository's five pipelines (``pipelines/*.yaml``, GlassFlow's own demos) running,
   four of them healthy and the deduplication demo with a sink too slow for its topic;
2. copy the example repository (``gftune.yaml`` pointed at the simulator, ``pipelines/``,
   ``policies/``) into a fresh git repository. The secret references of the example files
   (``${env:CLICKHOUSE_PASSWORD}``, ...) get the values the scenario created the pipelines with,
   exported only to the gftune commands the demo runs and never printed;
3. run, as a user would, ``gftune plan`` (git = live for every pipeline; the symptom and the
   policy's proposal with its evidence), ``gftune tune --write`` (the bounded change to the
   pipeline file, committed on a branch) and ``gftune apply --auto-approve`` (lock, stop, update,
   Running, settle, observe, verdict, report).

Any other scenario (``--scenario NAME``, e.g. ``backpressure-sink-bound``) runs pipelines that are
not in the example repository: their live documents are adopted into ``pipelines/<id>.yaml``
instead (secrets as ``${env:GFTUNE_DEMO_...}`` references), next to the example policies.

The demo talks to the simulator only over HTTP (the commands are ordinary ``gftune`` processes);
starting it in-process is the one thing no other command does. ``--keep`` leaves the simulator
running afterwards so that you can keep trying commands against it; Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import click
import httpx
import yaml

from gftune import exitcodes
from gftune.commands.common import examples_dir
from gftune.desired import adopt, secrets
from gftune.desired.secrets import masker
from gftune.plan import tags

DEFAULT_SCENARIO = "demo"
DEFAULT_TIME_SCALE = 30.0
ENV_PREFIX = "GFTUNE_DEMO_"


def reference_values(file_spec: Any, scenario_doc: Any, where: str = "spec") -> dict[str, tuple[str, str]]:
    """What stands behind each ``${env:NAME}`` reference of a pipeline file, read from the document a
    scenario created the pipeline with (the same file with the references filled in: same shape, lists
    in the same order). ``{NAME: (value, where)}``; a reference the scenario leaves unfilled is an error."""
    found: dict[str, tuple[str, str]] = {}
    if isinstance(file_spec, dict):
        for key, value in file_spec.items():
            other = scenario_doc.get(key) if isinstance(scenario_doc, dict) else None
            found.update(reference_values(value, other, f"{where}.{key}"))
    elif isinstance(file_spec, list):
        for index, value in enumerate(file_spec):
            other = scenario_doc[index] if isinstance(scenario_doc, list) and index < len(scenario_doc) else None
            found.update(reference_values(value, other, f"{where}[{index}]"))
    elif isinstance(file_spec, str) and file_spec.startswith("${env:"):
        name = file_spec[len("${env:"):-1]
        if not isinstance(scenario_doc, str) or not scenario_doc or secrets.is_reference(scenario_doc):
            raise click.ClickException(f"the scenario gives no value for {file_spec} at {where}")
        found[name] = (scenario_doc, where)
    return found


def secret_env_name(dotted_path: str, prefix: str = ENV_PREFIX) -> str:
    """``sink.connection_params.password`` -> ``GFTUNE_DEMO_SINK_PASSWORD``."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", dotted_path.replace("connection_params", "")) if w]
    return prefix + "_".join(words).upper()


def adopted_spec(live: dict[str, Any], *, prefix: str = ENV_PREFIX) -> tuple[dict[str, Any], dict[str, str]]:
    """A pipeline file's ``spec`` from a live GET document, verbatim but for two things: each secret
    becomes an ``${env:NAME}`` reference (the values are returned for the environment, never written),
    and gftune's own tags go. (``gftune import`` writes what a person would, defaults left out:
    :func:`gftune.desired.adopt.adopt`; the demo keeps the simulator's documents whole, so that every
    field of a scenario's pipeline is managed.)"""
    pipeline_id = str(live.get("pipeline_id"))
    found = [adopt.FoundSecret(pipeline_id, dotted, positional, value)
             for positional, dotted, value in secrets.iter_secret_locations(live) if isinstance(value, str) and value]
    names = {(pipeline_id, s.path): secret_env_name(s.path, prefix) for s in found}
    spec = adopt.with_references(adopt.Adopted(pipeline_id, live, found), names)
    for secret in found:
        masker.add(secret.value)
    spec["metadata"] = {"tags": tags.user_tags(live)}
    return spec, {names[(pipeline_id, s.path)]: s.value for s in found}


def pipeline_file_text(spec: dict[str, Any], source: str) -> str:
    return adopt.pipeline_file_text(
        spec, header=[f"Adopted from the live pipeline at {source} by `gftune demo`; secrets are references."])


def demo_config_text(example: Path, *, api_url: str, scrape_url: str, time_scale: float) -> str:
    """The example gftune.yaml (comments kept) pointed at the simulator."""
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML()
    doc = yaml.load(example.read_text(encoding="utf-8")) if example.is_file() else {}
    doc = doc or {}
    doc.setdefault("apiVersion", "gftune/v1")
    doc.setdefault("kind", "Config")
    doc.setdefault("api", {})["url"] = api_url
    metrics = doc.setdefault("metrics", {})
    metrics.pop("prometheus", None)
    metrics["scrape"] = scrape_url
    doc["time_scale"] = time_scale
    out = StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", "gftune demo"),
           "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", "demo@gftune.invalid"),
           "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", "gftune demo"),
           "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", "demo@gftune.invalid")}
    try:
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise click.ClickException("the demo needs git on the PATH (it commits the tuned change on a branch)") from None
    except subprocess.CalledProcessError as exc:
        raise click.ClickException(f"git {' '.join(args)} failed: {exc.stderr.strip()}") from None


class Demo:
    def __init__(self, scenario: str, time_scale: float, repo: Path | None, out: Any) -> None:
        self.scenario = scenario
        self.time_scale = time_scale
        self.repo = repo
        self.echo = out
        self.sim: Any = None
        self.env: dict[str, str] = {}
        self.env_origin = ""  # where the values of self.env come from, for the --keep hint
        self.child: subprocess.Popen[str] | None = None

    def banner(self, text: str) -> None:
        self.echo("")
        self.echo(click.style(f"━━ {text} ", bold=True) + "━" * max(0, 78 - len(text)))

    def notice(self, text: str) -> None:
        """What to look at in the output that follows."""
        for line in textwrap.wrap(text, 100, break_on_hyphens=False):
            self.echo(click.style(line, dim=True))

    def start_simulator(self) -> None:
        from gftune.sim import ScenarioError, Simulator

        try:
            self.sim = Simulator(scenarios=[self.scenario], time_scale=self.time_scale).start()
        except ScenarioError as exc:
            raise click.ClickException(str(exc)) from None
        scenario = self.sim.scenarios[0]
        self.banner(f"GlassFlow simulator: scenario {scenario.name}, {self.time_scale:g}x faster than real time")
        self.echo(f"API {self.sim.api_url}   metrics {self.sim.metrics_url}")
        self.echo(f"(every duration gftune waits for is divided by {self.time_scale:g}: a 5m window takes "
                  f"{300 / self.time_scale:.0f}s)")
        if scenario.description:
            self.notice(" ".join(scenario.description.split()))

    def on_examples(self) -> bool:
        """Does the scenario run exactly the example repository's pipelines?"""
        ids = {p.pipeline_id for p in self.sim.scenarios[0].pipelines}
        return ids == {p.stem for p in (examples_dir() / "pipelines").glob("*.yaml")}

    def make_repo(self) -> Path:
        repo = self.repo or Path(tempfile.mkdtemp(prefix="gftune-demo-"))
        repo.mkdir(parents=True, exist_ok=True)
        example = examples_dir()
        shutil.copytree(example / "policies", repo / "policies", dirs_exist_ok=True)
        (repo / "gftune.yaml").write_text(demo_config_text(example / "gftune.yaml", api_url=self.sim.api_url,
                                                           scrape_url=self.sim.metrics_url,
                                                           time_scale=self.time_scale), encoding="utf-8")
        (repo / ".gitignore").write_text(".gftune/\n", encoding="utf-8")
        if self.on_examples():
            shutil.copytree(example / "pipelines", repo / "pipelines", dirs_exist_ok=True)
            self.fill_references(repo)
            message = "The example repository, gftune.yaml pointed at the demo's simulator"
        else:
            adopted = self.adopt(repo)
            message = "Adopt the live pipelines next to the example policies"
        _git(repo, "init", "-q", "-b", "main")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", message)
        self.banner(f"Git repository {repo}")
        if self.on_examples():
            policies = sorted(p.stem for p in (repo / "policies").glob("*.yaml"))
            self.echo(f"the example repository ({(example / 'pipelines').resolve().parent}), committed on main:")
            for label, text in (
                    ("gftune.yaml", f"pointed at the simulator (direct scrape of its /metrics, "
                                    f"time_scale {self.time_scale:g})"),
                    ("pipelines/", ", ".join(sorted(p.stem for p in (repo / "pipelines").glob("*.yaml")))),
                    ("policies/", f"{len(policies)} tuning policies: {', '.join(policies)}")):
                self.echo(textwrap.fill(text, 100, initial_indent=f"  {label:<13}",
                                        subsequent_indent=" " * 15, break_on_hyphens=False))
            self.notice(f"The files' ${{env:...}} references ({', '.join(sorted(self.env))}) get the values the "
                        "simulator's pipelines were created with, exported to the gftune commands below and "
                        "never printed.")
        else:
            self.echo(f"adopted the live pipeline(s) into {', '.join(adopted)} (secrets as ${{env:...}} references: "
                      f"{', '.join(sorted(self.env)) or 'none'}), plus the example policies/ and gftune.yaml")
        self.repo = repo
        return repo

    def fill_references(self, repo: Path) -> None:
        """The values behind the example files' ``${env:NAME}`` references, from the scenario's
        documents; values in secret fields are masked in everything the demo shows."""
        for pipeline in self.sim.scenarios[0].pipelines:
            file = repo / "pipelines" / f"{pipeline.pipeline_id}.yaml"
            spec = (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("spec") or {}
            for name, (value, where) in reference_values(spec, pipeline.doc).items():
                if self.env.setdefault(name, value) != value:
                    raise click.ClickException(f"the scenario gives ${{env:{name}}} two different values "
                                               f"({file.name}: {where})")
            for _, _, reference in secrets.iter_secret_locations(spec):
                if isinstance(reference, str) and reference.startswith("${env:"):
                    masker.add(self.env[reference[len("${env:"):-1]])
        self.env_origin = f"the value {self.sim.scenarios[0].source} gives it"

    def adopt(self, repo: Path) -> list[str]:
        api = self.sim.api_url
        rows = httpx.get(f"{api}/api/v1/pipeline", timeout=10).json()
        if not rows:
            raise click.ClickException(f"scenario {self.scenario} has no pipeline to tune")
        (repo / "pipelines").mkdir(exist_ok=True)
        adopted = []
        for row in rows:
            live = httpx.get(f"{api}/api/v1/pipeline/{row['pipeline_id']}", timeout=10).json()
            spec, env = adopted_spec(live)
            self.env.update(env)
            path = repo / "pipelines" / f"{spec['pipeline_id']}.yaml"
            path.write_text(pipeline_file_text(spec, api), encoding="utf-8")
            adopted.append(path.relative_to(repo).as_posix())
        self.env_origin = "as the simulator's GET /api/v1/pipeline/<id> shows it"
        return adopted

    def run(self, *args: str, notice: str = "") -> int:
        assert self.repo is not None
        command = ["gftune", *args, "--repo", str(self.repo)]
        self.banner("$ " + " ".join(command[:-2]))
        if notice:
            self.notice(notice)
        env = {**os.environ, **self.env, "NO_COLOR": os.environ.get("NO_COLOR", "")}
        for name in ("GFTUNE_API", "GFTUNE_PROMETHEUS", "GFTUNE_SCRAPE", "GFTUNE_TIME_SCALE"):
            env.pop(name, None)  # the demo repository's gftune.yaml points at the simulator
        self.child = subprocess.Popen([sys.executable, "-m", "gftune", *command[1:]], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        assert self.child.stdout is not None
        for line in self.child.stdout:
            self.echo(masker.mask(line.rstrip("\n")))
        code = self.child.wait()
        self.child = None
        return code

    def stop(self) -> None:
        if self.child is not None and self.child.poll() is None:
            for ask in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                self.child.send_signal(ask)
                try:
                    self.child.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.sim is not None:
            self.sim.stop()
            self.sim = None


@click.command(name="demo")
@click.option("--scenario", default=DEFAULT_SCENARIO, show_default=True, metavar="NAME",
              help="Simulator scenario (see `gftune sim --list-scenarios`): `demo` runs the example "
                   "repository's pipelines; any other scenario's pipelines are adopted into the demo repository.")
@click.option("--time-scale", default=DEFAULT_TIME_SCALE, show_default=True,
              type=click.FloatRange(min=1.0, max=200.0), help="How much faster than real time the demo runs.")
@click.option("--repo", "repo", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to create the demo repository (default: a new temporary directory).")
@click.option("--keep", is_flag=True, help="Keep the simulator running afterwards (Ctrl-C stops it).")
def command(scenario: str, time_scale: float, repo: Path | None, keep: bool) -> None:
    """Start the simulator with the example repository's pipelines, then plan -> tune -> apply -> verify."""
    if repo is not None and repo.exists() and any(repo.iterdir()):
        raise click.ClickException(f"{repo} is not empty; give a new directory for the demo repository")
    started = time.monotonic()
    demo = Demo(scenario, time_scale, repo, click.echo)
    code = exitcodes.ERROR

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and `kill` both end the demo cleanly: the child command is interrupted, the simulator stopped.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        demo.start_simulator()
        demo.make_repo()
        saved = demo.repo / ".gftune" / "plan.json"
        saved.parent.mkdir(parents=True, exist_ok=True)
        plan_code = demo.run("plan", "--out", str(saved),
                             notice="Reads git (pipelines/*.yaml), the live pipelines (API) and their metrics. "
                             "Look for: every pipeline whose file matches the live pipeline has no changes; "
                             "a policy that sees a symptom proposes a bounded change, with the measured evidence.")
        if plan_code not in (exitcodes.OK, exitcodes.CHANGES, exitcodes.BLOCKED):
            raise click.ClickException(f"gftune plan failed (exit {plan_code})")
        tune_code = demo.run("tune", "--write", "--plan", str(saved), "--pr-body",
                             str(demo.repo / ".gftune" / "pr-body.md"),
                             notice="Writes the proposal of the plan above, as reviewed, into the pipeline file (only "
                             "the targeted values change; comments and layout stay) and commits it on a new branch, "
                             "ready for a pull request (its body, with the evidence, is saved in .gftune/pr-body.md).")
        if tune_code != exitcodes.CHANGES:
            raise click.ClickException(f"gftune tune found nothing to propose (exit {tune_code}); "
                                       f"is {scenario} a scenario with a symptom?")
        code = demo.run("apply", "--auto-approve", notice="Applies the branch: plans again (only the tuned "
                        "pipeline changes), then lock, stop, update, Running, and verifies the change with the "
                        "metrics that motivated it: the verdict compares before and after.")
        demo.banner(f"Done in {time.monotonic() - started:.0f}s: gftune apply exited {code} "
                    f"({_meaning(code)})")
        click.echo(f"The demo repository stays at {demo.repo}: `git -C {demo.repo} log --oneline --all` shows the "
                   "tuned branch, .gftune/runs/ the run journal.")
        if keep:
            click.echo(f"The simulator keeps running (API {demo.sim.api_url}); for example:")
            for name in sorted(demo.env):
                click.echo(f"  export {name}=...   # {demo.env_origin}")
            click.echo(f"  gftune plan --repo {demo.repo}")
            click.echo("Press Ctrl-C to stop.")
            while True:
                time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: stopping the simulator", err=True)
        code = 130
    finally:
        demo.stop()
    raise SystemExit(code)


def _meaning(code: int) -> str:
    return {exitcodes.OK: "applied and verified", exitcodes.VERIFY_FAILED: "verification failed, reverted",
            exitcodes.INCONCLUSIVE: "inconclusive, change kept", exitcodes.BLOCKED: "blocked entries skipped",
            exitcodes.ERROR: "error"}.get(code, "unexpected")
