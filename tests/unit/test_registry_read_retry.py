"""A registry read (GET, HEAD) answered 5xx or 429 is sent again, a write never (slipway/registry/client.py).
Against a local HTTP server that answers like a registry whose tag is being written by another push."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slipway.errors import SlipwayError
from slipway.project.config import EnvironmentConfig
from slipway.registry import client as registry_client_module
from slipway.registry import registry_client

DIGEST = "sha256:" + "a" * 64


@pytest.fixture
def registry(monkeypatch):
    """Answers 500 to the first `failures` requests, then as a registry holding tag `v1`; counts requests."""
    monkeypatch.setattr(registry_client_module, "FIRST_READ_RETRY_SECONDS", 0.01)
    state = {"failures": 0, "seen": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self):
            state["seen"].append(self.command)
            if state["failures"] > 0:
                state["failures"] -= 1
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200 if self.command == "HEAD" else 201)
            self.send_header("Docker-Content-Digest", DIGEST)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_PUT = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = EnvironmentConfig.model_validate({
        "registry": {"kind": "generic", "address": f"127.0.0.1:{server.server_address[1]}", "insecure": True},
        "repository": "team/app", "prefect": {"api_url": "http://127.0.0.1:1/api"},
        "work_pool": {"name": "pool", "type": "docker"}})
    yield registry_client(env, "prod"), state
    server.shutdown()


def test_a_read_the_registry_fails_for_a_moment_is_sent_again(registry):
    client, state = registry
    state["failures"] = 2
    assert client.manifest_digest("v1") == DIGEST
    assert state["seen"] == ["HEAD"] * 3


def test_a_read_that_keeps_failing_is_one_error_after_a_few_tries(registry):
    client, state = registry
    state["failures"] = 100
    with pytest.raises(SlipwayError, match="HTTP 500"):
        client.manifest_digest("v1")
    assert len(state["seen"]) == 1 + registry_client_module.READ_RETRIES


def test_a_write_is_never_sent_again(registry):
    client, state = registry
    state["failures"] = 1
    with pytest.raises(SlipwayError, match="HTTP 500"):
        client._request("PUT", "/v2/team/app/manifests/v1", actions="pull,push", data=b"{}")
    assert state["seen"] == ["PUT"]
