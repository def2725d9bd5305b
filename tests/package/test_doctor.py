"""`slipway doctor`, from the wheel, on a repository that is not this one (tests/kit/foreign.py): each thing
a release of it would fail on is one line naming its cause and fix; after those fixes, `ok`."""
from __future__ import annotations

import uuid

from tests.kit.foreign import apply_doctors_fixes, write_foreign_repo
from tests.kit.repo import git


def test_doctor_names_what_would_fail_a_foreign_repository_and_then_says_ok(installed_slipway, docker_engine,
                                                                             tmp_path):
    from tests.conftest import remove_tags_containing

    name = f"doctor-{uuid.uuid4().hex[:8]}"
    repo = write_foreign_repo(tmp_path / "team", name)
    try:
        found = installed_slipway.run("doctor", cwd=repo)
        assert found.code == 1, found.stderr
        lines = found.stdout.splitlines()
        errors = [line for line in lines if line.startswith("error: ")]
        assert lines[-1] == "4 errors (4 warnings): a release would fail", found.stdout
        assert [line.split(": ignored: ")[0] for line in lines if line.startswith("warning: ")] == [
            "warning: prefect.yaml: build", "warning: prefect.yaml: push",
            "warning: prefect.yaml: deployments[0].work_pool.name (and 1 more)",
            "warning: prefect.yaml: deployments[0].work_pool.job_variables.image"]  # slipway's own steps

        def one(*parts: str) -> str:
            matching = [line for line in errors if all(part in line for part in parts)]
            assert len(matching) == 1, (parts, found.stdout)
            return matching[0]

        one("pipelines/build/nightly.py (the entry point of 'nightly') is ignored by Git (.gitignore:", ":build/)",
            "git add -f pipelines/build/nightly.py")
        one("prefect.yaml: deployments[0].entrypoint: pipelines/ingest.py:ingest does not load",
            "No Prefect API URL", "the module calls Prefect's API at import time (a Block.load",
            "move that call into the flow function")
        one("prefect.yaml: deployments[0].work_pool.job_variables.pip_packages: unknown job variable for work pool "
            "'team-docker' (docker worker default)", "add the packages to the runtime lock")
        one("dbt_project.yml: dbt parse fails in the image: env_var('WAREHOUSE_PATH') (profiles.yml:6) has no "
            "default and WAREHOUSE_PATH is not set", "environments.local.job_variables.env")
        assert len(errors) == 4, found.stdout  # the ignored flow is not also said not to import
        assert "Traceback" not in found.stderr
        assert docker_engine.api.containers(all=True, filters={"ancestor": "slipway-probe"}) == []

        as_json = installed_slipway.run("doctor", "--json", cwd=repo)
        assert as_json.code == 1
        report = as_json.json()
        assert report["ok"] is False
        assert {f["check"] for f in report["findings"] if f["level"] == "error"} == {
            "git", "imports", "job_variables", "dbt"}

        apply_doctors_fixes(repo)
        fixed = installed_slipway.run("doctor", cwd=repo)
        assert fixed.code == 0, fixed.stdout + fixed.stderr
        assert fixed.stdout.splitlines()[-1] == "ok (4 warnings)", fixed.stdout
        assert not [line for line in fixed.stdout.splitlines() if line.startswith("error: ")]
        assert git(repo, "status", "--porcelain", "--ignored") == ""  # doctor wrote nothing, ignored or not
    finally:
        remove_tags_containing(docker_engine, name)
