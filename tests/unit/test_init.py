"""`slipway init` on repositories written here, with real Git, real copier and real uv (the lock is resolved
from the package index): what it finds and writes, what it refuses, what it never touches, and
`init --upgrade`'s three-way merge across two template versions (a history written by this test: a copy of
slipway's template and a changed one)."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import yaml

from slipway import pipeline
from slipway.errors import SlipwayError
from slipway.init.answers import answer, moved_answers
from slipway.init.discover import discover
from slipway.init.scaffold import TEMPLATES, latest_version, upgrade
from slipway.output import Reporter
from tests.kit.foreign import LOCK_DATE
from tests.kit.repo import commit_all, git, snapshot_repo
from tests.kit.wheel import add_next_template, next_version

FLOW = "from prefect import flow\n\n\n@flow\ndef {name}(rows: int = 1):\n    return rows\n"


def no_questions(question, choices, default):
    raise AssertionError(f"asked {question}")


def team(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "the team's files")
    return root


def init(root: Path, **kwargs) -> pipeline.Initialised:
    return pipeline.init_repository(root, kwargs.pop("ask", no_questions), Reporter(stream=io.StringIO()), **kwargs)


@pytest.fixture
def locked(monkeypatch):
    for key, value in LOCK_DATE.items():
        monkeypatch.setenv(key, value)


def test_flows_without_a_prefect_yaml_are_declared_and_packages_and_pyproject_dependencies_go_in_the_lock(
        tmp_path, locked):
    root = team(tmp_path / "Team Flows", {
        "src/jobs/load.py": FLOW.format(name="load_orders"),
        "tests/test_load.py": FLOW.format(name="not_a_deployment"),
        "libs/helpers/pyproject.toml": "[build-system]\nrequires = ['setuptools>=61']\n[project]\nname='helpers'\n"
                                       "version='1'\n",
        "pyproject.toml": "[project]\nname = 'team'\nversion = '1'\ndependencies = ['prefect==3.8.8', 'six']\n",
    })
    done = init(root)
    assert "deployments.yaml" in done.placement.written
    declared = yaml.safe_load((root / "deployments.yaml").read_text())["deployments"]
    assert declared == [{"name": "load-orders", "entrypoint": "src/jobs/load.py:load_orders"}]
    config = yaml.safe_load((root / "slipway.yaml").read_text())
    assert config["image"] == {"name": "team-flows", "code": ["src"], "packages": ["libs/helpers"]}
    runtime_in = (root / "requirements" / "runtime.in").read_text()
    assert "setuptools>=61" in runtime_in and "prefect==3.8.8" in runtime_in and "six" in runtime_in
    assert "\nsix==" in (root / "requirements" / "runtime.txt").read_text()


def test_init_never_overwrites_shows_what_it_would_write_and_a_second_run_changes_nothing(tmp_path, locked):
    root = team(tmp_path / "team", {"pipelines/a.py": FLOW.format(name="a"), "requirements.txt": "prefect==3.8.8\n",
                                     "Dockerfile.base": "FROM python:3.11-slim\n# ours\n"})
    done = init(root)
    assert "Dockerfile.base" in done.placement.kept and "Dockerfile.base" not in done.placement.written
    assert (root / "Dockerfile.base").read_text() == "FROM python:3.11-slim\n# ours\n"
    assert "+# The runtime every release image starts from" in done.placement.kept["Dockerfile.base"]
    assert "\nprefect==3.8.8 " in (root / "requirements" / "runtime.txt").read_text()
    commit_all(root, "init")
    again = init(root)
    assert again.already and "set this repository up already" in again.already
    assert git(root, "status", "--porcelain", "--ignored") == ""


def test_init_in_this_repositorys_example_changes_nothing(tmp_path):
    root = snapshot_repo(tmp_path / "example")
    done = init(root)
    assert done.already and "not by slipway init" in done.already
    assert git(root, "status", "--porcelain", "--ignored") == ""


def test_init_reads_the_examples_layout_as_its_slipway_yaml_declares_it(tmp_path):
    """The example is what init would make: with its slipway.yaml gone, init finds the same dbt project,
    package, deployments file and flows folder, asks nothing, has nothing to warn about, and writes no file
    the example has (its own Dockerfile.base and runtime.in are kept as they are)."""
    root = snapshot_repo(tmp_path / "example")
    declared = yaml.safe_load((root / "slipway.yaml").read_text())
    git(root, "rm", "-q", "slipway.yaml")
    commit_all(root, "slipway.yaml removed")
    had = set(git(root, "ls-files").split())
    done = init(root)
    found = yaml.safe_load((root / "slipway.yaml").read_text())
    assert found["deployments"] == declared["deployments"]
    assert (found["image"]["dbt"], found["image"]["packages"]) == ("dbt", ["modules"])
    assert set(found["image"]["code"]) <= set(declared["image"]["code"])  # data/ holds no entry point
    assert done.notes == []
    assert set(done.placement.kept) == {"Dockerfile.base", "requirements/runtime.in"}
    assert not had & set(done.placement.written)
    assert git(root, "status", "--porcelain", "--", *had) == ""


def test_what_init_cannot_decide_is_a_question_and_bad_input_is_one_error_with_nothing_written(tmp_path):
    root = team(tmp_path / "team", {"pipelines/a.py": FLOW.format(name="a"), "requirements.txt": "prefect==3.8.8\n",
                                     "warehouse/dbt_project.yml": "name: w\nprofile: w\n",
                                     "marts/dbt_project.yml": "name: m\nprofile: m\n"})
    asked = []
    found = answer(discover(root), lambda q, choices, default: asked.append((q, choices, default)) or "marts")
    assert asked == [("Which dbt project goes into the image?", ["marts", "warehouse", "none"], "marts")]
    assert found.values["dbt"] == "marts"
    assert any("no dbt adapter" in note for note in found.notes)

    with pytest.raises(SlipwayError, match="--dbt elsewhere: no dbt_project.yml there"):
        init(root, dbt="elsewhere")
    old = team(tmp_path / "old", {"flows/a.py": FLOW.format(name="a"), "requirements.txt": "prefect==2.19.0\n"})
    with pytest.raises(SlipwayError, match=r"prefect==2.19.0, outside the Prefect releases .*>=3.0,<4"):
        init(old)
    empty = team(tmp_path / "empty", {"README.md": "nothing here\n"})
    with pytest.raises(SlipwayError, match="no flows found"):
        init(empty)
    for root in (old, empty):
        assert git(root, "status", "--porcelain", "--ignored") == ""  # nothing written


def test_a_lock_that_cannot_be_resolved_writes_nothing(tmp_path, locked):
    root = team(tmp_path / "team", {"pipelines/a.py": FLOW.format(name="a"),
                                     "requirements.txt": "prefect==3.8.8\nno-such-package-slipway-test==1.0\n"})
    with pytest.raises(SlipwayError, match="the runtime lock cannot be resolved"):
        init(root)
    assert git(root, "status", "--porcelain", "--ignored") == ""


@pytest.fixture
def two_versions(tmp_path) -> Path:
    """slipway's template as it is, and the next version's (tests/kit/wheel.py: one line more in slipway.yaml)."""
    history = tmp_path / "history"
    current = latest_version()
    shutil.copytree(TEMPLATES / current, history / current)
    add_next_template(history, current, next_version(current))
    return history


def test_upgrade_brings_a_template_change_forward_and_keeps_the_teams_edit(tmp_path, two_versions, locked):
    root = team(tmp_path / "team", {"pipelines/a.py": FLOW.format(name="a"), "requirements.txt": "prefect==3.8.8\n"})
    init(root)
    commit_all(root, "init")
    config = (root / "slipway.yaml").read_text()
    (root / "slipway.yaml").write_text(config.replace("address: localhost:5000", "address: localhost:5999"))
    commit_all(root, "our registry's port")

    done = upgrade(root, moved_answers(), two_versions)
    assert (done.before, done.conflicts) == (latest_version(), [])
    assert set(done.changed) == {"slipway.yaml", ".slipway-answers.yml"}
    upgraded = (root / "slipway.yaml").read_text()
    assert "address: localhost:5999" in upgraded and "auto_remove: false" in upgraded  # both
    assert yaml.safe_load(upgraded)["environments"]["local"]["job_variables"]["auto_remove"] is False
    commit_all(root, "slipway upgraded")
    assert upgrade(root, moved_answers(), two_versions).changed == []  # up to date now


def test_upgrade_marks_an_edit_the_new_template_also_changes_as_a_conflict(tmp_path, two_versions, locked):
    root = team(tmp_path / "team", {"pipelines/a.py": FLOW.format(name="a"), "requirements.txt": "prefect==3.8.8\n"})
    init(root)
    commit_all(root, "init")
    config = (root / "slipway.yaml").read_text()
    (root / "slipway.yaml").write_text(config.replace(
        "      image_pull_policy: IfNotPresent  # the image is pinned by digest: a present layer is the right one\n",
        "      image_pull_policy: Always\n"))
    commit_all(root, "we pull every time")
    done = upgrade(root, moved_answers(), two_versions)
    assert done.conflicts == ["slipway.yaml"]
    text = (root / "slipway.yaml").read_text()
    assert "<<<<<<< " in text and "image_pull_policy: Always" in text and "auto_remove: false" in text


def test_upgrade_refuses_a_dirty_tree_and_a_repository_init_did_not_set_up(tmp_path, two_versions, locked):
    example = snapshot_repo(tmp_path / "example")
    with pytest.raises(SlipwayError, match=".slipway-answers.yml not found"):
        upgrade(example, moved_answers(), two_versions)
    root = team(tmp_path / "team", {"pipelines/a.py": FLOW.format(name="a"), "requirements.txt": "prefect==3.8.8\n"})
    init(root)
    with pytest.raises(SlipwayError, match="uncommitted changes"):
        upgrade(root, moved_answers(), two_versions)


def test_an_init_killed_before_it_wrote_slipway_yaml_is_finished_by_the_next_run(tmp_path, locked, monkeypatch):
    root = team(tmp_path / "team", {"pipelines/a.py": FLOW.format(name="a"), "requirements.txt": "prefect==3.8.8\n"})
    from slipway.init import scaffold

    real_copy = shutil.copy2

    def killed_at_slipway_yaml(source, target, *args, **kwargs):
        if Path(target).name == "slipway.yaml":
            raise KeyboardInterrupt
        return real_copy(source, target, *args, **kwargs)

    monkeypatch.setattr(scaffold.shutil, "copy2", killed_at_slipway_yaml)
    with pytest.raises(KeyboardInterrupt):
        init(root)
    assert not (root / "slipway.yaml").exists() and (root / ".slipway-answers.yml").exists()
    first = {p: (root / p).read_bytes() for p in (".slipway-answers.yml", "requirements/runtime.txt",
                                                   "deployments.yaml")}
    monkeypatch.setattr(scaffold.shutil, "copy2", real_copy)
    done = init(root)
    assert done.placement.written == ["slipway.yaml"]
    assert {p: (root / p).read_bytes() for p in first} == first  # the first run's files, as they were
    assert yaml.safe_load((root / "slipway.yaml").read_text())["deployments"] == "deployments.yaml"

