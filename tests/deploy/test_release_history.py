"""Release history, rollback then forward, and a team's prefect.yaml, with real release images of this repository
(built by `build.py image`'s own code from a snapshot), a real registry and a real Prefect server.
"""
from __future__ import annotations

import datetime
import io

import anyio
import pytest
import yaml

from tests.deploy.test_rollback import make_release_b
from tests.kit.repo import git

pytestmark = pytest.mark.docker


def client_call(api_url: str, call):
    from prefect.client.orchestration import PrefectClient

    async def run():
        async with PrefectClient(api=api_url) as client:
            return await call(client)

    return anyio.run(run)


def deployment(api_url: str, name: str):
    return client_call(api_url, lambda client: client.read_deployment_by_name(name))


def build(root) -> None:
    from slipway import pipeline
    from slipway.output import Reporter
    from slipway.project.config import load_project

    pipeline.build(pipeline.Workspace(load_project(root), Reporter(stream=io.StringIO())))


def test_rollback_then_forward_resumes_slipways_pause_keeps_a_persons_and_records_each_release(releases, cli):
    rel = releases
    root = str(rel.root)
    api = rel.server.api_url
    a_sha = git(rel.root, "rev-parse", "HEAD")
    build(rel.root)  # release A: built and pushed, never deployed here
    assert cli("push", "--env", "local", "--root", root).code == 0
    b_sha = make_release_b(rel)  # release B adds elt/weekly
    rel.build_and_deploy("--message", "weekly ELT")

    rolled = cli("rollback", "--env", "local", "--to", a_sha[:12], "--json", "-m", "B's child timeout", "--root", root)
    assert rolled.code == 0, rolled.stderr
    assert rolled.json()["paused"] == ["elt/weekly"]
    weekly = deployment(api, "elt/weekly")
    assert weekly.paused and "slipway:paused" in weekly.tags

    on_demand = deployment(api, "elt/on-demand")
    client_call(api, lambda client: client.pause_deployment(on_demand.id))  # a person pauses it in the UI

    planned = cli("plan", "--env", "local", "--json", "--root", root)  # HEAD is B again
    assert planned.code == 0, planned.stderr
    rows = {d["name"]: d for d in planned.json()["deployments"]}
    assert rows["elt/weekly"]["action"] == "updated" and "paused" in rows["elt/weekly"]["changes"]
    assert rows["elt/weekly"]["paused_by"] is None
    assert rows["elt/on-demand"]["paused_by"] == "hand" and "paused" not in rows["elt/on-demand"]["changes"]
    human = cli("plan", "--env", "local", "--root", root).stdout
    assert "resumed: slipway had paused it" in human and "kept paused: paused by hand" in human

    forward = cli("deploy", "--env", "local", "--json", "--root", root)
    assert forward.code == 0, forward.stderr
    weekly, on_demand = deployment(api, "elt/weekly"), deployment(api, "elt/on-demand")
    assert not weekly.paused and "slipway:paused" not in weekly.tags  # running again
    assert on_demand.paused  # a person's pause is theirs
    assert weekly.labels["slipway.commit"] == b_sha and weekly.labels["slipway.environment"] == "local"

    listing = cli("releases", "--env", "local", "--json", "--root", root)
    assert listing.code == 0, listing.stderr
    history = listing.json()["history"]
    assert [(h["verb"], h["release"]["revision"], (h["previous"] or {}).get("revision")) for h in history] == [
        ("deploy", b_sha, a_sha), ("rollback", a_sha, b_sha), ("deploy", b_sha, None)]
    assert [h["message"] for h in history] == [None, "B's child timeout", "weekly ELT"]
    for entry in history:
        assert "@" in entry["actor"] and entry["environment"] == "local"
        assert datetime.datetime.fromisoformat(entry["time"]).tzinfo is not None
    assert [r["revision"] for r in listing.json()["releases"]] == [b_sha, a_sha]
    printed = cli("releases", "--env", "local", "--root", root).stdout
    lines = printed.split("history (newest first):\n", 1)[1].splitlines()
    assert len(lines) == 3 and "deploy" in lines[0] and "rollback" in lines[1] and "by " in lines[2]

    back = cli("rollback", "--env", "local", "--json", "--root", root)  # no --to: the release before B
    assert back.code == 0, back.stderr
    assert back.json()["revision"] == a_sha
    assert f"to {a_sha[:12]}" in back.stderr and "the release live before it" in back.stderr


