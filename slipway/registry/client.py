"""The OCI distribution API (`/v2/...`) over `requests`, for any registry slipway pushes to.

One client per environment and per run. Authentication follows the registry's `WWW-Authenticate`
challenge: `Basic` (htpasswd registries, ECR) sends the credentials on each request; `Bearer` (Docker Hub,
ACR, Harbor, GHCR...) trades them at the challenge's realm for a token scoped to this repository.
Credentials come from the kind's subclass (generic.py, ecr.py, acr.py) and live only in memory: they are
never written to disk, put on a command line, or included in a message.
"""
from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import urljoin

import requests

from slipway.errors import SlipwayError
from slipway.project.config import EnvironmentConfig

# The manifest types a registry may answer with for an image we pushed (the engine pushes Docker v2
# schema 2; other tools push OCI), plus the index types so a multi-platform tag still resolves.
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
TIMEOUT = 15  # seconds per request: a registry that takes longer is treated as unreachable
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_UNSET = object()


class RegistryClient:
    """Read access to one repository plus the checks a push needs. Subclasses supply credentials."""

    kind = "generic"

    def __init__(self, env: EnvironmentConfig, env_name: str | None = None):
        self.env = env
        self.env_name = env_name
        self.host = env.registry.host
        self.repository = env.repository
        self.scheme = "http" if env.registry.insecure else "https"
        self._session = requests.Session()
        self._credentials: Any = _UNSET
        self._challenge: tuple[str, dict[str, str]] | None = None  # (scheme, params) of the last 401
        self._tokens: dict[str, str] = {}  # Bearer token per scope
        # Callers may fan out (`releases` reads many tags in threads): one credential/token fetch at a time.
        self._lock = threading.RLock()

    # -- what each kind provides --------------------------------------------------------------------

    def credentials(self) -> tuple[str, str] | None:
        """(username, password) for this run, fetched once per client; None means anonymous."""
        with self._lock:
            if self._credentials is _UNSET:
                self._credentials = self._fetch_credentials()
            return self._credentials

    def _fetch_credentials(self) -> tuple[str, str] | None:
        return None

    def credentials_source(self) -> str:
        """Where the credentials come from, for error messages (never the credentials themselves)."""
        return "anonymous access"

    def credentials_fix(self) -> str:
        return "check the registry credentials"

    def ensure_repository(self) -> dict:
        """Create the repository when the registry needs that before a push (ECR); others create on push."""
        return {"repository": self.repository, "created": False}

    def tags_immutable(self) -> bool:
        """Whether an existing tag can never point at another image (an ECR repository's setting)."""
        return False

    # -- the registry API ---------------------------------------------------------------------------

    def auth_config(self) -> dict[str, str] | None:
        """The credentials as docker-py's `auth_config` (sent to the engine in a header, never argv)."""
        creds = self.credentials()
        if creds is None:
            return None
        return {"username": creds[0], "password": creds[1], "serveraddress": self.host}

    def check_access(self) -> None:
        """A cheap authenticated call: the credentials work and may push here, before anything uploads.

        Credentials are obtained first, so a missing login (AWS, Azure, an unset variable) is reported as
        such rather than as whatever the registry answers an anonymous client."""
        self.credentials()
        self._request("GET", "/v2/", actions="pull,push")

    def manifest_digest(self, tag: str) -> str | None:
        """The digest the registry holds for `tag` (its Docker-Content-Digest), None when the tag is absent."""
        resp = self._request("HEAD", f"/v2/{self.repository}/manifests/{tag}",
                             headers={"Accept": ", ".join(MANIFEST_TYPES)}, missing_ok=True)
        if resp.status_code == 404:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        if not digest:
            raise SlipwayError(f"registry {self.host} answered for {self.repository}:{tag} without a "
                               "Docker-Content-Digest header", "use an OCI distribution-compliant registry")
        return digest

    def list_tags(self) -> list[str]:
        """Every tag of the repository (following `Link` pagination); [] when the repository is absent."""
        tags: list[str] = []
        path: str | None = f"/v2/{self.repository}/tags/list?n=1000"
        while path:
            resp = self._request("GET", path, missing_ok=True)
            if resp.status_code == 404:
                return []
            tags.extend(resp.json().get("tags") or [])
            path = _next_link(resp.headers.get("Link"))
        return tags

    def get_manifest(self, reference: str) -> dict:
        """The manifest for a tag or digest, parsed."""
        resp = self._request("GET", f"/v2/{self.repository}/manifests/{reference}",
                             headers={"Accept": ", ".join(MANIFEST_TYPES)}, missing_ok=True)
        if resp.status_code == 404:
            raise SlipwayError(f"{self.host}/{self.repository} has no manifest {reference}",
                               f"list the releases with `python build.py releases --env {self.env_name or 'ENV'}`")
        return resp.json()

    def get_blob(self, digest: str) -> bytes:
        """A small blob (an image config) by digest; redirects to blob storage are followed."""
        resp = self._request("GET", f"/v2/{self.repository}/blobs/{digest}", missing_ok=True)
        if resp.status_code == 404:
            raise SlipwayError(f"{self.host}/{self.repository} has no blob {digest}",
                               "the release is incomplete in the registry: push it again")
        return resp.content

    # -- HTTP with the registry's auth challenge ----------------------------------------------------

    def _request(self, method: str, path: str, actions: str = "pull", headers: dict | None = None,
                 missing_ok: bool = False) -> requests.Response:
        url = path if path.startswith("http") else f"{self.scheme}://{self.host}{path}"
        scope = f"repository:{self.repository}:{actions}"
        headers = dict(headers or {})
        sent = self._authorization(scope, fetch=False)
        resp = self._send(method, url, {**headers, **sent})
        if resp.status_code == 401:
            self._challenge = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            # A 401 on a cached Bearer token means it expired (ACR tokens last minutes, ECR's hours):
            # forget it and fetch a new one, once; a second 401 is the credentials' fault.
            with self._lock:
                if sent and self._tokens.get(scope) and sent.get("Authorization") == f"Bearer {self._tokens[scope]}":
                    del self._tokens[scope]
            resp = self._send(method, url, {**headers, **self._authorization(scope, fetch=True)})
            if resp.status_code == 401:
                raise self._rejected()
        if resp.status_code == 403:
            raise SlipwayError(f"registry {self.host} denied {actions} access to {self.repository} "
                               f"for {self.credentials_source()}", self.credentials_fix())
        if resp.status_code == 404 and missing_ok:
            return resp
        if resp.status_code >= 400:
            raise SlipwayError(f"registry {self.host} answered {method} {path.split('?')[0]} with HTTP "
                               f"{resp.status_code}: {_error_text(resp)}",
                               "check the registry's health and the environment's registry settings")
        return resp

    def _authorization(self, scope: str, fetch: bool) -> dict[str, str]:
        """The Authorization header for the last challenge seen (none before the first 401)."""
        if self._challenge is None:
            return {}
        scheme, params = self._challenge
        if scheme == "basic":
            creds = self._required_credentials()
            return {"Authorization": _basic(creds)}
        if scheme == "bearer":
            with self._lock:
                token = self._tokens.get(scope)
                if token is None and fetch:
                    token = self._tokens[scope] = self._fetch_token(params, scope)
            return {"Authorization": f"Bearer {token}"} if token else {}
        raise SlipwayError(f"registry {self.host} asks for unsupported '{scheme}' authentication",
                           "use a registry with Basic or Bearer token authentication")

    def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise SlipwayError(f"registry {self.host} sent a Bearer challenge without a realm",
                               "use an OCI distribution-compliant registry")
        query = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        creds = self.credentials()
        resp = self._send("GET", realm, {"Authorization": _basic(creds)} if creds else {}, params=query)
        if resp.status_code in (401, 403):
            raise self._rejected()
        if resp.status_code >= 400:
            raise SlipwayError(f"the token service of registry {self.host} answered HTTP {resp.status_code}: "
                               f"{_error_text(resp)}", self.credentials_fix())
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise SlipwayError(f"the token service of registry {self.host} returned no token",
                               self.credentials_fix())
        return token

    def _required_credentials(self) -> tuple[str, str]:
        creds = self.credentials()
        if creds is None:
            raise SlipwayError(f"registry {self.host} requires credentials and none are configured",
                               self.credentials_fix())
        return creds

    def _rejected(self) -> SlipwayError:
        if self.credentials() is None:
            return SlipwayError(f"registry {self.host} requires credentials and none are configured",
                                self.credentials_fix())
        return SlipwayError(f"registry {self.host} rejected {self.credentials_source()} (HTTP 401 Unauthorized)",
                            self.credentials_fix())

    def _send(self, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> requests.Response:
        try:
            return self._session.request(method, url, headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise SlipwayError(
                f"TLS handshake with registry {self.host} failed",
                f"{self._field('insecure')}: set true only for a plain-HTTP registry on this machine; "
                "otherwise install the registry's CA certificate (REQUESTS_CA_BUNDLE)") from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            reason = _connection_reason(exc)
            fix = ("start it with `make up`" if self.host.split(":")[0] in ("localhost", "127.0.0.1")
                   else "check the address, your network and any proxy settings")
            raise SlipwayError(f"registry {self.host} ({self._address_field()}) is unreachable: {reason}",
                               fix) from exc

    def _address_field(self) -> str:
        if self.env.registry.address:
            return self._field("address")
        return self._field("account_id") + "/region"  # an ECR address derived from them

    def _field(self, key: str) -> str:
        where = f"environments.{self.env_name}.registry" if self.env_name else "the environment's registry"
        return f"slipway.yaml {where}.{key}"


def _basic(creds: tuple[str, str]) -> str:
    return requests.auth._basic_auth_str(creds[0], creds[1])


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower() or "basic", dict(_CHALLENGE_PARAM.findall(rest))


def _next_link(link: str | None) -> str | None:
    """The `rel="next"` target of a Link header, as a path (registries send `</v2/...>; rel="next"`)."""
    if not link or 'rel="next"' not in link:
        return None
    match = re.search(r"<([^>]+)>", link)
    if not match:
        return None
    target = match.group(1)
    return target if target.startswith("/") else urljoin("/", target)


def _error_text(resp: requests.Response) -> str:
    try:
        errors = resp.json().get("errors") or []
        if errors:
            return "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors)
    except ValueError:
        pass
    return (resp.text or resp.reason or "").strip()[:200] or "no details"


def _connection_reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "nodename nor servname",
                   "Temporary failure in name resolution", "timed out", "No route to host"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
