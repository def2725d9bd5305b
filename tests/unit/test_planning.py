"""The planning logic, fast and without Docker or a server: the push plan, release history, tag resolution,
the downgrade guard, the deployment diff, and whole deploy and rollback plans run by the pipeline against
the test kit's fakes (tests/kit/fakes.py: a registry of tag -> digest and blobs, an in-memory Prefect).

What the fakes cannot show (a real registry's and server's behaviour) the integration tests in tests/deploy
and tests/push show against real ones.
"""
from __future__ import annotations

import io
from pathlib import Path

import anyio
import pytest
import yaml

from slipway import pipeline
from slipway.deploy.desired import DesiredDeployment
from slipway.deploy.guard import LiveRelease, check_downgrade
from slipway.deploy.live import LiveDeployment
from slipway.deploy.plan import plan_deployment
from slipway.deploy.prefect_api import PrefectSettings
from slipway.errors import IncompleteRelease, SlipwayError
from slipway.image.release_layer import ReleaseLayer
from slipway.output import Reporter
from slipway.project.config import load_project
from slipway.registry.push import plan_push
from slipway.registry.releases import list_releases, resolve_tag
from slipway.target import Target
from tests.kit.fakes import FakePrefect, FakeRegistry
from tests.kit.repo import commit_all, git

SHA_A, SHA_B, SHA_C = "a" * 40, "b" * 40, "c" * 40


# --- push plan ---------------------------------------------------------------------------------------------

def test_push_plan_uploads_only_tags_the_registry_lacks_or_holds_for_another_image():
    held = {"t1": "sha256:mine", "t2": None, "t3": "sha256:other"}
    plan = plan_push(held, known={"sha256:mine"}, tags=["t1", "t2", "t3"])
    assert plan.to_push == ["t2", "t3"]
    assert plan.replaced == ["t3"]
    assert plan_push({"t1": "sha256:mine"}, {"sha256:mine"}, ["t1"]).to_push == []


# --- release history and tag resolution ----------------------------------------------------------------------

def test_releases_are_grouped_by_digest_newest_commit_first():
    registry = FakeRegistry()
    older = registry.add_release(SHA_A, created="2026-01-01T00:00:00+00:00")
    newer = registry.add_release(SHA_B, tags=[SHA_B, SHA_B[:12], "v2.0"], created="2026-02-01T00:00:00+00:00",
                                 version="v2.0")
    releases = list_releases(registry)
    assert [r.digest for r in releases] == [newer, older]
    assert releases[0].sorted_tags() == ["v2.0", SHA_B[:12], SHA_B]  # human tags first
    assert releases[0].revision == SHA_B and releases[0].version == "v2.0"
    config_blobs = {m["config"]["digest"] for m in registry.manifests.values()}
    assert set(registry.reads) == config_blobs  # listing reads configs only, never a layer


def test_a_reference_resolves_to_one_tag():
    tags = [SHA_A, SHA_A[:12], "v1.0", "release-1.2", "a" * 12 + "-dirty"]
    assert resolve_tag(tags, "v1.0", "r") == "v1.0"
    assert resolve_tag(tags, "release/1.2", "r") == "release-1.2"  # a Git tag, as its Docker tag
    assert resolve_tag(tags, "aaaaaaa", "r") == SHA_A  # a SHA prefix
    with pytest.raises(SlipwayError, match="no release 'v9' in r"):
        resolve_tag(tags, "v9", "r")
    with pytest.raises(SlipwayError, match="matches 2 releases"):
        resolve_tag([SHA_A, "a" * 39 + "b"], "aaaa", "r")


# --- the downgrade guard -------------------------------------------------------------------------------------

# B is a child of A, C a child of B; D is on another branch.
HISTORY = {(SHA_A, SHA_B): True, (SHA_A, SHA_C): True, (SHA_B, SHA_C): True}


def ancestry(known: set[str]):
    def is_ancestor(older: str, newer: str):
        if older not in known or newer not in known:
            return None
        return HISTORY.get((older, newer), False)
    return is_ancestor


def test_guard_refuses_an_older_commit_and_allows_a_newer_one():
    everything = ancestry({SHA_A, SHA_B, SHA_C, "d" * 40})
    with pytest.raises(SlipwayError, match="runs cccccccccccc, a newer commit than HEAD bbbbbbbbbbbb") as caught:
        check_downgrade("prod", SHA_B, [LiveRelease("sha256:c", SHA_C)], everything)
    assert "slipway rollback --env prod" in caught.value.line()
    check_downgrade("prod", SHA_C, [LiveRelease("sha256:b", SHA_B)], everything)  # forward: fine
    check_downgrade("prod", SHA_B, [LiveRelease("sha256:b", SHA_B)], everything)  # the same commit
    check_downgrade("prod", "d" * 40, [LiveRelease("sha256:b", SHA_B)], everything)  # another branch
    check_downgrade("prod", SHA_B, [LiveRelease("sha256:x", None)], everything)  # not slipway's image


