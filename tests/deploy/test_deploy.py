"""deploy / plan / manifests against a real Prefect server, a real registry and a real image."""
from __future__ import annotations

import yaml

from tests.deploy.conftest import default_deployments, prefect_state, work_pool_state


def names(project) -> list[str]:
    return [f"deploy-test-hello/{project.name}-hourly", f"deploy-test-numbers/{project.name}-manual",
            f"deploy-test-hello/{project.name}-rrule"]


def test_deploy_pins_digest_and_version_then_redeploy_writes_nothing(project, cli):
    assert project.registry.tags(project.name) == []  # not pushed yet: deploy pushes first

    first = cli("deploy", "--env", "local", "--json", "--root", str(project.root))
    assert first.code == 0, first.stderr
    result = first.json()
    sha = project.sha()
    digest = project.registry.digest(project.name, sha)
    assert digest and digest.startswith("sha256:")
    reference = f"{project.registry.address}/{project.name}@{digest}"
    assert result["reference"] == reference
    assert [(d["name"], d["action"]) for d in result["deployments"]] == [(n, "created") for n in names(project)]

    state = prefect_state(project.server.api_url, names(project))
    for name in names(project):
        dep = state[name]
        assert dep["id"] == next(d["id"] for d in result["deployments"] if d["name"] == name)
        assert dep["job_variables"]["image"] == reference
        assert dep["job_variables"]["network_mode"] == "host"  # the environment's job variables
        assert dep["version"] == sha
        assert dep["work_pool_name"] == project.docker_pool
        assert f"release:{sha[:12]}" in dep["tags"] and "test" in dep["tags"]
        assert digest in dep["description"]
        assert dep["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/prefect"}}]
    hourly = state[names(project)[0]]
    assert [(s["slug"], s["active"]) for s in hourly["schedules"]] == [("schedule-1", True), ("schedule-2", False)]
    assert hourly["schedules"][0]["schedule"]["cron"] == "0 * * * *"
    assert hourly["schedules"][0]["schedule"]["timezone"] == "Europe/Amsterdam"
    pool = work_pool_state(project.server.api_url, project.docker_pool)
    assert pool["type"] == "docker"

    # Redeploy the same release: no write at all — same `updated` stamps, same schedule ids.
    second = cli("deploy", "--env", "local", "--json", "--root", str(project.root))
    assert second.code == 0, second.stderr
    assert [d["action"] for d in second.json()["deployments"]] == ["unchanged"] * 3
    assert second.json()["reference"] == reference
    assert prefect_state(project.server.api_url, names(project)) == state
    assert work_pool_state(project.server.api_url, project.docker_pool) == pool


def test_plan_writes_nothing_and_names_changed_fields(project, cli):
    before = prefect_state(project.server.api_url, names(project))
    assert all(v is None for v in before.values())

    planned = cli("plan", "--env", "local", "--json", "--root", str(project.root))
    assert planned.code == 0, planned.stderr
    plan = planned.json()
    assert [d["action"] for d in plan["deployments"]] == ["created"] * 3
    assert plan["work_pool"]["action"] == "created"
    assert plan["pushed"] is False and plan["reference"] is None
    # Nothing written: not Prefect (no pool, no deployment), not the registry.
    assert prefect_state(project.server.api_url, names(project)) == before
    assert work_pool_state(project.server.api_url, project.docker_pool) is None
    assert project.registry.tags(project.name) == []

    assert cli("deploy", "--env", "local", "--root", str(project.root)).code == 0
    deployed = prefect_state(project.server.api_url, names(project))

    # Change one schedule's cron and one parameter; plan names exactly those fields and writes nothing.
    decls = default_deployments(project.name)
    decls["deployments"][0]["schedules"][0]["cron"] = "30 * * * *"
    decls["deployments"][1]["parameters"]["scale"] = 3.0
    project.write("deployments.yaml", yaml.safe_dump(decls, sort_keys=False))
    project.tag_head_image()  # the working tree is now dirty: HEAD's image carries -dirty tags
    planned = cli("plan", "--env", "local", "--json", "--root", str(project.root))
    assert planned.code == 0, planned.stderr
    rows = {d["name"]: d for d in planned.json()["deployments"]}
    hourly, manual, _ = (rows[n] for n in names(project))
    assert hourly["action"] == "updated" and "schedules.schedule-1.schedule" in hourly["changes"]
    assert "schedules.schedule-2.schedule" not in hourly["changes"]
    assert manual["action"] == "updated" and "parameters" in manual["changes"]
    assert prefect_state(project.server.api_url, names(project)) == deployed


