"""Code layers (image/layers.py via image/build.py `code_layers`) against real throwaway repositories: a
layer depends on its path's files only, never on the commit that is released."""
from __future__ import annotations

import io
import tarfile

import yaml

from slipway.image.build import code_layers
from slipway.image.layers import ENTRY_MTIME
from slipway.project.config import load_project
from slipway.project.git import read_git_facts
from tests.kit.repo import EXAMPLE_LAYOUT, commit_all, git


def _repo(root):
    (root / "flows").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "flows" / "hello.py").write_text("print('hello')\n")
    (root / "data" / "seeds.csv").write_text("id\n1\n")
    (root / "deployments.yaml").write_text("deployments: []\n")
    (root / "slipway.yaml").write_text(yaml.safe_dump({
        "image": {"name": "layers-test", **EXAMPLE_LAYOUT},
        "environments": {"local": {"registry": {"kind": "generic", "address": "localhost:9"}, "repository": "x",
                                   "prefect": {"api_url": "http://127.0.0.1:9/api"},
                                   "work_pool": {"name": "p", "type": "docker"}}}}))
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "A")
    return root


def _layers(root):
    return {layer.name: layer for layer in code_layers(load_project(root), read_git_facts(root))}


def test_an_unchanged_path_keeps_its_layer_digest_at_another_commit_and_time(tmp_path):
    root = _repo(tmp_path / "repo")
    a = _layers(root)
    (root / "README.md").write_text("a README-only commit, a month later\n")
    commit_all(root, "README", date="2026-02-03T04:05:06+00:00")
    assert {name: layer.digest for name, layer in _layers(root).items()} == \
        {name: layer.digest for name, layer in a.items()}
    (root / "flows" / "hello.py").write_text("print('hello again')\n")
    commit_all(root, "a flow", date="2026-03-04T05:06:07+00:00")
    b = _layers(root)
    assert b["data"].digest == a["data"].digest and b["flows"].digest != a["flows"].digest
    with tarfile.open(fileobj=io.BytesIO(b["flows"].tar)) as tar:
        assert {member.mtime for member in tar.getmembers()} == {ENTRY_MTIME}


def test_a_shallow_clone_writes_the_same_layers(tmp_path):
    """CI's `--depth 1` clone knows no history of a path: its layers are the full clone's, byte for byte."""
    root = _repo(tmp_path / "repo")
    (root / "flows" / "hello.py").write_text("print('two')\n")
    commit_all(root, "B", date="2026-02-03T04:05:06+00:00")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{root}", str(shallow))
    assert [layer.blob for layer in code_layers(load_project(shallow), read_git_facts(shallow))] == \
        [layer.blob for layer in code_layers(load_project(root), read_git_facts(root))]
