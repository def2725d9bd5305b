"""slipway's retry of Prefect writes: sent again only when the server certainly did not apply them.

The refusals are built here because a real one cannot be ordered: Prefect's server on SQLite answers 503
only when two writes race for the database lock (the benchmarks count them against a real server)."""
from __future__ import annotations

import anyio
import httpx
import pytest

from slipway.deploy import prefect_api, write_concurrency
from slipway.errors import SlipwayError
from slipway.project.config import PrefectConfig


def refused(status: int, headers: dict | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:4200/api/deployments/")
    response = httpx.Response(status, request=request, headers=headers or {})
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


class Flaky:
    """A write that fails with `errors` in turn, then succeeds; records the PREFECT_CLIENT_MAX_RETRIES it saw."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0
        self.client_retries: list[int] = []

    async def __call__(self, value):
        from prefect.settings import PREFECT_CLIENT_MAX_RETRIES

        self.calls += 1
        self.client_retries.append(PREFECT_CLIENT_MAX_RETRIES.value())
        if self.errors:
            raise self.errors.pop(0)
        return value


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(prefect_api, "FIRST_RETRY_SECONDS", 0.001)


def write(call, value, repeatable: bool = False):
    """One write through PrefectApi.write (or write_repeatable), inside the session settings
    `PrefectApi.connect` sets."""
    api = prefect_api.PrefectApi(None, prefect_api.PrefectSettings(
        "local", PrefectConfig(api_url="http://x/api", write_concurrency=1)))
    send = api.write_repeatable if repeatable else api.write

    async def run():
        with prefect_api.client_retries_off():
            return await send("create deployment x", call, value)

    return anyio.run(run)


def test_a_refused_write_is_sent_again_and_prefect_does_not_also_retry_it():
    call = Flaky(refused(503), refused(429), httpx.ConnectError("refused"))
    assert write(call, "ok") == "ok"
    assert call.calls == 4
    assert call.client_retries == [0, 0, 0, 0]


@pytest.mark.parametrize("error", [refused(422), refused(409), httpx.ReadError("reset after sending")])
def test_a_write_that_may_have_landed_or_is_wrong_is_not_sent_again(error):
    call = Flaky(error)
    with pytest.raises(SlipwayError, match="Prefect (refused to|did not answer the request to) create deployment x") \
            as caught:
        write(call, "ok")
    assert caught.value.__cause__ is error  # the cause is kept (SLIPWAY_DEBUG=1 prints it)
    assert call.calls == 1


@pytest.mark.parametrize("error", [httpx.ReadTimeout("no answer within the client's timeout"),
                                   httpx.ReadError("reset after sending"),
                                   httpx.RemoteProtocolError("server disconnected without sending a response")])
def test_a_repeatable_write_whose_answer_was_lost_is_sent_again(error):
    # An upsert (POST /deployments/) or a PATCH leaves the same state however often it lands: a server that
    # stalled once under load (seen in CI: a create on SQLite answered nothing for the client's 60 s) must not
    # stop a release halfway.
    call = Flaky(error)
    assert write(call, "ok", repeatable=True) == "ok"
    assert call.calls == 2


def test_a_repeatable_write_that_is_wrong_is_not_sent_again():
    call = Flaky(refused(422))
    with pytest.raises(SlipwayError, match="HTTP 422"):
        write(call, "ok", repeatable=True)
    assert call.calls == 1


def test_a_repeatable_write_whose_answers_keep_getting_lost_stops():
    # Each lost answer may have cost the client's whole timeout: a few, not WRITE_ATTEMPTS of them.
    call = Flaky(*[httpx.ReadTimeout("no answer") for _ in range(prefect_api.WRITE_ATTEMPTS)])
    with pytest.raises(SlipwayError, match="Prefect did not answer the request to create deployment x"):
        write(call, "ok", repeatable=True)
    assert call.calls == prefect_api.LOST_ANSWER_ATTEMPTS < prefect_api.WRITE_ATTEMPTS


def test_refusals_between_lost_answers_are_retried_as_refusals():
    call = Flaky(httpx.ReadTimeout("no answer"), refused(503), refused(503), httpx.ReadTimeout("no answer"))
    assert write(call, "ok", repeatable=True) == "ok"
    assert call.calls == 5


def test_retries_are_bounded():
    call = Flaky(*[refused(503) for _ in range(prefect_api.WRITE_ATTEMPTS)])
    with pytest.raises(SlipwayError, match="HTTP 503"):
        write(call, "ok")
    assert call.calls == prefect_api.WRITE_ATTEMPTS


def test_the_wait_doubles_and_retry_after_is_honoured(monkeypatch):
    waits: list[float] = []

    async def record(seconds):
        waits.append(seconds)

    monkeypatch.setattr(prefect_api.anyio, "sleep", record)
    monkeypatch.setattr(prefect_api, "FIRST_RETRY_SECONDS", 0.1)
    call = Flaky(refused(503), refused(503), refused(503, {"Retry-After": "3"}))
    assert write(call, "ok") == "ok"
    # 0.1 s, 0.2 s (each plus up to half again as jitter), then what the server asked for.
    assert 0.1 <= waits[0] <= 0.15 and 0.2 <= waits[1] <= 0.3 and 3 <= waits[2] <= 4.5


class SlowServer:
    """A client whose deployment creates take 50 ms each; records how many creates had finished when the lease
    renewal was answered."""

    def __init__(self):
        self.creates = 0
        self.renewed_after_creates: int | None = None

    async def create_deployment(self, **_):
        await anyio.sleep(0.05)
        self.creates += 1
        return "id"

    async def renew_concurrency_lease(self, lease_id, seconds):
        self.renewed_after_creates = self.creates


def test_the_lease_is_renewed_while_a_thousand_writes_queue():
    """Deployment writes wait for their turn (one at a time here); the lease's renewal does not wait behind
    them — queued behind a thousand creates it would come after the lease expired."""
    client = SlowServer()
    api = prefect_api.PrefectApi(client, prefect_api.PrefectSettings(
        "local", PrefectConfig(api_url="http://x/api", write_concurrency=1)))

    async def run():
        async with anyio.create_task_group() as tg:
            for _ in range(1000):
                tg.start_soon(lambda: api.write("create deployment", client.create_deployment))
            await anyio.sleep(0.12)
            await api.renew_lease("lease", 60)
            tg.cancel_scope.cancel()

    anyio.run(run)
    assert client.renewed_after_creates is not None and client.renewed_after_creates <= 5


class Server:
    """What `writers` reads of a server: Prefect's own Cloud test, and one block schema."""

    def __init__(self, cloud: bool, fields: list[str] | None):
        from prefect.client.base import ServerType

        self.server_type = ServerType.CLOUD if cloud else ServerType.SERVER
        self.schemas = [] if fields is None else [{"fields": dict.fromkeys(fields, 1)}]
        self.requests = 0

    async def request(self, method, path, json=None):
        self.requests += 1
        assert (method, path) == ("POST", "/block_schemas/filter")
        return httpx.Response(200, json=self.schemas, request=httpx.Request(method, "http://x/api" + path))


# A block schema's `fields` as each database returns them: jsonb sorts an object's keys (shorter first, then
# bytewise); SQLite keeps the order they were written in (pydantic's).
POSTGRES_ORDER = ["type", "title", "required", "properties", "description", "secret_fields"]
SQLITE_ORDER = ["title", "description", "type", "properties", "required", "secret_fields"]


@pytest.mark.parametrize("setting, cloud, fields, count, said", [
    ("auto", True, None, write_concurrency.CLOUD_WRITERS, "Prefect Cloud"),
    ("auto", False, POSTGRES_ORDER, write_concurrency.POSTGRES_WRITERS, "PostgreSQL"),
    ("auto", False, SQLITE_ORDER, 1, "SQLite"),
    ("auto", False, None, 1, "cannot tell"),
    (3, False, SQLITE_ORDER, 3, "write_concurrency: 3"),
])
def test_auto_picks_the_writers_for_the_server_it_finds(setting, cloud, fields, count, said):
    server = Server(cloud, fields)
    api = prefect_api.PrefectApi(server, prefect_api.PrefectSettings(
        "local", PrefectConfig(api_url="http://x/api", write_concurrency=setting)))
    writers = anyio.run(api.writers)
    assert writers.count == count
    assert said in writers.reason
    anyio.run(api.writers)  # asked once per run
    assert server.requests == (1 if setting == "auto" and not cloud else 0)


def test_auto_is_the_default_and_a_number_or_auto_is_all_it_takes():
    from pydantic import ValidationError

    assert PrefectConfig(api_url="http://x/api").write_concurrency == "auto"
    assert PrefectConfig(api_url="http://x/api", write_concurrency=1).write_concurrency == 1
    assert PrefectConfig(api_url="http://x/api", write_concurrency=32).write_concurrency == 32
    for wrong in (0, 33, "many", True, 2.5):
        with pytest.raises(ValidationError):
            PrefectConfig(api_url="http://x/api", write_concurrency=wrong)


def test_auto_writes_as_many_at_once_as_it_chose():
    """Eight PostgreSQL writers: twenty slow writes, at most eight in flight, and more than one."""
    server = Server(False, POSTGRES_ORDER)
    api = prefect_api.PrefectApi(server, prefect_api.PrefectSettings("local", PrefectConfig(api_url="http://x/api", write_concurrency="auto")))
    in_flight, peak = 0, 0

    async def create():
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.02)
        in_flight -= 1

    async def run():
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(api.write, "create deployment", create)

    anyio.run(run)
    assert peak == write_concurrency.POSTGRES_WRITERS


