"""A small HTTP proxy in front of a real server, for fault tests: it forwards every request as it is, except
those a rule picks out, which it answers itself (an HTTP error the real server would not give on cue) or
precedes with an action (stopping the real server at an exact point of a run).

Only what the fault tests need: HTTP/1.1 with keep-alive, bodies with Content-Length (Prefect's API), no TLS,
no streaming. When the real server cannot be reached, the proxy drops the connection without an answer, as
a server that died would.
"""
from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}


@dataclass
class Rule:
    """The `nth` request (1-based, counting only matching ones) whose method and path match: answer it with
    `status` (and `body`), or run `before` then forward it."""

    method: str  # a regular expression matching the whole method: "POST", "POST|PATCH"
    path: str  # a regular expression matching the whole path
    nth: int = 1
    status: int | None = None
    body: bytes = b'{"detail": "injected by the test proxy"}'
    before: Callable[[], None] | None = None
    seen: int = 0
    fired: bool = False

    def matches(self, method: str, path: str) -> bool:
        return re.fullmatch(self.method, method) is not None and re.fullmatch(self.path, path) is not None


@dataclass
class FaultProxy:
    upstream: str  # http://host:port
    rules: list[Rule] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status; 0 = dropped)

    def __post_init__(self):
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                proxy._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fired(self) -> list[Rule]:
        return [rule for rule in self.rules if rule.fired]

    def _pick(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if not rule.fired and rule.matches(method, path):
                    rule.seen += 1
                    if rule.seen == rule.nth:
                        rule.fired = True
                        return rule
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        method, path = handler.command, handler.path
        rule = self._pick(method, path)
        if rule is not None and rule.before is not None:
            rule.before()
        if rule is not None and rule.status is not None:
            self._answer(handler, method, path, rule.status, {"Content-Type": "application/json"}, rule.body)
            return
        target = urlsplit(self.upstream)
        try:
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
        except OSError:  # the server is down: drop the connection unanswered, as a dying server does
            self.log.append((method, path, 0))
            handler.close_connection = True
            return
        headers = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
        self._answer(handler, method, path, response.status, headers, data)

    def _answer(self, handler, method: str, path: str, status: int, headers: dict, data: bytes) -> None:
        self.log.append((method, path, status))
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(data)
