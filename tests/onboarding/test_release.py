"""The release process (issue 14): the version a user is told to install or pin is the one being built,
and the changelog has a section for it. The artefacts themselves are built and checked by ./scripts/test
(python -m build, twine check --strict, scripts/check_dist.py)."""

from __future__ import annotations

import re
import subprocess

from gftune import __version__
from tests.support.repos import ROOT

README = (ROOT / "README.md").read_text()
CHANGELOG = (ROOT / "CHANGELOG.md").read_text()


def test_the_changelog_has_the_current_version_and_an_unreleased_section():
    assert "## [Unreleased]" in CHANGELOG
    assert re.search(rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", CHANGELOG, re.M), \
        f"CHANGELOG.md has no section for {__version__}"
    assert CHANGELOG.index("## [Unreleased]") < CHANGELOG.index(f"## [{__version__}]")


def test_every_version_the_readme_names_is_the_current_one():
    pinned = re.findall(r"rev: v(\d+\.\d+\.\d+)", README)
    installed = re.findall(r"gftune@v(\d+\.\d+\.\d+)", README) + re.findall(r"gftune-(\d+\.\d+\.\d+)-py3", README)
    assert pinned and installed, "the README shows how to pin and how to install a release"
    assert set(pinned + installed) == {__version__}


def test_the_version_is_written_once():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = {attr = "gftune.__version__"}' in pyproject


def test_a_release_tag_if_any_matches_its_version():
    """Where tags exist (a full clone), a tag vX.Y.Z points at a commit whose gftune.__version__ is X.Y.Z."""
    tags = subprocess.run(["git", "-C", str(ROOT), "tag", "--list", "v*"], capture_output=True, text=True).stdout
    for tag in tags.split():
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{tag}:gftune/__init__.py"],
                                capture_output=True, text=True, check=True).stdout
        assert f'__version__ = "{tag[1:]}"' in source, f"tag {tag} is on a commit with another version"
