"""The top-level CLI contract: version, help, and exit codes for usage errors."""

import subprocess
import sys

from click.testing import CliRunner

from gftune import __version__
from gftune.cli import COMMANDS, cli


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_usage_errors_exit_1_not_2():
    # 2 means "changes found" for plan/drift: a typo must never look like that to CI.
    runner = CliRunner()
    assert runner.invoke(cli, ["no-such-command"]).exit_code == 1
    assert runner.invoke(cli, ["validate", "--no-such-flag"]).exit_code == 1


def test_usage_error_exit_code_of_the_installed_entry_point():
    proc = subprocess.run([sys.executable, "-m", "gftune", "validate", "--no-such-flag"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "No such option" in proc.stderr


def test_unlock_offers_only_the_flags_it_uses():
    # unlock talks to the API alone: metrics flags in its help would be promises it does not keep.
    result = CliRunner().invoke(cli, ["unlock", "--help"])
    assert result.exit_code == 0
    assert "--api" in result.output and "--repo" in result.output
    for unused in ("--prometheus", "--scrape", "--metric-namespace"):
        assert unused not in result.output