def test_a_retry_after_holds_back_every_writer_not_only_the_refused_one():
    """Two writers: the first is told to come back in 0.3 s; the second, started right after that refusal,
    is not sent before then either (it would be refused too)."""
    import time

    api = prefect_api.PrefectApi(None, prefect_api.PrefectSettings(
        "local", PrefectConfig(api_url="http://x/api", write_concurrency=2)))
    sent: dict[str, list[float]] = {"a": [], "b": []}
    refused_once = anyio.Event()

    async def a():
        sent["a"].append(time.monotonic())
        if len(sent["a"]) == 1:
            refused_once.set()
            raise refused(429, {"Retry-After": "0.3"})

    async def b():
        sent["b"].append(time.monotonic())

    async def run():
        async def second():
            await refused_once.wait()
            await api.write("create deployment b", b)

        async with anyio.create_task_group() as tg:
            tg.start_soon(api.write, "create deployment a", a)
            tg.start_soon(second)

    anyio.run(run)
    assert len(sent["a"]) == 2 and len(sent["b"]) == 1
    assert sent["b"][0] - sent["a"][0] >= 0.3
    assert sent["a"][1] - sent["a"][0] >= 0.3


def test_a_retry_after_does_not_hold_back_the_lease():
    """A deployment write told to come back in 0.5 s; the lease renewal sent meanwhile goes at once."""
    import time

    api = prefect_api.PrefectApi(None, prefect_api.PrefectSettings(
        "local", PrefectConfig(api_url="http://x/api", write_concurrency=1)))
    refused_at: list[float] = []
    renewed_at: list[float] = []

    async def create():
        if not refused_at:
            refused_at.append(time.monotonic())
            raise refused(429, {"Retry-After": "0.5"})

    class Client:
        async def renew_concurrency_lease(self, lease_id, seconds):
            renewed_at.append(time.monotonic())

    api.client = Client()

    async def run():
        async with anyio.create_task_group() as tg:
            tg.start_soon(api.write, "create deployment a", create)
            await anyio.sleep(0.05)
            await api.renew_lease("lease", 60)

    anyio.run(run)
    assert renewed_at and renewed_at[0] - refused_at[0] < 0.3


