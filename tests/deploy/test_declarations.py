"""The declarations loader, the per-environment merge, schedule comparison and the repo's Kubernetes files.

No Docker and no server: these run on the repository's real slipway.yaml, deployments.yaml, work-pool
template and helm files, plus small inline declarations.
"""
from __future__ import annotations

import datetime

import kubernetes_validate
import pytest
import yaml

from slipway.deploy.desired import DesiredSchedule, ScheduleSpec, schedule_matches
from slipway.deploy.kubernetes import load_job_template, validate_manifest
from slipway.deploy.live import LiveSchedule
from slipway.deploy.plan import plan_schedules
from slipway.errors import SlipwayError
from slipway.project.config import load_project
from slipway.project.declarations import (
    load_declarations,
    parse_declarations,
    resolve_for_environment,
)
from tests.kit.jobs import manifest_image, render_job_manifest
from tests.kit.repo import REPO_ROOT

# The flow names of the example flows (`@flow(name=...)`), in deployments.yaml's order.
REPO_FLOW_NAMES = ["extract-load", "dbt-build", "elt", "elt"]


@pytest.fixture(scope="module")
def repo():
    project = load_project(REPO_ROOT)
    return project, load_declarations(project)


def test_repository_declarations_load(repo):
    _, decls = repo
    assert [d.name for d in decls.deployments] == ["jaffle-shop", "jaffle-shop", "daily", "on-demand"]
    daily = decls.deployments[2].schedules[0]
    assert daily.to_prefect().cron == "0 6 * * *" and daily.to_prefect().timezone == "Europe/Amsterdam"


def test_environment_overrides_merge(repo):
    project, decls = repo
    prod = resolve_for_environment(decls, REPO_FLOW_NAMES, "prod", project.environment("prod"))
    by_name = {d.full_name: d for d in prod}
    assert set(by_name) == {"extract-load/jaffle-shop", "dbt-build/jaffle-shop", "elt/daily", "elt/on-demand"}
    daily = by_name["elt/daily"]
    assert daily.parameters == {"child_runs": "deployments"}  # slipway.yaml's override wins
    assert by_name["elt/on-demand"].parameters == {"child_runs": "subflows"}  # no override: declared value
    assert daily.work_pool_name == "prod-kubernetes"
    assert daily.job_variables == {"namespace": "prefect", "service_account_name": "prefect-flows",
                                   "env": {"WAREHOUSE": "snowflake"}}
    assert daily.tags == ["jaffle-shop", "elt", "prod"]
    assert daily.job_variables_source["env"] == "slipway.yaml: environments.prod.job_variables.env"
    assert daily.schedules_field == "deployments.yaml: deployments[2].schedules"


def test_override_precedence_schedules_and_sources(repo):
    project, _ = repo
    decls = parse_declarations(yaml.safe_dump({"deployments": [
        {"name": "d", "entrypoint": "flows/a.py:a", "parameters": {"x": 1, "y": 2},
         "schedules": [{"cron": "0 1 * * *"}], "tags": ["a"],
         "work_pool": {"job_variables": {"env": {"A": "declared", "B": "declared"}, "cpu_limit": "2"}}}]}))
    env = project.environment("prod").model_copy(update={"deployments": {
        "f/d": {"parameters": {"y": 3}, "schedules": [], "tags": ["b"],
                "job_variables": {"env": {"B": "override"}}}}})
    [dep] = resolve_for_environment(decls, ["f"], "prod", env)
    assert dep.parameters == {"x": 1, "y": 3}
    assert dep.schedules == [] and dep.schedules_field.endswith("environments.prod.deployments.f/d.schedules")
    assert dep.tags == ["a", "prod", "b"]
    # environment < declaration < per-deployment override, merged key by key inside `env`
    assert dep.job_variables["env"] == {"WAREHOUSE": "snowflake", "A": "declared", "B": "override"}
    assert dep.job_variables["cpu_limit"] == "2"
    assert dep.job_variables_source["cpu_limit"] == "deployments.yaml: deployments[0].work_pool.job_variables.cpu_limit"


