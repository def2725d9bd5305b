"""Deployment triggers (prefect.yaml `triggers:`): the automations a deployment owns.

`prefect deploy` turns each trigger into an automation owned by the deployment (`owner_resource:
prefect.deployment.<id>`) whose action runs that deployment, and on every deploy deletes the deployment's
automations and creates them again. slipway builds them with the same Prefect models, tagged `slipway:trigger`,
then compares them with what the server holds: they are replaced only when they differ, so a redeploy writes
nothing. The server keeps ownership as a relation it does not return with an automation, so slipway knows its own
by the tag and the deployment their action runs; an automation a person made that runs the deployment is not
slipway's and is never compared or deleted (deleting goes through Prefect's owned-by endpoint, which only removes
the deployment's owned ones — `prefect deploy`'s included, which is how slipway takes them over). A deployment whose file
no longer declares triggers loses its automations; one that slipway pauses or deletes because the release no
longer declares it loses them too (a trigger would otherwise keep starting runs of a removed deployment).
"""
from __future__ import annotations

from functools import cache
from typing import Any
from uuid import UUID

OWNER_PREFIX = "prefect.deployment."
TRIGGER_TAG = "slipway:trigger"
# What makes two automations the same: everything the user declares, nothing the server stamps (ids, times) or
# keeps elsewhere (the owner, a relation the server does not return).
_COMPARED = ("name", "description", "enabled", "tags", "trigger", "actions", "actions_on_trigger",
             "actions_on_resolve")


def owner_resource(deployment_id: str) -> str:
    return f"{OWNER_PREFIX}{deployment_id}"


@cache
def trigger_adapter():
    """Prefect's own model of a deployment trigger (event, metric, compound or sequence)."""
    from prefect.events import DeploymentTriggerTypes
    from pydantic import TypeAdapter

    return TypeAdapter(DeploymentTriggerTypes)


def automations_for(specs: list[dict[str, Any]], deployment_name: str, deployment_id: str) -> list:
    """The AutomationCore models `prefect deploy` creates for these trigger specs (named as it names them)."""
    out = []
    for i, spec in enumerate(specs, start=1):
        spec = dict(spec)
        spec.setdefault("name", f"{deployment_name}__automation_{i}")
        trigger = trigger_adapter().validate_python(spec)
        trigger.set_deployment_id(UUID(deployment_id))
        automation = trigger.as_automation()
        automation.tags = [*automation.tags, TRIGGER_TAG]
        out.append(automation)
    return out


def runs_deployment(automation: dict[str, Any]) -> str | None:
    """The deployment a slipway trigger automation (JSON) belongs to: the one its action runs."""
    if TRIGGER_TAG not in (automation.get("tags") or []):
        return None
    for action in automation.get("actions") or []:
        if action.get("type") == "run-deployment" and action.get("deployment_id"):
            return str(action["deployment_id"])
    return None


def comparable(automation: dict[str, Any]) -> dict[str, Any]:
    """An automation (as JSON) reduced to what it means: the declared fields, without ids and timestamps."""
    return _without_ids({k: automation.get(k) for k in _COMPARED})


def _without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k not in ("id", "created", "updated")}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def desired_comparable(specs: list[dict[str, Any]], deployment_name: str, deployment_id: str) -> list[dict]:
    return sorted((comparable(a.model_dump(mode="json")) for a in automations_for(specs, deployment_name,
                                                                                   deployment_id)),
                  key=lambda a: str(a.get("name")))


def live_comparable(automations: list[dict[str, Any]]) -> list[dict]:
    return sorted((comparable(a) for a in automations), key=lambda a: str(a.get("name")))