def test_concurrent_writers_of_one_flows_deployments_create_the_flow_once():
    """Eight writers at once, twenty deployments of two flows: one create-flow request per flow."""
    asked: list[str] = []

    class Client:
        async def create_flow_from_name(self, name):
            asked.append(name)
            await anyio.sleep(0.02)
            return f"id-{name}"

    api = prefect_api.PrefectApi(Client(), prefect_api.PrefectSettings(
        "local", PrefectConfig(api_url="http://x/api", write_concurrency=8)))
    cache: dict = {}
    got: list = []

    async def one(name):
        got.append(await api.flow_id(name, cache))

    async def run():
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, "alpha" if i % 2 else "beta")

    anyio.run(run)
    assert sorted(asked) == ["alpha", "beta"]
    assert sorted(set(got)) == ["id-alpha", "id-beta"] and len(got) == 20


def test_auto_writes_one_at_a_time_when_the_server_does_not_say_what_it_runs_on(monkeypatch):
    """The block-schema read fails for good (a 500, retried as every read): one writer, said as such."""
    monkeypatch.setattr(prefect_api, "WRITE_ATTEMPTS", 2)
    server = Server(False, POSTGRES_ORDER)

    async def request(method, path, json=None):
        server.requests += 1
        req = httpx.Request(method, "http://x/api" + path)
        raise httpx.HTTPStatusError("HTTP 500", request=req, response=httpx.Response(500, request=req))

    server.request = request
    api = prefect_api.PrefectApi(server, prefect_api.PrefectSettings("local", PrefectConfig(api_url="http://x/api", write_concurrency="auto")))
    writers = anyio.run(api.writers)
    assert (writers.count, server.requests) == (1, 2)
    assert "cannot tell" in writers.reason
