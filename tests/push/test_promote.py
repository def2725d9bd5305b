"""`build.py promote` between real registries (Debian's docker-registry, started by the test kit): one open
(the source, `local`), one with htpasswd authentication (the destination, `prod`), a third on a fixed port
that is stopped mid-copy, and ECR through moto (its API only: AWS cannot be reached here; the image itself
goes to the htpasswd registry, which accepts only the password carried by moto's token).

The images are tiny (FROM scratch: a small file, then a larger one) and the upload chunk is made small, so a
copy goes through every path — monolithic and chunked upload, mount, skip — in a few seconds. The engine is
only used to build and push the source image: promote itself must not make a single engine call.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import docker
import pytest
import yaml

from slipway.image.build import REVISION_LABEL, VERSION_LABEL
from slipway.project.config import load_project
from slipway.project.git import read_git_facts
from slipway.registry import MANIFEST_TYPES, registry_client
from slipway.registry.client import RawManifest
from slipway.registry.copy import copy_image
from slipway.registry.promotion import record_tag
from slipway.registry.releases import list_releases
from tests.kit.net import free_port
from tests.kit.repo import EXAMPLE_LAYOUT, REPO_ROOT, git
from tests.push.conftest import ECR_ACCOUNT, PASSWORD, USER, push_head, quiet_reporter
from tests.push.test_cloud_registries import moto_ecr  # noqa: F401  (the ECR fixture)

pytestmark = pytest.mark.docker

TOKEN_USER, TOKEN_PASSWORD = "promote-token-user", "promote-token-secret-61d"
SMALL_CHUNK = 64 * 1024  # upload chunk in these tests: the larger layer goes up in several PATCHes
PAYLOAD_BYTES = 300 * 1024  # random (incompressible) bytes of the larger layer


@pytest.fixture(scope="module")
def open_registry(start_registry):
    return start_registry("promote")


@pytest.fixture(scope="module")
def flaky_registry(start_registry):
    """An open registry on a fixed port: stop_serving() and start_again() keep its data and address."""
    return start_registry("promote-flaky", port=free_port())


@pytest.fixture(scope="module")
def token_registry(start_registry):
    """A registry with Bearer-token authentication (as ACR, Harbor, Docker Hub): the real registry checks every
    token's grants; the kit's token service issues them (tests/kit/token_auth.py) and records their claims."""
    from tests.kit.token_auth import TokenService

    tokens = TokenService(TOKEN_USER, TOKEN_PASSWORD)
    env, files = tokens.registry_settings()
    registry = start_registry("promote-tokens", env=env, files=files)
    yield tokens, registry
    tokens.close()


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr("slipway.registry.client.CHUNK_BYTES", SMALL_CHUNK)


def write_config(root: Path, name: str, source_address: str, dest_address: str, flaky_address: str,
                 token_address: str) -> None:
    common = {"prefect": {"api_url": "http://127.0.0.1:9/api"}, "work_pool": {"name": "p", "type": "docker"}}
    open_source = {"kind": "generic", "address": source_address, "insecure": True}
    secured = {"kind": "generic", "address": dest_address, "insecure": True,
               "username_env": "PUSH_TEST_USER", "password_env": "PUSH_TEST_PASSWORD"}
    tokens = {"kind": "generic", "address": token_address, "insecure": True,
              "username_env": "TOKEN_TEST_USER", "password_env": "TOKEN_TEST_PASSWORD"}
    config = {"image": {"name": name, **EXAMPLE_LAYOUT}, "environments": {
        "local": {"registry": open_source, "repository": name, **common},
        "prod": {"registry": secured, "repository": f"prod/{name}", **common},
        # The source's own registry, another repository: blobs are mounted, not sent.
        "neighbour": {"registry": open_source, "repository": f"neighbour/{name}", **common},
        "flaky": {"registry": {**open_source, "address": flaky_address}, "repository": name, **common},
        "aws": {"registry": {"kind": "ecr", "address": dest_address, "account_id": ECR_ACCOUNT, "region": "eu-west-1",
                             "insecure": True}, "repository": f"aws/{name}", **common},
        # Two repositories of the Bearer-token registry.
        "tokens": {"registry": tokens, "repository": f"tokens/{name}", **common},
        "tokens-next": {"registry": tokens, "repository": f"tokens-next/{name}", **common},
    }}
    (root / "slipway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def repo(tmp_path, open_registry, registry, flaky_registry, token_registry, monkeypatch):
    name = f"promote-{uuid.uuid4().hex[:10]}"
    root = tmp_path / "repo"
    root.mkdir()
    write_config(root, name, open_registry.address, registry.address, flaky_registry.address,
                 token_registry[1].address)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "release")
    git(root, "tag", "v1.0.0")
    monkeypatch.setenv("PUSH_TEST_USER", USER)
    monkeypatch.setenv("PUSH_TEST_PASSWORD", PASSWORD)
    monkeypatch.setenv("TOKEN_TEST_USER", TOKEN_USER)
    monkeypatch.setenv("TOKEN_TEST_PASSWORD", TOKEN_PASSWORD)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    return root


@pytest.fixture
def released(docker_engine, repo, tmp_path):
    """Build HEAD's image (two layers, labelled like `make image`) and push it to `local`: the source."""
    built: list[str] = []

    def release(env: str = "local", payload: bytes | None = None) -> dict:
        project, facts = load_project(repo), read_git_facts(repo)
        context = tmp_path / f"context-{uuid.uuid4().hex[:6]}"
        context.mkdir()
        (context / "small.txt").write_text(f"{facts.sha} {uuid.uuid4()}\n")
        (context / "large.bin").write_bytes(payload or os.urandom(PAYLOAD_BYTES))
        (context / "Dockerfile").write_text("FROM scratch\nCOPY small.txt /small.txt\nCOPY large.bin /large.bin\n")
        name, tags = project.config.image.name, facts.image_tags()
        image, _ = docker_engine.images.build(path=str(context), tag=f"{name}:{tags[0]}", rm=True, labels={
            REVISION_LABEL: facts.sha, VERSION_LABEL: facts.version})
        for tag in tags[1:]:
            image.tag(name, tag)
        built.append(image.id)
        return push_head(project, env, quiet_reporter())

    yield release
    for image_id in built:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_engine.images.remove(image_id, force=True)