PREFECT_YAML = """\
# Welcome to your prefect.yaml file! You can use this file for storing and managing
# configuration for deploying your flows.

# Generic metadata about this project
name: jaffle-shop
prefect-version: 3.8.8

# build section allows you to manage and build docker images
build:
- prefect_docker.deployments.steps.build_docker_image:
    id: build_image
    requires: prefect-docker>=0.3.1
    image_name: localhost:5000/jaffle-shop
    tag: latest
    dockerfile: images/flow/Dockerfile

# push section allows you to manage if and how this project is uploaded to remote locations
push:
- prefect_docker.deployments.steps.push_docker_image:
    requires: prefect-docker>=0.3.1
    image_name: '{{ build_image.image_name }}'
    tag: '{{ build_image.tag }}'

# pull section allows you to provide instructions for cloning this project in remote locations
pull:
- prefect.deployments.steps.set_working_directory:
    directory: /opt/prefect

definitions:
  work_pools:
    docker_work_pool: &docker_work_pool
      name: local-docker
      work_queue_name: default
      job_variables:
        image: '{{ build_image.image }}'
  schedules:
    every_morning: &every_morning
      cron: "0 6 * * *"
      timezone: Europe/Amsterdam
      slug: every-morning

# the deployments section allows you to provide configuration for deploying flows
deployments:
- name: jaffle-shop
  version: null
  tags: [jaffle-shop, extract-load]
  concurrency_limit: null
  description: Replace the raw tables from the CSVs shipped in the image.
  entrypoint: flows/extract_load.py:extract_load
  parameters: {}
  work_pool: *docker_work_pool
  schedules: []
- name: jaffle-shop
  tags: [jaffle-shop, dbt]
  entrypoint: flows/dbt_build.py:dbt_build
  work_pool: *docker_work_pool
#TRIGGERS#
- name: daily
  entrypoint: flows/elt.py:elt
  parameters:
    child_runs: subflows
  schedule: *every_morning
  concurrency_limit:
    limit: 1
    collision_strategy: CANCEL_NEW
  version_type: vcs:git
  work_pool: *docker_work_pool
- name: on-demand
  entrypoint: flows/elt.py:elt
  parameters:
    child_runs: subflows
  paused: true
  work_pool:
    <<: *docker_work_pool
    work_queue_name: on-demand
"""
TRIGGERS = """\
  triggers:
    - enabled: true
      match:
        prefect.resource.id: prefect.flow-run.*
      expect:
        - prefect.flow-run.Completed
      match_related:
        prefect.resource.name: extract-load
        prefect.resource.role: flow
"""


def test_a_prefect_yaml_written_as_prefects_documentation_writes_one_deploys(releases, cli):
    rel = releases
    root = str(rel.root)
    api = rel.server.api_url
    (rel.root / "prefect.yaml").write_text(PREFECT_YAML.replace("#TRIGGERS#\n", TRIGGERS))
    config = yaml.safe_load((rel.root / "slipway.yaml").read_text())
    config["deployments"] = "prefect.yaml"
    (rel.root / "slipway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(rel.root, "add", "-A")
    rel.commit("deploy from the team's prefect.yaml")
    build(rel.root)

    deployed = cli("deploy", "--env", "local", "--json", "--root", root)
    assert deployed.code == 0, deployed.stderr
    warnings = [line for line in deployed.stderr.splitlines() if line.startswith("warning: ")]
    assert [w.split(": ignored: ")[0] for w in warnings] == [
        "warning: prefect.yaml: build", "warning: prefect.yaml: push", "warning: prefect.yaml: pull",
        "warning: prefect.yaml: deployments[0].work_pool.name (and 3 more)",
        "warning: prefect.yaml: deployments[0].work_pool.job_variables.image (and 3 more)"]
    assert [d["action"] for d in deployed.json()["deployments"]] == ["created"] * 4

    reference = deployed.json()["reference"]
    daily, on_demand = deployment(api, "elt/daily"), deployment(api, "elt/on-demand")
    assert daily.job_variables["image"] == reference and daily.work_pool_name == f"{rel.name}-docker"
    assert [(s.slug, s.schedule.cron, s.schedule.timezone) for s in daily.schedules] == [
        ("every-morning", "0 6 * * *", "Europe/Amsterdam")]
    assert daily.global_concurrency_limit.limit == 1
    assert daily.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert on_demand.paused and on_demand.work_queue_name == "on-demand"
    assert daily.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/prefect"}}]

    dbt = deployment(api, "dbt-build/jaffle-shop")
    related = f"prefect.deployment.{dbt.id}"
    [automation] = client_call(api, lambda c: c.read_resource_related_automations(related))
    assert automation.name == "jaffle-shop__automation_1" and automation.enabled
    assert automation.trigger.expect == {"prefect.flow-run.Completed"}
    assert str(automation.actions[0].deployment_id) == str(dbt.id)
    by_hand = client_call(api, lambda c: c.create_automation(hand_made_automation(dbt.id)))  # a person's, in the UI
    automations = client_call(api, lambda c: c.read_resource_related_automations(related))

    again = cli("deploy", "--env", "local", "--json", "--root", root)  # the file and the server agree
    assert again.code == 0, again.stderr
    assert {d["action"] for d in again.json()["deployments"]} == {"unchanged"}
    after = client_call(api, lambda c: c.read_resource_related_automations(related))
    assert sorted(a.id for a in after) == sorted(a.id for a in automations)  # not recreated

    # Dropping the trigger from the file removes its automation on the next release.
    (rel.root / "prefect.yaml").write_text(PREFECT_YAML.replace("#TRIGGERS#\n", ""))
    rel.commit("no trigger")
    build(rel.root)
    assert cli("deploy", "--env", "local", "--root", root).code == 0
    left = client_call(api, lambda c: c.read_resource_related_automations(related))
    assert [a.id for a in left] == [by_hand]  # slipway's is gone, the person's stays


def hand_made_automation(deployment_id):
    """What a person makes in the UI: an automation that runs the deployment, not owned by it, not slipway's."""
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import AutomationCore, EventTrigger

    return AutomationCore(name="made by hand", trigger=EventTrigger(expect={"manual.ping"}),
                          actions=[RunDeployment(source="selected", deployment_id=deployment_id)])
