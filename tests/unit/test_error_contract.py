"""Every error slipway raises is one line, `<cause>; <fix>`: the cause names the file and the field, the fix says
what to do. Checked two ways:
- statically, every `SlipwayError(...)` in slipway/ is given a fix (a new raise without one fails here);
- by walking the error paths of slipway.yaml (project/config.py), deployments.yaml (project/declarations.py)
  and their per-environment merge (`resolve_for_environment`) with one bad input each.
"""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import yaml

from slipway.errors import SlipwayError
from slipway.project.config import Project, load_project, parse_config
from slipway.project.declarations import load_declarations, parse_declarations, resolve_for_environment

SLIPWAY = Path(__file__).resolve().parents[2] / "slipway"
ERROR_TYPES = {"SlipwayError", "IncompleteRelease"}


def raises_without_a_fix() -> list[str]:
    found = []
    for path in sorted(SLIPWAY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name not in ERROR_TYPES:
                continue
            fix = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "fix"), None)
            if fix is None or (isinstance(fix, ast.Constant) and not fix.value):
                found.append(f"{path.relative_to(SLIPWAY.parent)}:{node.lineno}")
    return found


def test_every_error_slipway_raises_is_given_a_fix():
    assert raises_without_a_fix() == []


def assert_cause_and_fix(exc: SlipwayError, *fragments: str) -> None:
    """`fragments` are in the cause, except those starting with `fix:`, which are in the fix."""
    line = exc.line()
    assert exc.fix, f"no fix: {line}"
    assert line == f"{exc.message}; {exc.fix}" and "\n" not in line
    for fragment in fragments:
        if fragment.startswith("fix:"):
            assert fragment[len("fix:"):] in exc.fix, (fragment, line)
        else:
            assert fragment in exc.message, (fragment, line)


# --- slipway.yaml ------------------------------------------------------------------------------------------

CONFIG = {
    "image": {"name": "app"},
    "environments": {
        "local": {"registry": {"kind": "generic", "address": "localhost:5000", "insecure": True},
                  "repository": "app", "prefect": {"api_url": "http://127.0.0.1:4200/api"},
                  "work_pool": {"name": "pool", "type": "docker"},
                  "deployments": {"hello/daily": {"parameters": {"n": 2}}}},
    },
}


def config_with(path: str, value) -> dict:
    data = copy.deepcopy(CONFIG)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()