@pytest.mark.parametrize("declarations, env_update, expected", [
    ({"deployments": [{"name": "d", "entrypoint": "flows/a.py:a"}, {"name": "d", "entrypoint": "flows/b.py:a"}]},
     {}, "deployments.yaml: deployments[1].name: 'f/d' is already declared by deployments[0]"),
    ({"deployments": [{"name": "d", "entrypoint": "flows/a.py:a"}]},
     {"deployments": {"f/d": {"work_pool": {"name": "other"}}}},
     "slipway.yaml: environments.prod.deployments.f/d.work_pool.name: 'other' is not the environment's work pool"),
    ({"deployments": [{"name": "d", "entrypoint": "flows/a.py:a"}]},
     {"deployments": {"f/d": {"paramters": {}}}}, "slipway.yaml: environments.prod.deployments.f/d.paramters: unknown key"),
    ({"deployments": [{"name": "d", "entrypoint": "flows/a.py:a"}]},
     {"deployments": {"f/d": {"schedules": [{"cron": "* * *"}]}}},
     "slipway.yaml: environments.prod.deployments.f/d.schedules[0].cron: Invalid cron string"),
    ({"deployments": [{"name": "d", "entrypoint": "flows/a.py:a"}]},
     {"deployments": {"d": {}}}, "slipway.yaml: environments.prod.deployments.d: keys are '<flow name>/<deployment name>'"),
])
def test_merge_errors_name_file_and_field(repo, declarations, env_update, expected):
    project, _ = repo
    decls = parse_declarations(yaml.safe_dump(declarations))
    env = project.environment("prod").model_copy(update=env_update)
    with pytest.raises(SlipwayError) as caught:
        resolve_for_environment(decls, ["f"] * len(decls.deployments), "prod", env)
    assert expected in caught.value.line()


@pytest.mark.parametrize("text, expected", [
    ("deployments:\n  - name: a\n    entrypoint: flows/a.py:a\n    schedules:\n      - cron: '0 6 * * *'\n        interval: 60\n",
     "deployments[0].schedules[0]: exactly one of 'cron', 'interval' or 'rrule' must be given"),
    ("deployments:\n  - name: a\n    entrypoint: flows/a.py\n", "deployments[0].entrypoint: 'flows/a.py' is not of the form"),
    ("deployments:\n  - name: a\n    entrypoint: flows/a.py:a\n    schedules:\n      - rrule: 'FREQ=SOMETIMES'\n",
     "deployments[0].schedules[0].rrule: Invalid RRule string"),
    ("deployments:\n  - name: a\n    entrypoint: flows/a.py:a\n    schedules:\n      - cron: '0 6 * * *'\n        active: 'yes please'\n",
     "deployments[0].schedules[0].active: Input should be a valid boolean"),
    ("deployments:\n  - name: a\n    entrypoint: flows/a.py:a\n    schedules:\n      - {cron: '0 6 * * *', slug: s}\n      - {cron: '0 7 * * *', slug: s}\n",
     "deployments[0].schedules: schedule slugs must be unique"),
    ("deployments: []\n", "deployments: List should have at least 1 item"),
    ("deployments:\n  - name: a\n    entrypoint: flows/a.py:a\n    concurrency_limit: many\n",
     "deployments[0].concurrency_limit: Input should be a valid integer"),
])
def test_loader_errors(text, expected):
    with pytest.raises(SlipwayError) as caught:
        parse_declarations(text)
    line = caught.value.line()
    assert line.startswith("deployments.yaml: ") and expected in line, line
    assert "\n" not in line


def spec(prefect_schedule) -> ScheduleSpec:
    """A schedule as Prefect's API returns it, from Prefect's own model."""
    return ScheduleSpec.from_api(prefect_schedule.model_dump())


