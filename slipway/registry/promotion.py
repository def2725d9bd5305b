"""Where a promoted release came from, recorded in the destination registry beside the release.

A promoted image keeps its digest, so its manifest and config cannot say where it came from. The record is a
tiny OCI artifact in the same repository, stored under the tag `sha256-<hex of the release's digest>.promotion`
(the convention cosign uses for `.sig`/`.att`: found with the tag listing `releases` already reads, on any
registry) and carrying a `subject` that points at the release, so registries with the OCI 1.1 referrers API
(ECR, ACR) also list it as a referrer of the release. Its annotations hold the record itself.

Why here rather than in Prefect: the registry is where a release's history lives (`releases` and `rollback`
read it, nothing else), the record travels with the image it describes, and promote then writes to one
system only, with the credentials it already holds. Written once: a record already there is kept (a
repository with immutable tags could not replace it anyway), so the first promotion of a digest is the one
it names.
"""
from __future__ import annotations

import datetime
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slipway.registry.client import RawManifest, RegistryClient

RECORD_SUFFIX = ".promotion"
ARTIFACT_TYPE = "application/vnd.slipway.promotion.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# The OCI 1.1 empty descriptor: an artifact with nothing but annotations still names a config and a layer.
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY_BLOB).hexdigest()
ENVIRONMENT_KEY = "io.slipway.promoted-from.environment"
REPOSITORY_KEY = "io.slipway.promoted-from.repository"
CREATED_KEY = "org.opencontainers.image.created"
READERS = 8


@dataclass(frozen=True)
class Promotion:
    """Where a release in this repository was promoted from, and when."""

    environment: str
    repository: str  # <registry host>/<repository> it was copied from
    promoted_at: str | None

    def as_json(self) -> dict:
        return {"environment": self.environment, "repository": self.repository, "promoted_at": self.promoted_at}


def record_tag(digest: str) -> str:
    return digest.replace(":", "-") + RECORD_SUFFIX


def is_record_tag(tag: str) -> bool:
    return tag.startswith("sha256-") and tag.endswith(RECORD_SUFFIX)


def record_manifest(subject: RawManifest, environment: str, repository: str, now: str | None = None) -> RawManifest:
    empty = {"mediaType": EMPTY_TYPE, "digest": EMPTY_DIGEST, "size": len(EMPTY_BLOB)}
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": empty,
        "layers": [empty],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.body)},
        "annotations": {
            ENVIRONMENT_KEY: environment,
            REPOSITORY_KEY: repository,
            CREATED_KEY: now or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    }
    body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    return RawManifest(body, OCI_MANIFEST, "sha256:" + hashlib.sha256(body).hexdigest())


def write_record(dest: RegistryClient, subject: RawManifest, environment: str, repository: str) -> bool:
    """Record that `subject` (in `dest`) came from `environment`'s `repository`; False when a record exists."""
    tag = record_tag(subject.digest)
    if dest.manifest_digest(tag) is not None:
        return False
    if dest.blob_size(EMPTY_DIGEST) is None:
        dest.upload_blob(dest.start_upload(), EMPTY_DIGEST, len(EMPTY_BLOB), [EMPTY_BLOB])
    dest.put_manifest(tag, record_manifest(subject, environment, repository))
    return True


def read_records(registry: RegistryClient, tags: list[str]) -> dict[str, Promotion]:
    """Release digest -> its promotion record, for the record tags among `tags` (one manifest read each)."""
    def read(tag: str) -> tuple[str, Promotion | None]:
        digest = tag.removesuffix(RECORD_SUFFIX).replace("sha256-", "sha256:", 1)
        raw = registry.manifest_raw(tag)
        annotations = (json.loads(raw.body).get("annotations") or {}) if raw else {}
        if ENVIRONMENT_KEY not in annotations:
            return digest, None
        return digest, Promotion(annotations[ENVIRONMENT_KEY], annotations.get(REPOSITORY_KEY, ""),
                                 annotations.get(CREATED_KEY))

    records = [t for t in tags if is_record_tag(t)]
    if not records:
        return {}
    with ThreadPoolExecutor(READERS) as pool:
        return {digest: found for digest, found in pool.map(read, records) if found is not None}
