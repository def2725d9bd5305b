"""slipway checks values against a schema with a validator prepared once per distinct schema
(deploy/validate.py); Prefect's `schema_tools.validate` prepares one per call. Both give the same answers."""
from __future__ import annotations

import pytest
from jsonschema.exceptions import best_match
from prefect.utilities.schema_tools import validate

from slipway.deploy import validate as slipway_validate
from slipway.deploy.validate import default_pool_template, schema_problem
from slipway.errors import SlipwayError

FLOW_SCHEMA = {
    "title": "Parameters", "type": "object",
    "properties": {
        "child_runs": {"title": "child_runs", "enum": ["subflows", "deployments"], "type": "string",
                       "default": "subflows"},
        "count": {"title": "count", "type": "integer"},
        "when": {"title": "when", "type": "string", "format": "date-time"},
        "nested": {"$ref": "#/definitions/Nested"},
    },
    "required": ["count"],
    "definitions": {"Nested": {"title": "Nested", "type": "object",
                               "properties": {"size": {"title": "size", "type": "number"}},
                               "required": ["size"]}},
}
DOCKER_VARIABLES = default_pool_template("docker")["variables"]


def prefect_answer(obj, schema):
    error = best_match(validate(obj, schema, raise_on_error=False, ignore_required=True))
    return None if error is None else ([str(p) for p in error.path], " ".join(error.message.split()))


@pytest.mark.parametrize("schema, obj", [
    (FLOW_SCHEMA, {}),
    (FLOW_SCHEMA, {"count": 2, "child_runs": "deployments"}),
    (FLOW_SCHEMA, {"count": "two"}),
    (FLOW_SCHEMA, {"child_runs": "threads"}),
    (FLOW_SCHEMA, {"when": "not a date"}),
    (FLOW_SCHEMA, {"nested": {"size": "big"}}),
    (FLOW_SCHEMA, {"count": None}),
    (DOCKER_VARIABLES, {"image": "x", "network_mode": "host"}),
    (DOCKER_VARIABLES, {"image": "x", "auto_remove": "yes"}),
    (DOCKER_VARIABLES, {"image": "x", "env": {"A": 1}}),
    (DOCKER_VARIABLES, {"image": "x", "volumes": "not-a-list"}),
])
def test_the_prepared_validator_answers_as_prefects_validate(schema, obj):
    assert schema_problem(obj, schema, "test") == prefect_answer(obj, schema)


def test_a_schema_is_prepared_once_however_many_deployments_use_it(monkeypatch):
    built = []
    real = slipway_validate.prepared_validator
    monkeypatch.setattr(slipway_validate, "prepared_validator", lambda schema: built.append(1) or real(schema))
    monkeypatch.setattr(slipway_validate, "_VALIDATORS", {})
    monkeypatch.setattr(slipway_validate, "_SEEN", {})
    copies = [dict(FLOW_SCHEMA) for _ in range(50)]  # one per deployment, as the probe results hold them
    for schema in copies:
        schema_problem({"count": 1}, schema, "test")
        schema_problem({"count": 1}, schema, "test")
    assert len(built) == 1


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"x": {"$ref": "#/definitions/Missing"}}},  # a dangling reference
    {"type": "object", "properties": {"x": {"$ref": "#/definitions/A"}},
     "definitions": {"A": {"$ref": "#/definitions/B"}, "B": {"$ref": "#/definitions/A"}}},  # a circular one
])
def test_a_schema_whose_references_cannot_be_followed_is_one_error_naming_where(schema):
    with pytest.raises(SlipwayError, match="^test: the schema cannot be checked") as caught:
        schema_problem({"x": 1}, schema, "test")
    assert "references" in caught.value.fix