def test_schedule_comparison_is_semantic():
    from prefect.client.schemas.schedules import (
        CronSchedule,
        IntervalSchedule,
        RRuleSchedule,
    )

    [d] = parse_declarations(yaml.safe_dump({"deployments": [{"name": "a", "entrypoint": "f/a.py:a", "schedules": [
        {"cron": "0  6 * * *"}, {"interval": 3600}, {"rrule": "FREQ=DAILY;BYHOUR=6"},
        {"interval": "PT1H", "anchor_date": "2026-01-01T00:00:00Z"}]}]})).deployments
    cron, interval, rrule, anchored = d.schedules
    assert schedule_matches(cron, spec(CronSchedule(cron="0 6 * * *", timezone="UTC")))  # spacing, default tz
    assert not schedule_matches(cron, spec(CronSchedule(cron="0 7 * * *")))
    assert not schedule_matches(cron, spec(CronSchedule(cron="0 6 * * *", timezone="Europe/Amsterdam")))
    assert not schedule_matches(cron, spec(CronSchedule(cron="0 6 * * *", day_or=False)))
    # An interval without a declared anchor matches whatever anchor Prefect chose at creation.
    assert schedule_matches(interval, spec(IntervalSchedule(interval=datetime.timedelta(hours=1),
                                                           anchor_date="2020-05-05T00:00:00Z")))
    assert not schedule_matches(anchored, spec(IntervalSchedule(interval=datetime.timedelta(hours=1),
                                                               anchor_date="2020-05-05T00:00:00Z")))
    assert schedule_matches(anchored, spec(IntervalSchedule(interval=datetime.timedelta(hours=1),
                                                           anchor_date="2026-01-01T00:00:00Z")))
    assert not schedule_matches(interval, spec(IntervalSchedule(interval=datetime.timedelta(hours=2))))
    # The DTSTART Prefect injects into a bare rrule is not a change.
    assert schedule_matches(rrule, spec(RRuleSchedule(rrule="DTSTART:20200101T000000\nRRULE:FREQ=DAILY;BYHOUR=6")))
    assert not schedule_matches(rrule, spec(RRuleSchedule(rrule="DTSTART:20200101T000000\nRRULE:FREQ=DAILY;BYHOUR=7")))
    assert not schedule_matches(cron, spec(IntervalSchedule(interval=datetime.timedelta(hours=1))))


def test_schedule_reconcile_by_slug_keeps_undeclared_active_state():
    from prefect.client.schemas.schedules import CronSchedule

    decls = parse_declarations(yaml.safe_dump({"deployments": [{"name": "a", "entrypoint": "f/a.py:a", "schedules": [
        {"cron": "0 6 * * *"}, {"cron": "0 7 * * *", "active": True}, {"cron": "0 8 * * *"}]}]}))
    s1, s2, s3 = decls.deployments[0].schedules
    desired = [DesiredSchedule("schedule-1", s1), DesiredSchedule("schedule-2", s2), DesiredSchedule("new", s3)]
    live = [_live(CronSchedule(cron="0 6 * * *"), active=False, slug="schedule-1"),  # paused in the UI
            _live(CronSchedule(cron="0 7 * * *"), active=False, slug="schedule-2"),
            _live(CronSchedule(cron="0 9 * * *"), slug="gone"),
            _live(CronSchedule(cron="0 9 * * *"), slug=None)]
    ops = plan_schedules(desired, live)
    assert [s.slug for s in ops.create] == ["new"]
    # schedule-1: `active` undeclared -> the pause stays; schedule-2 declares active: true -> reactivated.
    assert [(have.slug, fields) for have, _, fields in ops.update] == [("schedule-2", ["active"])]
    assert [s.slug for s in ops.delete] == ["gone", None]


def _live(schedule, active: bool = True, slug: str | None = None, parameters: dict | None = None) -> LiveSchedule:
    return LiveSchedule(id=f"id-{slug}", slug=slug, active=active, parameters=parameters or {}, schedule=spec(schedule))


# --- the repository's Kubernetes files ---------------------------------------------------------------------

@pytest.mark.parametrize("env_name", ["kind", "staging", "prod"])
def test_repository_template_renders_strictly_valid_jobs(repo, env_name):
    project, decls = repo
    env = project.environment(env_name)
    template = load_job_template(project.resolve(env.work_pool.base_job_template), env.work_pool.base_job_template)
    reference = f"{env.image_repository()}@sha256:{'1' * 64}"
    for dep in resolve_for_environment(decls, REPO_FLOW_NAMES, env_name, env):
        manifest = render_job_manifest(template, {**dep.job_variables, "image": reference},
                                       flow_name=dep.flow_name, deployment_name=dep.name,
                                       work_pool_name=env.work_pool.name, api_url=env.prefect.api_url)
        validate_manifest(manifest, project.config.kubernetes_version)
        assert manifest_image(manifest) == reference
        pod = manifest["spec"]["template"]["spec"]
        assert "parallelism" not in pod and manifest["spec"]["parallelism"] == 1
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["envFrom"][0]["secretRef"]["name"] == "prefect-flows-env"


def test_template_variables_match_what_the_manifest_uses():
    """Every `{{ variable }}` in the template is declared, and every declared variable is used."""
    from prefect.utilities.templating import find_placeholders

    template = load_job_template(REPO_ROOT / "deploy/work-pools/kubernetes-job-template.json", "template")
    used = {p.name for p in find_placeholders(template["job_configuration"])}
    declared = set(template["variables"]["properties"])
    assert used == declared