def test_changed_schedule_keeps_its_slug_and_pause_and_drift_is_patched_in_place(project, cli):
    assert cli("deploy", "--env", "local", "--root", str(project.root)).code == 0
    first = prefect_state(project.server.api_url, names(project))

    decls = default_deployments(project.name)
    decls["deployments"][0]["schedules"][0]["cron"] = "15 * * * *"
    del decls["deployments"][0]["schedules"][1]["active"]  # undeclared: the live state is kept
    project.write("deployments.yaml", yaml.safe_dump(decls, sort_keys=False))
    project.commit("new cron")
    project.tag_head_image()
    result = cli("deploy", "--env", "local", "--json", "--root", str(project.root))
    assert result.code == 0, result.stderr
    second = prefect_state(project.server.api_url, names(project))
    hourly_1, hourly_2 = first[names(project)[0]], second[names(project)[0]]
    # A new commit changes the deployment's labels, which Prefect 3.8 takes only in an upsert: the schedules
    # are sent again by slug (new rows), the cron changed, the paused one still paused.
    assert [s["slug"] for s in hourly_2["schedules"]] == [s["slug"] for s in hourly_1["schedules"]]
    assert hourly_2["schedules"][0]["schedule"]["cron"] == "15 * * * *"
    assert hourly_2["schedules"][1]["active"] is False
    assert hourly_2["version"] == project.sha() != hourly_1["version"]
    assert hourly_2["labels"]["slipway.commit"] == project.sha()

    # Drift within one release (a person edits the cron in the UI): the same release's labels match, so the
    # schedule is patched in place — the same row — and nothing else is written.
    import anyio
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.schedules import CronSchedule

    async def edit_by_hand():
        async with PrefectClient(api=project.server.api_url) as client:
            await client.update_deployment_schedule(hourly_2["id"], hourly_2["schedules"][0]["id"],
                                                    schedule=CronSchedule(cron="45 * * * *"))

    anyio.run(edit_by_hand)
    repaired = cli("deploy", "--env", "local", "--json", "--root", str(project.root))
    assert repaired.code == 0, repaired.stderr
    assert [d["action"] for d in repaired.json()["deployments"]] == ["updated", "unchanged", "unchanged"]
    third = prefect_state(project.server.api_url, names(project))[names(project)[0]]
    assert [s["id"] for s in third["schedules"]] == [s["id"] for s in hourly_2["schedules"]]
    assert third["schedules"][0]["schedule"]["cron"] == "15 * * * *"


def test_kubernetes_environment_deploys_and_manifests_are_strictly_valid(project, cli):
    import kubernetes_validate

    deployed = cli("deploy", "--env", "kind", "--json", "--root", str(project.root))
    assert deployed.code == 0, deployed.stderr
    reference = deployed.json()["reference"]
    pool = work_pool_state(project.server.api_url, project.kube_pool)
    assert pool["type"] == "kubernetes"
    assert pool["base_job_template"] == yaml.safe_load(
        (project.root / "deploy/work-pools/kubernetes-job-template.json").read_text())

    printed = cli("manifests", "--env", "kind", "--root", str(project.root))
    assert printed.code == 0, printed.stderr
    assert printed.stdout.startswith("---")
    documents = list(yaml.safe_load_all(printed.stdout))
    assert len(documents) == 3
    for doc in documents:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
        spec = doc["spec"]
        container = spec["template"]["spec"]["containers"][0]
        assert container["image"] == reference
        assert spec["backoffLimit"] == 0 and spec["completions"] == 1 and spec["parallelism"] == 1
        assert "completions" not in spec["template"]["spec"]
        assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        assert doc["metadata"]["namespace"] == "prefect"
        assert not any(e["name"] == "PREFECT_API_KEY" for e in container["env"])


def test_deploying_an_ancestor_of_the_live_release_needs_rollback(project, cli):
    from tests.kit.repo import git

    first = project.sha()
    assert cli("deploy", "--env", "local", "--root", str(project.root)).code == 0
    project.write("README.md", "a newer commit\n")
    project.commit("newer")
    project.tag_head_image()
    assert cli("deploy", "--env", "local", "--root", str(project.root)).code == 0
    live = prefect_state(project.server.api_url, names(project))

    git(project.root, "checkout", "-q", first)  # the scratch repo, not the project's: a stale CI checkout
    refused = cli("deploy", "--env", "local", "--root", str(project.root))
    assert refused.code == 1
    assert "would downgrade it" in refused.error and "--rollback" in refused.error
    assert prefect_state(project.server.api_url, names(project)) == live

    allowed = cli("deploy", "--env", "local", "--json", "--rollback", "--root", str(project.root))
    assert allowed.code == 0, allowed.stderr
    assert {d["action"] for d in allowed.json()["deployments"]} == {"updated"}
    assert {d["version"] for d in prefect_state(project.server.api_url, names(project)).values()} == {first}
