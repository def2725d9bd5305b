"""The ECR and ACR credential paths. AWS and Azure cannot be reached from here, so:

- ECR: boto3 talks to a moto server (ThreadedMotoServer on a random loopback port, via AWS_ENDPOINT_URL) for
  GetAuthorizationToken and the repository calls; the image itself goes to the real test registry, whose
  htpasswd only accepts the password carried by moto's token.
- ACR: a tiny local HTTP server stands in for ACR's /oauth2/exchange and token endpoints, and a fake
  azure-identity credential returns a dummy Azure AD token.
"""
from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from slipway.errors import SlipwayError
from slipway.project.config import EnvironmentConfig
from slipway.registry import registry_client
from slipway.registry.acr import AAD_SCOPE, ACR_USERNAME
from tests.push.conftest import ECR_ACCOUNT, free_port, push_head, quiet_reporter


@pytest.fixture
def moto_ecr(monkeypatch):
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield boto3.client("ecr", region_name="eu-west-1")
    finally:
        server.stop()


@pytest.mark.docker
def test_ecr_push_creates_an_immutable_scanned_repository(docker_engine, registry, project_repo, build_head_image,
                                                          moto_ecr):
    project, facts, _ = build_head_image(project_repo)
    repository = project.environment("aws").repository

    result = push_head(project, "aws", quiet_reporter(), facts)

    described = moto_ecr.describe_repositories(repositoryNames=[repository], registryId=ECR_ACCOUNT)
    settings = described["repositories"][0]
    assert settings["imageTagMutability"] == "IMMUTABLE"
    assert settings["imageScanningConfiguration"] == {"scanOnPush": True}
    assert sorted(registry.tags(repository)) == sorted(facts.image_tags())
    assert result["reference"] == f"{registry.address}/{repository}@{result['digest']}"

    # Another build of the same commit: the immutable tags are refused before anything is uploaded.
    build_head_image(project_repo, content="a different build of the same commit\n")
    uploads = registry.count("POST", f"/v2/{repository}/blobs/uploads/")
    with pytest.raises(SlipwayError, match="already exists with another image .* tags are immutable"):
        push_head(project, "aws", quiet_reporter(), facts)
    assert registry.count("POST", f"/v2/{repository}/blobs/uploads/") == uploads
    assert registry_client(project.environment("aws")).manifest_digest(facts.sha) == result["digest"]


def test_ecr_token_is_fetched_from_aws_each_run(moto_ecr):
    env = EnvironmentConfig.model_validate({
        "registry": {"kind": "ecr", "account_id": ECR_ACCOUNT, "region": "eu-west-1"},
        "repository": "team/app", "prefect": {"api_url": "http://127.0.0.1:9/api"},
        "work_pool": {"name": "p", "type": "kubernetes"}})

    client = registry_client(env)

    assert client.host == f"{ECR_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    assert client.credentials() == ("AWS", f"{ECR_ACCOUNT}-auth-token")  # decoded from moto's token
    assert client.ensure_repository()["created"] is True
    assert client.ensure_repository() == {"repository": "team/app", "created": False,
                                          "tag_mutability": "IMMUTABLE", "scan_on_push": True}


# -- ACR ------------------------------------------------------------------------------------------------

AAD_TOKEN = "dummy-aad-token"
REFRESH_TOKEN = "acr-refresh-token-7d2"
ACCESS_TOKEN = "acr-access-token-91c"
DIGEST = "sha256:" + "ab" * 32


class FakeAzureCredential:
    """Stands in for DefaultAzureCredential (Azure AD cannot be reached here): a fixed AAD token."""

    def __init__(self, token: str = AAD_TOKEN, error: Exception | None = None):
        self.token, self.error, self.scopes = token, error, []

    def get_token(self, *scopes, **kwargs):
        self.scopes.append(scopes)
        if self.error:
            raise self.error
        return AccessToken(self.token, int(time.time()) + 3600)


