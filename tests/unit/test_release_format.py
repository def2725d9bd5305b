"""Release formats: a release layer written by an older slipway is read by this one; one written in a newer
format than this slipway knows is one error naming the slipway that made it; slipway.yaml's `slipway:` range
is checked before anything else is read. Pure logic on real bytes: the format-1 fixture is a layer exactly as
slipway 0.3 wrote it (tests/unit/fixtures/release-layer-format-1.json says how it was made)."""
from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import pytest

from slipway import __version__
from slipway.errors import SlipwayError
from slipway.image import release_layer
from slipway.image.build import release_layer_of
from slipway.project.config import load_project

FORMAT_1 = json.loads((Path(__file__).parent / "fixtures" / "release-layer-format-1.json").read_text())


def _blob(layer: release_layer.ReleaseLayer) -> bytes:
    return release_layer_of(layer, "/opt/prefect").blob


def _members(blob: bytes) -> dict[str, tuple[int, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        return {m.name: (m.mode, tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()}


def test_a_layer_slipway_0_3_wrote_is_read_as_format_1():
    blob = base64.b64decode(FORMAT_1["blob_base64"])
    layer = release_layer.parse_layer(blob, FORMAT_1["labels"], "registry/demo@sha256:old")
    assert (layer.format, layer.made_by) == (1, None)
    assert layer.files == FORMAT_1["files"] and layer.probe == FORMAT_1["probe"]
    assert release_layer.labels(layer) == FORMAT_1["labels"]  # no format labels: format 1 had none


def test_format_1_is_written_as_slipway_0_3_wrote_it():
    """The writer's format 1 (what the end-to-end format test releases with) holds exactly the entries, modes
    and bytes slipway 0.3's layer held; only the entries' time differs (0.3 stamped the commit's, this slipway
    one fixed time)."""
    old = release_layer.ReleaseLayer(FORMAT_1["files"], FORMAT_1["probe"], format=1, made_by=None)
    assert _members(_blob(old)) == _members(base64.b64decode(FORMAT_1["blob_base64"]))


def test_this_slipway_writes_its_format_and_version_and_reads_them_back():
    layer = release_layer.ReleaseLayer(FORMAT_1["files"], FORMAT_1["probe"])
    labels = release_layer.labels(layer)
    assert labels[release_layer.FORMAT_LABEL] == str(release_layer.FORMAT) == "2"
    assert labels[release_layer.MADE_BY_LABEL] == __version__
    read = release_layer.parse_layer(_blob(layer), labels, "here")
    assert (read.format, read.made_by, read.files, read.probe) == (2, __version__, layer.files, layer.probe)


def test_a_newer_format_is_one_error_naming_the_slipway_that_made_it():
    newer = release_layer.ReleaseLayer(FORMAT_1["files"], FORMAT_1["probe"], format=3, made_by="0.9.1")
    labels = release_layer.labels(newer)
    with pytest.raises(SlipwayError) as told:
        release_layer.parse_layer(_blob(newer), labels, "reg/demo@sha256:new")
    line = told.value.line()
    assert "reg/demo@sha256:new was made by slipway 0.9.1 in release format 3" in line
    assert f"this slipway ({__version__}) reads formats 1 to 2" in line and "slipway>=0.9.1" in line
    # Told by the layer alone too (labels stripped by a copy that kept only the hash).
    with pytest.raises(SlipwayError, match="release format 3"):
        release_layer.parse_layer(_blob(newer), {release_layer.HASH_LABEL: newer.config_hash}, "x")


def test_a_layer_without_its_files_is_still_refused():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w"):
        pass
    with pytest.raises(SlipwayError, match="has no release layer"):
        release_layer.parse_layer(buf.getvalue(), {}, "x")


def _project(tmp_path: Path, head: str) -> Path:
    (tmp_path / "slipway.yaml").write_text(head + "image: {name: demo}\nenvironments: {}\n")
    return tmp_path


def test_slipway_yaml_names_the_slipway_it_needs(tmp_path):
    major, minor = __version__.split(".")[:2]
    assert load_project(_project(tmp_path, f'slipway: ">={major}.{minor},<{major}.{int(minor) + 1}"\n'))
    with pytest.raises(SlipwayError) as told:
        load_project(_project(tmp_path, 'slipway: ">=9.0"\nfuture_key: 1\n'))
    # The range is checked first: a newer slipway.yaml's unknown keys would only confuse.
    assert told.value.line().startswith(f"slipway.yaml needs slipway >=9.0, and this is slipway {__version__}")
    with pytest.raises(SlipwayError, match="is not a version range"):
        load_project(_project(tmp_path, 'slipway: "four"\n'))