@pytest.fixture
def block_engine(monkeypatch):
    """Call it once the source image is pushed: from then on any attempt to reach a Docker engine fails."""
    def refuse(*args, **kwargs):
        raise AssertionError("promote made a Docker engine call")

    def block() -> None:
        monkeypatch.setattr(docker.api.client.APIClient, "__init__", refuse)
        monkeypatch.setattr("slipway.pipeline.docker_client", refuse)

    return block


@pytest.fixture
def cli(capsys):
    from slipway.cli import main

    def run(root: Path, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, "--root", str(root)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def raw_manifest(registry, repository: str, reference: str) -> tuple[str, bytes]:
    import requests

    resp = requests.get(f"{registry.url}/v2/{repository}/manifests/{reference}", auth=registry.auth,
                        headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=10)
    resp.raise_for_status()
    return resp.headers["Docker-Content-Digest"], resp.content


def blob_digests(manifest: bytes) -> list[str]:
    parsed = json.loads(manifest)
    return [parsed["config"]["digest"], *(layer["digest"] for layer in parsed["layers"])]


def completed_uploads(registry, repository: str) -> list[str]:
    """Digests of the blob uploads the registry completed in `repository` (one closing PUT each)."""
    pattern = rf'method=PUT .*uri="?/v2/{re.escape(repository)}/blobs/uploads/[^ ]*digest=sha256%3A([0-9a-f]+)'
    found = []
    for line in registry.access_log().splitlines():
        match = re.search(pattern, line)
        if match and "http.response.status=201" in line:
            found.append("sha256:" + match.group(1))
    return found


# -- copies -------------------------------------------------------------------------------------------------

def test_promote_between_two_registries_keeps_the_digest_and_tags_without_an_engine(
        repo, released, open_registry, registry, cli, block_engine):
    source = released()
    block_engine()
    facts = read_git_facts(repo)
    name = load_project(repo).config.image.name
    source_digest, source_body = raw_manifest(open_registry, name, facts.sha)
    blobs = blob_digests(source_body)
    sizes = {d["digest"]: d["size"] for d in [json.loads(source_body)["config"], *json.loads(source_body)["layers"]]}

    code, out, err = cli(repo, "promote", "--from", "local", "--to", "prod", "--ref", "v1.0.0", "--any", "--json")

    assert code == 0, err
    result = json.loads(out)
    dest_repo = f"prod/{name}"
    assert result == {"from": "local", "to": "prod", "digest": source["digest"],
                      "reference": f"{registry.address}/{dest_repo}@{source['digest']}",
                      "tags": [facts.sha, facts.short_sha, "v1.0.0"], "copied_blobs": 3,
                      "copied_bytes": sum(sizes.values())}
    dest_digest, dest_body = raw_manifest(registry, dest_repo, facts.sha)
    assert dest_digest == source_digest == source["digest"] and dest_body == source_body  # byte for byte
    for tag in result["tags"]:
        assert registry.digest(dest_repo, tag) == source_digest
    assert sorted(registry.tags(dest_repo)) == sorted([*result["tags"], record_tag(source_digest)])
    assert sorted(completed_uploads(registry, dest_repo)) == sorted(
        [*blobs, "sha256:" + hashlib.sha256(b"{}").hexdigest()])  # + the promotion record's empty blob
    patches = registry.count("PATCH", f"/v2/{dest_repo}/blobs/uploads/")
    assert patches >= PAYLOAD_BYTES // SMALL_CHUNK  # the large layer was streamed in chunks
    # Where it came from, as `releases` lists it.
    (listed,) = list_releases(registry_client(load_project(repo).environment("prod"), "prod"))
    assert listed.digest == source_digest and listed.promoted_from.environment == "local"
    assert listed.promoted_from.repository == f"{open_registry.address}/{name}"

    uploads = registry.count("POST", f"/v2/{dest_repo}/blobs/uploads/")
    puts = registry.count("PUT", f"/v2/{dest_repo}/manifests/")
    code, out, err = cli(repo, "promote", "--from", "local", "--to", "prod", "--ref", facts.sha, "--any", "--json")

    assert code == 0, err
    assert json.loads(out)["copied_blobs"] == 0 and json.loads(out)["digest"] == source_digest
    assert registry.count("POST", f"/v2/{dest_repo}/blobs/uploads/") == uploads  # nothing sent again
    assert registry.count("PUT", f"/v2/{dest_repo}/manifests/") == puts  # no tag rewritten
    assert "already holds" in err


def test_promote_within_one_registry_mounts_every_blob(repo, released, open_registry, cli, block_engine):
    source = released()
    block_engine()
    name = load_project(repo).config.image.name
    neighbour = f"neighbour/{name}"

    code, out, err = cli(repo, "promote", "--from", "local", "--to", "neighbour", "--ref", "v1.0.0", "--any",
                         "--json")

    assert code == 0, err
    assert json.loads(out)["digest"] == source["digest"] and json.loads(out)["copied_blobs"] == 0
    assert open_registry.digest(neighbour, "v1.0.0") == source["digest"]
    mounts = [ln for ln in open_registry.access_log().splitlines()
              if f"/v2/{neighbour}/blobs/uploads/?mount=sha256" in ln and "http.response.status=201" in ln]
    assert len(mounts) == 3  # config and both layers: linked by the registry, no byte sent
    assert open_registry.count("PATCH", f"/v2/{neighbour}/blobs/uploads/") == 0
    assert completed_uploads(open_registry, neighbour) == ["sha256:" + hashlib.sha256(b"{}").hexdigest()]


def test_promote_with_bearer_tokens_mounts_with_a_token_that_may_read_the_source(
        repo, released, token_registry, open_registry, cli, block_engine):
    """ACR-like registries grant each token per repository: a mount needs pull on the source repository as well
    as push on the destination, in one token; the registry itself checks the grants."""
    tokens, registry = token_registry
    source = released("tokens")
    block_engine()
    name = load_project(repo).config.image.name

    code, out, err = cli(repo, "promote", "--from", "tokens", "--to", "tokens-next", "--ref", "v1.0.0", "--any",
                         "--json")

    assert code == 0, err
    assert json.loads(out)["digest"] == source["digest"] and json.loads(out)["copied_blobs"] == 0  # all mounted
    mounts = [ln for ln in registry.access_log().splitlines()
              if f"/v2/tokens-next/{name}/blobs/uploads/?mount=sha256" in ln and "http.response.status=201" in ln]
    assert len(mounts) == 3
    grants = [sorted((a["name"], tuple(a["actions"])) for a in claims["access"]) for claims in tokens.issued]
    assert sorted([(f"tokens-next/{name}", ("pull", "push")), (f"tokens/{name}", ("pull",))]) in grants

    # And out of the token registry, streamed to another registry.
    code, out, err = cli(repo, "promote", "--from", "tokens", "--to", "local", "--ref", "v1.0.0", "--any", "--json")

    assert code == 0, err
    assert json.loads(out)["copied_blobs"] == 3 and open_registry.digest(name, "v1.0.0") == source["digest"]


def test_an_index_is_copied_child_by_child_with_its_digest(repo, released, open_registry, registry):
    released()
    project = load_project(repo)
    source = registry_client(project.environment("local"), "local")
    facts = read_git_facts(repo)
    child = source.manifest_raw(facts.sha)
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": child.media_type, "digest": child.digest, "size": len(child.body),
         "platform": {"architecture": "amd64", "os": "linux"}}]}, indent=1).encode()
    raw = RawManifest(index, "application/vnd.oci.image.index.v1+json", "sha256:" + hashlib.sha256(index).hexdigest())
    source.put_manifest(raw.digest, raw)
    dest = registry_client(project.environment("prod"), "prod")

    result = copy_image(source, dest, raw.digest, quiet_reporter())

    assert result.manifests_written == 2 and result.copied_blobs == 3
    assert dest.manifest_raw(raw.digest).body == index
    assert dest.manifest_raw(child.digest).body == child.body


