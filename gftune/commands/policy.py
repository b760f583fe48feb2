"""``gftune policy``: policy tools. ``gftune policy test`` runs the unit tests in policy files.

A policy's ``tests:`` give fixtures (signal values, or recorded series ``[[seconds, value], ...]``,
and optionally pipeline fragments and constraints) and the expected outcome (changed paths and
values, an escalation, or nothing). Exit 0 when every test passes, 1 otherwise; with
``--require-tests`` a policy without tests fails, and so does a run that executed no test.
"""

from __future__ import annotations

from pathlib import Path

import click

from gftune import exitcodes
from gftune.commands.common import FORMAT_VERSION, echo, echo_json, finish, format_option, render_problems, repo_option
from gftune.orchestration.desired import load_desired
from gftune.policy.testing import TestResult, run_policy_tests


@click.group(name="policy")
def command() -> None:
    """Policy tools."""


@command.command(name="test")
@repo_option
@format_option("text", "json")
@click.option("--require-tests", is_flag=True, help="Fail a policy that has no tests (and a run with no tests).")
@click.argument("names", nargs=-1, metavar="[POLICY]...")
def test_command(repo: Path, fmt: str, require_tests: bool, names: tuple[str, ...]) -> None:
    """Run the unit tests of the repository's policies (policies/*.yaml, `tests:`).

    Exit 0 when every test passes, 1 when one fails or a policy cannot be read."""
    state = load_desired(repo)
    policy_files = [p for p in state.policies if not names or p.name in names]
    missing = sorted(set(names) - {p.name for p in state.policies})
    results: list[TestResult] = []
    errors: list[str] = [f"no policy named {name!r} under {repo / 'policies'}" for name in missing]
    errors += render_problems(p for p in state.problems if p.is_error and p.file.startswith("policies/"))
    untested: list[str] = []
    for policy_file in policy_files:
        policy = policy_file.parsed
        if policy is None:  # the language's problem (or the schema's, at the same place) is in errors
            if not any(policy_file.file in e for e in errors):
                errors.append(f"{policy_file.file}: invalid policy")
            continue
        found = run_policy_tests(policy)
        if not found:
            untested.append(policy.name)
            if require_tests:
                results.append(TestResult(policy.name, "(no tests)", False, "the policy has no tests "
                                          "(--require-tests)", policy.file))
        results += found
    executed = [r for r in results if r.name != "(no tests)"]
    if require_tests and not executed and not errors:
        errors.append("no policy tests were executed (--require-tests)")
    failed = [r for r in results if not r.passed]
    ok = not failed and not errors
    if fmt == "json":
        echo_json({"format_version": FORMAT_VERSION, "ok": ok, "errors": errors,
                   "results": [r.to_dict() for r in results], "untested": untested})
    else:
        for line in errors:
            echo(f"error: {line}", err=True)
        for result in results:
            mark = "ok  " if result.passed else "FAIL"
            echo(f"{mark} {result.policy}: {result.name}" + (f"\n     {result.message}" if result.message else ""))
        for name in untested:
            if not require_tests:
                echo(f"note: {name} has no tests")
        passed = len(executed) - len([r for r in failed if r.name != "(no tests)"])
        echo(f"{passed}/{len(executed)} policy tests passed in {len({r.policy for r in results})} policies"
             + (f"; {len(errors)} error(s)" if errors else ""))
    finish(exitcodes.OK if ok else exitcodes.ERROR)