def test_guard_fails_closed_when_the_live_commit_is_unknown():
    shallow = ancestry({SHA_C})  # a --depth 1 clone of C knows only C
    with pytest.raises(SlipwayError, match="a commit this clone does not know") as caught:
        check_downgrade("prod", SHA_C, [LiveRelease("sha256:b", SHA_B)], shallow)
    assert "git fetch --unshallow" in caught.value.line() and "--rollback" in caught.value.line()


# --- the deployment diff -------------------------------------------------------------------------------------

def desired(**fields) -> DesiredDeployment:
    base = dict(flow_name="f", name="d", version=SHA_A, description="x", tags=["t"], parameters={"n": 1},
                parameter_openapi_schema={"type": "object"}, job_variables={"image": "r/x@sha256:1"},
                work_pool_name="pool", work_queue_name=None, entrypoint="flows/f.py:f", concurrency_limit=None,
                enforce_parameter_schema=True, pull_steps=[{"step": {}}], schedules=[])
    return DesiredDeployment(**{**base, **fields})


def live_of(want: DesiredDeployment, **fields) -> LiveDeployment:
    base = dict(id="id-1", flow_name=want.flow_name, name=want.name, version=want.version,
                description=want.description, tags=list(want.tags), parameters=dict(want.parameters),
                parameter_openapi_schema=want.parameter_openapi_schema, job_variables=dict(want.job_variables),
                work_pool_name=want.work_pool_name, work_queue_name="default", entrypoint=want.entrypoint,
                pull_steps=want.pull_steps, concurrency_limit=None, enforce_parameter_schema=True)
    return LiveDeployment(**{**base, **fields})


def test_deployment_diff_names_only_what_changed():
    want = desired()
    assert plan_deployment(want, None).action == "created"
    assert plan_deployment(want, live_of(want)).action == "unchanged"
    row = plan_deployment(want, live_of(want, job_variables={"image": "r/x@sha256:0"}, tags=["t", "old"]))
    assert row.action == "updated" and row.id == "id-1"
    assert row.changes == ["job_variables", "tags"]
    assert row.fields["job_variables"] == {"image": "r/x@sha256:1"}
    # A path left by another tool is cleared; tag order does not matter.
    assert plan_deployment(want, live_of(want, path="/old")).changes == ["path"]
    assert plan_deployment(desired(tags=["a", "b"]), live_of(desired(tags=["b", "a"]))).action == "unchanged"


# --- whole plans through the pipeline, with fakes ---------------------------------------------------------

FLOWS = {"flows/hello.py:hello": "hello", "flows/numbers.py:numbers": "numbers"}


def probe_for(deployments: list[dict]) -> list[dict]:
    """What the build-time probe records for these declarations (as image/probe.py writes it)."""
    return [{"entrypoint": d["entrypoint"], "flow_name": FLOWS[d["entrypoint"]],
             "parameter_schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
             "parameter_checks": [""]} for d in deployments]


def write_repo(root: Path, deployments: list[dict]) -> ReleaseLayer:
    config = {"image": {"name": "app"}, "environments": {"local": {
        "registry": {"kind": "generic", "address": "registry.test", "insecure": True},
        "repository": "team/app", "prefect": {"api_url": "http://prefect.test/api"},
        "work_pool": {"name": "pool", "type": "docker"}}}}
    files = {"slipway.yaml": yaml.safe_dump(config), "deployments.yaml": yaml.safe_dump({"deployments": deployments})}
    for name, text in files.items():
        (root / name).write_text(text)
    return ReleaseLayer(files, probe_for(deployments))