def test_promote_into_ecr_creates_the_repository_and_refuses_to_move_an_immutable_tag(
        repo, released, registry, cli, moto_ecr, block_engine):  # noqa: F811
    source = released()
    block_engine()
    facts = read_git_facts(repo)
    name = load_project(repo).config.image.name
    ecr_repo = f"aws/{name}"

    code, out, err = cli(repo, "promote", "--from", "local", "--to", "aws", "--ref", facts.short_sha, "--any",
                         "--json")

    assert code == 0, err
    assert json.loads(out)["digest"] == source["digest"]
    settings = moto_ecr.describe_repositories(repositoryNames=[ecr_repo], registryId=ECR_ACCOUNT)["repositories"][0]
    assert settings["imageTagMutability"] == "IMMUTABLE"
    for tag in (facts.sha, facts.short_sha, "v1.0.0"):
        assert registry.digest(ecr_repo, tag) == source["digest"]


def test_an_immutable_tag_pointing_elsewhere_is_refused_before_anything_is_copied(
        repo, released, registry, docker_engine, cli, moto_ecr):  # noqa: F811
    in_ecr = released("aws")  # a build of this commit that reached ECR first
    in_source = released("local")  # another build of the same commit
    assert in_ecr["digest"] != in_source["digest"]
    facts = read_git_facts(repo)
    ecr_repo = f"aws/{load_project(repo).config.image.name}"
    before = {tag: registry.digest(ecr_repo, tag) for tag in registry.tags(ecr_repo)}
    uploads = registry.count("POST", f"/v2/{ecr_repo}/blobs/uploads/")

    code, out, err = cli(repo, "promote", "--from", "local", "--to", "aws", "--ref", facts.sha, "--any")

    assert code == 1 and out == ""
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: {registry.address}/{ecr_repo}:{facts.sha} already exists with another image "
                      f"({in_ecr['digest'][:19]}) and the repository's tags are immutable; this commit reached "
                      "'aws' from another build: deploy that one (slipway deploy --env aws), or promote a later commit"]
    assert {tag: registry.digest(ecr_repo, tag) for tag in registry.tags(ecr_repo)} == before  # no tag moved
    assert registry.count("POST", f"/v2/{ecr_repo}/blobs/uploads/") == uploads  # nothing uploaded


