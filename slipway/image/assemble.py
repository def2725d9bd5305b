"""An image assembled by slipway: the content image (built by the engine) plus layers slipway wrote itself
(image/layers.py), as an image config, a registry manifest, and an archive the engine loads.

The config is written here from the content image's own settings (what the engine reports for it: same
image, same settings) and the commit: the layers' diff_ids appended, the commit's labels, the commit's time
as `created`, no build history. Canonical JSON: the same inputs always give the same config digest, which is
the image ID the engine gives the loaded image.

`docker load` of an archive that lists every layer but carries only the new ones is enough for an engine that
already holds the content image (dockerd 20.10 skips a layer it has without reading it; measured), so the
engine receives the very image the registry gets — the same config digest — for a few KB.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from slipway.image.layers import Layer

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# The content image's settings that a flow-run container sees, copied into the assembled image's config.
RUNTIME_SETTINGS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
                    "StopSignal")


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class AssembledImage:
    """The content image's layers plus slipway's, and the config that describes them."""

    config: bytes
    content_diff_ids: list[str]
    layers: list[Layer]  # slipway's own, on top of the content image's

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def image_id(self) -> str:
        return self.config_digest


def assemble(content: dict[str, Any], layers: list[Layer], labels: dict[str, str], created: str) -> AssembledImage:
    """`content`: the engine's inspection of the content image (`docker image inspect`)."""
    settings = content.get("Config") or {}
    config = {key: settings[key] for key in RUNTIME_SETTINGS if settings.get(key)}
    config["Labels"] = {**(settings.get("Labels") or {}), **labels}
    content_diff_ids = list((content.get("RootFS") or {}).get("Layers") or [])
    body = {
        "architecture": content.get("Architecture") or "amd64",
        "os": content.get("Os") or "linux",
        "config": config,
        "created": created,
        "rootfs": {"type": "layers", "diff_ids": content_diff_ids + [layer.diff_id for layer in layers]},
    }
    if content.get("Variant"):
        body["variant"] = content["Variant"]
    return AssembledImage(canonical(body), content_diff_ids, layers)


def load_archive(image: AssembledImage, repo_tags: list[str]) -> bytes:
    """A `docker save`-format archive for `docker load`: the config, every layer listed, only slipway's
    layers carried (the engine holds the content image's)."""
    names = [f"{diff_id.split(':', 1)[1]}/layer.tar"
             for diff_id in image.content_diff_ids + [layer.diff_id for layer in image.layers]]
    config_name = image.config_digest.split(":", 1)[1] + ".json"
    manifest = [{"Config": config_name, "RepoTags": repo_tags, "Layers": names}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        files = {config_name: image.config, "manifest.json": json.dumps(manifest).encode()}
        files.update({f"{layer.diff_id.split(':', 1)[1]}/layer.tar": layer.tar for layer in image.layers})
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def registry_manifest(image: AssembledImage, content_layers: list[dict[str, Any]]) -> bytes:
    """The Docker v2 manifest of the assembled image. `content_layers`: the content image's layer
    descriptors as its registry manifest lists them (the compressed blobs the registry holds)."""
    if len(content_layers) != len(image.content_diff_ids):
        raise ValueError("the content image's registry manifest does not match its layers")
    body = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(image.config), "digest": image.config_digest},
        "layers": [*({"mediaType": d.get("mediaType", DOCKER_LAYER), "size": d["size"], "digest": d["digest"]}
                     for d in content_layers),
                   *({"mediaType": DOCKER_LAYER, "size": layer.size, "digest": layer.digest} for layer in image.layers)],
    }
    return canonical(body)