LOCAL = "environments.local"
CONFIG_CASES = {
    "not-a-mapping": (["a", "list"], ["slipway.yaml: expected a mapping"]),
    "unknown-top-key": (config_with("imagee", {}), ["slipway.yaml: imagee: unknown key"]),
    "missing-image": (config_with("image", DELETE), ["slipway.yaml: image: required field is missing"]),
    "image-name-type": (config_with("image.name", ["a"]), ["slipway.yaml: image.name:"]),
    "relative-app-dir": (config_with("image.app_dir", "opt/prefect"), ["slipway.yaml: image.app_dir:", "absolute"]),
    "unknown-registry-kind": (config_with(f"{LOCAL}.registry.kind", "gcr"),
                              [f"slipway.yaml: {LOCAL}.registry.kind:", "'generic'", "fix:one of the values"]),
    "ecr-without-account": (config_with(f"{LOCAL}.registry", {"kind": "ecr", "region": "eu-west-1"}),
                            [f"slipway.yaml: {LOCAL}.registry:", "account_id and region"]),
    "generic-without-address": (config_with(f"{LOCAL}.registry", {"kind": "generic"}),
                                [f"slipway.yaml: {LOCAL}.registry:", "needs an address"]),
    "insecure-not-bool": (config_with(f"{LOCAL}.registry.insecure", "maybe"),
                          [f"slipway.yaml: {LOCAL}.registry.insecure:", "boolean", "fix:use true or false"]),
    "two-prefect-credentials": (config_with(f"{LOCAL}.prefect", {"api_url": "http://x/api", "api_key_env": "K",
                                                                  "auth_string_env": "A"}),
                                [f"slipway.yaml: {LOCAL}.prefect:", "not both"]),
    "write-concurrency-zero": (config_with(f"{LOCAL}.prefect.write_concurrency", 0),
                               [f"slipway.yaml: {LOCAL}.prefect.write_concurrency:", "fix:larger number"]),
    "write-concurrency-huge": (config_with(f"{LOCAL}.prefect.write_concurrency", 33),
                               [f"slipway.yaml: {LOCAL}.prefect.write_concurrency:"]),
    "write-concurrency-word": (config_with(f"{LOCAL}.prefect.write_concurrency", "many"),
                               [f"slipway.yaml: {LOCAL}.prefect.write_concurrency:", "auto",
                                "fix:one of the values"]),
    "process-pool": (config_with(f"{LOCAL}.work_pool.type", "process"),
                     [f"slipway.yaml: {LOCAL}.work_pool.type:", "process pool"]),
    "unknown-pool-type": (config_with(f"{LOCAL}.work_pool.type", "ecs"), [f"slipway.yaml: {LOCAL}.work_pool.type:"]),
    "missing-repository": (config_with(f"{LOCAL}.repository", DELETE),
                           [f"slipway.yaml: {LOCAL}.repository: required field is missing"]),
    "unknown-environment-key": (config_with(f"{LOCAL}.job_variabels", {}),
                                [f"slipway.yaml: {LOCAL}.job_variabels: unknown key"]),
    "environments-not-a-mapping": (config_with("environments", ["local"]), ["slipway.yaml: environments:"]),
    "job-variables-not-a-mapping": (config_with(f"{LOCAL}.job_variables", "cpu=1"),
                                    [f"slipway.yaml: {LOCAL}.job_variables:"]),
    "tags-not-a-list": (config_with(f"{LOCAL}.tags", "team"), [f"slipway.yaml: {LOCAL}.tags:"]),
    "kubernetes-version-type": (config_with("kubernetes_version", ["1.30"]), ["slipway.yaml: kubernetes_version:"]),
    "verify-unknown-key": (config_with(f"{LOCAL}.verify", {"deployments": ["elt/on-demand"], "retries": 2}),
                           [f"slipway.yaml: {LOCAL}.verify.retries: unknown key"]),
    "verify-no-deployments": (config_with(f"{LOCAL}.verify", {"deployments": []}),
                              [f"slipway.yaml: {LOCAL}.verify.deployments:"]),
    "verify-short-name": (config_with(f"{LOCAL}.verify", {"deployments": ["on-demand"]}),
                          [f"slipway.yaml: {LOCAL}.verify.deployments:", "<flow>/<deployment>"]),
    "verify-bad-duration": (config_with(f"{LOCAL}.verify", {"deployments": ["elt/on-demand"], "timeout": "soon"}),
                            [f"slipway.yaml: {LOCAL}.verify.timeout:", "not a duration"]),
    "verify-zero-duration": (config_with(f"{LOCAL}.verify", {"deployments": ["elt/x"], "start_timeout": 0}),
                             [f"slipway.yaml: {LOCAL}.verify.start_timeout:", "above zero"]),
    "verify-on-failure": (config_with(f"{LOCAL}.verify", {"deployments": ["elt/x"], "on_failure": "retry"}),
                          [f"slipway.yaml: {LOCAL}.verify.on_failure:", "fix:one of the values"]),
    "verify-parameters-of-another": (config_with(f"{LOCAL}.verify", {"deployments": ["elt/x"],
                                                                     "parameters": {"elt/y": {}}}),
                                     [f"slipway.yaml: {LOCAL}.verify:", "'elt/y'", "not in verify.deployments"]),
}


def test_verify_durations_read_as_seconds():
    data = config_with(f"{LOCAL}.verify", {"deployments": ["elt/on-demand"], "start_timeout": "90s",
                                           "timeout": "1.5h"})
    verify = parse_config(data).environments["local"].verify
    assert (verify.start_timeout, verify.timeout, verify.on_failure) == (90.0, 5400.0, "rollback")
    plain = parse_config(config_with(f"{LOCAL}.verify", {"deployments": ["elt/x"], "timeout": 45}))
    assert plain.environments["local"].verify.timeout == 45.0


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_every_slipway_yaml_error_has_a_cause_and_a_fix(case):
    data, fragments = CONFIG_CASES[case]
    with pytest.raises(SlipwayError) as caught:
        parse_config(data)
    assert_cause_and_fix(caught.value, *fragments)


def write_project(root: Path, config=CONFIG, deployments: str | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "slipway.yaml").write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    if deployments is not None:
        (root / "deployments.yaml").write_text(deployments)


