"""`python build.py push` against a real registry (Debian's docker-registry with htpasswd auth)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import requests

from slipway.errors import SlipwayError
from slipway.image.build import REVISION_LABEL
from slipway.registry import MANIFEST_TYPES, registry_client
from tests.kit.repo import REPO_ROOT
from tests.push.conftest import PASSWORD, USER, push_head, quiet_reporter

pytestmark = pytest.mark.docker


def cli(root, *args, env_overrides=None):
    env = {**os.environ, **(env_overrides or {})}
    return subprocess.run([sys.executable, str(REPO_ROOT / "build.py"), *args, "--root", str(root)],
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300, check=False)


def registry_manifest(registry, repository, reference):
    """The manifest as the registry serves it, read without slipway: (Docker-Content-Digest, body)."""
    resp = requests.get(f"{registry.url}/v2/{repository}/manifests/{reference}", auth=(USER, PASSWORD),
                        headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=10)
    resp.raise_for_status()
    return resp.headers["Docker-Content-Digest"], resp.content


def test_push_records_the_registry_digest_and_a_second_push_uploads_nothing(
        docker_engine, registry, project_repo, build_head_image):
    project, facts, _ = build_head_image(project_repo)
    repository = project.environment("local").repository
    uploads = f"/v2/{repository}/blobs/uploads/"
    manifests = f"/v2/{repository}/manifests/"

    result = push_head(project, "local", quiet_reporter(), facts)

    served_digest, body = registry_manifest(registry, repository, facts.sha)
    assert result["digest"] == served_digest == "sha256:" + hashlib.sha256(body).hexdigest()
    assert result["repository"] == f"{registry.address}/{repository}"
    assert result["reference"] == f"{registry.address}/{repository}@{served_digest}"
    assert result["tags"] == [facts.sha, facts.short_sha]
    assert sorted(registry.tags(repository)) == sorted(result["tags"])
    for tag in result["tags"]:  # every tag names the same manifest
        assert registry_manifest(registry, repository, tag)[0] == served_digest
    reader = registry_client(project.environment("local"), "local")  # what `releases`/`deploy` read back
    assert sorted(reader.list_tags()) == sorted(result["tags"])
    manifest = reader.get_manifest(result["digest"])
    config = json.loads(reader.get_blob(manifest["config"]["digest"]))
    assert config["config"]["Labels"][REVISION_LABEL] == facts.sha
    first_uploads = registry.count("POST", uploads)
    first_manifest_puts = registry.count("PUT", manifests)
    assert first_uploads >= 1 and first_manifest_puts >= 1  # the observable below is not vacuous

    second = cli(project_repo, "push", "--env", "local", "--json")

    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == result
    assert registry.count("POST", uploads) == first_uploads  # no blob upload started
    assert registry.count("PUT", manifests) == first_manifest_puts  # no manifest written
    assert "nothing uploaded" in second.stderr


def test_wrong_password_fails_with_one_line_and_leaves_no_tag(docker_engine, registry, project_repo,
                                                              build_head_image):
    project, _, image = build_head_image(project_repo)
    repository = project.environment("local").repository
    wrong = "not-the-password-93b1"

    proc = cli(project_repo, "push", "--env", "local", env_overrides={"PUSH_TEST_PASSWORD": wrong})

    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: registry ") and "rejected" in lines[-1]
    assert "$PUSH_TEST_PASSWORD" in lines[-1]  # names where the credentials come from...
    assert wrong not in proc.stderr + proc.stdout  # ...never the secret itself
    assert [ln for ln in lines if ln.startswith("error:")] == [lines[-1]]
    assert registry.tags(repository) == []
    assert registry.count("POST", f"/v2/{repository}/blobs/uploads/") == 0
    image.reload()
    assert not [t for t in image.tags if t.startswith(registry.address)]  # no registry tag left locally


def test_dirty_image_goes_only_to_local(docker_engine, registry, project_repo, build_head_image):
    (project_repo / "scratch.txt").write_text("uncommitted work\n")
    project, facts, _ = build_head_image(project_repo)
    assert facts.dirty and all(tag.endswith("-dirty") for tag in facts.image_tags())
    repository = project.environment("shared").repository

    with pytest.raises(SlipwayError, match=r"uncommitted changes, .*-dirty build, which cannot be released to 'shared'"):
        push_head(project, "shared", quiet_reporter(), facts)
    assert registry.tags(repository) == []

    result = push_head(project, "local", quiet_reporter(), facts)
    assert sorted(registry.tags(repository)) == sorted(facts.image_tags())
    assert result["digest"] == registry_manifest(registry, repository, f"{facts.sha}-dirty")[0]


def test_unreachable_registry_is_one_clear_line(docker_engine, project_repo, build_head_image):
    build_head_image(project_repo)

    proc = cli(project_repo, "push", "--env", "nowhere")

    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: registry localhost:") and "is unreachable: connection refused" in last
    assert "environments.nowhere.registry.address" in last and "start it, or check the address" in last
    assert " up`" not in last  # `up` starts the local environment's registry, not this one: never suggested


def test_no_image_for_head_tells_to_run_make_image(docker_engine, registry, project_repo):
    proc = cli(project_repo, "push", "--env", "local")

    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no image push-test-") and "run `python build.py image`" in last


def test_missing_credentials_variable_names_the_field(docker_engine, registry, project_repo, build_head_image,
                                                      monkeypatch):
    build_head_image(project_repo)
    monkeypatch.delenv("PUSH_TEST_PASSWORD")

    proc = cli(project_repo, "push", "--env", "local")

    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: environment variable PUSH_TEST_PASSWORD (slipway.yaml environments.local.registry.password_env) "
        "is not set; export PUSH_TEST_PASSWORD with the registry password")
