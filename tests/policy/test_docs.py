"""The user-facing references stay in step with the code they describe."""

from pathlib import Path

from gftune.policy.signals import SIGNALS, markdown_reference

ROOT = Path(__file__).resolve().parents[2]


def test_signals_reference_is_the_library():
    text = (ROOT / "docs" / "signals.md").read_text()
    assert markdown_reference() in text, "regenerate docs/signals.md from gftune.policy.signals.markdown_reference()"
    for name in SIGNALS:
        assert f"| `{name}` |" in text


def test_every_built_in_policy_is_documented():
    text = (ROOT / "docs" / "policies.md").read_text()
    for path in sorted((ROOT / "policies").glob("*.yaml")):
        assert f"| `{path.stem}` |" in text, path.stem
