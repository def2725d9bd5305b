"""The release image, built on the local engine with `build.py image`'s own code and inspected in containers."""
from __future__ import annotations

import json
import subprocess
import sys

import docker
import pytest
import yaml

from slipway import pipeline, results
from slipway.errors import SlipwayError
from slipway.image import release_layer
from slipway.output import Reporter
from slipway.project.config import load_project
from slipway.project.git import read_git_facts
from tests.kit.repo import REPO_ROOT, git, snapshot_repo

pytestmark = pytest.mark.docker


def build_image(root, allow_dirty: bool = False) -> dict:
    """`build.py image` for the repository at `root`, through the pipeline's own build step."""
    built = pipeline.build(pipeline.Workspace(load_project(root), Reporter(quiet=True)), allow_dirty=allow_dirty)
    return results.image_json(built)


def read_layer(docker_engine, image: str, labels: dict):
    return release_layer.read_from_local_image(docker_engine, image, labels, "/opt/prefect")


def run_in(client, image: str, *command: str, **kwargs) -> str:
    """The command's output in a fresh container of `image`; raises when it exits non-zero.

    The engine (dockerd 20.10) can answer `wait` for a container that exits at once before its log copier
    has written the output, so an empty log is read again for a moment before it is believed."""
    import time

    container = client.containers.run(image, list(command), detach=True, **kwargs)
    try:
        status = container.wait()["StatusCode"]
        out = container.logs(stdout=True, stderr=True)
        deadline = time.monotonic() + 5
        while not out and time.monotonic() < deadline:
            time.sleep(0.1)
            out = container.logs(stdout=True, stderr=True)
    finally:
        container.remove(force=True)
    assert status == 0, f"{' '.join(command)} exited {status}: {out.decode(errors='replace')}"
    return out.decode()


def test_tags_and_labels_name_the_commit(docker_engine, release_image):
    facts = read_git_facts(release_image["root"])
    assert release_image["revision"] == facts.sha
    assert release_image["tags"] == [facts.sha, facts.sha[:12]]
    image = docker_engine.images.get(release_image["image_id"])
    assert set(image.tags) >= {f"jaffle-shop:{facts.sha}", f"jaffle-shop:{facts.sha[:12]}"}
    labels = image.labels
    assert labels["org.opencontainers.image.revision"] == facts.sha
    assert labels["org.opencontainers.image.created"] == facts.commit_time  # the commit's time, not the build's
    assert labels["org.opencontainers.image.version"] == facts.sha[:12]
    # The snapshot has no `origin`: no source label (never the building machine's path).
    assert "org.opencontainers.image.source" not in labels


def test_process_is_not_root(docker_engine, release_image):
    assert run_in(docker_engine, release_image["image"], "id", "-u").strip() != "0"


def test_custom_modules_and_every_flow_module_import(docker_engine, release_image):
    flow_files = sorted(p.name for p in (release_image["root"] / "flows").glob("*.py") if p.name != "__init__.py")
    assert flow_files, "the example content has flows"
    probe = (
        "import importlib.util, json, pathlib, jaffle_common\n"
        "loaded = []\n"
        "for path in sorted(pathlib.Path('flows').glob('*.py')):\n"
        "    if path.name == '__init__.py': continue\n"
        "    spec = importlib.util.spec_from_file_location(path.stem, path)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "    loaded.append(path.name)\n"
        "print(json.dumps({'modules_from': jaffle_common.__file__, 'flows': loaded}))\n"
    )
    out = json.loads(run_in(docker_engine, release_image["image"], "python", "-c", probe).strip().splitlines()[-1])
    assert out["flows"] == flow_files
    assert "/opt/venv/lib/python3.11/site-packages/jaffle_common" in out["modules_from"]  # installed, not copied


def test_dbt_manifest_is_baked_in_and_parse_succeeds(docker_engine, release_image):
    image = release_image["image"]
    manifest = run_in(docker_engine, image, "python", "-c",
                      "import json; m = json.load(open('/opt/prefect/dbt/target/manifest.json'));"
                      "print(sum(1 for n in m['nodes'] if n.startswith('model.')))")
    assert int(manifest.strip()) > 0
    out = run_in(docker_engine, image, "dbt", "parse", "--project-dir", "/opt/prefect/dbt",
                 "--target-path", "/tmp/target", "--log-path", "/tmp/logs")
    assert "Performance info" in out or "Encountered an error" not in out


