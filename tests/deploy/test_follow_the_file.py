"""The server follows the file (issue 16), against a real Prefect server (SQLite, then PostgreSQL) and a real
registry: removed deployments paused or pruned and other tools' deployments never touched, slipway's pauses told
from a person's across rollback and forward, environments sharing a server kept apart, Prefect authentication
with a basic-auth string, pull credentials (a Kubernetes pull secret in the Job, a Docker registry credentials
block the Docker worker logs in with), `plan --exit-code`.

The release history across deploy → rollback → deploy, and a prefect.yaml written the way Prefect documents it,
are in test_release_history.py (they need real release images of this repository).
"""
from __future__ import annotations

import re
import uuid

import anyio
import pytest
import yaml

from tests.deploy.conftest import default_deployments, prefect_state, slipway_config, work_pool_state

pytestmark = pytest.mark.docker


def names(project) -> list[str]:
    return [f"deploy-test-hello/{project.name}-hourly", f"deploy-test-numbers/{project.name}-manual",
            f"deploy-test-hello/{project.name}-rrule"]


def write_config(project, change) -> None:
    config = slipway_config(project.name, project.registry.address, project.server.api_url)
    change(config)
    project.write("slipway.yaml", yaml.safe_dump(config, sort_keys=False))


def new_commit(project, message: str) -> None:
    project.commit(message)
    project.tag_head_image()


def read(api_url: str, call):
    """`await call(client)` with a Prefect client of the test server."""
    from prefect.client.orchestration import PrefectClient

    async def run():
        async with PrefectClient(api=api_url) as client:
            return await call(client)

    return anyio.run(run)


def register_by_other_means(project, name: str) -> str:
    """A deployment in the same pool that slipway did not register (as the UI or `prefect deploy` would)."""
    async def create(client):
        flow_id = await client.create_flow_from_name("deploy-test-hello")
        return str(await client.create_deployment(flow_id=flow_id, name=name, work_pool_name=project.docker_pool,
                                                  tags=["by-hand"]))

    return read(project.server.api_url, create)


def test_a_removed_deployment_is_paused_then_pruned_and_other_deployments_are_never_touched(project, cli):
    root = str(project.root)
    assert cli("deploy", "--env", "local", "--root", root).code == 0
    foreign = f"deploy-test-hello/{project.name}-foreign"
    register_by_other_means(project, foreign.split("/")[1])
    before_foreign = prefect_state(project.server.api_url, [foreign])[foreign]

    decls = default_deployments(project.name)
    del decls["deployments"][2]  # the rrule deployment leaves the file
    project.write("deployments.yaml", yaml.safe_dump(decls, sort_keys=False))
    new_commit(project, "drop the rrule deployment")
    rrule = names(project)[2]

    planned = cli("plan", "--env", "local", "--json", "--root", root)
    assert planned.code == 0, planned.stderr
    assert [(r["name"], r["action"], r["paused_by"]) for r in planned.json()["removed"]] == [
        (rrule, "paused", "slipway")]
    pruned = cli("plan", "--env", "local", "--prune", "--root", root)
    assert re.search(rf"{re.escape(rrule)}\s+deleted \(--prune\): not in this release", pruned.stdout), pruned.stdout
    assert prefect_state(project.server.api_url, [rrule])[rrule]["paused"] is False  # plan wrote nothing

    deployed = cli("deploy", "--env", "local", "--json", "--root", root)
    assert deployed.code == 0, deployed.stderr
    assert deployed.json()["removed"] == [{"name": rrule, "id": deployed.json()["removed"][0]["id"],
                                           "action": "paused", "paused_by": "slipway"}]
    state = prefect_state(project.server.api_url, [rrule, foreign])
    assert state[rrule]["paused"] is True and "slipway:paused" in state[rrule]["tags"]
    assert state[foreign] == before_foreign

    assert cli("deploy", "--env", "local", "--prune", "--root", root).code == 0
    state = prefect_state(project.server.api_url, [rrule, foreign])
    assert state[rrule] is None and state[foreign] == before_foreign

    everything = prefect_state(project.server.api_url, names(project) + [foreign])
    again = cli("deploy", "--env", "local", "--prune", "--json", "--root", root)  # nothing to prune: a no-op
    assert again.code == 0, again.stderr
    assert again.json()["removed"] == [] and {d["action"] for d in again.json()["deployments"]} == {"unchanged"}
    assert prefect_state(project.server.api_url, names(project) + [foreign]) == everything