def test_file_level_slipway_yaml_errors_have_a_cause_and_a_fix(tmp_path):
    with pytest.raises(SlipwayError) as caught:
        load_project(tmp_path / "nowhere")
    assert_cause_and_fix(caught.value, "slipway.yaml not found")

    write_project(tmp_path / "bad-yaml", "image: {name: [app\n")
    with pytest.raises(SlipwayError) as caught:
        load_project(tmp_path / "bad-yaml")
    assert_cause_and_fix(caught.value, "slipway.yaml: line", "is not valid YAML")

    write_project(tmp_path / "ok")
    project = load_project(tmp_path / "ok")
    with pytest.raises(SlipwayError) as caught:
        project.environment("prod")
    assert_cause_and_fix(caught.value, "slipway.yaml: unknown environment 'prod'")
    with pytest.raises(SlipwayError) as caught:
        load_declarations(project)
    assert_cause_and_fix(caught.value, "deployments.yaml not found")


# --- deployments.yaml --------------------------------------------------------------------------------------

ONE = "deployments:\n  - name: daily\n    entrypoint: flows/hello.py:hello\n"


def one_with(extra: str) -> str:
    return ONE + "".join(f"    {line}\n" for line in extra.splitlines())


DECLARATION_CASES = {
    "bad-yaml": ("deployments: [\n", ["deployments.yaml: line", "is not valid YAML"]),
    "not-a-mapping": ("- name: a\n", ["deployments.yaml: expected a mapping with a 'deployments:' list"]),
    "no-deployments-key": ("deployment: []\n", ["deployments.yaml: expected a mapping"]),
    "empty-list": ("deployments: []\n", ["deployments.yaml: deployments:"]),
    "deployments-not-a-list": ("deployments: {a: 1}\n", ["deployments.yaml: deployments:"]),
    "entry-not-a-mapping": ("deployments:\n  - daily\n", ["deployments.yaml: deployments[0]:", "fix:write a mapping"]),
    "no-name": ("deployments:\n  - entrypoint: flows/hello.py:hello\n",
                ["deployments.yaml: deployments[0].name: required field is missing"]),
    "name-with-slash": (ONE.replace("daily", "a/b"), ["deployments.yaml: deployments[0].name:"]),
    "blank-name": (ONE.replace("daily", "' '"), ["deployments.yaml: deployments[0].name:"]),
    "name-not-a-string": (ONE.replace("daily", "7"), ["deployments.yaml: deployments[0].name:"]),
    "no-entrypoint": ("deployments:\n  - name: daily\n", ["deployments.yaml: deployments[0].entrypoint:"]),
    "bad-entrypoint": (ONE.replace("flows/hello.py:hello", "flows.hello"),
                       ["deployments.yaml: deployments[0].entrypoint:", "flows.hello"]),
    "unknown-key": (one_with("shedules: []"), ["deployments.yaml: deployments[0].shedules: unknown key"]),
    "cron-and-interval": (one_with("schedules:\n  - cron: '0 6 * * *'\n    interval: 60"),
                          ["deployments.yaml: deployments[0].schedules[0]:", "exactly one of",
                           "fix:exactly one of cron, interval or rrule"]),
    "no-schedule-kind": (one_with("schedules:\n  - timezone: UTC"),
                         ["deployments.yaml: deployments[0].schedules[0]:", "exactly one of"]),
    "anchor-with-cron": (one_with("schedules:\n  - cron: '0 6 * * *'\n    anchor_date: 2026-01-01T00:00:00"),
                         ["deployments.yaml: deployments[0].schedules[0]:", "anchor_date"]),
    "day-or-with-interval": (one_with("schedules:\n  - interval: 60\n    day_or: false"),
                             ["deployments.yaml: deployments[0].schedules[0]:", "day_or"]),
    "bad-cron": (one_with("schedules:\n  - cron: '0 25 * * *'"),
                 ["deployments.yaml: deployments[0].schedules[0].cron:"]),
    "bad-timezone": (one_with("schedules:\n  - cron: '0 6 * * *'\n    timezone: Europe/Atlantis"),
                     ["deployments.yaml: deployments[0].schedules[0].timezone:"]),
    "bad-rrule": (one_with("schedules:\n  - rrule: 'FREQ=SOMETIMES'"),
                  ["deployments.yaml: deployments[0].schedules[0].rrule:"]),
    "negative-interval": (one_with("schedules:\n  - interval: -5"),
                          ["deployments.yaml: deployments[0].schedules[0].interval:"]),
    "garbage-interval": (one_with("schedules:\n  - interval: often"),
                         ["deployments.yaml: deployments[0].schedules[0].interval:"]),
    "schedule-active-not-bool": (one_with("schedules:\n  - cron: '0 6 * * *'\n    active: yes please"),
                                 ["deployments.yaml: deployments[0].schedules[0].active:"]),
    "duplicate-slugs": (one_with("schedules:\n  - {cron: '0 6 * * *', slug: s}\n  - {interval: 60, slug: s}"),
                        ["deployments.yaml: deployments[0].schedules:", "unique", "fix:unique slug"]),
    "concurrency-limit-zero": (one_with("concurrency_limit: 0"), ["deployments.yaml: deployments[0].concurrency_limit:"]),
    "concurrency-limit-text": (one_with("concurrency_limit: one"),
                               ["deployments.yaml: deployments[0].concurrency_limit:"]),
    # A deployment's `version` and `work_pool.name` are slipway's: ignored with a warning, not errors
    # (tests/deploy/test_declarations.py::test_keys_slipway_owns_are_ignored_with_one_warning_each).
    "tags-not-a-list": (one_with("tags: daily"), ["deployments.yaml: deployments[0].tags:"]),
    "tag-not-a-string": (one_with("tags: [1]"), ["deployments.yaml: deployments[0].tags[0]:", "fix:write a string"]),
    "parameters-not-a-mapping": (one_with("parameters: [1]"), ["deployments.yaml: deployments[0].parameters:"]),
    "enforce-not-bool": (one_with("enforce_parameter_schema: sometimes"),
                         ["deployments.yaml: deployments[0].enforce_parameter_schema:"]),
    "job-variables-not-a-mapping": (one_with("work_pool:\n  job_variables: [cpu]"),
                                    ["deployments.yaml: deployments[0].work_pool.job_variables:"]),
    "work-pool-unknown-key": (one_with("work_pool:\n  nme: pool"),
                              ["deployments.yaml: deployments[0].work_pool.nme: unknown key"]),
    "description-not-a-string": (one_with("description: [a]"), ["deployments.yaml: deployments[0].description:"]),
}


