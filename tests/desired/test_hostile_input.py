"""Hostile pull requests (issue 15): files gftune must not read, YAML that must not blow up, text that
is no text. Each case goes through `gftune validate` (the CLI, in process) and, where the loader is
not enough, through the secret resolver that plan and apply use."""

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gftune.cli import cli
from gftune.desired import secrets, yamlio
from gftune.desired.yamlio import YamlError, load_yaml_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "pipelines" / "deduplication-demo-pipeline.yaml"
PID = "deduplication-demo-pipeline"
MAX_YAML_BYTES = 1 << 20  # the stated cap on a pipeline, policy or config file (docs/security.md)


def make_repo(tmp_path: Path, text: str | None = None, name: str = f"{PID}.yaml") -> Path:
    repo = tmp_path / "repo"
    (repo / "pipelines").mkdir(parents=True)
    if text is not None:
        (repo / "pipelines" / name).write_text(text, encoding="utf-8", errors="surrogatepass")
    return repo


def with_password(reference: str) -> str:
    text = EXAMPLE.read_text()
    assert "${env:CLICKHOUSE_PASSWORD}" in text
    return text.replace("${env:CLICKHOUSE_PASSWORD}", reference)


def validate(repo: Path, *extra: str) -> tuple[int, list[str], str]:
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["validate", "--repo", str(repo), "--format", "json", *extra],
                                catch_exceptions=False)
    assert time.monotonic() - started < 10
    report = json.loads(result.output)
    rendered = [f"{p['file']}:{p['line']}:{p['col']}: {p['json_path']}: {p['message']}" if p["line"]
                else f"{p['file']}: {p['json_path']}: {p['message']}" for p in report["problems"]]
    return result.exit_code, rendered, result.output


def password_line() -> int:
    return next(i for i, line in enumerate(EXAMPLE.read_text().splitlines(), 1) if "CLICKHOUSE_PASSWORD" in line)


# --- ${file:} -------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["../../../../etc/passwd", "/proc/self/environ", "~/.ssh/id_rsa", "/dev/zero"])
def test_file_reference_outside_the_repository_is_a_validation_error(tmp_path, target):
    repo = make_repo(tmp_path, with_password(f"${{file:{target}}}"))
    code, problems, _ = validate(repo)
    assert code == 1
    [problem] = problems
    assert problem.startswith(f"pipelines/{PID}.yaml:{password_line()}:")
    assert f"spec.sink.connection_params.password: ${{file:{target}}} refused: " in problem
    assert "outside the repository and the directories allowed in gftune.yaml (files.allow)" in problem


def test_file_reference_into_git_metadata_is_refused(tmp_path):
    repo = make_repo(tmp_path, with_password("${file:.git/config}"))
    (repo / ".git").mkdir()
    (repo / ".git" / "config").write_text('[http]\n\textraheader = AUTHORIZATION: basic czNjcmV0\n')
    code, problems, output = validate(repo)
    assert code == 1 and "inside a .git directory" in problems[0]
    assert "czNjcmV0" not in output


