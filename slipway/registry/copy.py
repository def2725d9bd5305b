"""Copy an image from one registry repository to another by digest, over the OCI distribution API alone:
no Docker engine, nothing pulled to disk, the manifest bytes unchanged (so the digest is the same).

What a copy does, for an image manifest: each blob it names (config, layers) is skipped when the destination
already has it (HEAD on the blob), mounted from the source repository when both live on the same registry
host (`POST .../blobs/uploads/?mount=<digest>&from=<repo>`: the registry links the blob, no byte moves),
and otherwise streamed from the source's GET to the destination's upload in chunks (registry/client.py
CHUNK_BYTES: a layer is never held whole in memory). Then the manifest is PUT under its digest. An index
(multi-platform image) is copied child by child, then the index itself.

No tag is written here: the caller tags once every blob and manifest is in place, so a copy that stops
halfway (a registry dies, a process is killed) leaves no tag pointing at an incomplete image, and running it
again skips whatever is already complete.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from slipway.errors import SlipwayError
from slipway.output import Reporter
from slipway.registry.client import RawManifest, RegistryClient, Upload

BLOB_WORKERS = 3  # blobs copied at once: enough to overlap round trips, at most 3 chunks in memory
# Layers a registry must not redistribute (Windows base layers): they are fetched from their `urls`.
FOREIGN_LAYERS = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                  "application/vnd.oci.image.layer.nondistributable.v1.tar",
                  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")


@dataclass
class CopyResult:
    """What one copy did: blobs whose bytes went over the wire, blobs mounted, blobs already there."""

    digest: str
    copied_blobs: int = 0
    copied_bytes: int = 0
    mounted_blobs: int = 0
    present_blobs: int = 0
    manifests_written: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)


def same_registry(source: RegistryClient, dest: RegistryClient) -> bool:
    return (source.scheme, source.host) == (dest.scheme, dest.host)


def copy_image(source: RegistryClient, dest: RegistryClient, digest: str, reporter: Reporter) -> CopyResult:
    """Copy the manifest `digest` (an image or an index) and everything it names from `source` to `dest`."""
    result = CopyResult(digest)
    _copy_manifest(source, dest, digest, reporter, result)
    return result


def _copy_manifest(source: RegistryClient, dest: RegistryClient, digest: str, reporter: Reporter,
                   result: CopyResult) -> None:
    where = f"{source.host}/{source.repository}"
    if dest.manifest_digest(digest) == digest:
        # The registry accepted this manifest, so it checked that everything it names was there.
        reporter.step(f"{dest.host}/{dest.repository} already holds {digest[:19]}")
        return
    manifest = source.manifest_raw(digest)
    if manifest is None:
        raise SlipwayError(f"{where} has no manifest {digest}", "check the reference, or push the image there first")
    parsed = json.loads(manifest.body)
    if manifest.is_index:
        for child in parsed.get("manifests") or []:
            _copy_manifest(source, dest, child["digest"], reporter, result)
    else:
        blobs = [d for d in [parsed.get("config"), *(parsed.get("layers") or [])]
                 if d and d.get("mediaType") not in FOREIGN_LAYERS]
        with ThreadPoolExecutor(BLOB_WORKERS, thread_name_prefix="copy-blob") as pool:
            # list(): the first failure is raised here, after the blobs already started have finished.
            list(pool.map(lambda blob: copy_blob(source, dest, blob, reporter, result), _unique(blobs)))
    _put_by_digest(dest, manifest)
    result.add(manifests_written=1)


def _unique(descriptors: list[dict]) -> list[dict]:
    seen, out = set(), []
    for d in descriptors:
        if d["digest"] not in seen:
            seen.add(d["digest"])
            out.append(d)
    return out


def _put_by_digest(dest: RegistryClient, manifest: RawManifest) -> None:
    written = dest.put_manifest(manifest.digest, manifest)
    if written != manifest.digest:
        raise SlipwayError(f"{dest.host}/{dest.repository} stored the manifest {manifest.digest} as {written}",
                           "the destination registry rewrites manifests: promote cannot keep the digest there")


def copy_blob(source: RegistryClient, dest: RegistryClient, blob: dict, reporter: Reporter,
               result: CopyResult) -> None:
    digest, size = blob["digest"], int(blob.get("size") or 0)
    if dest.blob_size(digest) is not None:
        result.add(present_blobs=1)
        return
    upload: Upload | None
    if same_registry(source, dest):
        upload = dest.mount_blob(digest, source.repository)
        if upload is None:
            reporter.step(f"mounted {digest[:19]} ({human_size(size)}) from {source.repository}")
            result.add(mounted_blobs=1)
            return
    else:
        upload = dest.start_upload()
    response = source.open_blob(digest)
    try:
        hashed = _Hashed(response, upload.chunk_bytes, f"{source.host}/{source.repository}@{digest}")
        dest.upload_blob(upload, digest, size, hashed.chunks())
    finally:
        response.close()
    if hashed.digest != digest or hashed.size != size:
        # The destination checked the digest when the upload closed; this only names the culprit.
        raise SlipwayError(f"{source.host}/{source.repository} served {hashed.size} bytes for {digest} "
                           f"({size} expected)", "check the source registry (or a proxy in front of it)")
    reporter.step(f"copied {digest[:19]} ({human_size(size)})")
    result.add(copied_blobs=1, copied_bytes=size)


class _Hashed:
    """The source's response body re-cut into `chunk_bytes` pieces, hashed as it goes through."""

    def __init__(self, response: requests.Response, chunk_bytes: int, where: str):
        self.response, self.chunk_bytes, self.where = response, chunk_bytes, where
        self.sha = hashlib.sha256()
        self.size = 0

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()

    def chunks(self) -> Iterator[bytes]:
        buffer = bytearray()
        try:
            for piece in self.response.iter_content(chunk_size=min(self.chunk_bytes, 1024 * 1024)):
                self.sha.update(piece)
                self.size += len(piece)
                buffer += piece
                if len(buffer) >= self.chunk_bytes:
                    yield bytes(buffer[:self.chunk_bytes])
                    del buffer[:self.chunk_bytes]
        except requests.exceptions.RequestException as exc:
            raise SlipwayError(f"reading {self.where} failed after {self.size} bytes ({type(exc).__name__})",
                               "check that the source registry is reachable, then run the same command again") from exc
        if buffer or self.size == 0:
            yield bytes(buffer)


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
