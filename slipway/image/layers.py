"""Image layers written by slipway itself, byte for byte the same for the same input.

The classic builder stamps every layer it makes with build-time metadata, so two builds of one commit never
share a digest (measured: five layers out of five differ). The code layers and the release layer are
therefore written here, the way ko, jib and `crane append` do it: a tar of the files, entries sorted, every
entry owned by root with fixed modes and one fixed time (`ENTRY_MTIME`), gzip-compressed without a timestamp.
Same files → same bytes → same digest, at any commit and on any machine with the same zlib (the compression
level is fixed; the uncompressed tar, whose digest is the layer's diff_id, is the same everywhere). Not the
commit's time: then every layer would be new at every commit, and a release would upload every code path
again however unchanged; not the time of the last commit touching the path either: a shallow CI clone does
not know it.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from slipway.errors import SlipwayError

GZIP_LEVEL = 6
# 1980-01-01T00:00:00Z on every entry: the earliest time a ZIP can hold (a wheel built from these files in the
# container works), and not 0, which some tools read as "no time".
ENTRY_MTIME = 315532800
DIR_MODE, FILE_MODE, EXEC_MODE = 0o755, 0o644, 0o755


@dataclass(frozen=True)
class FileEntry:
    path: str  # inside the image, relative to / (no leading slash)
    data: bytes
    mode: int = FILE_MODE
    link: str | None = None  # a symbolic link's target


@dataclass(frozen=True)
class Layer:
    """One layer: its tar (the diff, whose sha256 is the diff_id) and its gzip blob (what the registry holds)."""

    tar: bytes
    blob: bytes
    name: str  # what it holds, for history entries and messages

    @property
    def diff_id(self) -> str:
        return "sha256:" + hashlib.sha256(self.tar).hexdigest()

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.blob).hexdigest()

    @property
    def size(self) -> int:
        return len(self.blob)


def write_layer(entries: list[FileEntry], name: str, under: str = "") -> Layer:
    """A reproducible layer of `entries`, every entry stamped `ENTRY_MTIME`. Their parent directories are added
    below `under` (the app directory): that one and its own parents are left as the lower layers made them
    (a team may have given the app directory another owner)."""
    files = {e.path: e for e in entries}
    kept = {str(p) for p in [PurePosixPath(under.strip("/")), *PurePosixPath(under.strip("/")).parents]}
    dirs = sorted({str(p) for e in entries for p in PurePosixPath(e.path).parents} - kept - {"."})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted([*dirs, *files]):
            info = tarfile.TarInfo(path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = ENTRY_MTIME, 0, 0, "", ""
            entry = files.get(path)
            if entry is None:
                info.type, info.mode = tarfile.DIRTYPE, DIR_MODE
                tar.addfile(info)
            elif entry.link is not None:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.link, 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = len(entry.data), entry.mode
                tar.addfile(info, io.BytesIO(entry.data))
    data = buf.getvalue()
    return Layer(data, gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0), name)


def files_from_commit(root: Path, revision: str, paths: list[str], prefix: str) -> list[FileEntry]:
    """The files under `paths` as the commit has them (its Git objects, not the working tree), placed under
    `prefix` in the image. A path the commit lacks contributes nothing."""
    listing = _git(root, "ls-tree", "-r", "-z", "--full-tree", revision, "--", *paths)
    wanted = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, kind, obj = meta.decode().split()
        if kind == "blob":
            wanted.append((path.decode(), mode, obj))
    contents = _read_blobs(root, [obj for _, _, obj in wanted])
    out = []
    for (path, mode, obj) in wanted:
        target = f"{prefix}/{path}".lstrip("/")
        if mode == "120000":
            out.append(FileEntry(target, b"", link=contents[obj].decode()))
        else:
            out.append(FileEntry(target, contents[obj], EXEC_MODE if mode == "100755" else FILE_MODE))
    return out


def files_from_tree(root: Path, paths: list[str], prefix: str) -> list[FileEntry]:
    """The same from the working tree (a -dirty build): tracked and untracked files Git does not ignore."""
    listing = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths)
    out = []
    for raw in sorted(set(listing.split(b"\0")) - {b""}):
        path = raw.decode()
        source = root / path
        target = f"{prefix}/{path}".lstrip("/")
        if source.is_symlink():
            out.append(FileEntry(target, b"", link=str(source.readlink())))
        elif source.is_file():
            out.append(FileEntry(target, source.read_bytes(), EXEC_MODE if source.stat().st_mode & 0o100 else FILE_MODE))
    return out


def _git(root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise SlipwayError(f"git {' '.join(args[:2])} failed in {root}: {proc.stderr.decode().strip()}",
                           "check that the commit exists in this clone")
    return proc.stdout


def _read_blobs(root: Path, objects: list[str]) -> dict[str, bytes]:
    """Many blobs in one `git cat-file --batch` process."""
    if not objects:
        return {}
    out = _git(root, "cat-file", "--batch", stdin="".join(f"{o}\n" for o in objects).encode())
    blobs, pos = {}, 0
    while pos < len(out):
        header_end = out.index(b"\n", pos)
        obj, _, size = out[pos:header_end].decode().split()
        start = header_end + 1
        blobs[obj] = out[start:start + int(size)]
        pos = start + int(size) + 1
    return blobs
