"""A registry with short-lived Bearer tokens (ACR's last minutes): after a 401 on a cached token, slipway fetches
a new token once and carries on; a second 401 is the credentials' fault and says so in one line.

The registry is real (Debian's docker-registry with its own `auth: token`: it verifies every token's signature,
issuer, audience, expiry and granted actions); the token service is the kit's (tests/kit/token_auth.py), which
issues tokens the way Docker Hub's, ACR's or Harbor's services do, with the lifetime and grants the test sets.
"""
from __future__ import annotations

import time

import pytest

from slipway.errors import SlipwayError
from slipway.project.config import parse_config
from slipway.registry import registry_client
from tests.kit.token_auth import LEEWAY_SECONDS, TokenService

USER, PASSWORD = "token-user", "token-secret-93b1"
ALMOST_EXPIRED = -(LEEWAY_SECONDS - 2)  # accepted by the registry for about 2 more seconds


@pytest.fixture
def token_registry(start_registry):
    tokens = TokenService(USER, PASSWORD)
    env, files = tokens.registry_settings()
    registry = start_registry("tokens", env=env, files=files)
    yield tokens, registry
    registry.remove()
    tokens.close()


def client_for(registry, monkeypatch):
    monkeypatch.setenv("TOKEN_TEST_USER", USER)
    monkeypatch.setenv("TOKEN_TEST_PASSWORD", PASSWORD)
    config = parse_config({"image": {"name": "app"}, "environments": {"local": {
        "registry": {"kind": "generic", "address": registry.address, "insecure": True,
                     "username_env": "TOKEN_TEST_USER", "password_env": "TOKEN_TEST_PASSWORD"},
        "repository": "team/app", "prefect": {"api_url": "http://127.0.0.1:9/api"},
        "work_pool": {"name": "pool", "type": "docker"}}}})
    return registry_client(config.environments["local"], "local")


def test_an_expired_token_is_replaced_once_then_a_refused_one_is_a_credentials_error(token_registry, monkeypatch):
    tokens, registry = token_registry
    client = client_for(registry, monkeypatch)

    tokens.lifetime = ALMOST_EXPIRED
    assert client.manifest_digest("v1") is None  # 401, a token fetched, the request answered (no such tag)
    assert len(tokens.issued) == 1
    time.sleep(3)  # the cached token has expired for the registry too

    assert client.manifest_digest("v1") is None  # 401 on the cached token: a new one, once
    assert len(tokens.issued) == 2
    assert client.manifest_digest("v1") is None  # the new token is cached and used
    assert len(tokens.issued) == 2
    time.sleep(3)

    tokens.grant = False  # the token service now refuses this repository to these credentials
    with pytest.raises(SlipwayError) as caught:
        client.manifest_digest("v1")
    assert len(tokens.issued) == 3  # one new token, not a loop
    assert caught.value.line() == (
        f"registry {registry.address} rejected the credentials in $TOKEN_TEST_USER/$TOKEN_TEST_PASSWORD (HTTP 401 "
        "Unauthorized); check $TOKEN_TEST_USER and $TOKEN_TEST_PASSWORD (slipway.yaml "
        "environments.local.registry.username_env/password_env)")
