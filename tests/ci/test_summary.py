"""CI output (slipway/summary.py): the Markdown step summary and the JSON result files, and their hook in
Reporter.result. Real files in tmp_path stand in for the ones GitHub Actions provides."""
from __future__ import annotations

import json

import pytest

from slipway import cli
from slipway.output import Reporter
from slipway.summary import (
    RESULTS_DIR_ENV,
    SUMMARY_ENV,
    render_summary,
    write_result_file,
    write_step_summary,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "ab" * 32
REFERENCE = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/data-platform/jaffle-shop@{DIGEST}"

IMAGE = {"image": f"jaffle-shop:{SHA}", "tags": [SHA, SHA[:12], "v1.2.0"], "revision": SHA,
         "image_id": "sha256:" + "cd" * 32}
PUSH = {"repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/data-platform/jaffle-shop", "digest": DIGEST,
        "reference": REFERENCE, "tags": [SHA, SHA[:12], "v1.2.0"]}
DEPLOY = {"reference": REFERENCE, "work_pool": "staging-kubernetes", "deployments": [
    {"name": "extract-load/jaffle-shop", "id": "11111111-1111-1111-1111-111111111111", "action": "created"},
    {"name": "dbt-build/jaffle-shop", "id": "22222222-2222-2222-2222-222222222222", "action": "updated"},
    {"name": "elt/daily", "id": "33333333-3333-3333-3333-333333333333", "action": "unchanged"},
    {"name": "elt/on-demand", "id": "44444444-4444-4444-4444-444444444444", "action": "created"},
]}


@pytest.fixture
def summary_file(tmp_path, monkeypatch):
    path = tmp_path / "step_summary.md"
    monkeypatch.setenv(SUMMARY_ENV, str(path))
    monkeypatch.delenv(RESULTS_DIR_ENV, raising=False)
    return path


def test_deploy_summary_counts_and_lists_every_deployment(summary_file):
    assert write_step_summary("deploy", DEPLOY, "staging") == summary_file
    text = summary_file.read_text()
    assert text.startswith("### slipway deploy → staging\n")
    assert f"- Image: `{REFERENCE}`\n" in text
    assert "- Work pool: `staging-kubernetes`\n" in text
    assert "**2 created, 1 updated, 1 unchanged**" in text
    assert "| Deployment | Action | ID |" in text
    for d in DEPLOY["deployments"]:
        assert f"| `{d['name']}` | {d['action']} | `{d['id']}` |" in text


def test_rollback_uses_the_deployments_table(summary_file):
    data = {"reference": REFERENCE, "deployments": [{"name": "elt/daily", "id": "x-1", "action": "updated"}]}
    write_step_summary("rollback", data, "prod")
    text = summary_file.read_text()
    assert text.startswith("### slipway rollback → prod\n")
    assert "**0 created, 1 updated, 0 unchanged**" in text
    assert "| `elt/daily` | updated | `x-1` |" in text


def test_image_and_push_summaries_show_the_release_facts(summary_file):
    write_step_summary("image", IMAGE)
    write_step_summary("push", PUSH, "staging")
    text = summary_file.read_text()
    # Appended in order, one block per verb: `make image deploy` runs two verbs in one CI step.
    assert text.index("### slipway image\n") < text.index("### slipway push → staging\n")
    assert f"| Image | `jaffle-shop:{SHA}` |" in text
    assert f"| Revision | `{SHA}` |" in text
    assert f"| Tags | `{SHA}, {SHA[:12]}, v1.2.0` |" in text
    assert f"| Digest | `{DIGEST}` |" in text
    assert f"| Reference | `{REFERENCE}` |" in text


def test_summary_appends_to_what_github_already_wrote(summary_file):
    summary_file.write_text("## earlier step\n")
    write_step_summary("deploy", DEPLOY)
    assert summary_file.read_text().startswith("## earlier step\n### slipway deploy\n")


def test_table_cells_cannot_break_the_markdown_table():
    text = render_summary("deploy", {"reference": "r", "deployments": [
        {"name": "a|b", "id": "i`d", "action": "created"}]})
    assert "| `a\\|b` | created | `i'd` |" in text


def test_no_op_without_github_step_summary(tmp_path, monkeypatch):
    monkeypatch.delenv(SUMMARY_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert write_step_summary("deploy", DEPLOY) is None
    monkeypatch.setenv(SUMMARY_ENV, "")
    assert write_step_summary("deploy", DEPLOY) is None
    assert list(tmp_path.iterdir()) == []


def test_no_op_for_verbs_that_are_not_release_facts(summary_file):
    assert write_step_summary("plan", {"changes": []}) is None
    assert write_step_summary(None, DEPLOY) is None
    assert write_step_summary("deploy", ["not", "a", "result"]) is None
    assert not summary_file.exists()


def test_result_file_holds_the_verbs_json(tmp_path):
    results = tmp_path / "results"
    path = write_result_file("push", PUSH, env={RESULTS_DIR_ENV: str(results)})
    assert path == results / "push.json"
    assert json.loads(path.read_text()) == PUSH
    assert write_result_file("push", PUSH, env={}) is None
    assert write_result_file("releases", {"x": 1}, env={RESULTS_DIR_ENV: str(results)}) is None
    assert sorted(p.name for p in results.iterdir()) == ["push.json"]


# Reporter.result is where every verb's outcome passes: the hook lives there.

def test_reporter_with_a_verb_summarizes_its_result(summary_file, capsys):
    Reporter(verb="deploy", environment="staging").result(DEPLOY, human="deployed 4")
    assert capsys.readouterr().out == "deployed 4\n"  # the human output is unchanged
    assert "### slipway deploy → staging" in summary_file.read_text()


def test_reporter_without_a_verb_writes_no_summary(summary_file, capsys):
    Reporter().result(DEPLOY, human="deployed 4")  # the pre-existing call: backwards compatible
    assert not summary_file.exists()


def test_reporter_json_result_file_matches_json_stdout(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(SUMMARY_ENV, raising=False)
    monkeypatch.setenv(RESULTS_DIR_ENV, str(tmp_path))
    Reporter(json_mode=True, verb="deploy").result(DEPLOY)
    printed = json.loads(capsys.readouterr().out)
    assert printed == DEPLOY
    assert json.loads((tmp_path / "deploy.json").read_text()) == printed


def test_unwritable_summary_warns_instead_of_failing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(SUMMARY_ENV, str(tmp_path))  # a directory: open() fails with an OSError
    monkeypatch.delenv(RESULTS_DIR_ENV, raising=False)
    Reporter(verb="deploy").result(DEPLOY, human="deployed 4")
    captured = capsys.readouterr()
    assert captured.out == "deployed 4\n"
    assert "warning: could not write the CI summary" in captured.err


def _fake_run(data):
    """Stands in for a verb's run(): the verbs are other modules' concern; here only cli's wiring counts."""
    def run(args, reporter):
        reporter.result(data, human="done")
    return run


def test_cli_passes_the_verb_and_environment_to_the_reporter(summary_file, monkeypatch):
    import slipway.commands.image as image_cmd
    import slipway.commands.push as push_cmd
    monkeypatch.setattr(image_cmd, "run", _fake_run(IMAGE))
    monkeypatch.setattr(push_cmd, "run", _fake_run(PUSH))
    assert cli.main(["image"]) == 0
    assert cli.main(["push", "--env", "staging"]) == 0
    text = summary_file.read_text()
    assert "### slipway image\n" in text
    assert "### slipway push → staging\n" in text
