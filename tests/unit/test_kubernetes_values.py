"""Kubernetes' rules for a Job's values (slipway/deploy/kubernetes_values.py): the quantity parser, exact, and
the checks on a Job rendered by prefect-kubernetes' own code from this repository's pool template (no cluster,
no server: rendering makes no API call). The same checks through `deploy`/`plan` against a real server are in
tests/deploy/test_bad_input.py."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from slipway.deploy.kubernetes_values import check_job, label_key_rule, label_value_rule, parse_quantity
from slipway.errors import SlipwayError
from tests.kit.jobs import render_job_manifest
from tests.kit.repo import REPO_ROOT

TEMPLATE = json.loads((REPO_ROOT / "deploy" / "work-pools" / "kubernetes-job-template.json").read_text())
KIND = "slipway.yaml: environments.kind.job_variables"


@pytest.mark.parametrize("text, value", [
    ("250m", Decimal("0.25")), ("1", Decimal(1)), ("0.5", Decimal("0.5")), (".5", Decimal("0.5")),
    ("5.", Decimal(5)), ("+2", Decimal(2)), ("-1", Decimal(-1)), ("512Mi", Decimal(512 * 2 ** 20)),
    ("2Gi", Decimal(2 * 2 ** 30)), ("1Ki", Decimal(1024)), ("1G", Decimal(10 ** 9)), ("1k", Decimal(1000)),
    ("1M", Decimal(10 ** 6)), ("1E", Decimal(10 ** 18)), ("1e3", Decimal(1000)), ("1E3", Decimal(1000)),
    ("12e-3", Decimal("0.012")), ("1.5Gi", Decimal(3 * 2 ** 29)), (2, Decimal(2)), (0.25, Decimal("0.25")),
])
def test_quantities_parse_exactly_as_kubernetes_reads_them(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["lots", "", "1 Gi", "1gi", "1KI", "1.5.5", "Mi", "1e", "1e1.5", "0x10", "1m5",
                                  " 1", "1Mi ", True, None, [1]])
def test_what_is_not_a_quantity_is_refused(text):
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_label_rules():
    assert label_key_rule("team") is None and label_key_rule("app.kubernetes.io/name") is None
    assert label_key_rule("Team_1.x") is None
    assert label_key_rule("-team") and label_key_rule("a" * 64) and label_key_rule("Bad_Prefix/name")
    assert label_key_rule("/name") and label_key_rule("example.com/") and label_key_rule("has space")
    assert label_value_rule("") is None and label_value_rule("Data-Team_1.0") is None
    assert label_value_rule("Data Team") and label_value_rule("x" * 64) and label_value_rule(3)


def check(**job_variables):
    """Render the Job for these job variables (set, as far as the message says, by slipway.yaml's kind
    environment) and check it."""
    manifest = render_job_manifest(TEMPLATE, {"image": "r.test/app@sha256:" + "0" * 64, **job_variables},
                                   flow_name="hello", deployment_name="daily", work_pool_name="pool")
    sources = {key: f"{KIND}.{key}" for key in job_variables}
    check_job(manifest, TEMPLATE, job_variables, sources, "kubernetes-job-template.json", "hello/daily")


def refused(**job_variables) -> SlipwayError:
    with pytest.raises(SlipwayError) as caught:
        check(**job_variables)
    assert caught.value.fix
    return caught.value


def test_a_valid_job_passes():
    check(cpu_request="500m", cpu_limit="1", memory_request="256Mi", memory_limit="1Gi", namespace="data-flows",
          service_account_name="prefect.flows", name="nightly-elt", labels={"team": "data", "tier": ""},
          annotations={"example.com/owner": "Data Team"})
    check()  # the template's defaults


@pytest.mark.parametrize("variable, value", [("cpu_request", "lots"), ("cpu_limit", "1 core"),
                                             ("memory_request", "512MB"), ("memory_limit", "2gb")])
def test_a_resource_that_is_not_a_quantity_names_its_job_variable(variable, value):
    error = refused(**{variable: value})
    assert error.message.startswith(f"{KIND}.{variable}: '{value}' is not a Kubernetes quantity"), error.line()
    assert "512Mi" in error.fix and "250m" in error.fix


def test_a_negative_resource_is_refused():
    assert refused(memory_limit="-1Gi").message.startswith(f"{KIND}.memory_limit: '-1Gi' is negative")


def test_a_request_above_its_limit_is_refused():
    error = refused(cpu_request="2", cpu_limit="1500m")
    assert error.message.startswith(f"{KIND}.cpu_request: the cpu request '2' is more than the limit '1500m' "
                                    f"({KIND}.cpu_limit)"), error.line()
    error = refused(memory_request="1.5Gi", memory_limit="1500Mi")  # 1536Mi > 1500Mi
    assert error.message.startswith(f"{KIND}.memory_request: the memory request"), error.line()
    check(memory_request="1Gi", memory_limit="1024Mi")  # equal is fine


@pytest.mark.parametrize("variable, value, what", [
    ("namespace", "Data_Flows", "namespace"), ("namespace", "a" * 64, "namespace"),
    ("service_account_name", "Prefect Flows", "service account name"),
    ("name", "Nightly_ELT", "Job name prefix"),
])
def test_names_follow_kubernetes_rules(variable, value, what):
    error = refused(**{variable: value})
    shown = value + "-" if variable == "name" else value  # the template makes `name` the prefix `<name>-`
    assert error.message == f"{KIND}.{variable}: '{shown}' is not a valid Kubernetes {what}", error.line()
    assert error.fix.startswith("use lowercase letters, digits")


def test_declared_labels_are_checked_as_declared_not_as_the_worker_would_rewrite_them():
    error = refused(labels={"team": "Data Platform"})
    assert error.message == f"{KIND}.labels.team: 'Data Platform' is not a valid Kubernetes label value"
    error = refused(labels={"team name": "data"})
    assert error.message == f"{KIND}.labels.team name: 'team name' is not a valid Kubernetes label key"
    error = refused(annotations={"bad key!": "anything goes in a value"})
    assert "annotation key" in error.message


def test_a_value_written_in_the_template_itself_is_named_by_the_template():
    template = json.loads(json.dumps(TEMPLATE))
    template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "many"}}
    manifest = render_job_manifest(template, {"image": "r.test/app@sha256:" + "0" * 64}, flow_name="hello",
                                   deployment_name="daily", work_pool_name="pool")
    with pytest.raises(SlipwayError) as caught:
        check_job(manifest, template, {}, {}, "kubernetes-job-template.json", "hello/daily")
    assert caught.value.message.startswith(
        "kubernetes-job-template.json: the Job of hello/daily: spec.template.spec.containers.0.resources.limits.cpu: "
        "'many' is not a Kubernetes quantity")
