"""Git facts, tag naming and dirty detection, against real throwaway repositories."""
from __future__ import annotations

import subprocess
import sys

import pytest

from slipway.errors import SlipwayError
from slipway.project.git import docker_tag_for, is_ancestor, read_git_facts, repository_url
from tests.kit.repo import git


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.txt").write_text("one\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_facts_of_a_clean_commit(repo):
    facts = read_git_facts(repo)
    assert facts.sha == git(repo, "rev-parse", "HEAD")
    assert len(facts.sha) == 40 and facts.short_sha == facts.sha[:12]
    assert facts.dirty is False
    assert facts.tag is None
    assert facts.commit_time == "2026-01-02T03:04:05+00:00"  # the committer date from GIT_ENV, not now
    assert facts.image_tags() == [facts.sha, facts.sha[:12]]
    assert facts.version == facts.sha[:12]


def test_exact_tag_is_added_and_sanitized(repo):
    git(repo, "tag", "release/1.2")
    facts = read_git_facts(repo)
    assert facts.tag == "release/1.2"
    assert facts.image_tags()[-1] == "release-1.2"
    assert facts.version == "release/1.2"


def test_tag_on_an_older_commit_is_not_used(repo):
    git(repo, "tag", "v1")
    (repo / "a.txt").write_text("two\n")
    git(repo, "commit", "-q", "-am", "second")
    assert read_git_facts(repo).tag is None


@pytest.mark.parametrize("change", ["modify", "untracked", "staged"])
def test_dirty_tree_suffixes_every_tag(repo, change):
    if change == "modify":
        (repo / "a.txt").write_text("changed\n")
    elif change == "untracked":
        (repo / "new.py").write_text("x = 1\n")
    else:
        (repo / "b.txt").write_text("b\n")
        git(repo, "add", "b.txt")
    facts = read_git_facts(repo)
    assert facts.dirty is True
    assert all(t.endswith("-dirty") for t in facts.image_tags())


def test_ignored_files_do_not_make_the_tree_dirty(repo):
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore logs")
    (repo / "run.log").write_text("noise\n")
    assert read_git_facts(repo).dirty is False


def test_not_a_repository(tmp_path):
    with pytest.raises(SlipwayError, match="is not a Git repository"):
        read_git_facts(tmp_path)


def test_repository_without_commits(tmp_path):
    git(tmp_path, "init", "-q")
    with pytest.raises(SlipwayError, match="has no commit yet"):
        read_git_facts(tmp_path)


@pytest.mark.parametrize("git_tag, docker_tag", [
    ("v1.2.3", "v1.2.3"), ("release/2026-01", "release-2026-01"), ("-odd", "_odd"), ("a+b", "a-b"),
])
def test_docker_tag_for(git_tag, docker_tag):
    assert docker_tag_for(git_tag) == docker_tag


def test_is_ancestor(repo):
    first = git(repo, "rev-parse", "HEAD")
    (repo / "a.txt").write_text("two\n")
    git(repo, "commit", "-q", "-am", "second")
    second = git(repo, "rev-parse", "HEAD")
    assert is_ancestor(repo, first, second) is True
    assert is_ancestor(repo, second, first) is False
    assert is_ancestor(repo, first, first) is False
    assert is_ancestor(repo, "0" * 40, second) is None


def test_cli_refuses_a_dirty_tree_with_one_line(repo, tmp_path):
    """`build.py image` on a dirty tree: one error line naming the cause and the fix, exit 1."""
    from tests.kit.repo import REPO_ROOT
    (repo / "slipway.yaml").write_text("image: {name: x}\nenvironments: {}\n")
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "build.py"), "image", "--root", str(repo)],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "uncommitted or untracked changes" in lines[0] and "--allow-dirty" in lines[0]


def test_a_file_the_release_needs_that_git_ignores_is_named_with_its_rule(repo):
    """GitHub's Python .gitignore has `build/` and `lib/`: a flow under either exists on this machine only.
    The check names the file and the rule; a tracked file is kept whatever the rules say."""
    from slipway.project.git import ignore_rules, refuse_ignored
    from tests.kit.files import PYTHON_GITIGNORE

    (repo / ".gitignore").write_text(PYTHON_GITIGNORE.read_text())
    for path in ("pipelines/build/flow.py", "lib/helpers.py", "pipelines/ok.py"):
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text("x = 1\n")
    git(repo, "add", ".gitignore", "pipelines/ok.py")
    git(repo, "add", "-f", "lib/helpers.py")  # tracked in spite of `lib/`
    git(repo, "commit", "-q", "-m", "flows")
    rules = ignore_rules(repo, ["pipelines/build/flow.py", "lib/helpers.py", "pipelines/ok.py", "missing.py"])
    assert set(rules) == {"pipelines/build/flow.py"}
    assert rules["pipelines/build/flow.py"].startswith(".gitignore:") and rules["pipelines/build/flow.py"].endswith(":build/")
    assert read_git_facts(repo).dirty is False  # what the dirty check cannot see
    with pytest.raises(SlipwayError) as told:
        refuse_ignored(repo, {"pipelines/build/flow.py": "the entry point of 'etl'", "pipelines/ok.py": "x"})
    line = told.value.line()
    assert line.startswith("pipelines/build/flow.py (the entry point of 'etl') is ignored by Git (.gitignore:")
    assert "git add -f pipelines/build/flow.py" in line and "\n" not in line
    refuse_ignored(repo, {"pipelines/ok.py": "x", "lib/helpers.py": "y"})  # nothing hidden: no error


@pytest.mark.parametrize(("remote", "source"), [
    ("git@github.com:team/app.git", "https://github.com/team/app"),
    ("ssh://git@gitlab.example.com:2222/g/app.git", "https://gitlab.example.com/g/app"),
    ("git://git.example.org/app.git", "https://git.example.org/app"),
    ("https://x-access-token:s3cret@github.com/team/app.git", "https://github.com/team/app"),
    ("http://git.internal:8080/team/app", "http://git.internal:8080/team/app"),
    ("git@ssh.dev.azure.com:v3/org/proj/app", "https://dev.azure.com/org/proj/_git/app"),
])
def test_the_source_is_the_origin_remotes_web_address(repo, remote, source):
    git(repo, "remote", "add", "origin", remote)
    assert read_git_facts(repo).source == source
    assert repository_url(source) == source  # already an address: unchanged


@pytest.mark.parametrize("remote", [None, "/srv/git/app.git", "file:///srv/git/app.git", "../app"])
def test_a_local_origin_or_none_gives_no_source(repo, tmp_path, remote):
    """A path names the building machine's disk, not the repository: no source (and no image label)."""
    if remote is not None:
        git(repo, "remote", "add", "origin", remote)
    assert read_git_facts(repo).source is None
