"""gitrepo against real git repositories in a temp dir."""

import git

from gftune.gitrepo import current_commit, git_info


def test_outside_a_repository_there_is_no_git_info(tmp_path):
    assert git_info(tmp_path) is None
    assert current_commit(tmp_path) is None


def test_commit_branch_and_dirty_flag(tmp_path):
    repo = git.Repo.init(tmp_path, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "t").set_value("user", "email", "t@example.invalid")
    assert git_info(tmp_path) is None  # no commit yet
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "a.yaml").write_text("x: 1\n")
    repo.index.add(["pipelines/a.yaml"])
    sha = repo.index.commit("first").hexsha
    info = git_info(tmp_path / "pipelines")
    assert info.to_dict() == {"commit": sha, "branch": "main", "dirty": False}
    (tmp_path / "plan.json").write_text("{}")  # an untracked plan file is not a change of desired state
    assert not git_info(tmp_path).dirty
    (tmp_path / "pipelines" / "b.yaml").write_text("x: 2\n")
    assert git_info(tmp_path).dirty
    (tmp_path / "pipelines" / "b.yaml").unlink()
    (tmp_path / "pipelines" / "a.yaml").write_text("x: 3\n")
    assert git_info(tmp_path).dirty
    repo.git.checkout(sha)
    assert git_info(tmp_path).branch is None


def test_read_at_commit(tmp_path):
    from gftune.gitrepo import read_at_commit

    repo = git.Repo.init(tmp_path, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "t").set_value("user", "email", "t@example.invalid")
    target = tmp_path / "pipelines" / "a.yaml"
    target.parent.mkdir()
    target.write_text("x: 1\n")
    repo.index.add(["pipelines/a.yaml"])
    first = repo.index.commit("first").hexsha
    target.write_text("x: 2\n")
    repo.index.add(["pipelines/a.yaml"])
    repo.index.commit("second")
    assert read_at_commit(tmp_path, first, target) == "x: 1\n"
    assert read_at_commit(tmp_path, "0" * 40, target) is None
    assert read_at_commit(tmp_path, first, tmp_path / "pipelines" / "missing.yaml") is None
    assert read_at_commit(tmp_path / "nowhere", first, target) is None
