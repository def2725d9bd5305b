"""Each bad input: one `error:` line naming the file and the field, exit status 1, and nothing changed —
no deployment or work pool in Prefect, no tag in the registry (validation runs before the push)."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.deploy.conftest import (
    default_deployments,
    free_port,
    prefect_state,
    slipway_config,
    tag_bare_image,
    work_pool_state,
)


def all_names(project) -> list[str]:
    flows = ["deploy-test-hello", "deploy-test-numbers", "deploy-test-broken"]
    deps = [f"{project.name}-hourly", f"{project.name}-manual", f"{project.name}-rrule", f"{project.name}-x"]
    return [f"{f}/{d}" for f in flows for d in deps]


def assert_nothing_changed(project) -> None:
    assert all(v is None for v in prefect_state(project.server.api_url, all_names(project)).values())
    assert work_pool_state(project.server.api_url, project.docker_pool) is None
    assert work_pool_state(project.server.api_url, project.kube_pool) is None
    assert project.registry.tags(project.name) == []


def edit_deployments(project, change) -> None:
    decls = default_deployments(project.name)
    change(decls["deployments"])
    project.write("deployments.yaml", yaml.safe_dump(decls, sort_keys=False))


def edit_config(project, change) -> None:
    config = slipway_config(project.name, project.registry.address, project.server.api_url)
    change(config)
    project.write("slipway.yaml", yaml.safe_dump(config, sort_keys=False))


def set_in(path: list, value):
    def change(data):
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value
    return change


SECRET = "s3cr3t-Pw"  # never printed, whatever the case
CASES = {
    "malformed-yaml": (
        lambda p: p.write("deployments.yaml", "deployments:\n  - name: a\n    entrypoint: [flows/hello.py:hello\n"),
        "local", ["deployments.yaml: line", "is not valid YAML"]),
    "unknown-key": (
        lambda p: edit_deployments(p, set_in([1, "shedules"], [])),
        "local", ["deployments.yaml: deployments[1].shedules: unknown key"]),
    "bad-cron": (
        lambda p: edit_deployments(p, set_in([0, "schedules", 0, "cron"], "0 25 * * *")),
        "local", ["deployments.yaml: deployments[0].schedules[0].cron:", "0 25 * * *"]),
    "bad-timezone": (
        lambda p: edit_deployments(p, set_in([2, "schedules", 0, "timezone"], "Europe/Atlantis")),
        "local", ["deployments.yaml: deployments[2].schedules[0].timezone:", "Europe/Atlantis"]),
    "unknown-entrypoint-file": (
        lambda p: edit_deployments(p, set_in([1, "entrypoint"], "flows/nope.py:numbers")),
        "local", ["deployments.yaml: deployments[1].entrypoint: flows/nope.py:numbers does not load in image"]),
    "unknown-entrypoint-function": (
        lambda p: edit_deployments(p, set_in([0, "entrypoint"], "flows/hello.py:goodbye")),
        "local", ["deployments.yaml: deployments[0].entrypoint: flows/hello.py:goodbye does not load", "goodbye"]),
    "flow-fails-to-import-in-image": (
        lambda p: edit_deployments(p, set_in([2, "entrypoint"], "flows/broken.py:broken")),
        "local", ["deployments.yaml: deployments[2].entrypoint: flows/broken.py:broken does not load",
                  "slipway_tests_missing_dependency"]),
    "parameter-wrong-type": (
        lambda p: edit_deployments(p, set_in([0, "parameters", "count"], "many")),
        "local", ["deployments.yaml: deployments[0].parameters.count:", "integer"]),
    "parameter-unknown": (
        lambda p: edit_deployments(p, set_in([1, "parameters", "scal"], 2)),
        "local", ["deployments.yaml: deployments[1].parameters.scal:", "no parameter 'scal'"]),
    "schedule-parameter-wrong-type": (
        lambda p: edit_deployments(p, set_in([0, "schedules", 1, "parameters"], {"count": "x"})),
        "local", ["deployments.yaml: deployments[0].schedules[1].parameters.count:", "integer"]),
    "unknown-job-variable": (
        lambda p: edit_deployments(p, set_in([0, "work_pool"], {"job_variables": {"memory_limitt": "1g"}})),
        "local", ["deployments.yaml: deployments[0].work_pool.job_variables.memory_limitt: unknown job variable"]),
    "unknown-job-variable-in-environment": (
        lambda p: edit_config(p, set_in(["environments", "kind", "job_variables", "node_selectr"], {"a": "b"})),
        "kind", ["slipway.yaml: environments.kind.job_variables.node_selectr: unknown job variable"]),
    "job-variable-wrong-type": (
        lambda p: edit_config(p, set_in(["environments", "kind", "job_variables", "backoff_limit"], "zero")),
        "kind", ["slipway.yaml: environments.kind.job_variables.backoff_limit:", "integer"]),
    "invalid-kubernetes-job": (
        lambda p: edit_config(p, set_in(["environments", "kind", "job_variables", "tolerations"],
                                        [{"key": "gpu", "efect": "NoSchedule"}])),
        "kind", ["deploy/work-pools/kubernetes-job-template.json: the Job rendered for",
                 "spec.template.spec.tolerations.0: unknown field", "efect"]),
    "kubernetes-cpu-not-a-quantity": (
        lambda p: edit_config(p, set_in(["environments", "kind", "job_variables", "cpu_request"], "lots")),
        "kind", ["slipway.yaml: environments.kind.job_variables.cpu_request: 'lots' is not a Kubernetes quantity",
                 "512Mi"]),
    "kubernetes-request-above-limit": (
        lambda p: edit_config(p, set_in(["environments", "kind", "job_variables", "memory_request"], "4Gi")),
        "kind", ["slipway.yaml: environments.kind.job_variables.memory_request: the memory request '4Gi' is more "
                 "than the limit '2Gi'"]),
    "kubernetes-namespace-name": (
        lambda p: edit_config(p, set_in(["environments", "kind", "job_variables", "namespace"], "Prefect_Flows")),
        "kind", ["slipway.yaml: environments.kind.job_variables.namespace: 'Prefect_Flows' is not a valid "
                 "Kubernetes namespace", "lowercase letters"]),
    "password-in-a-parameter": (
        lambda p: edit_deployments(p, set_in([0, "parameters", "name"], f"postgresql://loader:{SECRET}@db/w")),
        "local", ["deployments.yaml: deployments[0].parameters.name: this parameter looks like a secret",
                  "Secret block", "not_secret"]),
    "token-in-an-environment-job-variable": (
        lambda p: edit_config(p, set_in(["environments", "kind", "job_variables", "env"], {"API_TOKEN": SECRET})),
        "kind", ["slipway.yaml: environments.kind.job_variables.env.API_TOKEN: this job variable looks like a secret",
                 "env_from"]),
    "override-for-unknown-deployment": (
        lambda p: edit_config(p, set_in(["environments", "local", "deployments"],
                                        {"deploy-test-hello/nope": {"parameters": {"count": 1}}})),
        "local", ["slipway.yaml: environments.local.deployments.deploy-test-hello/nope: no such deployment"]),
    "unknown-environment": (lambda p: None, "staging", ["slipway.yaml: unknown environment 'staging'"]),
    "pull-secret-not-a-kubernetes-name": (
        lambda p: edit_config(p, set_in(["environments", "kind", "image_pull_secret"], "Registry_Creds")),
        "kind", ["slipway.yaml: environments.kind.image_pull_secret: 'Registry_Creds' is not a valid Kubernetes "
                 "Secret name"]),
    "unknown-registry-credentials-block": (
        lambda p: edit_config(p, set_in(["environments", "local", "registry_credentials_block"], "no-such-block")),
        "local", ["slipway.yaml: environments.local.registry_credentials_block: no Docker Registry Credentials "
                  "block 'no-such-block'"]),
    "prefect-yaml-key-wrong-type": (
        lambda p: edit_deployments(p, set_in([1, "concurrency_limit"], {"limit": 1, "collision_strategy": "DROP"})),
        "local", ["deployments.yaml: deployments[1].concurrency_limit.collision_strategy: Input should be"]),
    "prefect-yaml-trigger-wrong-type": (
        lambda p: edit_deployments(p, set_in([0, "triggers"], [{"expect": ["x"], "within": "soon"}])),
        "local", ["deployments.yaml: deployments[0].triggers[0]: within"]),
    "prefect-server-down": (
        lambda p: edit_config(p, set_in(["environments", "local", "prefect", "api_url"],
                                        f"http://127.0.0.1:{free_port()}/api")),
        "local", ["Prefect API at http://127.0.0.1:", "does not answer"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(project, cli, case):
    change, env, expected = CASES[case]
    change(project)
    project.commit("a bad edit")  # committed: a non-local environment refuses a dirty tree before anything else
    project.tag_head_image()
    for verb in ("deploy", "plan"):
        outcome = cli(verb, "--env", env, "--json", "--root", str(project.root))
        assert outcome.code == 1, (verb, outcome.stdout, outcome.stderr)
        assert outcome.stdout == ""
        error = outcome.error
        assert error, outcome.stderr
        for fragment in expected:
            assert fragment in error, (verb, error)
        assert "Traceback" not in outcome.stderr
        assert SECRET not in outcome.stdout + outcome.stderr
    assert_nothing_changed(project)


def test_an_image_built_from_other_declarations_is_refused(project, cli):
    edit_deployments(project, set_in([1, "parameters", "scale"], 3.5))
    project.tag_head_image()  # HEAD's -dirty image, built from this deployments.yaml
    edit_deployments(project, set_in([1, "parameters", "scale"], 4.5))  # ... which then changes again
    for verb in ("deploy", "plan"):
        outcome = cli(verb, "--env", "local", "--root", str(project.root))
        assert outcome.code == 1 and "Traceback" not in outcome.stderr
        assert "was built from another slipway.yaml or deployments.yaml than the working tree's" in outcome.error
        assert "slipway image" in outcome.error
    assert_nothing_changed(project)


def test_an_image_without_a_release_layer_is_refused(project, cli, docker_engine, flows_image):
    tag_bare_image(docker_engine, flows_image, project)  # HEAD's tags, but not built by slipway
    for verb in ("deploy", "plan"):
        outcome = cli(verb, "--env", "local", "--root", str(project.root))
        assert outcome.code == 1 and "Traceback" not in outcome.stderr
        assert "has no release layer" in outcome.error, outcome.error
    assert_nothing_changed(project)


def test_manifests_refuses_an_image_that_is_not_pushed(project, cli):
    outcome = cli("manifests", "--env", "kind", "--root", str(project.root))
    assert outcome.code == 1
    assert f"is not in {project.registry.address}/{project.name}" in outcome.error
    assert "slipway push --env kind" in outcome.error
    assert_nothing_changed(project)


def test_unchanged_plan_json_is_machine_readable(project, cli):
    assert cli("deploy", "--env", "local", "--root", str(project.root)).code == 0
    planned = cli("plan", "--env", "local", "--json", "--root", str(project.root))
    assert planned.code == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["pushed"] is True and plan["reference"].startswith(f"{project.registry.address}/{project.name}@sha256:")
    assert {d["action"] for d in plan["deployments"]} == {"unchanged"}
    assert plan["work_pool"] == {"name": project.docker_pool, "action": "unchanged", "changes": []}


def test_human_output_of_plan_and_deploy(project, cli):
    planned = cli("plan", "--env", "local", "--root", str(project.root))
    assert planned.code == 0, planned.stderr
    assert "(not in the registry yet: deploy pushes it first)" in planned.stdout
    assert f"work pool {project.docker_pool}: created" in planned.stdout
    assert "would be: 3 created (nothing written)" in planned.stdout
    deployed = cli("deploy", "--env", "local", "--root", str(project.root))
    assert deployed.code == 0, deployed.stderr
    lines = deployed.stdout.splitlines()
    assert lines[0].startswith(f"local: {project.registry.address}/{project.name}@sha256:")
    assert lines[-1] == "3 created"


def test_a_release_refused_after_its_probe_started_leaves_no_probe_behind(project, cli, docker_engine, flows_image,
                                                                          monkeypatch):
    """`make image deploy` starts the entry-point probe's container before it reads deployments.yaml
    (image/probe.py): a broken file still fails with one line and changes nothing, and the container and
    the candidate image it ran are removed. The session's flows image stands for the content image."""
    import docker

    from slipway import pipeline
    from slipway.image.build import ContentImage

    content = ContentImage(flows_image, "", docker_engine.api.inspect_image(flows_image))
    monkeypatch.setattr("slipway.pipeline.build_content", lambda *args, **kwargs: content)
    started = []

    def start(*args):
        started.append(pipeline_start(*args))
        return started[-1]

    pipeline_start = pipeline.start_code_probe
    monkeypatch.setattr("slipway.pipeline.start_code_probe", start)
    project.write("deployments.yaml", "deployments:\n  - name: a\n    entrypoint: [flows/hello.py:hello\n")
    project.commit("a bad edit")

    outcome = cli("release", "--env", "local", "--json", "--root", str(project.root))

    assert outcome.code == 1 and outcome.stdout == ""
    assert "deployments.yaml: line" in outcome.error and "Traceback" not in outcome.stderr
    [probe] = started  # the probe had started: the release waits for it, then removes it
    assert probe.running.closed
    with pytest.raises(docker.errors.NotFound):
        docker_engine.api.inspect_container(probe.running.cid)
    assert probe.candidate.startswith("slipway-probe:")
    with pytest.raises(docker.errors.ImageNotFound):
        docker_engine.images.get(probe.candidate)
    assert_nothing_changed(project)