def test_make_promote_runs_the_verb(repo, released, registry):
    """`make promote FROM= TO= TAG= ANY=1` is `build.py promote` (the venv prerequisite is left alone)."""
    source = released()
    env = {**os.environ, "SLIPWAY_ROOT": str(repo)}
    proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "promote", "FROM=local", "TO=prod",
                           "TAG=v1.0.0", "ANY=1"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"{registry.address}/prod/{load_project(repo).config.image.name}@" \
                                          f"{source['digest']}"


def test_two_promotes_of_one_release_at_once_both_finish_on_the_same_digest(repo, released, registry):
    """Two CI jobs (or a person and a job) promoting the same release together: blobs go up twice at worst,
    tags name the same digest whoever writes them last, and the write-once promotion record is kept once."""
    source = released()
    name = load_project(repo).config.image.name
    dest_repo = f"prod/{name}"
    command = [str(REPO_ROOT / ".venv" / "bin" / "python"), str(REPO_ROOT / "build.py"), "promote", "--from",
               "local", "--to", "prod", "--ref", "v1.0.0", "--any", "--json", "--root", str(repo)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(run.wait(timeout=300), *run.communicate()) for run in runs]

    for code, out, err in outcomes:
        assert code == 0, err
        assert "Traceback" not in err, err
        assert json.loads(out)["digest"] == source["digest"]
    assert sum(json.loads(out)["copied_blobs"] for _, out, _ in outcomes) >= 3  # this test's copy: config, 2 layers
    facts = read_git_facts(repo)
    for tag in (facts.sha, facts.short_sha, "v1.0.0"):
        assert registry.digest(dest_repo, tag) == source["digest"]
    assert sorted(registry.tags(dest_repo)) == sorted([facts.sha, facts.short_sha, "v1.0.0",
                                                       record_tag(source["digest"])])


