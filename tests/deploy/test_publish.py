"""The release image pushed as slipway assembled it (registry/publish.py), against the real htpasswd test
registry, the real engine and real release images of this repository: the content image's layers come from
the build cache (mounted, never uploaded again), slipway's own layers and the config are the only blobs a
release uploads, and the same commit gives the same digest from two clones whose engine held none of the
project's images in between."""
from __future__ import annotations

import io
import re
import shutil

import docker
import pytest
import yaml

from slipway import pipeline
from slipway.image.build import CONTENT_LABEL
from slipway.output import Reporter
from slipway.project.config import load_project
from slipway.target import open_target
from tests.conftest import remove_tags_containing
from tests.kit.repo import git

pytestmark = pytest.mark.docker

SLIPWAY_LAYERS = 3  # flows/, data/ (slipway.yaml image.code) and the release layer


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
    inputs = image.labels[CONTENT_LABEL]
    return registry.manifest(f"{name}/slipway-cache", f"content-{inputs[:16]}")


def test_a_release_uploads_only_slipways_layers_and_a_code_only_change_only_what_changed(releases, registry,
                                                                                       docker_engine):
    r = releases
    once(r.server)
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

    flow = r.root / "flows" / "elt.py"
    flow.write_text(flow.read_text() + "\n# a code-only change\n")
    second_sha = r.commit("a comment in a flow")
    before = len(uploaded)

    second = r.build_and_deploy()

    manifest2 = registry.manifest(r.name, second_sha)
    assert second["reference"] == f"{registry.address}/{r.name}@{registry.digest(r.name, second_sha)}"
    assert second["reference"] != first["reference"]
    assert manifest2["layers"][:-SLIPWAY_LAYERS] == content["layers"]  # the content image was not rebuilt
    new_uploads = uploaded_blobs(registry, r.name)[before:]
    own2 = {layer["digest"] for layer in manifest2["layers"][-SLIPWAY_LAYERS:]} | {manifest2["config"]["digest"]}
    flows_layer = manifest2["layers"][-SLIPWAY_LAYERS]["digest"]
    assert flows_layer != manifest["layers"][-SLIPWAY_LAYERS]["digest"] and flows_layer in new_uploads
    assert set(new_uploads) <= own2 and not content_digests & set(new_uploads)
    assert mounts(registry, r.name) == len(content_digests)  # the content layers were there already
    assert {d["job_variables"]["image"] for d in r.state().values() if d} == {second["reference"]}


def test_the_same_commit_gives_the_same_digest_from_two_clones_and_an_engine_without_the_images(
        releases, registry, docker_engine, tmp_path):
    r = releases
    once(r.server)
    # A second repository on the same registry sharing the first's build cache: clone 2 pushes there, so its
    # digest is computed from the commit, not found in a registry that already holds the release.
    config = yaml.safe_load((r.root / "slipway.yaml").read_text())
    mirror = dict(config["environments"]["local"], repository=f"{r.name}-mirror",
                  cache_repository=f"{r.name}/slipway-cache")
    config["environments"]["mirror"] = mirror
    (r.root / "slipway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    sha = r.commit("a mirror of local, sharing its build cache")
    clone_two = tmp_path / "clone-two"
    git(tmp_path, "clone", "-q", str(r.root), str(clone_two))
    git(r.root, "remote", "add", "origin", str(r.root))  # both clones name the same source (a label)

    one = pipeline.Workspace(load_project(r.root), Reporter(stream=io.StringIO()))
    pipeline.build(one, target=open_target(one.project, "local"))
    pushed_one = pipeline.push(one, open_target(one.project, "local"))
    image_id = docker_engine.images.get(f"{r.name}:{sha}").id

    remove_tags_containing(docker_engine, r.name)  # the engine holds none of the project's images now
    assert not [t for s in docker_engine.api.images() for t in s.get("RepoTags") or [] if r.name in t]
    with pytest.raises(docker.errors.ImageNotFound):
        docker_engine.images.get(image_id)

    log = io.StringIO()
    two = pipeline.Workspace(load_project(clone_two), Reporter(stream=log))
    pipeline.build(two, target=open_target(two.project, "mirror"))
    pushed_two = pipeline.push(two, open_target(two.project, "mirror"))

    assert "from the build cache" in log.getvalue()  # the content image was pulled, not built
    assert pushed_two.digest == pushed_one.digest == registry.digest(f"{r.name}-mirror", sha)
    assert docker_engine.images.get(f"{r.name}:{sha}").id == image_id
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
    cache.push(docker_engine, other, f"content-{image.labels[CONTENT_LABEL][:16]}", "content image",
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
