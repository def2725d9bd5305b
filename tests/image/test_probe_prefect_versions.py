"""The Prefect inside the image is the team's: the entry-point probe runs with whatever Prefect 3.x the image
holds. The example's image holds the Prefect locked here (3.8.8: every release test probes it); this test
probes an image holding Prefect 3.3.7 (tests/kit/files/prefect-3.3.7.txt), built by slipway installed from
its wheel, in a small repository that is not this one (tests/kit/minimal_project.py)."""
from __future__ import annotations

import uuid

import pytest

from slipway.image import release_layer
from tests.conftest import remove_tags_containing
from tests.kit.files import HERE as KIT_FILES
from tests.kit.minimal_project import write_minimal_project
from tests.kit.repo import commit_all

pytestmark = pytest.mark.docker

OLDER_PREFECT = "3.3.7"


def prefect_in(engine, image: str) -> str:
    out = engine.containers.run(image, ["python", "-c", "import prefect; print(prefect.__version__)"],
                                entrypoint=[], network_disabled=True, remove=True)
    return out.decode().strip()


def test_the_probe_runs_with_an_older_prefect_3_in_the_image(installed_slipway, release_image, docker_engine,
                                                            tmp_path):
    # release_image: the session's example build, which leaves the bootstrapped OS base in the engine.
    name = f"older-prefect-{uuid.uuid4().hex[:8]}"
    root = write_minimal_project(tmp_path / "team", name, KIT_FILES / "prefect-3.3.7.txt",
                                 "slipway/base-os:bookworm", {"count": 3})
    try:
        built = installed_slipway.run("image", "--json", cwd=root)
        assert built.code == 0, built.stderr
        image = built.json()["image"]
        assert prefect_in(docker_engine, image) == OLDER_PREFECT

        labels = docker_engine.images.get(image).labels
        layer = release_layer.read_from_local_image(docker_engine, image, labels, "/opt/app")
        [found] = layer.probe
        assert "error" not in found, found
        assert found["flow_name"] == "hello"  # the flow's signature and checks, by Prefect 3.3.7's own API
        assert set(found["parameter_schema"]["properties"]) == {"count", "greeting"}
        assert found["parameter_schema"]["required"] == ["count"]
        assert found["parameter_checks"] == [""]  # {"count": 3} validated: no error

        # A bad parameter: Prefect 3.3.7's own validation answers (deploy turns the answer into an error
        # naming the deployments.yaml field).
        (root / "deployments.yaml").write_text((root / "deployments.yaml").read_text().replace("3", "many"))
        commit_all(root, "a bad parameter")
        rebuilt = installed_slipway.run("image", "--json", cwd=root)
        assert rebuilt.code == 0, rebuilt.stderr
        image = rebuilt.json()["image"]
        labels = docker_engine.images.get(image).labels
        [found] = release_layer.read_from_local_image(docker_engine, image, labels, "/opt/app").probe
        [answer] = found["parameter_checks"]
        assert "count" in answer and "integer" in answer, answer
    finally:
        remove_tags_containing(docker_engine, name)
