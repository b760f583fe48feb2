"""The shared CLI plumbing every verb uses: flags > env > gftune.yaml, exit on load errors, masking."""

import json
import shutil
from pathlib import Path

import click
from click.testing import CliRunner

from gftune.commands.common import ServerOptions, echo, fail, format_option, server_options
from gftune.desired.problems import Problem
from gftune.desired.secrets import masker

ROOT = Path(__file__).resolve().parents[2]


@click.command()
@server_options
@format_option("text", "json", "markdown")
def probe(opts: ServerOptions, fmt: str) -> None:
    state = opts.load_state(fmt=fmt, extra={"time_scale": 60})
    echo(json.dumps({"api": state.config.api_url, "prometheus": state.config.prometheus_url,
                     "scrape": state.config.scrape_url, "ns": state.config.metric_namespace,
                     "scale": state.config.time_scale, "fmt": fmt, "pipelines": len(state.pipelines)}))


def test_flags_beat_environment_and_file(tmp_path):
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    shutil.copy(ROOT / "gftune.yaml", tmp_path / "gftune.yaml")
    result = CliRunner().invoke(
        probe, ["--repo", str(tmp_path), "--api", "http://flag:1", "--prometheus", "http://prom:9090",
                "--format", "markdown"],
        env={"GFTUNE_API": "http://env:2", "GFTUNE_METRIC_NAMESPACE": "fromenv"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "api": "http://flag:1", "prometheus": "http://prom:9090", "scrape": "http://127.0.0.1:9090/metrics",
        "ns": "fromenv", "scale": 60.0, "fmt": "markdown", "pipelines": 5}


def test_load_state_exits_1_with_the_problems(tmp_path):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "x.yaml").write_text("kind: [\n")
    result = CliRunner().invoke(probe, ["--repo", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.output.startswith("pipelines/x.yaml:2:1: $: invalid YAML:")
    result = CliRunner().invoke(probe, ["--repo", str(tmp_path), "--format", "json"], catch_exceptions=False)
    report = json.loads(result.output)
    assert report["ok"] is False and report["problems"][0]["file"] == "pipelines/x.yaml"


def test_bad_flag_value_is_a_located_problem(tmp_path):
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    result = CliRunner().invoke(probe, ["--repo", str(tmp_path), "--api", "localhost:8081"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.output == "command line: --api: must be an http:// or https:// URL\n"


def test_everything_printed_is_masked():
    masker.add("pw-for-common-test")

    @click.command()
    def talk() -> None:
        echo("connecting with pw-for-common-test")
        fail([Problem("f", 1, 2, "$", "rejected pw-for-common-test")])

    result = CliRunner().invoke(talk, [])
    assert result.exit_code == 1
    assert "pw-for-common-test" not in result.output
    assert result.output == "connecting with ***\nf:1:2: $: rejected ***\n"
