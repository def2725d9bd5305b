"""Verified releases: a smoke run of the release just deployed, followed to its end on the Prefect server.

Everything slipway checks before a deploy is static (the image builds, each entry point imports, parameters
and job variables validate). A release whose flows import but fail when they run is caught here: after the
writes, still holding the environment's release lease (deploy/lease.py), a flow run of each deployment named
in `environments.<env>.verify.deployments` is created through the API, in order, and followed until the
server says it ended. Only Completed passes. Failed, Crashed and Cancelled fail, and so do a run that no
worker starts within `start_timeout` (it stays Scheduled) and one that does not end within `timeout` (counted
from its creation); both of those are cancelled, so a late worker does not run a release that is rolled back.

Each run carries its environment's tag (`run_tag`). A release killed while it verifies (SIGKILL, a lost CI
runner) cannot cancel its run; the next release or rollback of that environment does, once it holds the
lease (`cancel_left_runs`): under the lease no other verification of the environment is going on, so a run
of that tag that has not ended was left behind, and a worker must not start it later.

What happens after a failure (roll back, pause, keep) is the pipeline's (pipeline.py `verify_applied`).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import anyio

from slipway.deploy.validate import ValidatedRelease, schema_problem
from slipway.errors import SlipwayError
from slipway.output import Reporter
from slipway.project.config import CONFIG_FILE, VerifyConfig

POLL_SECONDS = 1.0
# A worker took the run: Pending (its container or Job is being started) or later.
STARTED = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CRASHED", "CANCELLED", "CANCELLING", "PAUSED")
ENDED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
NOT_ENDED = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")


@dataclass(frozen=True)
class RunOutcome:
    """How one verification run ended."""

    deployment: str  # <flow>/<deployment>
    run_id: str
    run_name: str
    url: str
    state: str  # the server's state name (Completed, Failed, ...), or "not started" / "not finished"
    message: str
    ok: bool

    def describe(self) -> str:
        return f"{self.deployment}: run {self.run_name} {self.state}" + (f": {self.message}" if self.message else "")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verification:
    runs: list[RunOutcome]

    @property
    def failed(self) -> RunOutcome | None:
        return next((run for run in self.runs if not run.ok), None)

    def to_json(self) -> dict[str, Any]:
        return {"verified": self.failed is None, "runs": [run.to_json() for run in self.runs]}


class NotFollowed(Exception):
    """The run was created but its end could not be read (the server stopped answering)."""

    def __init__(self, deployment: str, run_name: str, url: str, cause: str):
        super().__init__(cause)
        self.deployment, self.run_name, self.url, self.cause = deployment, run_name, url, cause


def verify_parameters(verify: VerifyConfig, validated: ValidatedRelease, env_name: str) -> None:
    """The deployments to run are the release's, and their parameters fit their flows: checked with the other
    checks, before anything is written."""
    by_name = {d.full_name: d for d in validated.deployments}
    where = f"{CONFIG_FILE}: environments.{env_name}.verify"
    for name in verify.deployments:
        dep = by_name.get(name)
        if dep is None:
            raise SlipwayError(f"{where}.deployments: the release declares no deployment '{name}'",
                               f"name one of: {', '.join(sorted(by_name)) or '(none)'}")
        params = verify.parameters.get(name, {})
        schema = validated.schemas[dep.index]
        unknown = sorted(set(params) - set(schema.get("properties") or {}))
        if unknown:
            raise SlipwayError(f"{where}.parameters.{name}.{unknown[0]}: flow '{dep.flow_name}' has no parameter "
                               f"'{unknown[0]}'", f"use one of: {', '.join(sorted(schema.get('properties') or {}))}")
        problem = schema_problem({**dep.parameters, **params}, schema, f"the parameter schema of flow "
                                                                        f"'{dep.flow_name}'")
        if problem is not None:
            path, message = problem
            raise SlipwayError(f"{where}.parameters.{name}{'.' + '.'.join(path) if path else ''}: {message}",
                               "match the type of the flow's parameter")


def run_tag(history_key: str) -> str:
    """The tag of an environment's verification runs: its history's key, which names project and environment."""
    return f"slipway-verify:{history_key}"


async def cancel_left_runs(api, tag: str, reporter: Reporter) -> list[str]:
    """Cancel the environment's verification runs that have not ended (call it holding the lease): each was
    left by a release stopped before it could cancel its own. Returns their names."""
    left = await api.read_runs_not_ended(tag, list(NOT_ENDED))
    for run in left:
        started = run.state is not None and run.state.type.value != "SCHEDULED"
        await api.cancel_flow_run(run.id, started=started)
        reporter.step(f"cancelled verification run {run.name} ({run.state.name if run.state else 'Scheduled'}), "
                      "left by a release stopped while it verified")
    return [run.name for run in left]


async def run_verification(api, verify: VerifyConfig, deployment_ids: dict[str, str], release: str,
                           reporter: Reporter, lease=None, tag: str = "") -> Verification:
    """One run per deployment, in order, each followed to its end; the first that fails ends the
    verification (the next ones would run the same failed release)."""
    runs: list[RunOutcome] = []
    for name in verify.deployments:
        outcome = await _one_run(api, verify, name, deployment_ids[name], release, reporter, lease, tag)
        runs.append(outcome)
        if not outcome.ok:
            break
    return Verification(runs)


async def _one_run(api, verify: VerifyConfig, name: str, deployment_id: str, release: str, reporter: Reporter,
                   lease, tag: str) -> RunOutcome:
    key = f"slipway-verify-{release}-{name}-{uuid.uuid4().hex[:12]}"
    run = await api.create_verification_run(deployment_id, verify.parameters.get(name, {}), key,
                                            [tag] if tag else [])
    url = api.run_url(run.id)
    reporter.step(f"verifying {name}: flow run {run.name} created ({url})")
    created = time.monotonic()
    seen, started = None, False
    try:
        while True:
            try:
                run = await api.read_flow_run(run.id)
            except Exception as exc:  # noqa: BLE001 - any failure to read, after the reads' own retries
                if isinstance(exc, SlipwayError):
                    raise
                raise NotFollowed(name, run.name, url, " ".join(str(exc).split())[:200] or type(exc).__name__) \
                    from exc
            state = run.state
            kind = state.type.value if state is not None else "SCHEDULED"
            if state is not None and (state.name, kind) != seen:
                seen = (state.name, kind)
                reporter.step(f"  {run.name}: {state.name}" + (f" ({_message(state)})" if _message(state) else ""))
            started = started or kind in STARTED
            if kind in ENDED:
                return RunOutcome(name, str(run.id), run.name, url, state.name, _message(state),
                                  kind == "COMPLETED")
            waited = time.monotonic() - created
            if not started and waited >= verify.start_timeout:
                await api.cancel_flow_run(run.id, started=False)
                return RunOutcome(name, str(run.id), run.name, url, "not started",
                                  f"no worker started it within {verify.start_timeout:g} s (cancelled)", False)
            if waited >= verify.timeout:
                await api.cancel_flow_run(run.id, started=True)
                return RunOutcome(name, str(run.id), run.name, url, "not finished",
                                  f"still {state.name if state else 'Scheduled'} after {verify.timeout:g} s "
                                  "(cancelled)", False)
            if lease is not None:
                lease.check()  # a lost lease: another release may write now, so stop following
            await anyio.sleep(POLL_SECONDS)
    except NotFollowed:
        raise  # the server does not answer: nothing can be cancelled there
    except BaseException:
        with anyio.CancelScope(shield=True):  # Ctrl-C, SIGTERM, a lost lease: the run must not go on
            try:
                await api.cancel_flow_run(run.id, started=started)
                reporter.warn(f"verification run {run.name} of {name} cancelled ({url})")
            except Exception:  # noqa: BLE001 - the failure that stopped us matters more
                pass
        raise


def _message(state) -> str:
    return " ".join((state.message or "").split())[:300] if state is not None else ""