def test_release_layer_carries_configuration_and_probe(docker_engine, release_image):
    image = docker_engine.images.get(release_image["image_id"])
    layer = read_layer(docker_engine, release_image["image"], image.labels)
    files, probe = layer.files, layer.probe
    assert files["slipway.yaml"] == (release_image["root"] / "slipway.yaml").read_text()
    assert files["deployments.yaml"] == (release_image["root"] / "deployments.yaml").read_text()
    declared = yaml.safe_load(files["deployments.yaml"])["deployments"]
    assert [r["entrypoint"] for r in probe] == [d["entrypoint"] for d in declared]
    assert all("error" not in r and r["flow_name"] and r["parameter_schema"]["type"] == "object" for r in probe)
    # The files are readable in the image (for people who `docker run` it)...
    in_image = json.loads(run_in(docker_engine, release_image["image"], "cat", "/opt/prefect/.slipway/release-config.json"))
    assert in_image == files
    # ...and the image's last layer is exactly slipway's release layer: written again from what it holds, it
    # gives the same diff_id (the layer is reproducible, and holds nothing else).
    from slipway.image.build import release_layer_of

    rewritten = release_layer_of(layer, "/opt/prefect")
    assert image.attrs["RootFS"]["Layers"][-1] == rewritten.diff_id
    assert len(rewritten.tar) < 64 * 1024


def test_code_paths_are_slipways_layers_from_the_commit(docker_engine, release_image):
    """flows/ and data/ are not in the content image: each is one layer slipway wrote from the commit."""
    from slipway.image.build import code_layers
    from slipway.project.git import read_git_facts

    root = release_image["root"]
    image = docker_engine.images.get(release_image["image_id"])
    code = code_layers(load_project(root), read_git_facts(root))
    assert [layer.name for layer in code] == ["flows", "data"]
    assert image.attrs["RootFS"]["Layers"][-3:-1] == [layer.diff_id for layer in code]
    listing = run_in(docker_engine, release_image["image"], "find", "/opt/prefect/flows", "-name", "*.py")
    assert "/opt/prefect/flows/elt.py" in listing.split()
    content = docker_engine.images.get(f"jaffle-shop:content-{image.labels['io.slipway.content.inputs'][:16]}")
    assert run_in(docker_engine, content.id, "sh", "-c", "test -e /opt/prefect/flows || echo absent").strip() == "absent"


def test_an_altered_release_layer_is_refused(docker_engine, release_image):
    labels = dict(docker_engine.images.get(release_image["image_id"]).labels)
    labels[release_layer.HASH_LABEL] = "0" * 64
    with pytest.raises(SlipwayError, match="does not match its label"):
        read_layer(docker_engine, release_image["image"], labels)


def test_rebuild_of_the_same_commit_yields_the_same_image(docker_engine, release_image):
    root = release_image["root"]
    again = build_image(root)
    assert again["tags"] == release_image["tags"]
    # The commit's labels and time, slipway's own layers: the same image, to the byte of its config.
    assert again["image_id"] == release_image["image_id"]


def test_git_tag_at_head_becomes_an_image_tag(docker_engine, release_image, tmp_path):
    repo = snapshot_repo(tmp_path / "tagged", release_image["root"])
    git(repo, "tag", "v9.9.9")
    result = build_image(repo)
    assert result["tags"][-1] == "v9.9.9"
    assert "jaffle-shop:v9.9.9" in docker_engine.images.get(result["image_id"]).tags
    docker_engine.images.remove("jaffle-shop:v9.9.9")


def test_allow_dirty_builds_dirty_tags(docker_engine, release_image, tmp_path):
    repo = snapshot_repo(tmp_path / "dirty", release_image["root"])
    (repo / "flows" / "scratch_note.py").write_text("NOTE = 'uncommitted'\n")
    with pytest.raises(SlipwayError, match="uncommitted or untracked"):
        build_image(repo)
    result = build_image(repo, allow_dirty=True)
    assert all(tag.endswith("-dirty") for tag in result["tags"])
    for tag in result["tags"]:
        docker_engine.images.remove(f"jaffle-shop:{tag}")


