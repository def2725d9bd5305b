"""The content inside the release image: the ELT runs there offline as the non-root user, and a secret given
at run time reaches neither an image layer nor a log line."""

from __future__ import annotations

import gzip
import io
import json
import os
import secrets
import tarfile

import pandas as pd
import pytest

from tests.content.support import RAW_DIR

pytestmark = pytest.mark.image

# Runs inside the container: the parent flow (subflows mode) against an ephemeral Prefect server in the
# container, then prints the result, the marts' row counts and every log line the Prefect API stored.
RUN_ELT = r"""
import json, os
import duckdb
from prefect.client.orchestration import get_client
from flows.elt import elt

state = elt(return_state=True)
with duckdb.connect(os.path.expanduser("~/jaffle_shop.duckdb"), read_only=True) as conn:
    counts = {t: conn.execute(f"select count(*) from {t}").fetchone()[0]
              for t in ("raw.customers", "raw.orders", "raw.payments", "main.customers", "main.orders")}
with get_client(sync_client=True) as client:
    for log in client.read_logs():
        print("API-LOG", log.message)
print("CONTENT-RESULT", json.dumps({"state": state.type.value, "message": state.message, "uid": os.getuid(),
                                    "counts": counts, "project_writable": os.access("/opt/prefect/dbt", os.W_OK)}))
"""


@pytest.fixture(scope="module")
def run_secret() -> str:
    """A dummy Snowflake password, known only at run time."""
    return "content-secret-" + secrets.token_hex(16)


def run_container(engine, image: str, command: list[str], environment: dict[str, str]) -> tuple[int, str]:
    """Run to completion with no network (the image must need none); returns exit code and all output.
    The secret goes through the engine API, never through a process argument."""
    container = engine.containers.run(
        image, entrypoint=command, environment=environment, network_mode="none",
        name=f"content-test-{secrets.token_hex(4)}", detach=True,
    )
    try:
        status = container.wait(timeout=900)
        return status["StatusCode"], container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)


def test_elt_runs_in_the_image_without_leaking_the_secret(docker_engine, release_image, run_secret):
    code, output = run_container(
        docker_engine, release_image["image"], ["python", "-c", RUN_ELT],
        # Prefect at DEBUG: the secret must stay out of even the most verbose log lines. The temporary server's
        # first start migrates a new SQLite file; on a busy 2-core CI machine that once took over Prefect's
        # default 20 s (a clean-clone CI run, 2026-12-03), so it is given longer.
        {"SNOWFLAKE_PASSWORD": run_secret, "PREFECT_LOGGING_LEVEL": "DEBUG",
         "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"},
    )

    assert code == 0, output[-4000:]
    result = json.loads(output.split("CONTENT-RESULT ", 1)[1].splitlines()[0])
    assert result["state"] == "COMPLETED", result["message"]
    assert result["uid"] == 10001 and result["project_writable"] is False  # dbt wrote its target/ elsewhere
    csv_rows = {table: len(pd.read_csv(RAW_DIR / f"{table}.csv")) for table in ("customers", "orders", "payments")}
    assert result["counts"] == {
        "raw.customers": csv_rows["customers"], "raw.orders": csv_rows["orders"], "raw.payments": csv_rows["payments"],
        "main.customers": csv_rows["customers"], "main.orders": csv_rows["orders"],
    }
    assert "dbt build on target duckdb" in output and output.count("API-LOG") > 10  # the logs were searched
    assert run_secret not in output


def test_dbt_parses_for_snowflake_in_the_image_offline(docker_engine, release_image, run_secret):
    placeholders = {name: f"placeholder_{name.lower()}" for name in (
        "SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_ROLE", "SNOWFLAKE_WAREHOUSE", "SNOWFLAKE_DATABASE",
        "SNOWFLAKE_SCHEMA")}
    code, output = run_container(
        docker_engine, release_image["image"],
        ["dbt", "parse", "--target", "snowflake", "--target-path", "/tmp/dbt-target", "--log-path", "/tmp/dbt-logs"],
        {**placeholders, "SNOWFLAKE_PASSWORD": run_secret},
    )

    assert code == 0, output[-4000:]
    assert "Registered adapter: snowflake" in output
    assert run_secret not in output


class _ChunkReader(io.RawIOBase):
    """A file object over the chunks docker-py streams, so `docker save` is read without a temp file."""

    def __init__(self, chunks):
        self._chunks, self._buffer = iter(chunks), b""

    def readable(self):
        return True

    def readinto(self, target):
        while not self._buffer:
            self._buffer = next(self._chunks, None)
            if self._buffer is None:
                self._buffer = b""
                return 0
        size = min(len(target), len(self._buffer))
        target[:size], self._buffer = self._buffer[:size], self._buffer[size:]
        return size


def _contains(stream, needles: list[bytes]) -> set[bytes]:
    """The needles found in a (possibly gzipped) stream, scanned in chunks that overlap by a needle."""
    head = stream.read(2)
    if head == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=io.BufferedReader(_ChunkReader([head, *iter(lambda: stream.read(1 << 20), b"")])))
        head = b""
    overlap, found, tail = max(map(len, needles)) - 1, set(), head
    while chunk := stream.read(1 << 20):
        window = tail + chunk
        found |= {needle for needle in needles if needle in window}
        tail = window[-overlap:]
    return found | {needle for needle in needles if needle in tail}


def test_no_secret_in_any_image_layer(docker_engine, release_image, run_secret):
    """`docker save` the image and search every layer tar (and the config) for the run-time secret and for
    any Snowflake/Prefect credential set in this test's own environment (the build's environment, locally)."""
    needles = [run_secret.encode()] + [
        value.encode() for name, value in os.environ.items()
        if (name.startswith("SNOWFLAKE_") or name == "PREFECT_API_KEY") and len(value) >= 8
    ]
    image = docker_engine.images.get(release_image["image"])
    layers_in_image = len(image.attrs["RootFS"]["Layers"])
    assert not [e for e in image.attrs["Config"].get("Env") or [] if e.startswith(("SNOWFLAKE_", "PREFECT_API_KEY"))]

    scanned_layers, found = 0, {}
    with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(image.save(chunk_size=1 << 20))), mode="r|") as archive:
        for member in archive:
            if not member.isfile():
                continue
            hits = _contains(archive.extractfile(member), needles)
            if hits:
                found[member.name] = hits
            if member.name.endswith("layer.tar") or member.name.startswith("blobs/"):
                scanned_layers += 1

    assert scanned_layers >= layers_in_image  # every layer was read
    assert found == {}