def test_file_reference_to_a_fifo_a_symlinked_device_or_a_big_file_is_refused(tmp_path):
    repo = make_repo(tmp_path)
    os.mkfifo(repo / "ch.fifo")
    (repo / "zero").symlink_to("/dev/zero")
    (repo / "big.txt").write_bytes(b"x" * (secrets.MAX_SECRET_BYTES + 1))
    expected = {"ch.fifo": "not a regular file: a FIFO (named pipe)",
                "zero": "resolves to /dev/zero, outside the repository",
                "big.txt": f"{secrets.MAX_SECRET_BYTES + 1} bytes, over the cap of {secrets.MAX_SECRET_BYTES} bytes"}
    for target, reason in expected.items():
        (repo / "pipelines" / f"{PID}.yaml").write_text(with_password(f"${{file:{target}}}"))
        code, problems, _ = validate(repo)
        assert code == 1 and reason in problems[0], (target, problems)
        with pytest.raises(secrets.SecretError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            secrets.Resolver({}, base_dir=repo)(f"${{file:{target}}}")  # what plan and apply call


def test_a_device_in_an_allowed_directory_is_still_never_read(tmp_path):
    started = time.monotonic()
    with pytest.raises(secrets.SecretError, match="not a regular file: a character device"):
        secrets.Resolver({}, base_dir=tmp_path, roots=[Path("/dev")])("${file:/dev/zero}")
    assert time.monotonic() - started < 1


def test_file_reference_inside_the_repository_or_an_allowed_directory_resolves(tmp_path):
    repo = make_repo(tmp_path, with_password("${file:secrets/ch.txt}"))
    (repo / "secrets").mkdir()
    (repo / "secrets" / "ch.txt").write_text("from-a-file\n")
    assert validate(repo)[0] == 0
    assert secrets.Resolver({}, base_dir=repo)("${file:secrets/ch.txt}") == "from-a-file"
    outside = tmp_path / "run-secrets"
    outside.mkdir()
    (outside / "ch").write_text("mounted")
    (repo / "pipelines" / f"{PID}.yaml").write_text(with_password(f"${{file:{outside / 'ch'}}}"))
    assert validate(repo)[0] == 1
    (repo / "gftune.yaml").write_text(f"apiVersion: gftune/v1\nkind: Config\nfiles: {{allow: [{outside}]}}\n")
    assert validate(repo)[0] == 0


def test_the_environment_pins_reads_to_the_repository_whatever_gftune_yaml_allows(tmp_path, monkeypatch):
    # a pull request may edit gftune.yaml's files.allow; the CI job's GFTUNE_FILES_ALLOW=none (the
    # action's default) takes that widening back
    outside = tmp_path / "run-secrets"
    outside.mkdir()
    (outside / "ch").write_text("mounted")
    repo = make_repo(tmp_path, with_password(f"${{file:{outside / 'ch'}}}"))
    (repo / "gftune.yaml").write_text(f"apiVersion: gftune/v1\nkind: Config\nfiles: {{allow: [{outside}]}}\n")
    assert validate(repo)[0] == 0
    monkeypatch.setenv("GFTUNE_FILES_ALLOW", "none")
    code, problems, _ = validate(repo)
    assert code == 1 and any("outside the repository" in p for p in problems)
    monkeypatch.setenv("GFTUNE_FILES_ALLOW", str(outside))
    assert validate(repo)[0] == 0


def test_gftune_yaml_cannot_widen_where_it_is_read_from(tmp_path):
    repo = make_repo(tmp_path, EXAMPLE.read_text())
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("apiVersion: gftune/v1\nkind: Config\n")
    (repo / "gftune.yaml").symlink_to(elsewhere)
    code, problems, _ = validate(repo)
    assert code == 1 and problems == [f"gftune.yaml: $: file refused: resolves to {elsewhere}, outside the "
                                      "repository and the directories allowed in gftune.yaml (files.allow)"]


# --- pipeline and policy files ---------------------------------------------------------------------

@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: p.symlink_to("/etc/passwd"), "resolves to /etc/passwd, outside the repository"),
    (lambda p: p.symlink_to("/dev/zero"), "resolves to /dev/zero, outside the repository"),
    (lambda p: p.symlink_to("/dev/urandom"), "resolves to /dev/urandom, outside the repository"),
    (lambda p: os.mkfifo(p), "not a regular file: a FIFO (named pipe)"),
    (lambda p: p.write_bytes(b"# padding\n" * (MAX_YAML_BYTES // 10 + 1)),
     f"over the cap of {MAX_YAML_BYTES} bytes"),
])
@pytest.mark.parametrize("directory", ["pipelines", "policies"])
def test_unreadable_pipeline_and_policy_files_are_refused_with_the_reason(tmp_path, make, reason, directory):
    repo = make_repo(tmp_path, EXAMPLE.read_text())
    (repo / directory).mkdir(exist_ok=True)
    make(repo / directory / "hostile.yaml")
    code, problems, _ = validate(repo)
    assert code == 1
    [problem] = [p for p in problems if "hostile.yaml" in p]
    assert problem.startswith(f"{directory}/hostile.yaml: $: file refused: ") and reason in problem


