"""What a remembered redeploy is keyed by and how it is kept (slipway/deploy/unchanged.py), fast. Whether a
real server's state is compared rightly is tested against real servers in tests/deploy/test_unchanged.py."""
from __future__ import annotations

import dataclasses
import json
import os
import time

import pytest

from slipway.deploy import unchanged
from slipway.deploy.unchanged import Inputs
from tests.kit.repo import commit_all, git


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "a.txt").write_text("a\n")
    commit_all(root, "first")
    return root


def inputs(root, **changes) -> Inputs:
    base = Inputs(root, "prod", "https://prefect.example/api", "registry.example/team/app", "a" * 40,
                  "sha256:" + "1" * 64, False, False)
    return dataclasses.replace(base, **changes)


def test_every_input_of_the_plan_is_in_the_key(repo):
    key = inputs(repo).key()
    assert inputs(repo).key() == key  # the same inputs, the same key
    for field, other in [("environment", "staging"), ("api_url", "https://other.example/api"),
                         ("repository", "registry.example/team/other"), ("commit", "b" * 40),
                         ("digest", "sha256:" + "2" * 64), ("allow_downgrade", True), ("prune", True)]:
        assert inputs(repo, **{field: other}).key() != key, field


def test_slipway_code_and_prefect_versions_are_in_the_key(repo, monkeypatch):
    key = inputs(repo).key()
    monkeypatch.setattr(unchanged, "_slipway_code", lambda: "another slipway")
    assert inputs(repo).key() != key
    monkeypatch.undo()
    monkeypatch.setattr(unchanged, "_version", lambda name: "0.0.0")
    assert inputs(repo).key() != key


def test_kept_in_the_git_directory_written_whole_and_another_format_is_not_read(repo):
    where = inputs(repo)
    unchanged._store(where, {"format": unchanged.FORMAT, "key": "k"})
    path = repo / ".git" / "slipway" / "unchanged-prod.json"
    assert json.loads(path.read_text()) == {"format": unchanged.FORMAT, "key": "k"}
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    assert git(repo, "status", "--porcelain") == ""  # never part of the tree
    assert unchanged._load(where) == {"format": unchanged.FORMAT, "key": "k"}
    path.write_text(json.dumps({"format": unchanged.FORMAT + 1, "key": "k"}))
    assert unchanged._load(where) is None
    path.write_text("{half a fi")
    assert unchanged._load(where) is None


def test_a_killed_runs_temporary_file_is_swept_by_the_next_and_a_running_ones_is_not(repo):
    where = inputs(repo)
    folder = repo / ".git" / "slipway"
    folder.mkdir(parents=True)
    killed = folder / "unchanged-prod.jsonab12cd.tmp"  # mkstemp's name: the file's, random, .tmp
    killed.write_text("{half")
    old = time.time() - unchanged.STALE_TMP_SECONDS - 60
    os.utime(killed, (old, old))
    running = folder / "unchanged-prod.jsonef34gh.tmp"
    running.write_text("{being written")
    unchanged._store(where, {"format": unchanged.FORMAT, "key": "k"})
    assert sorted(p.name for p in folder.iterdir()) == ["unchanged-prod.json", running.name]
