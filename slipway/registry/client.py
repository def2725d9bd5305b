"""The OCI distribution API (`/v2/...`) over `requests`, for any registry slipway pushes to.

One client per environment and per run. Authentication follows the registry's `WWW-Authenticate`
challenge: `Basic` (htpasswd registries, ECR) sends the credentials on each request; `Bearer` (Docker Hub,
ACR, Harbor, GHCR...) trades them at the challenge's realm for a token scoped to this repository.
Credentials come from the kind's subclass (generic.py, ecr.py, acr.py) and live only in memory: they are
never written to disk, put on a command line, or included in a message.
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

import requests

from slipway.errors import SlipwayError
from slipway.invocation import command, program_name
from slipway.project.config import EnvironmentConfig

# The manifest types a registry may answer with for an image we pushed (the engine pushes Docker v2
# schema 2; other tools push OCI), plus the index types so a multi-platform tag still resolves.
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
TIMEOUT = 15  # seconds per request: a registry that takes longer is treated as unreachable
# Blobs go up in pieces of this size (the last may be shorter): a layer streamed from another registry is
# never held whole in memory. ECR wants every part but the last to be at least 5 MiB; a registry asking for
# more (OCI-Chunk-Min-Length) gets more.
CHUNK_BYTES = 8 * 1024 * 1024
WRITE = "pull,push"  # the scope of every call of a write: one token for the copy, whichever call comes first
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_UNSET = object()


@dataclass(frozen=True)
class RawManifest:
    """A manifest as the registry stores it: the exact bytes (their sha256 is the digest), and their type."""

    body: bytes
    media_type: str
    digest: str

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


READ_RETRIES = 3
FIRST_READ_RETRY_SECONDS = 0.2
RETRIED_READ_STATUSES = (429, 500, 502, 503, 504)

class RegistryClient:
    """Read access to one repository, the checks a push needs, and the writes a copy between registries
    makes (blob upload and mount, manifest by digest and by tag). Subclasses supply credentials."""

    kind = "generic"

    def __init__(self, env: EnvironmentConfig, env_name: str | None = None):
        self.env = env
        self.env_name = env_name
        self.host = env.registry.host
        self.repository = env.repository
        self.scheme = "http" if env.registry.insecure else "https"
        self.up_starts_it = False  # `slipway up` starts this registry (Project.up_serves): the hint names it
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
                               f"list the releases with `{command('releases', '--env', self.env_name or '<env>')}`")
        return resp.json()

    def get_blob(self, digest: str) -> bytes:
        """A small blob (an image config) by digest; redirects to blob storage are followed."""
        resp = self._request("GET", f"/v2/{self.repository}/blobs/{digest}", missing_ok=True)
        if resp.status_code == 404:
            raise SlipwayError(f"{self.host}/{self.repository} has no blob {digest}",
                               "the release is incomplete in the registry: push it again")
        return resp.content

    # -- writing: what a copy between registries needs (registry/copy.py) ----------------------------

    def manifest_raw(self, reference: str) -> RawManifest | None:
        """The manifest for a tag or digest as stored (bytes and media type); None when absent."""
        resp = self._request("GET", f"/v2/{self.repository}/manifests/{reference}",
                             headers={"Accept": ", ".join(MANIFEST_TYPES)}, missing_ok=True)
        if resp.status_code == 404:
            return None
        body = resp.content
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise SlipwayError(f"registry {self.host} served {self.repository}@{reference} as bytes whose digest "
                               f"is {digest}", "check the registry (or a proxy in front of it) for corruption")
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            media_type = _declared_media_type(body) or media_type
        return RawManifest(body, media_type, digest)

    def put_manifest(self, reference: str, manifest: RawManifest) -> str:
        """Store `manifest`'s exact bytes under `reference` (its digest, or a tag); the registry's digest."""
        resp = self._request("PUT", f"/v2/{self.repository}/manifests/{reference}", actions=WRITE,
                             headers={"Content-Type": manifest.media_type}, data=manifest.body)
        return resp.headers.get("Docker-Content-Digest") or manifest.digest

    def blob_size(self, digest: str) -> int | None:
        """The size of blob `digest` in this repository, None when it is not there (HEAD on the blob)."""
        resp = self._request("HEAD", f"/v2/{self.repository}/blobs/{digest}", actions=WRITE, missing_ok=True)
        if resp.status_code == 404:
            return None
        return int(resp.headers.get("Content-Length") or 0)

    def open_blob(self, digest: str) -> requests.Response:
        """Blob `digest` as a streamed response (redirects to blob storage followed); the caller closes it."""
        resp = self._request("GET", f"/v2/{self.repository}/blobs/{digest}", missing_ok=True, stream=True)
        if resp.status_code == 404:
            resp.close()
            raise SlipwayError(f"{self.host}/{self.repository} has no blob {digest}",
                               "the image is incomplete in that registry: push it there again")
        return resp

    def mount_blob(self, digest: str, from_repository: str) -> Upload | None:
        """Cross-repository mount of `digest` from `from_repository` on this same registry: None when mounted
        (nothing sent); otherwise the upload the registry opened instead (it may refuse a mount, e.g. when
        these credentials cannot read the other repository), for the caller to fill."""
        query = urlencode({"mount": digest, "from": from_repository})
        resp = self._request("POST", f"/v2/{self.repository}/blobs/uploads/?{query}", actions=WRITE,
                             scopes=[f"repository:{from_repository}:pull"])
        if resp.status_code == 201:
            return None
        return self._upload_from(resp)

    def start_upload(self) -> Upload:
        resp = self._request("POST", f"/v2/{self.repository}/blobs/uploads/", actions=WRITE)
        return self._upload_from(resp)

    def upload_blob(self, upload: Upload, digest: str, size: int, chunks: Iterable[bytes]) -> None:
        """Fill `upload` with `chunks` (each `upload.chunk_bytes` long but the last) and close it as
        `digest`. One PUT when the blob fits one chunk (monolithic), else one PATCH per chunk and a closing
        PUT (chunked). The registry checks the digest when the upload is closed."""
        location = upload.location
        if size <= upload.chunk_bytes:
            data = b"".join(chunks)
            self._request("PUT", _with_query(location, digest=digest), actions=WRITE, data=data,
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
            return
        offset = 0
        for chunk in chunks:
            resp = self._request("PATCH", location, actions=WRITE, data=chunk, headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
            offset += len(chunk)
            location = self._absolute(resp.headers.get("Location") or location)
        self._request("PUT", _with_query(location, digest=digest), actions=WRITE, data=b"",
                      headers={"Content-Length": "0"})

    def _upload_from(self, resp: requests.Response) -> Upload:
        location = resp.headers.get("Location")
        if resp.status_code != 202 or not location:
            raise SlipwayError(f"registry {self.host} did not open an upload in {self.repository} "
                               f"(HTTP {resp.status_code}, no Location)", "use an OCI distribution-compliant registry")
        minimum = resp.headers.get("OCI-Chunk-Min-Length") or ""
        chunk = max(CHUNK_BYTES, int(minimum)) if minimum.isdigit() else CHUNK_BYTES
        return Upload(self._absolute(location), chunk)

    def _absolute(self, location: str) -> str:
        return location if location.startswith("http") else urljoin(f"{self.scheme}://{self.host}/", location)

    # -- HTTP with the registry's auth challenge ----------------------------------------------------

    def _request(self, method: str, path: str, actions: str = "pull", headers: dict | None = None,
                 missing_ok: bool = False, scopes: list[str] | None = None, **kwargs: Any) -> requests.Response:
        """One call with the registry's authentication. `scopes`: more token scopes than this repository's
        `actions` (a mount reads another repository); `kwargs` reach requests (data, stream)."""
        url = path if path.startswith("http") else f"{self.scheme}://{self.host}{path}"
        scope = " ".join([f"repository:{self.repository}:{actions}", *(scopes or [])])
        headers = dict(headers or {})
        # Once the challenge is known the credentials go with the first attempt: a body is sent once.
        sent = self._authorization(scope, fetch=True)
        resp = self._send(method, url, {**headers, **sent}, **kwargs)
        if resp.status_code == 401:
            resp.close()
            self._challenge = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            # A 401 on a cached Bearer token means it expired (ACR tokens last minutes, ECR's hours):
            # forget it and fetch a new one, once; a second 401 is the credentials' fault.
            with self._lock:
                if sent and self._tokens.get(scope) and sent.get("Authorization") == f"Bearer {self._tokens[scope]}":
                    del self._tokens[scope]
            resp = self._send(method, url, {**headers, **self._authorization(scope, fetch=True)}, **kwargs)
            if resp.status_code == 401:
                raise self._rejected()
        # A read the registry fails with a 5xx or 429 is sent again (GET and HEAD change nothing), as
        # go-containerregistry's transport does: the filesystem-backed registry answers 500 to a manifest HEAD
        # that meets another push writing the same tag at that moment (two CI jobs of one commit).
        for attempt in range(READ_RETRIES):
            if method not in ("GET", "HEAD") or resp.status_code not in RETRIED_READ_STATUSES:
                break
            resp.close()
            time.sleep(FIRST_READ_RETRY_SECONDS * 2 ** attempt)
            resp = self._send(method, url, {**headers, **self._authorization(scope, fetch=True)}, **kwargs)
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
        query = [("scope", one) for one in scope.split(" ")]  # the token spec: one `scope` per repository
        if params.get("service"):
            query.append(("service", params["service"]))
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
            fix = (f"start it with `{program_name()} up`" if self.up_starts_it
                   else "start it, or check the address, your network and any proxy settings")
            raise SlipwayError(f"registry {self.host} ({self._address_field()}) is unreachable: {reason}",
                               fix) from exc

    def _address_field(self) -> str:
        if self.env.registry.address:
            return self._field("address")
        return self._field("account_id") + "/region"  # an ECR address derived from them

    def _field(self, key: str) -> str:
        where = f"environments.{self.env_name}.registry" if self.env_name else "the environment's registry"
        return f"slipway.yaml {where}.{key}"


@dataclass(frozen=True)
class Upload:
    """A blob upload the registry opened: where to send the bytes, and in pieces of what size."""

    location: str
    chunk_bytes: int


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _declared_media_type(body: bytes) -> str | None:
    """The `mediaType` a manifest declares inside, for registries that answer with a generic Content-Type."""
    import json

    try:
        declared = json.loads(body).get("mediaType")
    except (ValueError, AttributeError):
        return None
    return declared if declared in MANIFEST_TYPES else None


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