def test_the_stated_caps():
    assert (yamlio.MAX_YAML_BYTES, secrets.MAX_SECRET_BYTES) == (MAX_YAML_BYTES, 64 * 1024)


def test_a_symlink_inside_the_repository_is_followed(tmp_path):
    repo = make_repo(tmp_path)
    (repo / "shared").mkdir()
    (repo / "shared" / f"{PID}.yaml").write_text(EXAMPLE.read_text())
    (repo / "pipelines" / f"{PID}.yaml").symlink_to(repo / "shared" / f"{PID}.yaml")
    assert validate(repo)[0] == 0


# --- YAML bounds and encodings -----------------------------------------------------------------------

def merge_bomb(depth: int = 29) -> str:
    lines = ["a0: &a0 {x: 1}"] + [f"a{i}: &a{i}\n  <<: [*a{i - 1}, *a{i - 1}]" for i in range(1, depth + 1)]
    return "\n".join(lines) + "\n"


def test_merge_key_bomb_is_a_located_problem_not_a_type_error(tmp_path):
    started = time.monotonic()
    with pytest.raises(YamlError) as caught:
        load_yaml_text(merge_bomb(), display="bomb.yaml")
    assert time.monotonic() - started < 5
    assert "document expands to more than 200000 values: aliases (*name) or merge keys (<<) repeat the same " \
           "content over and over" in caught.value.problem.render()
    code, problems, output = validate(make_repo(tmp_path, merge_bomb()))
    assert code == 1 and "Traceback" not in output
    assert problems[0].startswith(f"pipelines/{PID}.yaml:") and "expands to more than 200000 values" in problems[0]


def test_billion_laughs_with_plain_aliases_is_bounded():
    lines = ['l0: &l0 ["lol"]'] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    with pytest.raises(YamlError, match="expands to more than"):
        load_yaml_text("\n".join(lines))


def test_lone_surrogate_is_a_located_problem(tmp_path):
    text = EXAMPLE.read_text()
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.strip().startswith("table:"))
    hostile = "\n".join(row if i != line else row.split(":")[0] + ': "users\\ud800"'
                        for i, row in enumerate(text.splitlines(), 1)) + "\n"
    code, problems, output = validate(make_repo(tmp_path, hostile))
    assert code == 1
    assert problems == [f"pipelines/{PID}.yaml:{line}:12: spec.sink.table: invalid text: an escape such as \\ud800 "
                        "stands for half of a UTF-16 surrogate pair, which is no character (JSON and the GlassFlow "
                        "API need valid UTF-8)"]
    output.encode("utf-8")  # the report itself is valid UTF-8


def test_surrogate_in_a_key_is_a_problem_too():
    with pytest.raises(YamlError, match="surrogate"):
        load_yaml_text('"k\\udfff": 1\n')


def test_invalid_utf8_is_located_at_its_byte(tmp_path):
    repo = make_repo(tmp_path)
    (repo / "pipelines" / f"{PID}.yaml").write_bytes(b"apiVersion: gftune/v1\nkind: Pi\xffpeline\n")
    code, problems, _ = validate(repo)
    assert code == 1 and problems == [f"pipelines/{PID}.yaml:2:9: $: file is not valid UTF-8 (byte 0xff)"]


# --- masking never breaks output ----------------------------------------------------------------------

@pytest.mark.parametrize("password", ['","', '"', "\\\\", "{", "a"])
def test_a_hostile_literal_secret_cannot_break_json_output(tmp_path, password):
    text = EXAMPLE.read_text().replace("${env:CLICKHOUSE_PASSWORD}", json.dumps(password))
    with secrets.masker.isolated():
        code, problems, output = validate(make_repo(tmp_path, text))  # validate() parses the JSON
        assert code == 1 and any("literal secret" in p for p in problems)
        assert "pipelines/deduplication-demo-pipeline.yaml" in output  # ordinary text left alone


def test_punctuation_only_secrets_are_masked_only_as_tokens():
    masker = secrets.Masker()
    masker.add(",")
    assert masker.mask('a, b; password: ","') == 'a, b; password: "***"'
    assert json.loads(masker.dumps({"k": ",", "list": ["a", ","]})) == {"k": "***", "list": ["a", "***"]}
