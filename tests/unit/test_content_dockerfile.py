"""slipway's own content Dockerfile (image/content_dockerfile.py), from slipway.yaml's layout: what it copies,
installs and parses, and the build context it is built on (only those files), against real files."""
from __future__ import annotations

import pytest
import yaml

from slipway.errors import SlipwayError
from slipway.image.build import content_files, content_inputs, dockerfile_of
from slipway.image.content_dockerfile import NAME, render
from slipway.project.config import ImageConfig, load_project

DBT_PROJECT = "name: team\nprofile: team\nmodel-paths: [models, more_models]\nmacro-paths: [macros]\n"


def write(root, files):
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


@pytest.fixture
def repo(tmp_path):
    write(tmp_path, {
        "dbt_project.yml": DBT_PROJECT, "profiles.yml": "team: {}\n", "models/a.sql": "select 1\n",
        "more_models/b.sql": "select 2\n", "macros/m.sql": "{% macro m() %}{% endmacro %}\n",
        "target/manifest.json": "{}", "logs/dbt.log": "", "README.md": "unrelated\n",
        "libs/helpers/pyproject.toml": "[project]\nname='helpers'\n", "libs/helpers/helpers/__init__.py": "",
        "libs/helpers/helpers/__pycache__/x.pyc": "", "pipelines/a.py": "x = 1\n",
        "requirements/runtime.txt": "", "Dockerfile.base": "FROM scratch\n",
        "slipway.yaml": yaml.safe_dump({"image": {"name": "team", "dbt": ".", "packages": ["libs/helpers"],
                                                   "code": ["pipelines"]}, "environments": {}}),
    })
    return tmp_path


def test_the_dockerfile_installs_the_packages_and_copies_and_parses_the_dbt_project_at_the_root(repo):
    config = load_project(repo).config.image
    text = render(repo, config)
    assert "COPY libs/helpers/ /tmp/slipway-packages/0/" in text
    assert "pip install --no-deps --no-build-isolation --no-compile /tmp/slipway-packages/0" in text
    for line in ("COPY dbt_project.yml /opt/prefect/dbt_project.yml", "COPY profiles.yml /opt/prefect/profiles.yml",
                 "COPY models/ /opt/prefect/models/", "COPY more_models/ /opt/prefect/more_models/",
                 "COPY macros/ /opt/prefect/macros/"):
        assert line in text, text
    assert "DBT_PROJECT_DIR=/opt/prefect DBT_PROFILES_DIR=/opt/prefect" in text
    assert "dbt parse" in text and text.rstrip().endswith("USER 10001:10001")


def test_the_build_context_is_the_packages_and_the_dbt_project_only(repo):
    project = load_project(repo)
    assert content_files(project) == ["dbt_project.yml", "libs/helpers/helpers/__init__.py",
                                      "libs/helpers/pyproject.toml", "macros/m.sql", "models/a.sql",
                                      "more_models/b.sql", "profiles.yml"]
    assert dockerfile_of(project)[0] == NAME
    before = content_inputs(project, content_files(project))
    (repo / "README.md").write_text("edited\n")
    (repo / "pipelines" / "a.py").write_text("x = 2\n")  # a code path: its own layer
    assert content_inputs(project, content_files(project)) == before
    (repo / "models" / "a.sql").write_text("select 3\n")
    assert content_inputs(project, content_files(project)) != before


def test_a_dbt_project_in_a_folder_lands_there_under_the_app_directory(tmp_path):
    write(tmp_path, {"transform/dbt_project.yml": "name: t\nprofile: t\n", "transform/models/a.sql": "select 1\n"})
    text = render(tmp_path, ImageConfig(name="t", dbt="transform/", app_dir="/app"))
    assert "COPY transform/models/ /app/transform/models/" in text
    assert "DBT_PROJECT_DIR=/app/transform" in text and "DBT_PROFILES_DIR" not in text  # no profiles.yml there
    assert "pip install" not in text


@pytest.mark.parametrize("image, message", [
    ({"name": "t", "dockerfile": "Dockerfile", "dbt": "."}, "dbt and packages describe slipway's own Dockerfile"),
    ({"name": "t", "context": "sub"}, "slipway's own builds from the repository root"),
    ({"name": "t", "packages": ["../elsewhere"]}, "must be a path inside the repository"),
])
def test_a_layout_slipway_cannot_build_is_one_error(tmp_path, image, message):
    (tmp_path / "slipway.yaml").write_text(yaml.safe_dump({"image": image, "environments": {}}))
    with pytest.raises(SlipwayError, match=message):
        load_project(tmp_path)