@pytest.mark.parametrize("case", sorted(DECLARATION_CASES))
def test_every_deployments_yaml_error_has_a_cause_and_a_fix(case):
    text, fragments = DECLARATION_CASES[case]
    with pytest.raises(SlipwayError) as caught:
        parse_declarations(text)
    assert_cause_and_fix(caught.value, *fragments)
    assert caught.value.fix not in caught.value.message  # said once


# --- the per-environment merge -----------------------------------------------------------------------------

OVERRIDE = f"slipway.yaml: {LOCAL}.deployments"
MERGE_CASES = {
    "duplicate-deployment": (ONE + "  - name: daily\n    entrypoint: flows/other.py:hello\n", {},
                             ["deployments.yaml: deployments[1].name: 'hello/daily' is already declared"]),
    "override-pool-not-the-environments": (ONE, {"hello/daily": {"work_pool": {"name": "other"}}},
                                           [f"{OVERRIDE}.hello/daily.work_pool.name: 'other' is not"]),
    "override-for-unknown-deployment": (ONE, {"hello/nope": {}}, [f"{OVERRIDE}.hello/nope: no such deployment"]),
    "override-key-without-flow": (ONE, {"daily": {}}, [f"{OVERRIDE}.daily: keys are '<flow name>/<deployment"]),
    "override-unknown-key": (ONE, {"hello/daily": {"schedulez": []}}, [f"{OVERRIDE}.hello/daily.schedulez: unknown"]),
    "override-bad-schedule": (ONE, {"hello/daily": {"schedules": [{"cron": "61 * * * *"}]}},
                              [f"{OVERRIDE}.hello/daily.schedules[0].cron:"]),
    "override-concurrency-zero": (ONE, {"hello/daily": {"concurrency_limit": 0}},
                                  [f"{OVERRIDE}.hello/daily.concurrency_limit:"]),
    "override-version": (ONE, {"hello/daily": {"version": "2"}}, [f"{OVERRIDE}.hello/daily.version: unknown key"]),
}


@pytest.mark.parametrize("case", sorted(MERGE_CASES))
def test_every_merge_error_has_a_cause_and_a_fix(case, tmp_path):
    text, overrides, fragments = MERGE_CASES[case]
    config = config_with(f"{LOCAL}.deployments", overrides)
    write_project(tmp_path, config, text)
    project: Project = load_project(tmp_path)
    declarations = load_declarations(project)
    with pytest.raises(SlipwayError) as caught:
        resolve_for_environment(declarations, ["hello"] * len(declarations.deployments), "local",
                                project.environment("local"))
    assert_cause_and_fix(caught.value, *fragments)