def test_environments_sharing_a_server_never_write_each_others_deployments(project, cli):
    root = str(project.root)
    assert cli("deploy", "--env", "local", "--root", root).code == 0
    before = prefect_state(project.server.api_url, names(project))
    for verb in ("plan", "deploy"):  # `kind` declares the same deployments on the same Prefect API
        outcome = cli(verb, "--env", "kind", "--root", root)
        assert outcome.code == 1, outcome.stdout
        assert f"was registered by environment 'local' ({project.registry.address}/{project.name})" in outcome.error
        assert "deploying 'kind' would take it over" in outcome.error
        assert "Traceback" not in outcome.stderr
    assert prefect_state(project.server.api_url, names(project)) == before
    assert work_pool_state(project.server.api_url, project.kube_pool) is None


def test_plan_exit_code_says_whether_deploy_would_write(project, cli):
    root = str(project.root)
    assert cli("plan", "--env", "local", "--exit-code", "--root", root).code == 2
    assert cli("deploy", "--env", "local", "--root", root).code == 0
    assert cli("plan", "--env", "local", "--exit-code", "--root", root).code == 0
    assert cli("plan", "--env", "local", "--root", root).code == 0  # without the flag: 0 either way


def test_a_pull_secret_reaches_the_job_and_manifests_show_it(project, cli):
    root = str(project.root)
    write_config(project, lambda c: c["environments"]["kind"].update(image_pull_secret="registry-pull"))
    new_commit(project, "pull with a secret")
    deployed = cli("deploy", "--env", "kind", "--json", "--root", root)
    assert deployed.code == 0, deployed.stderr
    state = prefect_state(project.server.api_url, names(project))
    assert {str(d["job_variables"]["image_pull_secrets"]) for d in state.values()} == {"[{'name': 'registry-pull'}]"}

    printed = cli("manifests", "--env", "kind", "--root", root)
    assert printed.code == 0, printed.stderr
    jobs = list(yaml.safe_load_all(printed.stdout))
    assert len(jobs) == 3
    assert all(job["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "registry-pull"}] for job in jobs)

    write_config(project, lambda c: None)  # the setting removed: no imagePullSecrets at all (strictly valid)
    new_commit(project, "pull as the node")
    assert cli("deploy", "--env", "kind", "--root", root).code == 0
    printed = cli("manifests", "--env", "kind", "--root", root)
    assert all("imagePullSecrets" not in job["spec"]["template"]["spec"] for job in yaml.safe_load_all(printed.stdout))


def test_a_registry_credentials_block_is_what_the_docker_worker_logs_in_and_pulls_with(
        project, cli, start_registry, docker_engine, tmp_path, monkeypatch):
    """A private (htpasswd) registry: the Docker worker's own configuration, resolved from the deployment slipway
    registered, carries the block's credentials, and the worker's login-then-pull with them works where an
    anonymous pull is refused."""
    import docker
    from prefect_docker.credentials import DockerRegistryCredentials
    from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration

    from tests.push.conftest import bcrypt_line

    user, password = "puller", f"pull-{uuid.uuid4().hex[:10]}"
    private = start_registry("deploy-pull", htpasswd=f"{bcrypt_line(user, password)}\n".encode(),
                             auth=(user, password))
    context = tmp_path / "tiny"
    context.mkdir()
    (context / "payload.txt").write_text(uuid.uuid4().hex)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY payload.txt /payload.txt\n")
    repository = f"{private.address}/{project.name}-private"
    image, _ = docker_engine.images.build(path=str(context), tag=f"{repository}:v1", rm=True)
    docker_engine.images.push(repository, "v1", auth_config={"username": user, "password": password})
    digest = private.digest(f"{project.name}-private", "v1")
    docker_engine.images.remove(image.id, force=True)

    block = f"{project.name}-registry"

    async def save_block(client):
        credentials = DockerRegistryCredentials(username=user, password=password, registry_url=private.address)
        return str(await credentials.asave(block, client=client))

    block_id = read(project.server.api_url, save_block)
    write_config(project, lambda c: c["environments"]["local"].update(registry_credentials_block=block))
    new_commit(project, "pull with a block")
    deployed = cli("deploy", "--env", "local", "--root", str(project.root))
    assert deployed.code == 0, deployed.stderr
    hourly = prefect_state(project.server.api_url, names(project))[names(project)[0]]
    assert hourly["job_variables"]["registry_credentials"] == {"$ref": {"block_document_id": block_id}}
    assert password not in str(hourly)  # a reference, never the secret

    async def worker_configuration(client):
        pool = await client.read_work_pool(project.docker_pool)
        variables = {**hourly["job_variables"], "image": f"{repository}@{digest}"}
        return await DockerWorkerJobConfiguration.from_template_and_values(pool.base_job_template, variables,
                                                                           client=client)

    configuration = read(project.server.api_url, worker_configuration)
    assert configuration.registry_credentials.username == user
    assert configuration.registry_credentials.password.get_secret_value() == password

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty-docker-config"))  # no stored login
    anonymous = docker.from_env()
    worker = DockerWorker(work_pool_name=project.docker_pool)
    with pytest.raises((RuntimeError, docker.errors.APIError),
                       match="no basic auth credentials|unauthorized|authentication required"):
        worker._pull_image(anonymous, configuration)
    client = docker.from_env()
    credentials = configuration.registry_credentials  # as DockerWorker._create_and_start_container logs in
    client.login(username=credentials.username, password=credentials.password.get_secret_value(),
                 registry=credentials.registry_url, reauth=True)
    pulled = worker._pull_image(client, configuration)
    try:
        assert f"{repository}@{digest}" in pulled.attrs["RepoDigests"]
    finally:
        docker_engine.images.remove(pulled.id, force=True)


def test_prefect_authentication_with_a_basic_auth_string(project, cli, docker_engine, monkeypatch):
    """A self-hosted server started with PREFECT_SERVER_API_AUTH_STRING: the right string deploys; a missing
    variable, a wrong string or no credentials at all is one line, and nothing is written."""
    from tests.kit.services import start_prefect

    if project.server.database != "sqlite":
        pytest.skip("authentication is the server's, not its database's: checked once, against the SQLite server")
    server = start_prefect(docker_engine, "deploy-auth", env={"PREFECT_SERVER_API_AUTH_STRING": "slipway:s3cret-pw"})
    try:
        def point_at(auth_env: str | None):
            def change(config):
                prefect = {"api_url": server.api_url, **({"auth_string_env": auth_env} if auth_env else {})}
                config["environments"]["local"]["prefect"] = prefect
            write_config(project, change)
            new_commit(project, f"auth {auth_env}")

        point_at("DEPLOY_TEST_PREFECT_AUTH")
        monkeypatch.delenv("DEPLOY_TEST_PREFECT_AUTH", raising=False)
        unset = cli("deploy", "--env", "local", "--root", str(project.root))
        assert unset.code == 1 and "prefect.auth_string_env: $DEPLOY_TEST_PREFECT_AUTH is not set" in unset.error

        monkeypatch.setenv("DEPLOY_TEST_PREFECT_AUTH", "slipway:wrong")
        wrong = cli("deploy", "--env", "local", "--root", str(project.root))
        assert wrong.code == 1
        assert f"the Prefect API at {server.api_url} refused the basic-auth string in $DEPLOY_TEST_PREFECT_AUTH" \
            in wrong.error and "(HTTP 401)" in wrong.error
        assert "s3cret" not in wrong.stderr and "wrong" not in wrong.error
        assert project.registry.tags(project.name) == []  # nothing pushed, nothing registered

        point_at(None)
        anonymous = cli("plan", "--env", "local", "--root", str(project.root))
        assert anonymous.code == 1 and "refused no credentials (HTTP 401)" in anonymous.error
        assert "auth_string_env" in anonymous.error

        point_at("DEPLOY_TEST_PREFECT_AUTH")
        monkeypatch.setenv("DEPLOY_TEST_PREFECT_AUTH", "slipway:s3cret-pw")
        deployed = cli("deploy", "--env", "local", "--json", "--root", str(project.root))
        assert deployed.code == 0, deployed.stderr
        assert [d["action"] for d in deployed.json()["deployments"]] == ["created"] * 3
        assert project.registry.tags(project.name)  # pushed only once the credentials were right
    finally:
        server.remove()
