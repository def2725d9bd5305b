"""The server follows the file (issue 16), as planning rules run by the pipeline against the test kit's fakes:
removed deployments paused or pruned (known by slipway's labels, never by name), slipway's pauses told from a
person's, environments sharing a server kept apart, the release history (and rollback to the release before),
triggers, pull credentials, and a prefect.yaml in Prefect's documented style.

What the fakes cannot show (a real server's and registry's behaviour) tests/deploy/test_follow_the_file.py shows
against real ones.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import anyio
import pytest
import yaml

from slipway import pipeline
from slipway.deploy.history import history_key
from slipway.deploy.ownership import PAUSE_TAG, commit_url
from slipway.deploy.prefect_api import PrefectSettings
from slipway.errors import SlipwayError
from slipway.image.release_layer import ReleaseLayer
from slipway.output import Reporter
from slipway.project.config import load_project
from slipway.project.declarations import parse_declarations
from slipway.target import Target
from tests.kit.fakes import FakePrefect, FakeRegistry
from tests.kit.repo import commit_all, git

FLOWS = {"flows/hello.py:hello": "hello", "flows/numbers.py:numbers": "numbers"}
HELLO = {"name": "daily", "entrypoint": "flows/hello.py:hello", "parameters": {"n": 1}}
NUMBERS = {"name": "adhoc", "entrypoint": "flows/numbers.py:numbers"}
WEEKLY = {"name": "weekly", "entrypoint": "flows/hello.py:hello", "schedules": [{"cron": "0 7 * * 1"}]}
TRIGGER = {"enabled": True, "match": {"prefect.resource.id": "prefect.flow-run.*"},
           "expect": ["prefect.flow-run.Completed"], "parameters": {"n": 3}}


def probe_for(deployments: list[dict]) -> list[dict]:
    return [{"entrypoint": d["entrypoint"], "flow_name": FLOWS[d["entrypoint"]],
             "parameter_schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
             "parameter_checks": [""] * (1 + sum(bool(s.get("parameters")) for s in d.get("schedules", [])))}
            for d in deployments]


def config(**env_extra) -> dict:
    """Two environments on ONE Prefect API and one registry repository, each with its own pool (the example
    slipway.yaml's `local` and `kind`)."""
    registry = {"kind": "generic", "address": "registry.test", "insecure": True}
    env = {"registry": registry, "repository": "team/app", "prefect": {"api_url": "http://prefect.test/api"}}
    return {"image": {"name": "app"}, "environments": {
        "local": {**env, "work_pool": {"name": "local-pool", "type": "docker"}, **env_extra},
        "kind": {**env, "work_pool": {"name": "kind-pool", "type": "docker"}}}}


@pytest.fixture
def world(tmp_path):
    """A Git repository releasing to a fake registry and a fake Prefect shared by two environments."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    box: dict = {"config": config()}
    registry, prefect = FakeRegistry(), FakePrefect()

    def release(deployments: list[dict], message: str, date: str, file_text: str | None = None) -> tuple[str, str]:
        text = file_text or yaml.safe_dump({"deployments": deployments})
        files = {"slipway.yaml": yaml.safe_dump(box["config"]), "deployments.yaml": text}
        for name, content in files.items():
            (root / name).write_text(content)
        sha = commit_all(root, message, date=date)
        digest = registry.add_release(sha, created=date, layer=ReleaseLayer(files, probe_for(deployments)))
        box["project"] = load_project(root)
        return sha, digest

    def target(env: str = "local") -> Target:
        project = box["project"]
        e = project.environment(env)
        return Target(env, e, registry, PrefectSettings(env, e.prefect), prefect.connector)

    def workspace(stream=None) -> pipeline.Workspace:
        return pipeline.Workspace(box["project"], Reporter(stream=stream or io.StringIO()))

    def deploy(env: str = "local", **kwargs):
        return anyio.run(lambda: pipeline.deploy(workspace(), target(env), **kwargs))

    def rollback(ref, env: str = "local", **kwargs):
        return anyio.run(lambda: pipeline.rollback(workspace(), target(env), ref, **kwargs))

    def plan(env: str = "local", prune: bool = False):
        return anyio.run(lambda: pipeline.plan(workspace(), target(env), prune))[0]

    def history(env: str = "local"):
        return anyio.run(pipeline.release_history, target(env))

    return type("World", (), {"root": root, "registry": registry, "prefect": prefect, "release": release,
                              "target": target, "workspace": workspace, "deploy": deploy, "rollback": rollback,
                              "plan": plan, "history": history, "box": box})


A, B, C = "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"


# --- removed deployments -------------------------------------------------------------------------------------

def test_a_removed_deployment_is_paused_by_default_and_deleted_with_prune(world):
    world.release([HELLO, NUMBERS, WEEKLY], "A", A)
    world.deploy()
    world.release([HELLO, NUMBERS], "B", B)

    planned = world.plan()
    assert [(r.name, r.action, r.paused_by) for r in planned.removed] == [("hello/weekly", "paused", "slipway")]
    pruned = world.plan(prune=True)
    assert [(r.name, r.action) for r in pruned.removed] == [("hello/weekly", "deleted")]
    assert world.prefect.by_name("hello/weekly").paused is False  # plan writes nothing

    world.deploy()
    weekly = world.prefect.by_name("hello/weekly")
    assert weekly.paused and PAUSE_TAG in weekly.tags
    again = world.plan()
    assert [(r.name, r.action, r.paused_by) for r in again.removed] == [("hello/weekly", "unchanged", "slipway")]
    assert again.writes == 0

    world.deploy(prune=True)
    assert world.prefect.by_name("hello/weekly") is None
    writes = list(world.prefect.writes)
    nothing = world.deploy(prune=True)  # --prune with nothing to prune: a no-op
    assert nothing.writes == 0 and nothing.removed == [] and world.prefect.writes == writes


def test_deployments_registered_by_other_means_are_never_touched(world):
    world.release([HELLO], "A", A)
    # Same pool, same flow, no slipway labels: the UI, `prefect deploy`, another repository.
    other = world.prefect.add("hello", "by-hand", image="registry.test/team/tool@sha256:" + "9" * 64,
                              pool="local-pool")
    other_repo = world.prefect.add("numbers", "other-team", pool="local-pool",
                                   labels={"slipway.project": "registry.test/other/app",
                                           "slipway.environment": "local"})
    world.deploy(prune=True)
    world.deploy(prune=True)
    assert world.prefect.deployments[other.id] == other
    assert world.prefect.deployments[other_repo.id] == other_repo
    assert all(name not in ("hello/by-hand", "numbers/other-team") for _, name in world.prefect.writes)


def test_a_same_named_deployment_without_labels_is_taken_over_and_plan_says_so(world):
    world.release([HELLO], "A", A)
    world.prefect.add("hello", "daily", pool="local-pool")  # `prefect deploy` registered it before slipway
    [row] = world.plan().rows
    assert row.action == "updated" and "labels" in row.changes
    world.deploy()
    assert world.prefect.by_name("hello/daily").labels["slipway.environment"] == "local"


# --- pauses --------------------------------------------------------------------------------------------------

def test_rollback_pauses_then_forward_resumes_but_a_pause_by_hand_stays(world):
    world.release([HELLO, NUMBERS], "A", A)
    world.deploy()
    sha_b, _ = world.release([HELLO, NUMBERS, WEEKLY], "B", B)
    world.deploy()
    world.prefect.pause_by_hand("numbers/adhoc")

    sha_a = git(world.root, "rev-list", "--max-parents=0", "HEAD")
    done = world.rollback(sha_a[:10])
    assert [d.full_name for d in done.plan.to_pause] == ["hello/weekly"]
    assert world.prefect.by_name("hello/weekly").paused

    rows = {r.name: r for r in world.plan().rows}  # HEAD is B again: the plan says who paused what
    assert rows["hello/weekly"].note == "resumed: slipway had paused it" and "paused" in rows["hello/weekly"].changes
    assert rows["numbers/adhoc"].note == "kept paused: paused by hand" and rows["numbers/adhoc"].paused_by == "hand"

    world.deploy(allow_downgrade=False)
    weekly, adhoc = world.prefect.by_name("hello/weekly"), world.prefect.by_name("numbers/adhoc")
    assert not weekly.paused and PAUSE_TAG not in weekly.tags
    assert adhoc.paused and PAUSE_TAG not in adhoc.tags
    assert sha_b


def test_paused_declared_in_the_file_wins(world):
    world.release([HELLO, {**NUMBERS, "paused": True}], "A", A)
    world.deploy()
    assert world.prefect.by_name("numbers/adhoc").paused
    world.prefect.pause_by_hand("hello/daily")
    world.release([{**HELLO, "paused": False}, NUMBERS], "B", B)
    world.deploy()
    assert not world.prefect.by_name("hello/daily").paused  # paused: false resumes even a person's pause
    assert not world.prefect.by_name("numbers/adhoc").paused  # its pause was the file's: lifted with it


# --- environments sharing a server ---------------------------------------------------------------------------

def test_an_environment_never_takes_over_another_environments_deployments(world):
    world.release([HELLO], "A", A)
    world.deploy("local")
    writes = list(world.prefect.writes)
    for verb in (lambda: world.plan("kind"), lambda: world.deploy("kind")):
        with pytest.raises(SlipwayError) as caught:
            verb()
        line = caught.value.line()
        assert "hello/daily" in line and "environment 'local'" in line and "deploying 'kind'" in line
    assert world.prefect.writes == writes
    assert world.prefect.by_name("hello/daily").work_pool_name == "local-pool"


# --- history -------------------------------------------------------------------------------------------------

def test_history_records_deploy_rollback_deploy_with_actor_time_and_message(world, monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    sha_a, digest_a = world.release([HELLO], "A", A)
    world.deploy(message="first")
    sha_b, digest_b = world.release([HELLO, NUMBERS], "B", B)
    world.deploy()
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    monkeypatch.setenv("GITHUB_REPOSITORY", "team/app")
    world.rollback(sha_a[:8], message="B breaks the dashboard")
    world.deploy()  # HEAD is B: forward again

    entries = world.history()
    assert [(e.verb, e.release.digest, e.previous and e.previous.digest) for e in entries] == [
        ("deploy", digest_b, digest_a), ("rollback", digest_a, digest_b), ("deploy", digest_b, digest_a),
        ("deploy", digest_a, None)]
    assert entries[1].actor == "octocat" and entries[1].run_url == "https://github.com/team/app/actions/runs/42"
    assert entries[1].message == "B breaks the dashboard" and entries[3].message == "first"
    assert "@" in entries[3].actor and entries[3].time.startswith("20")
    assert entries[0].release.revision == sha_b and entries[1].release.revision == sha_a

    writes = len(world.prefect.artifacts)
    world.deploy()  # the live release again: nothing changed, nothing recorded
    assert len(world.prefect.artifacts) == writes
    keys = {a["key"] for a in world.prefect.artifacts}
    assert keys == {history_key("registry.test/team/app", "local")} == {"slipway-releases-registry-test-team-app-local"}


def test_rollback_without_a_ref_goes_to_the_release_before_the_current_one(world):
    with pytest.raises(SlipwayError, match="no release history yet"):
        world.release([HELLO], "A", A) and world.rollback(None)
    _, digest_a = world.release([HELLO], "A2", A)
    world.deploy()
    with pytest.raises(SlipwayError, match="has no release before"):
        world.rollback(None)
    _, digest_b = world.release([HELLO, NUMBERS], "B", B)
    world.deploy()
    stream = io.StringIO()
    done = anyio.run(pipeline.rollback, world.workspace(stream), world.target(), None)
    assert done.release.digest == digest_a
    assert f"to {done.release.version} ({digest_a[:19]}), the release live before it" in stream.getvalue()
    again = anyio.run(pipeline.rollback, world.workspace(), world.target(), None)  # undo the undo
    assert again.release.digest == digest_b


def test_a_failed_history_record_is_a_warning_and_a_rerun_records_it(world):
    world.release([HELLO], "A", A)
    broken = world.prefect.create_artifact

    async def refuse(*args, **kwargs):
        raise SlipwayError("Prefect refused to record the release: HTTP 500", "check the server")

    world.prefect.create_artifact = refuse
    stream = io.StringIO()
    anyio.run(pipeline.deploy, world.workspace(stream), world.target())
    assert "warning: the release is live, but recording it" in stream.getvalue()
    assert world.history() == []
    world.prefect.create_artifact = broken
    world.deploy()  # nothing to write, but the history does not end with the live release yet
    assert len(world.history()) == 1


# --- triggers ------------------------------------------------------------------------------------------------

def test_triggers_are_written_once_replaced_when_changed_and_removed_with_the_file(world):
    world.release([{**HELLO, "triggers": [TRIGGER]}], "A", A)
    world.deploy()
    owner = f"prefect.deployment.{world.prefect.by_name('hello/daily').id}"
    [automation] = world.prefect.automations[owner]
    assert automation["name"] == "daily__automation_1" and automation["actions"][0]["parameters"] == {"n": 3}
    assert world.plan().writes == 0

    world.release([{**HELLO, "triggers": [{**TRIGGER, "parameters": {"n": 4}}]}], "B", B)
    row = world.plan().rows[0]
    assert "triggers" in row.changes
    world.deploy()
    assert world.prefect.automations[owner][0]["actions"][0]["parameters"] == {"n": 4}

    world.release([HELLO], "C", C)
    world.deploy()
    assert world.prefect.automations[owner] == []


# --- pull credentials ----------------------------------------------------------------------------------------

def test_a_docker_pools_registry_credentials_block_is_referenced_by_id_and_must_exist(world):
    world.box["config"] = config(registry_credentials_block="app-registry")
    world.release([HELLO], "A", A)
    with pytest.raises(SlipwayError) as caught:
        world.deploy()
    assert caught.value.line().startswith(
        "slipway.yaml: environments.local.registry_credentials_block: no Docker Registry Credentials block "
        "'app-registry'")
    assert world.prefect.writes == []
    world.prefect.blocks[("docker-registry-credentials", "app-registry")] = "block-id-1"
    world.deploy()
    assert world.prefect.by_name("hello/daily").job_variables["registry_credentials"] == {
        "$ref": {"block_document_id": "block-id-1"}}


# --- a prefect.yaml in Prefect's documented style -------------------------------------------------------------

PREFECT_YAML = """\
# Generic metadata about this project
name: app
prefect-version: 3.8.8

build:
- prefect_docker.deployments.steps.build_docker_image:
    id: build_image
    image_name: registry.test/team/app
    tag: latest
push:
- prefect_docker.deployments.steps.push_docker_image:
    image_name: '{{ build_image.image_name }}'
pull:
- prefect.deployments.steps.set_working_directory:
    directory: /opt/prefect

definitions:
  work_pools:
    docker: &docker
      name: my-docker-pool
      work_queue_name: default
      job_variables:
        image: '{{ build_image.image }}'
  schedules:
    hourly: &hourly
      cron: "0 * * * *"
      slug: hourly

deployments:
- name: daily
  version: null
  tags: []
  description: null
  entrypoint: flows/hello.py:hello
  parameters: {n: 1}
  schedule: *hourly
  concurrency_limit:
    limit: 1
    collision_strategy: CANCEL_NEW
  work_pool: *docker
- name: adhoc
  entrypoint: flows/numbers.py:numbers
  paused: true
  version_type: vcs:git
  work_pool:
    <<: *docker
    work_queue_name: adhoc
"""


def test_a_prefect_yaml_deploys_with_one_warning_per_key_slipway_owns(world):
    stream = io.StringIO()
    world.box["config"]["deployments"] = "deployments.yaml"
    world.release([HELLO, NUMBERS], "A", A, file_text=PREFECT_YAML)
    anyio.run(pipeline.deploy, world.workspace(stream), world.target())
    warnings = [line for line in stream.getvalue().splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: deployments.yaml: build: ignored: slipway builds the image (slipway.yaml image.dockerfile)",
        "warning: deployments.yaml: push: ignored: slipway pushes the image to each environment's registry",
        "warning: deployments.yaml: pull: ignored: slipway sets the pull step (the working directory inside the "
        "release image)",
        "warning: deployments.yaml: deployments[0].work_pool.name (and 1 more): ignored: slipway registers every "
        "deployment in the environment's pool (slipway.yaml environments.<env>.work_pool.name)",
        "warning: deployments.yaml: deployments[0].work_pool.job_variables.image (and 1 more): ignored: slipway "
        "sets the image to the release's digest reference"]
    daily, adhoc = world.prefect.by_name("hello/daily"), world.prefect.by_name("numbers/adhoc")
    assert daily.job_variables["image"].startswith("registry.test/team/app@sha256:")
    assert daily.work_pool_name == "local-pool" and daily.concurrency_limit == 1
    assert daily.concurrency_options == {"collision_strategy": "CANCEL_NEW"}
    assert [(s.slug, s.schedule.cron) for s in daily.schedules] == [("hourly", "0 * * * *")]
    assert adhoc.paused and adhoc.work_queue_name == "adhoc"


def test_a_schedule_that_replaces_a_slug_renames_it_in_place(world):
    world.release([{**HELLO, "schedules": [{"cron": "0 6 * * *", "slug": "morning", "active": False}]}], "A", A)
    world.deploy()
    world.release([{**HELLO, "schedules": [{"cron": "0 6 * * *", "slug": "early", "replaces": "morning"}]}], "B", B)
    [row] = world.plan().rows
    assert "schedules.early.slug" in row.changes and not row.schedules.create and not row.schedules.delete
    world.deploy()
    [schedule] = world.prefect.by_name("hello/daily").schedules
    assert schedule.slug == "early" and schedule.active is False  # undeclared `active`: the live state kept


@pytest.mark.parametrize("text, expected", [
    ("deployments:\n- name: a\n  entrypoint: flows/a.py:a\n  concurrency_limit: {limit: 0}\n",
     "deployments[0].concurrency_limit.limit: Input should be greater than 0"),
    ("deployments:\n- name: a\n  entrypoint: flows/a.py:a\n  concurrency_limit: {limit: 1, collision_strategy: DROP}\n",
     "deployments[0].concurrency_limit.collision_strategy: Input should be 'ENQUEUE' or 'CANCEL_NEW'"),
    ("deployments:\n- name: a\n  entrypoint: flows/a.py:a\n  paused: sometimes\n",
     "deployments[0].paused: Input should be a valid boolean"),
    ("deployments:\n- name: a\n  entrypoint: flows/a.py:a\n  triggers: [{expect: 5}]\n",
     "deployments[0].triggers[0]: expect: Input should be a valid set"),
    ("deployments:\n- name: a\n  entrypoint: flows/a.py:a\n  version_type: svn\n",
     "deployments[0].version_type: Input should be"),
    ("deployments:\n- name: a\n  entrypoint: flows/a.py:a\n  schedule: {cron: '0 6 * *'}\n",
     "deployments[0].schedule.cron: Invalid cron string"),
    ("deployments:\n- name: a\n  entrypoint: flows/a.py:a\n  schedule: {cron: '0 6 * * *'}\n  schedules: []\n",
     "deployments[0]: give 'schedule' or 'schedules', not both"),
    ("deployments:\n- name: a\n  entrypoint: flows/a.py:a\n  schedules: [{cron: '0 6 * * *', replaces: 7}]\n",
     "deployments[0].schedules[0].replaces: Input should be a valid string"),
])
def test_a_prefect_yaml_key_with_a_wrong_type_names_its_field(text, expected):
    with pytest.raises(SlipwayError) as caught:
        parse_declarations(text, "prefect.yaml")
    line = caught.value.line()
    assert line.startswith("prefect.yaml: ") and expected in line and "\n" not in line, line


def test_commit_links_for_the_usual_forges_and_never_a_credential():
    sha = "a" * 40
    assert commit_url("git@github.com:team/app.git", sha) == f"https://github.com/team/app/commit/{sha}"
    assert commit_url("https://x-access-token:s3cret@github.com/team/app", sha) == \
        f"https://github.com/team/app/commit/{sha}"
    assert commit_url("ssh://git@gitlab.example.com/g/app.git", sha) == f"https://gitlab.example.com/g/app/-/commit/{sha}"
    assert commit_url("git@ssh.dev.azure.com:v3/org/proj/app", sha) == \
        f"https://dev.azure.com/org/proj/_git/app/commit/{sha}"
    assert commit_url(str(Path("/srv/repo")), sha) is None


def test_labels_carry_the_release_and_version_info_is_sent(world):
    world.release([HELLO], "A", A)
    git(world.root, "tag", "v1.0")
    git(world.root, "remote", "add", "origin", "git@github.com:team/app.git")
    sha = git(world.root, "rev-parse", "HEAD")
    world.registry.add_release(sha, tags=[sha, sha[:12], "v1.0"], created=A,
                               layer=ReleaseLayer({"slipway.yaml": (world.root / "slipway.yaml").read_text(),
                                                   "deployments.yaml": (world.root / "deployments.yaml").read_text()},
                                                  probe_for([HELLO])))
    plan = world.deploy()
    labels = world.prefect.by_name("hello/daily").labels
    assert labels == {"slipway.project": "registry.test/team/app", "slipway.environment": "local",
                      "slipway.commit": sha, "slipway.commit-url": f"https://github.com/team/app/commit/{sha}",
                      "slipway.git-tag": "v1.0"}
    assert plan.rows[0].desired.version_info == {
        "type": "vcs:git", "version": "v1.0", "commit_sha": sha, "url": f"https://github.com/team/app/commit/{sha}",
        "repository": "https://github.com/team/app", "tag": "v1.0"}
    assert json.dumps(labels)  # plain strings


@pytest.mark.parametrize("tag, expected", [
    (None, "build.py rollback --env 'staging' \n"),  # no TAG: the release before the current one
    ("v1.2", "build.py rollback --env 'staging' --to 'v1.2'\n"),
])
def test_make_rollback_passes_the_tag_only_when_given(tag, expected):
    import subprocess

    from tests.kit.repo import REPO_ROOT

    args = ["make", "-n", "--no-print-directory", "rollback", "ENV=staging"] + ([f"TAG={tag}"] if tag else [])
    out = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert out.endswith(expected), out


def test_the_ci_summary_lists_the_deployments_a_release_removed():
    from slipway.summary import render_summary

    markdown = render_summary("deploy", {"reference": "r@sha256:1", "deployments": [],
                                         "removed": [{"name": "elt/weekly", "id": "d-1", "action": "paused",
                                                      "paused_by": "slipway"}]}, "prod")
    assert "| `elt/weekly` | paused (not in this release) | `d-1` |" in markdown


def test_a_history_entry_survives_its_table_row_whatever_its_length():
    from slipway.deploy.history import HistoryEntry, ReleaseRef, from_row, to_row

    entry = HistoryEntry("promote", "prod", "2026-05-01T10:00:00+00:00", "octocat",
                         ReleaseRef("sha256:" + "1" * 64, "a" * 40, "v1.2.0", ["v1.2.0", "a" * 12, "a" * 40]),
                         ReleaseRef("sha256:" + "2" * 64, "b" * 40, None, []),
                         "https://github.com/team/app/actions/runs/1", "why " * 300, {"promoted_from": "staging"})
    row = to_row(entry)
    assert all(isinstance(v, str) for v in row.values())
    assert from_row(json.loads(json.dumps(row))) == entry
