"""Secret-looking values in deployments.yaml and slipway.yaml are refused, naming the field and never the value
(slipway/project/secrets.py); `not_secret:` marks one that is not. `make image` refuses before any build work
(no Docker needed to see it); deploy and plan refuse too (tests/deploy/test_bad_input.py, real server)."""
from __future__ import annotations

import copy

import pytest
import yaml

from slipway.errors import SlipwayError
from slipway.project.config import parse_config
from slipway.project.declarations import parse_declarations, refuse_declared_secrets, refuse_environment_secrets
from slipway.project.secrets import names_a_secret, why_secret
from tests.kit.repo import commit_all, git

PASSWORD_URL = "postgresql://loader:s3cr3t-Pw@db.internal:5432/warehouse"


@pytest.mark.parametrize("key, value", [
    ("dsn", PASSWORD_URL), ("target", "https://user:hunter2@example.com/path"),
    ("password", "hunter2"), ("db_pass", "hunter2"), ("DB_PASSWORD", "x"), ("apiKey", "abc123"),
    ("api_key", "abc123"), ("client_secret", "abc"), ("GITHUB_TOKEN", "abc"), ("aws_secret_access_key", "abc"),
    ("x-auth-token", "abc"), ("private_key", "abc"), ("credentials", "abc"),
    ("note", "AKIAIOSFODNN7EXAMPLE"), ("note", "ghp_" + "a1" * 18), ("note", "pnu_" + "b2" * 18),
    ("note", "xoxb-1234567890-abcdefghij"), ("note", "-----BEGIN RSA PRIVATE KEY-----\nMIIE..."),
    ("note", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ("conn", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=" + "A" * 40 + "=="),
])
def test_secret_looking_values(key, value):
    assert why_secret(key, value)


@pytest.mark.parametrize("key, value", [
    ("dsn", "postgresql://loader@db.internal/warehouse"),  # no password
    ("dsn", "postgresql://loader:{{ prefect.blocks.secret.db-password }}@db/w"),  # a reference
    ("password", "{{ prefect.blocks.secret.db-password }}"), ("password", "${DB_PASSWORD}"),
    ("password_env", "DB_PASSWORD"), ("token_url", "https://auth.example.com/token"), ("secret_name", "db"),
    ("api_key_env", "X"), ("token_ttl", "3600"), ("password", ""), ("passthrough", "yes"), ("token", 3600),
    ("use_token", True), ("bypass_cache", "x"), ("name", "slipway"), ("url", "https://example.com/a:b@c"),
])
def test_values_that_only_name_or_refer_to_a_secret(key, value):
    assert why_secret(key, value) is None


def test_key_words():
    assert names_a_secret("dbPassword") and names_a_secret("SMTP_PASS") and not names_a_secret("pass_rate")
    assert names_a_secret("signing-key") and not names_a_secret("primary_key")


def declarations(**deployment) -> str:
    return yaml.safe_dump({"deployments": [{"name": "daily", "entrypoint": "flows/hello.py:hello", **deployment}]})


def refused_declarations(**deployment) -> SlipwayError:
    with pytest.raises(SlipwayError) as caught:
        refuse_declared_secrets(parse_declarations(declarations(**deployment)))
    return caught.value


def test_a_parameter_with_a_password_is_refused_without_printing_it():
    error = refused_declarations(parameters={"dsn": PASSWORD_URL})
    line = error.line()
    assert line.startswith("deployments.yaml: deployments[0].parameters.dsn: this parameter looks like a secret "
                           "(a URL with a password in it)")
    assert "Secret.load(name).get()" in error.fix
    assert "add 'parameters.dsn' to not_secret: under deployments.yaml: deployments[0]" in error.fix
    assert "s3cr3t" not in line and "loader" not in line


def test_schedule_parameters_and_job_variables_are_checked_too():
    error = refused_declarations(schedules=[{"cron": "0 6 * * *", "parameters": {"api_key": "abc123"}}])
    assert error.message.startswith("deployments.yaml: deployments[0].schedules[0].parameters.api_key: this "
                                    "parameter looks like a secret (its key 'api_key' names a secret")
    error = refused_declarations(work_pool={"job_variables": {"env": {"SNOWFLAKE_PASSWORD": "pw"}}})
    assert error.message.startswith("deployments.yaml: deployments[0].work_pool.job_variables.env.SNOWFLAKE_PASSWORD:"
                                    " this job variable looks like a secret")
    assert "env_from" in error.fix and "'job_variables.env.SNOWFLAKE_PASSWORD'" in error.fix
    error = refused_declarations(work_pool={"job_variables": {"env": [{"name": "DB_TOKEN", "value": "t0k"}]}})
    assert "work_pool.job_variables.env[0].value: this job variable" in error.message


def test_not_secret_marks_a_value_that_is_not_one():
    refuse_declared_secrets(parse_declarations(declarations(
        parameters={"dsn": PASSWORD_URL, "token": "public-demo"},
        schedules=[{"cron": "0 6 * * *", "parameters": {"token": "other-demo"}}],
        work_pool={"job_variables": {"env": {"DB_PASSWORD": "only-a-test-db"}}},
        not_secret=["parameters.dsn", "parameters.token", "job_variables.env"])))
    error = refused_declarations(parameters={"dsn": PASSWORD_URL, "password": "x"}, not_secret=["parameters.dsn"])
    assert "parameters.password" in error.message
    with pytest.raises(SlipwayError) as caught:
        parse_declarations(declarations(not_secret=["dsn"]))
    assert "deployments[0].not_secret: 'dsn' is not a path like 'parameters.<name>'" in caught.value.line()


CONFIG = {"image": {"name": "app"}, "environments": {"prod": {
    "registry": {"kind": "generic", "address": "r.test"}, "repository": "app",
    "prefect": {"api_url": "http://prefect.test/api"}, "work_pool": {"name": "pool", "type": "docker"}}}}


def environment(**settings):
    config = copy.deepcopy(CONFIG)
    config["environments"]["prod"].update(settings)
    return parse_config(config).environments["prod"]


def test_slipway_yaml_job_variables_and_overrides_are_checked():
    with pytest.raises(SlipwayError) as caught:
        refuse_environment_secrets("prod", environment(job_variables={"env": {"DBT_PASSWORD": "pw"}}))
    assert caught.value.message.startswith("slipway.yaml: environments.prod.job_variables.env.DBT_PASSWORD: this job "
                                           "variable looks like a secret")
    assert "not_secret: under slipway.yaml: environments.prod" in caught.value.fix
    refuse_environment_secrets("prod", environment(job_variables={"env": {"DBT_PASSWORD": "pw"}},
                                                   not_secret=["job_variables.env.DBT_PASSWORD"]))
    with pytest.raises(SlipwayError) as caught:
        refuse_environment_secrets("prod", environment(deployments={"hello/daily": {"parameters": {"dsn": PASSWORD_URL}}}))
    assert caught.value.message.startswith("slipway.yaml: environments.prod.deployments.hello/daily.parameters.dsn: "
                                           "this parameter looks like a secret (a URL with a password in it)")
    refuse_environment_secrets("prod", environment(deployments={"hello/daily": {
        "parameters": {"dsn": PASSWORD_URL}, "not_secret": ["parameters.dsn"]}}))


def test_make_image_refuses_before_any_build_work(tmp_path, cli_main, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    config = copy.deepcopy(CONFIG)
    config["environments"]["prod"]["deployments"] = {"hello/daily": {"parameters": {"dsn": PASSWORD_URL}}}
    (root / "slipway.yaml").write_text(yaml.safe_dump(config))
    (root / "deployments.yaml").write_text(declarations())
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "a secret in an override")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # nothing may reach an engine
    code, out, err = cli_main("image", "--root", str(root))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "error: slipway.yaml: environments.prod.deployments.hello/daily.parameters.dsn: this parameter looks like a "
        "secret (a URL with a password in it); it would be stored in every release image and shown in Prefect as "
        "plain text; pass the name of a Prefect Secret block instead and read it in the flow "
        "(`Secret.load(name).get()`); if it is not a secret, add 'parameters.dsn' to not_secret: under "
        "slipway.yaml: environments.prod.deployments.hello/daily"]


@pytest.fixture
def cli_main(capsys):
    from slipway.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run