@pytest.fixture
def world(tmp_path):
    """A Git repository releasing to a fake registry and a fake Prefect."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    project_box: dict = {}
    registry, prefect = FakeRegistry(), FakePrefect()

    def release(deployments: list[dict], message: str, date: str) -> tuple[str, str]:
        """Commit these declarations and put their release in the registry, as `make image push` would."""
        layer = write_repo(root, deployments)
        sha = commit_all(root, message, date=date)
        digest = registry.add_release(sha, created=date, layer=layer)
        project_box["project"] = load_project(root)
        return sha, digest

    def target() -> Target:
        project = project_box["project"]
        env = project.environment("local")
        return Target("local", env, registry, PrefectSettings("local", env.prefect), prefect.connector)

    def workspace() -> pipeline.Workspace:
        return pipeline.Workspace(project_box["project"], Reporter(stream=io.StringIO()))

    return type("World", (), {"root": root, "registry": registry, "prefect": prefect, "release": release,
                              "target": target, "workspace": workspace})


HELLO = {"name": "daily", "entrypoint": "flows/hello.py:hello", "parameters": {"n": 1}}
NUMBERS = {"name": "adhoc", "entrypoint": "flows/numbers.py:numbers"}


def test_deploy_from_the_registry_alone_then_redeploy_writes_nothing(world):
    _, digest = world.release([HELLO, NUMBERS], "A", "2026-01-01T00:00:00+00:00")
    plan = anyio.run(pipeline.deploy, world.workspace(), world.target())
    assert plan.reference == f"registry.test/team/app@{digest}"
    assert [(r.name, r.action) for r in plan.rows] == [("hello/daily", "created"), ("numbers/adhoc", "created")]
    assert world.prefect.by_name("hello/daily").job_variables["image"] == plan.reference
    writes = len(world.prefect.writes)
    again = anyio.run(pipeline.deploy, world.workspace(), world.target())
    assert {r.action for r in again.rows} == {"unchanged"} and again.writes == 0
    assert len(world.prefect.writes) == writes


def test_rollback_pins_the_old_digest_and_pauses_what_it_lacks(world):
    _, digest_a = world.release([HELLO], "A", "2026-01-01T00:00:00+00:00")
    anyio.run(pipeline.deploy, world.workspace(), world.target())
    sha_b, _ = world.release([{**HELLO, "parameters": {"n": 2}}, NUMBERS], "B", "2026-02-01T00:00:00+00:00")
    anyio.run(pipeline.deploy, world.workspace(), world.target())
    world.registry.reads.clear()

    sha_a = next(tag for tag, digest in world.registry.tags.items() if digest == digest_a and len(tag) == 40)
    done = anyio.run(pipeline.rollback, world.workspace(), world.target(), sha_a[:8])
    assert done.plan.reference == f"registry.test/team/app@{digest_a}"
    assert [(r.name, r.action, r.changes) for r in done.plan.rows] == [
        ("hello/daily", "updated", ["version", "description", "parameters", "job_variables", "tags", "labels"])]
    assert [d.full_name for d in done.plan.to_pause] == ["numbers/adhoc"]
    assert world.prefect.by_name("numbers/adhoc").paused
    assert world.prefect.by_name("hello/daily").parameters == {"n": 1}
    manifest = world.registry.manifests[digest_a]
    assert set(world.registry.reads) <= {manifest["config"]["digest"], manifest["layers"][-1]["digest"]}
    assert sha_b  # B stays in the registry, ready to roll forward


def test_deploy_refuses_an_ancestor_of_the_live_release(world):
    sha_a, _ = world.release([HELLO], "A", "2026-01-01T00:00:00+00:00")
    world.release([HELLO, NUMBERS], "B", "2026-02-01T00:00:00+00:00")
    anyio.run(pipeline.deploy, world.workspace(), world.target())
    git(world.root, "checkout", "-q", sha_a)
    writes = list(world.prefect.writes)
    with pytest.raises(SlipwayError, match="a newer commit than HEAD"):
        anyio.run(pipeline.deploy, world.workspace(), world.target())
    assert world.prefect.writes == writes
    anyio.run(pipeline.deploy, world.workspace(), world.target(), True)  # --rollback: on purpose


def test_a_failed_write_says_what_was_written_and_how_to_finish(world):
    world.release([HELLO, NUMBERS], "A", "2026-01-01T00:00:00+00:00")
    world.prefect.fail_on = {"numbers/adhoc"}
    with pytest.raises(IncompleteRelease) as caught:
        anyio.run(pipeline.deploy, world.workspace(), world.target())
    line = caught.value.line()
    assert "stopped after writing 1 of 2 changed deployment(s)" in line
    assert "not written: numbers/adhoc" in line and "run the same command again" in line
    world.prefect.fail_on = set()
    finished = anyio.run(pipeline.deploy, world.workspace(), world.target())
    assert [(r.name, r.action) for r in finished.rows] == [("hello/daily", "unchanged"), ("numbers/adhoc", "created")]
