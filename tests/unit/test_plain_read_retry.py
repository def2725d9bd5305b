"""The told path's plain reads (slipway/deploy/prefect_reads.py): a read the server could not answer for a
moment (503, as a SQLite-backed Prefect answers while its database is locked) is sent again, briefly; one that
keeps failing raises after a few tries, so the run takes the full path. Against a local HTTP server."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from slipway.deploy import prefect_reads
from slipway.deploy.prefect_api import PrefectSettings
from slipway.deploy.prefect_reads import PlainReads
from slipway.project.config import PrefectConfig


@pytest.fixture
def server(monkeypatch):
    """Answers 503 to the first `failures` requests, then a work pool; counts requests."""
    monkeypatch.setattr(prefect_reads, "FIRST_RETRY_SECONDS", 0.01)
    state = {"failures": 0, "seen": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            state["seen"] += 1
            if state["failures"] > 0:
                state["failures"] -= 1
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"name": "pool", "type": "docker", "base_job_template": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    settings = PrefectSettings("prod", PrefectConfig.model_validate(
        {"api_url": f"http://127.0.0.1:{httpd.server_address[1]}/api"}))
    yield settings, state
    httpd.shutdown()


def test_a_read_refused_for_a_moment_is_sent_again(server):
    settings, state = server
    state["failures"] = 2
    with PlainReads(settings) as reads:
        assert reads.work_pool("pool")["name"] == "pool"
    assert state["seen"] == 3


def test_a_read_that_keeps_failing_raises_after_a_few_tries(server):
    settings, state = server
    state["failures"] = 10
    with PlainReads(settings) as reads, pytest.raises(requests.HTTPError):
        reads.work_pool("pool")
    assert state["seen"] == prefect_reads.READ_ATTEMPTS
