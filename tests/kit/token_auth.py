"""A Docker token service for the kit's registry: the registry (Debian's docker-registry) runs with its own
`auth: token` support and checks every token itself (signature against the certificate it is given, issuer,
audience, expiry, granted actions); this small service only issues them, as Docker Hub's, ACR's or Harbor's
token services do: `GET <realm>?service=...&scope=repository:<name>:<actions>` with Basic credentials.

What the tests steer: how long the next tokens live (`lifetime`, seconds; negative = already expired, the
registry then allowing its 60 s of leeway) and whether they grant anything (`grant`). `issued` counts them.
"""
from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

CERT_PATH = "/etc/slipway-registry/token.crt"
LEEWAY_SECONDS = 60  # the registry accepts a token this long after its expiry (clock skew)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    def __init__(self, user: str, password: str, issuer: str = "slipway-test-issuer",
                 service: str = "slipway-test-registry"):
        self.user, self.password, self.issuer, self.service = user, password, issuer, service
        self.lifetime = 300.0
        self.grant = True
        self.issued: list[dict] = []  # the claims of each token issued
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self._key, hashes.SHA256()))
        service_self = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                service_self._answer(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="token-service", daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def registry_settings(self) -> tuple[dict[str, str], dict[str, bytes]]:
        """The kit registry's `env` and `files` for token authentication against this service."""
        env = {"REGISTRY_AUTH": "token", "REGISTRY_AUTH_TOKEN_REALM": self.realm,
               "REGISTRY_AUTH_TOKEN_SERVICE": self.service, "REGISTRY_AUTH_TOKEN_ISSUER": self.issuer,
               "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE": CERT_PATH}
        return env, {CERT_PATH: self.cert.public_bytes(serialization.Encoding.PEM)}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if handler.headers.get("Authorization") != expected:
            self._send(handler, 401, {"details": "bad credentials"})
            return
        query = parse_qs(urlsplit(handler.path).query)
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",") if self.grant else []})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": self.user, "aud": query.get("service", [""])[0],
                  "iat": now, "exp": now + int(self.lifetime), "jti": secrets.token_hex(8), "access": access}
        self.issued.append(claims)
        self._send(handler, 200, {"token": self._sign(claims), "expires_in": int(self.lifetime)})

    def _sign(self, claims: dict) -> str:
        """A JWS (ES256) whose x5c header carries the certificate the registry trusts."""
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