def test_manifest_validation_is_strict():
    template = load_job_template(REPO_ROOT / "deploy/work-pools/kubernetes-job-template.json", "template")
    manifest = render_job_manifest(template, {"image": "r/x@sha256:" + "2" * 64}, flow_name="f",
                                   deployment_name="d", work_pool_name="p")
    manifest["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(ValueError, match="imagePullPolicyy"):
        validate_manifest(manifest, "1.30.0")


def test_helm_rbac_is_strictly_valid_and_values_match_slipway_yaml(repo):
    project, _ = repo
    docs = [d for d in yaml.safe_load_all((REPO_ROOT / "deploy/helm/rbac.yaml").read_text()) if d]
    assert {d["kind"] for d in docs} == {"ServiceAccount", "Role", "RoleBinding"}
    for doc in docs:
        kubernetes_validate.validate(doc, project.config.kubernetes_version, strict=True)
    role = next(d for d in docs if d["kind"] == "Role")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"jobs", "pods", "pods/log", "events"} <= resources
    for env_name in ("kind", "staging", "prod"):
        values = yaml.safe_load((REPO_ROOT / f"deploy/helm/values-{env_name}.yaml").read_text())
        assert values["worker"]["config"]["workPool"] == project.environment(env_name).work_pool.name
    import prefect

    base = yaml.safe_load((REPO_ROOT / "deploy/helm/values.yaml").read_text())
    assert base["worker"]["image"]["prefectTag"].startswith(prefect.__version__ + "-")


def test_a_job_that_would_not_run_the_release_or_would_run_as_root_is_refused(repo):
    """The Job must run the release's digest, and not as root: a template that drops `{{ image }}` still
    renders a valid Job (the worker would then send Prefect's own image by tag)."""
    import copy

    from slipway.deploy.validate import check_job_runs_the_release

    project, decls = repo
    env = project.environment("kind")
    template = load_job_template(REPO_ROOT / "deploy/work-pools/kubernetes-job-template.json", "template")
    dep = resolve_for_environment(decls, REPO_FLOW_NAMES, "kind", env)[0]
    reference = f"{env.image_repository()}@sha256:{'3' * 64}"

    def render(tpl):
        return render_job_manifest(tpl, {**dep.job_variables, "image": reference}, flow_name=dep.flow_name,
                                   deployment_name=dep.name, work_pool_name="p")

    check_job_runs_the_release(dep, render(template), reference, "template")  # the repo's template passes
    no_image = copy.deepcopy(template)
    del no_image["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["image"]
    with pytest.raises(SlipwayError, match="not the release's"):
        check_job_runs_the_release(dep, render(no_image), reference, "template")
    as_root = copy.deepcopy(template)
    pod = as_root["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    pod["securityContext"] = {"runAsUser": 0}
    with pytest.raises(SlipwayError, match="as root"):
        check_job_runs_the_release(dep, render(as_root), reference, "template")
    pod["securityContext"] = {}
    with pytest.raises(SlipwayError, match="as root"):
        check_job_runs_the_release(dep, render(as_root), reference, "template")


def test_keys_slipway_owns_are_ignored_with_one_warning_each():
    """A deployment's `version`, `work_pool.name` and `work_pool.job_variables.image`, and the build/push/pull
    steps, are slipway's steps: the file still loads, each key once in the warnings, none in the result."""
    decls = parse_declarations(
        "pull: [{prefect.deployments.steps.git_clone: {repository: r}}]\n"
        "deployments:\n"
        "  - {name: a, entrypoint: flows/a.py:a, version: '1.0', work_pool: {name: other, job_variables: {image: x}}}\n"
        "  - {name: b, entrypoint: flows/a.py:b, version: '2.0'}\n")
    assert decls.warnings == (
        "deployments.yaml: pull: ignored: slipway sets the pull step (the working directory inside the release image)",
        "deployments.yaml: deployments[0].version (and 1 more): ignored: slipway sets the version to the release's "
        "Git SHA",
        "deployments.yaml: deployments[0].work_pool.name: ignored: slipway registers every deployment in the "
        "environment's pool (slipway.yaml environments.<env>.work_pool.name)",
        "deployments.yaml: deployments[0].work_pool.job_variables.image: ignored: slipway sets the image to the "
        "release's digest reference")
    assert decls.deployments[0].work_pool.name is None and decls.deployments[0].work_pool.job_variables == {}
