"""A child process that runs `gftune validate` and `gftune plan --format json` on one repository per
input line, under the limits a CI runner must survive (issue 15): at most 1 GiB of address space
(RLIMIT_AS, set here before anything is loaded) and 10 s per command (SIGALRM).

Input, one JSON object per line: ``{"repo": DIR, "api": URL}``. Output, one JSON object per line:
``{"validate": EXIT, "plan": EXIT, "problem": TEXT | null}``; ``problem`` says what broke the rules (a
traceback, output that is not JSON, an exit code outside the contract, a command past 10 s).
Run as ``python -m tests.desired.fuzz_worker``.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from typing import Any

LIMIT_BYTES = 1 << 30
TIMEOUT_S = 10
resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))

from click.testing import CliRunner  # noqa: E402  (after the limit: imports count too)

from gftune.cli import cli  # noqa: E402
from gftune.desired.secrets import masker  # noqa: E402

VALIDATE_CODES = {0, 1}
PLAN_CODES = {0, 1, 2, 3}


class Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Hang


signal.signal(signal.SIGALRM, _alarm)


def run(args: list[str], codes: set[int]) -> tuple[int | None, str | None]:
    signal.alarm(TIMEOUT_S)
    try:
        result = CliRunner().invoke(cli, args)
    except Hang:
        return None, f"{args[0]} ran past {TIMEOUT_S} s"
    finally:
        signal.alarm(0)
    output = result.output  # stdout and stderr
    if isinstance(result.exception, Hang):
        return None, f"{args[0]} ran past {TIMEOUT_S} s"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return result.exit_code, f"{args[0]} raised {type(result.exception).__name__}: {result.exception}"
    if "Traceback" in output:
        return result.exit_code, f"{args[0]} printed a traceback"
    if result.exit_code not in codes:
        return result.exit_code, f"{args[0]} exited {result.exit_code}: {output[-400:]}"
    if result.stdout.strip():
        try:
            json.loads(result.stdout)
        except ValueError:
            return result.exit_code, f"{args[0]} --format json printed no JSON: {result.stdout[:300]!r}"
    return result.exit_code, None


def main() -> None:
    for line in sys.stdin:
        case = json.loads(line)
        repo = case["repo"]
        with masker.isolated():  # one gftune process per repository, as in CI
            validated, problem = run(["validate", "--repo", repo, "--format", "json"], VALIDATE_CODES)
            planned = None
            if problem is None:
                planned, problem = run(["plan", "--repo", repo, "--api", case["api"], "--format", "json",
                                        "--no-github"], PLAN_CODES)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        print(json.dumps({"validate": validated, "plan": planned, "problem": problem, "peak_rss": peak,
                          "limit": limit}), flush=True)


if __name__ == "__main__":
    main()