# -- an interrupted copy ------------------------------------------------------------------------------------

def test_a_copy_interrupted_by_the_destination_dying_moves_no_tag_and_a_rerun_completes_it(
        repo, released, flaky_registry, cli, monkeypatch, block_engine):
    from slipway.registry import client as client_module

    source = released()
    block_engine()
    facts = read_git_facts(repo)
    name = load_project(repo).config.image.name
    monkeypatch.setattr("slipway.registry.copy.BLOB_WORKERS", 1)  # config, small layer, large layer: in order
    real_send = client_module.RegistryClient._send
    patches: list[str] = []

    def send(self, method, url, headers, **kwargs):
        if self.host == flaky_registry.address and method == "PATCH":
            patches.append(url)
            if len(patches) == 3:  # the large layer is halfway up: the destination goes away
                flaky_registry.stop_serving()
        return real_send(self, method, url, headers, **kwargs)

    monkeypatch.setattr(client_module.RegistryClient, "_send", send)
    try:
        code, out, err = cli(repo, "promote", "--from", "local", "--to", "flaky", "--ref", facts.sha, "--any")
    finally:
        flaky_registry.start_again()

    assert code == 1 and out == ""
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: copying {source['digest'][:19]} to ")
    assert "unreachable" in errors[0] and "no tag was written; run the same command again" in errors[0]
    assert flaky_registry.tags(name) == []  # nothing points at a half-copied image
    complete_before = completed_uploads(flaky_registry, name)
    assert len(complete_before) == 2  # the config and the small layer made it; the large one did not

    monkeypatch.setattr(client_module.RegistryClient, "_send", real_send)
    code, out, err = cli(repo, "promote", "--from", "local", "--to", "flaky", "--ref", facts.sha, "--any", "--json")

    assert code == 0, err
    assert json.loads(out)["digest"] == source["digest"] and json.loads(out)["copied_blobs"] == 1
    assert flaky_registry.digest(name, facts.sha) == source["digest"]
    complete_after = completed_uploads(flaky_registry, name)
    assert all(complete_after.count(d) == 1 for d in complete_after)  # nothing complete was uploaded twice
    assert set(complete_before) < set(complete_after)


# -- bad input ----------------------------------------------------------------------------------------------

WRONG = "wrong-password-5e1"
REJECTED = ("error: registry {registry} rejected the credentials in $PUSH_TEST_USER/$PUSH_TEST_PASSWORD (HTTP 401 "
            "Unauthorized); check $PUSH_TEST_USER and $PUSH_TEST_PASSWORD (slipway.yaml "
            "environments.prod.registry.username_env/password_env)")
