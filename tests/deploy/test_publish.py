"""The release image pushed as slipway assembled it (registry/publish.py), against the real htpasswd test
registry, the real engine and real release images of this repository: the content image's layers come from
the build cache (mounted, never uploaded again), slipway's own layers and the config are the only blobs a
release uploads (a flows-only change: the flows layer and the config), and one commit gives one digest
whichever command built it, with or without an environment, and from a second clone whose engine held none
of the test's images."""
from __future__ import annotations

import io
import os
import re
import shutil

import docker
import pytest
import yaml

from slipway import pipeline
from slipway.image.build import CONTENT_LABEL, content_cache_tag
from slipway.output import Reporter
from slipway.project.config import load_project
from slipway.target import open_target
from tests.conftest import remove_tags_containing
from tests.deploy.conftest import delete_deployments_of
from tests.kit.repo import git

pytestmark = pytest.mark.docker

SLIPWAY_LAYERS = 3  # flows/, data/ (slipway.yaml image.code) and the release layer
BULK_BYTES = 50 * 1024 * 1024  # a data/ file of random bytes, written in the test's repository


def uploaded_blobs(registry, repository: str) -> list[str]:
    """The digests of the blob uploads the registry closed for `repository` (`PUT ...?digest=`), in order;
    mounts are not uploads."""
    pattern = rf'"PUT /v2/{re.escape(repository)}/blobs/uploads/[^" ]*[?&]digest=sha256(?:%3A|:)([0-9a-f]{{64}})'
    return ["sha256:" + found for found in re.findall(pattern, registry.access_log())]


def mounts(registry, repository: str) -> int:
    return len(re.findall(rf'"POST /v2/{re.escape(repository)}/blobs/uploads/\?[^" ]*mount=', registry.access_log()))


def once(server) -> None:
    if server.database != "sqlite":
        pytest.skip("the push is the registry's business, not the server's database's: checked once, against "
                    "the SQLite server")


def content_manifest(registry, name: str, image) -> dict:
    """The build cache's manifest of the content image `image` (the release image, a docker-py Image) was
    assembled on (its label names the inputs' hash)."""
    return registry.manifest(f"{name}/slipway-cache", content_cache_tag(image.labels[CONTENT_LABEL]))


def test_a_release_uploads_only_slipways_layers_and_a_flows_only_change_only_the_flows_layer(releases, registry,
                                                                                             docker_engine):
    """Commit A with a 50 MB data/ (random, incompressible), then commit B, a month later, changing one flow:
    B's push uploads the flows layer, the config and the manifests — not data/, whose layer is A's, held once
    by the registry (every entry of a code layer has one fixed time, not the commit's)."""
    r = releases
    once(r.server)
    bulk = r.root / "data" / "bulk.bin"
    bulk.parent.mkdir(exist_ok=True)
    bulk.write_bytes(os.urandom(BULK_BYTES))
    git(r.root, "add", "-A")
    git(r.root, "commit", "-q", "-m", "50 MB of data")
    first = r.build_and_deploy()
    sha = git(r.root, "rev-parse", "HEAD")

    manifest = registry.manifest(r.name, sha)
    image = docker_engine.images.get(f"{r.name}:{sha}")
    content = content_manifest(registry, r.name, image)
    assert first["reference"] == f"{registry.address}/{r.name}@{registry.digest(r.name, sha)}"
    assert manifest["config"]["digest"] == image.id  # the registry's image is the engine's, byte for byte
    assert manifest["layers"][:-SLIPWAY_LAYERS] == content["layers"]  # the cached content image, unchanged
    content_digests = {layer["digest"] for layer in content["layers"]}
    own = [layer["digest"] for layer in manifest["layers"][-SLIPWAY_LAYERS:]] + [manifest["config"]["digest"]]
    uploaded = uploaded_blobs(registry, r.name)
    assert set(uploaded) == set(own)  # slipway's layers and the config, each once; no content layer
    assert not content_digests & set(uploaded)
    assert mounts(registry, r.name) == len(content_digests)  # mounted from the cache: no byte moved
    flows_a, data_a, release_a = manifest["layers"][-SLIPWAY_LAYERS:]
    assert data_a["size"] > BULK_BYTES  # random bytes do not compress

    flow = r.root / "flows" / "elt.py"
    flow.write_text(flow.read_text() + "\n# a code-only change\n")
    second_sha = r.commit("a comment in a flow")  # committed a month after A: another commit time
    before, manifest_puts = len(uploaded), registry.count("PUT", f"/v2/{r.name}/manifests/")

    second = r.build_and_deploy()

    manifest2 = registry.manifest(r.name, second_sha)
    assert second["reference"] == f"{registry.address}/{r.name}@{registry.digest(r.name, second_sha)}"
    assert second["reference"] != first["reference"]
    assert manifest2["layers"][:-SLIPWAY_LAYERS] == content["layers"]  # the content image was not rebuilt
    flows_b, data_b, release_b = manifest2["layers"][-SLIPWAY_LAYERS:]
    assert data_b == data_a and release_b == release_a  # unchanged paths, unchanged configuration
    assert flows_b["digest"] != flows_a["digest"]
    new_uploads = uploaded_blobs(registry, r.name)[before:]
    assert sorted(new_uploads) == sorted([flows_b["digest"], manifest2["config"]["digest"]])
    sent = flows_b["size"] + manifest2["config"]["size"]
    assert sent < 256 * 1024, sent  # what B's push uploaded, against a data/ layer of 50 MB
    assert uploaded_blobs(registry, r.name).count(data_a["digest"]) == 1  # A's data/ layer, held once
    assert registry.count("PUT", f"/v2/{r.name}/manifests/") - manifest_puts == 2  # the full and short SHA
    assert mounts(registry, r.name) == len(content_digests)  # the content layers were there already
    assert {d["job_variables"]["image"] for d in r.state().values() if d} == {second["reference"]}
    print(f"B uploaded {sent} bytes (flows layer {flows_b['size']} + config {manifest2['config']['size']}); "
          f"data/ layer {data_a['size']} bytes, uploaded once")


