"""Fuzzing with hostile input (issue 15).

1. In process, many cases: the loader and the validator on YAML built from hostile shapes (alias and
   merge-key bombs, deep nesting, lone surrogates, NUL and control characters, integers past any Go type,
   unsupported tags, tabs, BOMs, broken UTF-8): only located problems come out, never an exception.
2. Through `gftune validate` and `gftune plan --format json` in a child process limited to 1 GiB of address
   space and 10 s per command (tests/desired/fuzz_worker.py), on mutated copies of the example repository:
   a value replaced by a hostile one, a key deleted, hostile YAML spliced in, a secret reference aimed at
   /dev/zero, /proc or a FIFO, a pipeline file that is a FIFO, a symlink out of the repository or too big.
   Plans run against the simulator holding the example pipelines.

GFTUNE_FUZZ_CASES (default 800 per in-process test) and GFTUNE_FUZZ_REPOS (default 1000) scale the two
runs; the suite's defaults keep them near two minutes on one core (docs/security.md has a longer run).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gftune.desired.problems import Problem
from gftune.desired.repo import load_repo
from gftune.desired.secrets import masker
from gftune.desired.yamlio import YamlError, load_yaml_text
from gftune.sim import Simulator
from tests.support.fuzzing import json_values, replaced, value_paths
from tests.support.repos import SECRETS, deploy_examples

ROOT = Path(__file__).resolve().parents[2]
CASES = int(os.environ.get("GFTUNE_FUZZ_CASES", "800"))
REPOS = int(os.environ.get("GFTUNE_FUZZ_REPOS", "1000"))
EXAMPLES = sorted((ROOT / "pipelines").glob("*.yaml"))
POLICIES = sorted((ROOT / "policies").glob("*.yaml"))

# --- hostile building blocks ------------------------------------------------------------------------


def merge_bomb(depth: int) -> str:
    return "\n".join(["a0: &a0 {x: 1}"] + [f"a{i}: &a{i}\n  <<: [*a{i - 1}, *a{i - 1}]"
                                            for i in range(1, depth + 1)]) + "\n"


def laughs(depth: int, width: int) -> str:
    return "\n".join(['l0: &l0 ["lol"]'] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]"
                                           for i in range(1, depth + 1)]) + "\n"


HOSTILE_SNIPPETS = [
    merge_bomb(29), merge_bomb(12), laughs(9, 9), laughs(4, 30),
    "x: " + "[" * 300 + "]" * 300 + "\n", "x: " + "{a: " * 120 + "1" + "}" * 120 + "\n",
    "a: &a [*a]\n", "a: &a {b: *a}\n", "x: !!python/object/apply:os.system ['true']\n", "x: !custom 1\n",
    "x: !!binary aGVsbG8=\n", "x: \"users\\ud800\"\n", "\"k\\udfff\": 1\n", "x: \"nul\\0here\"\n",
    "x: 1\nx: 2\n", "\tx: 1\n", "\ufeffx: 1\n", "x: 9" + "9" * 5000 + "\n", "x: 1e99999\n", "x: .nan\n",
    "? [a, b]\n: c\n", "<<: 1\n", "<<: [1, 2]\n", "x: *undefined\n", "%YAML 1.1\n---\nx: 1\n", "---\n---\n",
    "x: |\n" + "  line\n" * 2000, "x: " + "'" + "a" * 100_000 + "'\n",
]
HOSTILE_VALUES = [
    -1, 0, 2**31, 2**63, 2**70, 2**80, -(2**80), 1e308, float("inf"), float("nan"), True, None, "", " ",
    "-1", "0", "1e400", "1Ei", "99999999999999999999999Ti", "-500m", "users\x00x", "a\x1b[2Jb", "\u202etxt",
    "${file:/dev/zero}", "${file:/proc/self/environ}", "${file:../../../../etc/passwd}", "${file:.git/config}",
    "${file:fifo}", "${file:big.bin}", "${file:~/.ssh/id_rsa}", "${env:}", "${env:1X}", "${KAFKA_PASSWORD}",
    "x" * 5000, [[[[[]]]]], {"<<": 1}, "rate(foo[5m]", '"s"', "{__name__=~\"(\"}",
]
hostile_value = st.sampled_from(HOSTILE_VALUES) | json_values | st.integers() | st.text(max_size=20)


def control_text() -> st.SearchStrategy[str]:
    return st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)


# --- 1. loader and validator, in process ----------------------------------------------------------------

FAST = settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck))


def assert_located(problems: list[Problem]) -> None:
    for problem in problems:
        assert problem.message and problem.file
        assert problem.line is None or problem.line >= 1
        assert "internal error" not in problem.message, problem.render()
        problem.render().encode("utf-8")  # printable: no lone surrogate in any message


@FAST
@example(parts=["\ud800"], example=EXAMPLES[0])  # a raw lone surrogate (not an escape): libyaml cannot encode it
@given(st.lists(st.sampled_from(HOSTILE_SNIPPETS) | control_text() | st.binary(max_size=40).map(
    lambda b: b.decode("latin-1")), min_size=1, max_size=4), st.sampled_from(EXAMPLES))
def test_loader_and_validator_survive_hostile_yaml(tmp_path_factory, parts, example):
    text = example.read_text()
    lines = text.splitlines(keepends=True)
    cut = len("".join(parts)) % max(1, len(lines))
    hostile = "".join(lines[:cut]) + "".join(parts) + "".join(lines[cut:])
    started = time.monotonic()
    try:
        load_yaml_text(hostile, display="x.yaml")
    except YamlError as exc:
        assert_located(exc.problems)
    repo = tmp_path_factory.mktemp("fuzz")
    (repo / "pipelines").mkdir()
    (repo / "pipelines" / example.name).write_bytes(hostile.encode("utf-8", "surrogatepass"))
    with masker.isolated():  # literal secrets of one case must not mask the next case's output
        assert_located(load_repo(repo).problems)
    assert time.monotonic() - started < 10


@FAST
@given(st.data())
def test_validator_survives_hostile_values(tmp_path_factory, data):
    example = data.draw(st.sampled_from(EXAMPLES))
    doc = yaml.safe_load(example.read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(value_paths(doc)[1:]))
        doc = replaced(doc, path, data.draw(hostile_value))
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    repo = tmp_path_factory.mktemp("fuzz")
    (repo / "pipelines").mkdir()
    (repo / "pipelines" / example.name).write_text(text, encoding="utf-8")
    with masker.isolated():
        assert_located(load_repo(repo).problems)


# --- 2. validate + plan in a limited child process ---------------------------------------------------


class Worker:
    """tests/desired/fuzz_worker.py in a child process; restarted if a case kills it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.cases = 0
        self.peak_rss = 0
        self.seconds = 0.0

    def start(self) -> None:
        env = {**os.environ, **SECRETS, "MALLOC_ARENA_MAX": "2", "GFTUNE_API_RETRIES": "0",
               "GFTUNE_API_TIMEOUT": "5s", "NO_COLOR": "1"}
        for name in [n for n in env if n.startswith("GITHUB_")]:
            env.pop(name)
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.desired.fuzz_worker"], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def run(self, repo: Path, api: str) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        started = time.monotonic()
        self.proc.stdin.write(json.dumps({"repo": str(repo), "api": api}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 25)  # two commands of at most 10 s each
        if not ready:
            self.proc.kill()
            return {"problem": "no answer within 25 s: the worker hangs"}
        line = self.proc.stdout.readline()
        self.seconds += time.monotonic() - started
        self.cases += 1
        if not line:
            code = self.proc.wait()
            stderr = self.proc.stderr.read()[-800:] if self.proc.stderr else ""
            return {"problem": f"the worker died (exit {code}: over 1 GiB?): {stderr}"}
        result = json.loads(line)
        self.peak_rss = max(self.peak_rss, result.get("peak_rss", 0))
        return result

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def fuzz_target():
    sim = Simulator(scenarios=[], time_scale=200)
    sim.start()
    base = Path(tempfile.mkdtemp(prefix="gftune-fuzz-base-"))
    (base / "pipelines").mkdir()
    for file in EXAMPLES:
        shutil.copy(file, base / "pipelines" / file.name)
    (base / "policies").mkdir()
    for file in POLICIES:
        shutil.copy(file, base / "policies" / file.name)
    (base / "gftune.yaml").write_text("apiVersion: gftune/v1\nkind: Config\napi: {retries: 0, timeout: 5s}\n")

    class Repo:  # what deploy_examples needs: the example pipelines, created as a plan would
        path = base
    old = {k: os.environ.get(k) for k in SECRETS}
    os.environ.update(SECRETS)
    try:
        deploy_examples(Repo(), sim.api_url)  # type: ignore[arg-type]
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    worker = Worker()
    yield sim.api_url, base, worker
    worker.stop()
    sim.stop()
    shutil.rmtree(base, ignore_errors=True)
    print(f"\nfuzz: {worker.cases} repositories through validate + plan --format json in "
          f"{worker.seconds:.1f} s, peak RSS of the worker {worker.peak_rss / 2**20:.0f} MiB")


def mutate(base: Path, target: Path, data: st.DataObject) -> None:
    """A copy of the example repository with one pipeline (the one mutated: plans stay short) and every
    policy, mutated one way."""
    shutil.copytree(base, target, symlinks=True)
    kind = data.draw(st.sampled_from(["value", "delete", "splice", "reference", "file", "policy"]))
    files = sorted((target / "pipelines").glob("*.yaml"))
    file = data.draw(st.sampled_from(files))
    for other in files:
        if other != file:
            other.unlink()
    if kind in ("value", "delete", "reference"):
        doc = yaml.safe_load(file.read_text())
        for _ in range(data.draw(st.integers(1, 3))):
            path = data.draw(st.sampled_from(value_paths(doc)[1:]))
            if kind == "delete":
                node = doc
                for key in path[:-1]:
                    node = node[key]
                del node[path[-1]]
            else:
                value = data.draw(st.sampled_from([v for v in HOSTILE_VALUES if isinstance(v, str)
                                                   and v.startswith("${")])) if kind == "reference" \
                    else data.draw(hostile_value)
                doc = replaced(doc, path, value)
        file.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    elif kind == "splice":
        lines = file.read_text().splitlines(keepends=True)
        at = data.draw(st.integers(0, len(lines)))
        snippet = data.draw(st.sampled_from(HOSTILE_SNIPPETS))
        file.write_bytes("".join([*lines[:at], snippet, *lines[at:]]).encode("utf-8", "surrogatepass"))
    elif kind == "file":
        how = data.draw(st.sampled_from(["fifo", "zero", "passwd", "urandom", "big", "dir"]))
        file.unlink()
        if how == "fifo":
            os.mkfifo(file)
        elif how == "big":
            file.write_bytes(b"# x\n" * (1 << 18) + b"x: 1\n")
        elif how == "dir":
            file.mkdir()
        else:
            file.symlink_to({"zero": "/dev/zero", "passwd": "/etc/passwd", "urandom": "/dev/urandom"}[how])
    else:
        policy = data.draw(st.sampled_from(sorted((target / "policies").glob("*.yaml"))))
        doc = yaml.safe_load(policy.read_text())
        path = data.draw(st.sampled_from(value_paths(doc)[1:]))
        policy.write_text(yaml.safe_dump(replaced(doc, path, data.draw(hostile_value)), allow_unicode=True))
    os.mkfifo(target / "fifo")  # what ${file:fifo} points at
    (target / "big.bin").write_bytes(b"x" * (1 << 17))


@settings(max_examples=REPOS, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_validate_and_plan_survive_mutated_repositories(fuzz_target, data):
    api, base, worker = fuzz_target
    with tempfile.TemporaryDirectory(prefix="gftune-fuzz-") as scratch:
        target = Path(scratch) / "repo"
        mutate(base, target, data)
        result = worker.run(target, api)
    assert result.get("problem") is None, result
    assert result["limit"] == 1 << 30  # the child really ran under the 1 GiB cap