def test_broken_dbt_project_fails_the_build_with_one_line(release_image, tmp_path):
    repo = snapshot_repo(tmp_path / "broken", release_image["root"])
    model = next((repo / "dbt" / "models").rglob("*.sql"))
    model.write_text("select * from {{ ref('model_that_does_not_exist') }}\n")
    git(repo, "commit", "-q", "-am", "break a model")
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "build.py"), "image", "--root", str(repo)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    error = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(error) == 1, proc.stderr
    # The failing Dockerfile step, named, and the tool's own message from its output.
    assert "image build failed at step 'RUN cd /opt/prefect/dbt" in error[0]
    assert "model_that_does_not_exist" in error[0]


def test_an_image_without_python_fails_the_probe_with_one_error_and_no_container_left(docker_engine):
    """The probe's container cannot start in an image with no `python` on its PATH (the kit's bare OS base):
    a SlipwayError that says what the image needs, and the container is removed."""
    import io

    from slipway.image.base import ensure_os_base
    from slipway.image.probe import PROBE_LABEL, start_probe

    os_base = ensure_os_base(docker_engine, load_project(REPO_ROOT), Reporter(stream=io.StringIO()))
    with pytest.raises(SlipwayError) as failed:
        start_probe(docker_engine, os_base, "/opt/prefect")
    assert "cannot start" in str(failed.value) and "needs a Python with prefect" in failed.value.fix
    assert not docker_engine.api.containers(all=True, filters={"label": PROBE_LABEL, "ancestor": os_base})


def test_two_runs_of_one_commit_probe_the_same_candidate_without_removing_it_from_each_other(
        docker_engine, release_image, monkeypatch):
    """A person and a CI job (or two environments released at once) building one commit load the same
    candidate image ID for their probes. The first run to finish cleans up while the second has loaded the
    candidate but not yet started its container: the second still gets its answer, and once both are done
    neither run's candidate is left in the engine."""
    import io

    from slipway.image import build as image
    from slipway.project.declarations import load_declarations

    project = load_project(release_image["root"])
    facts, reporter = read_git_facts(project.root), Reporter(stream=io.StringIO())
    content = image.build_content(docker_engine, project, facts, reporter)  # up to date: no build
    code = image.code_layers(project, facts)
    declarations = load_declarations(project)
    first = image.start_code_probe(docker_engine, project, content, code)
    real_start = image.start_probe

    def first_cleans_up_meanwhile(client, tag, app_dir):  # the second run: loaded, container not yet made
        first.answer(declarations, reporter)
        return real_start(client, tag, app_dir)

    monkeypatch.setattr(image, "start_probe", first_cleans_up_meanwhile)
    second = image.start_code_probe(docker_engine, project, content, code)
    monkeypatch.setattr(image, "start_probe", real_start)
    assert second.candidate != first.candidate
    results = second.answer(declarations, reporter)

    assert [r["entrypoint"] for r in results] == [d.entrypoint for d in declarations.deployments]
    assert all("error" not in r for r in results), results
    for candidate in (first.candidate, second.candidate):
        with pytest.raises(docker.errors.ImageNotFound):
            docker_engine.images.get(candidate)


def test_the_source_label_is_the_remotes_url_or_absent(tmp_path):
    """`org.opencontainers.image.source`: the origin's web address, never a path of the building machine."""
    from slipway.image.build import SOURCE_LABEL, commit_labels
    from slipway.image.release_layer import ReleaseLayer

    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "one")
    git(tmp_path, "remote", "add", "origin", str(tmp_path))
    assert SOURCE_LABEL not in commit_labels(read_git_facts(tmp_path), ReleaseLayer({}, []))
    git(tmp_path, "remote", "set-url", "origin", "git@github.com:team/app.git")
    assert commit_labels(read_git_facts(tmp_path), ReleaseLayer({}, []))[SOURCE_LABEL] == "https://github.com/team/app"