BAD_INPUT = {
    "unknown environment": (["--from", "local", "--to", "nowhere"], {},
                            "error: slipway.yaml: unknown environment 'nowhere'; use one of: aws, flaky, local, "
                            "neighbour, prod, tokens, tokens-next (or add it under 'environments:')"),
    "same environment": (["--from", "prod", "--to", "prod"], {},
                         "error: promote copies a release between two environments; got 'prod' twice; pass --to "
                         "another environment of slipway.yaml"),
    "reference nobody knows": (["--from", "local", "--to", "prod", "--ref", "v9.9.9"], {},
                               "error: no release 'v9.9.9' in {local} ('local') nor in {prod} ('prod'); "
                               "`slipway releases --env local` lists what 'local' holds"),
    "reference only the destination holds": (["--from", "neighbour", "--to", "local"], {},
                                             "error: no release 'v1.0.0' in {neighbour} ('neighbour'); {local} "
                                             "('local') already holds it; nothing to promote: deploy it there "
                                             "(slipway rollback --env local --to v1.0.0)"),
    "wrong destination password": (["--from", "local", "--to", "prod"], {"PUSH_TEST_PASSWORD": WRONG}, REJECTED),
    "wrong source password": (["--from", "prod", "--to", "local"], {"PUSH_TEST_PASSWORD": WRONG}, REJECTED),
    "dirty release": (["--from", "local", "--to", "prod", "--ref", "{sha}-dirty"], {},
                      "error: {local}@{digest} (v1.0.0-dirty) was built from uncommitted changes; promote a "
                      "release built from a commit"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_moves_no_tag(case, repo, released, open_registry, registry, cli, monkeypatch,
                                                block_engine):
    args, env, expected = BAD_INPUT[case]
    if case == "dirty release":
        (repo / "scratch.txt").write_text("uncommitted\n")
    released("local")
    facts = read_git_facts(repo)
    name = load_project(repo).config.image.name
    digest = open_registry.digest(name, facts.image_tags()[0])
    watched = ((registry, f"prod/{name}"), (open_registry, name), (open_registry, f"neighbour/{name}"))
    before = {repository: r.tags(repository) for r, repository in watched}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    block_engine()
    ref = [] if "--ref" in args else ["--ref", "v1.0.0"]

    code, out, err = cli(repo, "promote", "--any", *[a.format(sha=facts.sha) for a in args], *ref)

    assert code == 1 and out == ""
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert errors == [expected.format(local=f"{open_registry.address}/{name}", prod=f"{registry.address}/prod/{name}",
                                      neighbour=f"{open_registry.address}/neighbour/{name}",
                                      registry=registry.address, digest=digest[:19])], err
    assert WRONG not in err
    assert {repository: r.tags(repository) for r, repository in watched} == before


def test_secrets_never_reach_the_record(repo, released, registry, cli, block_engine):
    released()
    block_engine()
    name = load_project(repo).config.image.name
    code, _, err = cli(repo, "promote", "--from", "local", "--to", "prod", "--ref", "v1.0.0", "--any")
    assert code == 0, err
    digest = registry.digest(f"prod/{name}", "v1.0.0")
    record = raw_manifest(registry, f"prod/{name}", record_tag(digest))[1]
    assert PASSWORD.encode() not in record and base64.b64encode(PASSWORD.encode()) not in record
    assert json.loads(record)["subject"]["digest"] == digest


def test_a_tag_the_destination_refuses_midway_is_one_line_naming_what_was_tagged(
        repo, released, registry, cli, monkeypatch, block_engine):
    """The registry refuses the second tag (as an immutable repository does when another job tagged it first):
    the line says which tags were written and which not, and the same command finishes the job."""
    from slipway.errors import SlipwayError
    from slipway.registry import client as client_module

    source = released()
    block_engine()
    facts = read_git_facts(repo)
    dest_repo = f"prod/{load_project(repo).config.image.name}"
    real_put = client_module.RegistryClient.put_manifest

    def put(self, reference, manifest):
        if reference == facts.short_sha:
            raise SlipwayError(f"registry {self.host} answered PUT /v2/{self.repository}/manifests/{reference} with "
                               "HTTP 400: TAG_INVALID manifest tag is immutable", "check the registry")
        return real_put(self, reference, manifest)

    monkeypatch.setattr(client_module.RegistryClient, "put_manifest", put)
    code, out, err = cli(repo, "promote", "--from", "local", "--to", "prod", "--ref", "v1.0.0", "--any")

    assert code == 1 and out == ""
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: tagging {registry.address}/{dest_repo}@{source['digest'][:19]} failed (registry "
                      f"{registry.address} answered PUT /v2/{dest_repo}/manifests/{facts.short_sha} with HTTP 400: "
                      f"TAG_INVALID manifest tag is immutable); tagged: {facts.sha}; not tagged: {facts.short_sha}, "
                      "v1.0.0; run the same command again: the copy is complete, only the tags are written"]
    assert registry.tags(dest_repo) == [facts.sha]

    monkeypatch.setattr(client_module.RegistryClient, "put_manifest", real_put)
    code, out, err = cli(repo, "promote", "--from", "local", "--to", "prod", "--ref", "v1.0.0", "--any", "--json")

    assert code == 0, err
    assert json.loads(out)["copied_blobs"] == 0
    assert sorted(t for t in registry.tags(dest_repo) if not t.endswith(".promotion")) == \
        sorted([facts.sha, facts.short_sha, "v1.0.0"])
