"""The pure parts of `slipway doctor`: the import-time hint, the dbt variables without a default, the
version check as a finding, the pip_packages fix, and what doctor prints."""
from __future__ import annotations

import pytest
import yaml

from slipway.errors import Finding, SlipwayError
from slipway.image.probe import import_time_hint
from slipway.project.config import check_project
from slipway.project.dbt import dbt_projects, env_vars_without_default
from slipway.results import doctor_human, doctor_json
from tests.kit.repo import REPO_ROOT, git


@pytest.mark.parametrize("error, kind", [
    ("ValueError: No Prefect API URL provided. Please set PREFECT_API_URL to the address of a running Prefect "
     "server.", "Prefect's API"),
    ("RuntimeError: Timed out while attempting to connect to ephemeral Prefect API server.", "Prefect's API"),
    ("ValueError: Unable to find block document named warehouse for block type secret", "Prefect's API"),
    ("ConnectError: [Errno 111] Connection refused", "opens a connection"),
    ("OperationalError: could not translate host name \"db\" to address: Temporary failure in name resolution",
     "opens a connection"),
    ("ModuleNotFoundError: No module named 'pandas'", None),
    ("FileNotFoundError: [Errno 2] No such file or directory: '/opt/prefect/flows/x.py'", None),
])
def test_an_import_that_does_work_at_import_time_gets_a_hint_and_nothing_else_does(error, kind):
    hint = import_time_hint(error)
    assert (hint is None) if kind is None else (kind in hint and "the flow function or a task" in hint)


def test_env_vars_without_a_default_are_named_with_file_and_line(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "profiles.yml").write_text("a:\n  outputs:\n    dev:\n      path: \"{{ env_var('WAREHOUSE') }}\"\n"
                                           "      user: \"{{ env_var('USER', 'me') }}\"\n")
    (tmp_path / "models" / "m.sql").write_text("select '{{ env_var(\"REGION\") }}', '{{ env_var('WAREHOUSE') }}'\n")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "compiled.sql").write_text("{{ env_var('IN_TARGET') }}\n")  # dbt's output: skipped
    assert env_vars_without_default(tmp_path) == {"REGION": "models/m.sql:1", "WAREHOUSE": "profiles.yml:4"}


def test_dbt_projects_are_the_ones_git_would_have(tmp_path):
    for folder in (".", "analytics", "analytics/dbt_packages/pkg"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "dbt_project.yml").write_text("name: x\n")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "dbt_project.yml").write_text("name: ignored\n")
    (tmp_path / ".gitignore").write_text("venv/\n")
    git(tmp_path, "init", "-q")
    assert dbt_projects(tmp_path) == [".", "analytics"]


def test_a_slipway_range_this_slipway_is_outside_is_a_finding_and_the_file_is_still_read(tmp_path):
    config = yaml.safe_load((REPO_ROOT / "slipway.yaml").read_text())
    (tmp_path / "slipway.yaml").write_text(yaml.safe_dump({**config, "slipway": ">=99"}))
    project, findings = check_project(tmp_path)
    assert project is not None
    assert [(f.level, f.check) for f in findings] == [("error", "version")]
    assert findings[0].line().startswith("error: slipway.yaml needs slipway >=99, and this is slipway ")

    (tmp_path / "slipway.yaml").write_text(yaml.safe_dump({**config, "imgae": {}}))
    project, findings = check_project(tmp_path)
    assert project is None and findings[0].line().startswith("error: slipway.yaml: imgae: unknown key")


def test_pip_packages_on_a_docker_pool_says_to_move_them_into_the_lock():
    from slipway.deploy.validate import default_pool_template, validate_job_variables
    from slipway.project.declarations import ResolvedDeployment

    dep = ResolvedDeployment(0, "ingest", "hourly", "pipelines/ingest.py:ingest", None, {}, [], "x", [], "pool",
                             None, {"pip_packages": ["pandas"]},
                             {"pip_packages": "prefect.yaml: deployments[0].work_pool.job_variables.pip_packages"})
    with pytest.raises(SlipwayError) as told:
        validate_job_variables(dep, dep.job_variables, default_pool_template("docker"), "'pool'")
    assert told.value.message.startswith("prefect.yaml: deployments[0].work_pool.job_variables.pip_packages: "
                                         "unknown job variable")
    assert "add the packages to the runtime lock" in told.value.fix and "use one of" not in told.value.fix


def test_doctor_prints_one_line_per_finding_then_ok_or_how_many_errors():
    warning = Finding("warning", "git", "uncommitted changes", "commit them")
    error = Finding("error", "dbt", "dbt parse fails", "give it a default")
    assert doctor_human([]) == "ok"
    assert doctor_human([warning]) == "warning: uncommitted changes; commit them\nok (1 warning)"
    assert doctor_human([warning, error, error]).splitlines() == [
        "warning: uncommitted changes; commit them", "error: dbt parse fails; give it a default",
        "error: dbt parse fails; give it a default", "2 errors (1 warning): a release would fail"]
    assert doctor_json([error]) == {"ok": False, "findings": [
        {"level": "error", "check": "dbt", "message": "dbt parse fails", "fix": "give it a default"}]}