def test_one_commit_gives_one_content_image_and_one_digest_whichever_command_built_it(
        releases, registry, docker_engine, tmp_path, cli):
    """`make image` (no environment), `build.py image --env` of an environment whose build cache is another
    repository, and `make image deploy` (`release`) from a second clone on an engine that holds none of this
    test's images any more: one content image, one image ID, one registry digest. Between the first two
    builds the release image's tags are removed (so each build assembles and loads it again); before the
    second clone, every image tag of this test."""
    r = releases
    once(r.server)
    config = yaml.safe_load((r.root / "slipway.yaml").read_text())
    local = config["environments"]["local"]
    config["environments"]["elsewhere"] = dict(local, repository=f"{r.name}-elsewhere",
                                               cache_repository=f"{r.name}-elsewhere/build-cache")
    config["environments"]["mirror"] = dict(local, repository=f"{r.name}-mirror",
                                            cache_repository=f"{r.name}/slipway-cache")  # local's cache
    (r.root / "slipway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    sha = r.commit("two more environments")
    clone_two = tmp_path / "clone-two"
    git(tmp_path, "clone", "-q", str(r.root), str(clone_two))

    def run(*args: str) -> dict:
        outcome = cli(*args, "--root", str(r.root), "--json")
        assert outcome.code == 0, outcome.stderr
        return outcome.json()

    def content_of(image_id: str) -> str:
        return docker_engine.images.get(image_id).labels[CONTENT_LABEL]

    try:
        plain = run("image")  # `make image`
        inputs = content_of(plain["image_id"])
        local_push = run("push", "--env", "local")
        for tag in (sha, sha[:12]):
            docker_engine.images.remove(f"{r.name}:{tag}")

        elsewhere = run("image", "--env", "elsewhere")
        assert elsewhere["image_id"] == plain["image_id"] and content_of(elsewhere["image_id"]) == inputs
        elsewhere_push = run("push", "--env", "elsewhere")
        assert registry.tags(f"{r.name}-elsewhere/build-cache") == [content_cache_tag(inputs)]

        remove_tags_containing(docker_engine, r.name)  # a fresh machine: none of this test's images
        assert not [t for s in docker_engine.api.images() for t in s.get("RepoTags") or [] if r.name in t]
        with pytest.raises(docker.errors.ImageNotFound):
            docker_engine.images.get(plain["image_id"])
        outcome = cli("release", "--env", "mirror", "--root", str(clone_two), "--json")
        assert outcome.code == 0, outcome.stderr
        released = outcome.json()
        assert "from the build cache" in outcome.stderr  # the content image was pulled, not built

        assert released["image"]["image_id"] == plain["image_id"]
        digests = {local_push["digest"], elsewhere_push["digest"], registry.digest(f"{r.name}-mirror", sha)}
        assert len(digests) == 1, digests
        assert released["deploy"]["reference"] == f"{registry.address}/{r.name}-mirror@{local_push['digest']}"
        print(f"one commit: image {plain['image_id'][:19]}, {content_cache_tag(inputs)}, "
              f"digest {local_push['digest']}")
    finally:
        delete_deployments_of(r.server.api_url, f"{registry.address}/{r.name}-mirror")
        shutil.rmtree(clone_two, ignore_errors=True)


def test_a_build_cache_holding_another_build_of_the_content_falls_back_to_the_engine_push(
        releases, registry, docker_engine, cli):
    """Two machines built the same content inputs at once and the other one's push stayed in the cache: this
    machine's image is not assembled on the cached layers, so it is pushed through the engine, with a warning,
    and still deployed by the digest the registry holds."""
    from slipway.image.base import ensure_base

    r = releases
    once(r.server)
    pipeline.build(pipeline.Workspace(load_project(r.root), Reporter(stream=io.StringIO())))
    sha = git(r.root, "rev-parse", "HEAD")
    image = docker_engine.images.get(f"{r.name}:{sha}")
    project = load_project(r.root)
    cache = open_target(project, "local").build_cache()
    other = ensure_base(docker_engine, project, Reporter(stream=io.StringIO()))  # any image but the content's
    cache.push(docker_engine, other, content_cache_tag(image.labels[CONTENT_LABEL]), "content image",
               Reporter(stream=io.StringIO()))

    outcome = cli("deploy", "--env", "local", "--root", str(r.root), "--json")

    assert outcome.code == 0, outcome.stderr
    assert "another build of the same inputs" in outcome.stderr
    assert "pushing HEAD's image through the Docker engine instead" in outcome.stderr
    digest = registry.digest(r.name, sha)
    assert outcome.json()["reference"] == f"{registry.address}/{r.name}@{digest}"
    image.reload()
    assert f"{registry.address}/{r.name}@{digest}" in image.attrs["RepoDigests"]  # the engine pushed it
    assert registry.manifest(r.name, sha)["config"]["digest"] == image.id



def test_two_pushes_of_one_commit_at_once_and_a_push_stopped_before_its_tags(releases, registry, docker_engine,
                                                                             monkeypatch):
    """Two CI jobs push the same commit at the same moment: both end on one digest, every tag names it. A push
    that stops after its blobs and before its first tag (the registry refusing the manifest, injected here on
    the real registry: the client's PUT raises) leaves no tag, and the next push finishes without uploading a
    blob again."""
    from concurrent.futures import ThreadPoolExecutor

    from slipway.errors import SlipwayError
    from slipway.registry.client import RegistryClient

    r = releases
    once(r.server)
    pipeline.build(pipeline.Workspace(load_project(r.root), Reporter(stream=io.StringIO())))
    sha = git(r.root, "rev-parse", "HEAD")
    real_put = RegistryClient.put_manifest

    def refused(self, reference, manifest):
        raise SlipwayError("the registry refused the manifest (injected)", "push again")

    monkeypatch.setattr(RegistryClient, "put_manifest", refused)
    ws = pipeline.Workspace(load_project(r.root), Reporter(stream=io.StringIO()))
    with pytest.raises(SlipwayError, match="injected"):
        pipeline.push(ws, open_target(ws.project, "local"))
    assert registry.tags(r.name) == []  # blobs only: no tag points at an incomplete image
    uploads = uploaded_blobs(registry, r.name)
    assert len(uploads) == SLIPWAY_LAYERS + 1
    monkeypatch.setattr(RegistryClient, "put_manifest", real_put)

    def push(_):
        ws = pipeline.Workspace(load_project(r.root), Reporter(stream=io.StringIO()))
        return pipeline.push(ws, open_target(ws.project, "local"))

    with ThreadPoolExecutor(2) as pool:
        pushed = list(pool.map(push, range(2)))

    assert pushed[0].digest == pushed[1].digest == registry.digest(r.name, sha)
    assert sorted(registry.tags(r.name)) == sorted(pushed[0].tags)
    assert {registry.digest(r.name, tag) for tag in pushed[0].tags} == {pushed[0].digest}
    assert uploaded_blobs(registry, r.name) == uploads  # the stopped push's blobs were kept and reused
