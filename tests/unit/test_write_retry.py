"""slipway's retry of Prefect writes: sent again only when the server certainly did not apply them.

The refusals are built here because a real one cannot be ordered: Prefect's server on SQLite answers 503
only when two writes race for the database lock (the benchmarks count them against a real server)."""
from __future__ import annotations

import anyio
import httpx
import pytest

from slipway.deploy import prefect_api
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


def write(call, value):
    """One write through PrefectApi.write, inside the session settings `PrefectApi.connect` sets."""
    api = prefect_api.PrefectApi(None, prefect_api.PrefectSettings("local", PrefectConfig(api_url="http://x/api")))

    async def run():
        with prefect_api.client_retries_off():
            return await api.write("create deployment x", call, value)

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