class FakeAcr(BaseHTTPRequestHandler):
    """ACR's auth endpoints as documented: /oauth2/exchange (AAD -> refresh token), /oauth2/token (refresh
    token via Basic -> access token), and a /v2/ API answering 401 with a Bearer challenge."""

    requests: ClassVar[list[tuple[str, str, dict]]] = []

    def log_message(self, *args):
        pass

    def _reply(self, status, body=None, headers=None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        data = json.dumps(body).encode() if body is not None else b""
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _challenge(self):
        host = self.headers["Host"]
        self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]}, {
            "WWW-Authenticate": f'Bearer realm="http://{host}/oauth2/token",service="{host}"'})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        FakeAcr.requests.append(("POST", self.path, form))
        if self.path == "/oauth2/exchange" and form.get("access_token") == AAD_TOKEN:
            self._reply(200, {"refresh_token": REFRESH_TOKEN})
        else:
            self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid AAD token"}]})

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        FakeAcr.requests.append(("GET", url.path, {**query, "authorization": self.headers.get("Authorization")}))
        if url.path == "/oauth2/token":
            expected = "Basic " + base64.b64encode(f"{ACR_USERNAME}:{REFRESH_TOKEN}".encode()).decode()
            if self.headers.get("Authorization") == expected:
                self._reply(200, {"access_token": ACCESS_TOKEN})
            else:
                self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
        elif self.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            self._challenge()
        elif url.path == "/v2/":
            self._reply(200, {})
        elif url.path.startswith("/v2/data-platform/jaffle-shop/manifests/"):
            self._reply(200, {}, {"Docker-Content-Digest": DIGEST})
        else:
            self._reply(404, {"errors": [{"code": "NAME_UNKNOWN"}]})

    do_HEAD = do_GET


@pytest.fixture
def fake_acr():
    FakeAcr.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAcr)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def acr_env(address: str) -> EnvironmentConfig:
    return EnvironmentConfig.model_validate({
        "registry": {"kind": "acr", "address": address, "insecure": True},
        "repository": "data-platform/jaffle-shop", "prefect": {"api_url": "http://127.0.0.1:9/api"},
        "work_pool": {"name": "p", "type": "kubernetes"}})


def test_acr_exchanges_the_aad_token_for_a_refresh_token(fake_acr):
    credential = FakeAzureCredential()
    client = registry_client(acr_env(fake_acr), "prod", azure_credential=credential)

    assert client.credentials() == (ACR_USERNAME, REFRESH_TOKEN)
    client.check_access()
    assert client.manifest_digest("v1") == DIGEST
    assert client.auth_config() == {"username": ACR_USERNAME, "password": REFRESH_TOKEN, "serveraddress": fake_acr}

    assert credential.scopes == [(AAD_SCOPE,)]  # one AAD token per run, reused for every call
    exchanges = [r for r in FakeAcr.requests if r[1] == "/oauth2/exchange"]
    assert exchanges == [("POST", "/oauth2/exchange",
                          {"grant_type": "access_token", "service": fake_acr, "access_token": AAD_TOKEN})]
    scopes = [r[2]["scope"] for r in FakeAcr.requests if r[1] == "/oauth2/token"]
    assert scopes == ["repository:data-platform/jaffle-shop:pull,push", "repository:data-platform/jaffle-shop:pull"]
    assert all(r[2]["service"] == fake_acr for r in FakeAcr.requests if r[1] == "/oauth2/token")


def test_acr_refused_exchange_is_one_clear_line(fake_acr):
    client = registry_client(acr_env(fake_acr), "prod", azure_credential=FakeAzureCredential(token="expired"))

    with pytest.raises(SlipwayError) as exc:
        client.check_access()
    assert exc.value.line() == (f"ACR {fake_acr} refused the Azure AD token exchange (HTTP 401: UNAUTHORIZED "
                                "invalid AAD token); give the Azure identity the AcrPush role on this registry "
                                "(and check `az account show`)")
    assert "expired" not in exc.value.line()


def test_acr_without_azure_login_says_how_to_log_in(fake_acr):
    error = ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")
    client = registry_client(acr_env(fake_acr), "prod", azure_credential=FakeAzureCredential(error=error))

    with pytest.raises(SlipwayError, match=r"no Azure credentials for registry .*; run `az login`"):
        client.check_access()
    assert not [r for r in FakeAcr.requests if r[1] == "/oauth2/exchange"]


def test_a_repository_created_meanwhile_by_another_job_is_not_an_error(moto_ecr, monkeypatch):
    """Two release jobs (a push, a promote) may both find no repository and both create it: the second one's
    RepositoryAlreadyExistsException means the repository is there, as wanted."""
    env = EnvironmentConfig.model_validate({
        "registry": {"kind": "ecr", "account_id": ECR_ACCOUNT, "region": "eu-west-1"},
        "repository": "team/raced", "prefect": {"api_url": "http://127.0.0.1:9/api"},
        "work_pool": {"name": "p", "type": "kubernetes"}})
    client = registry_client(env)
    real_describe = client._describe
    answers = iter([None])  # the first look finds nothing: the other job creates it right after

    def describe():
        answer = next(answers, "real")
        if answer is None:
            moto_ecr.create_repository(repositoryName="team/raced", registryId=ECR_ACCOUNT,
                                       imageTagMutability="IMMUTABLE")
            return None
        return real_describe()

    monkeypatch.setattr(client, "_describe", describe)

    assert client.ensure_repository() == {"repository": "team/raced", "created": False,
                                          "tag_mutability": "IMMUTABLE", "scan_on_push": False}
    assert client.tags_immutable()
