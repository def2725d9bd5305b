"""CI output: what a release did, where CI shows it.

Two outputs, both driven by environment variables so a command needs no CI-specific flag and a terminal run
writes nothing:

- `$GITHUB_STEP_SUMMARY` (set by GitHub Actions on every step): a Markdown summary of the image, push, deploy
  or rollback result is appended, so the run's page shows the digest and which deployments changed.
- `$SLIPWAY_RESULTS_DIR` (set by the workflows): the verb's JSON result, exactly what `--json` prints, is
  written to `<dir>/<verb>.json`, so a workflow keeps the real outputs of `make image deploy` (artifact, step
  outputs) without running a verb a second time just to get JSON.

Both are best-effort reporting: the caller turns an OSError into a warning, never into a failed release.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
RESULTS_DIR_ENV = "SLIPWAY_RESULTS_DIR"
# The verbs whose outcome is a release fact worth a summary; the others (plan, releases, ...) print for people.
SUMMARIZED_VERBS = ("image", "push", "deploy", "rollback", "promote", "verify")
DEPLOY_ACTIONS = ("created", "updated", "unchanged")


def _cell(value: Any) -> str:
    """One Markdown table cell: code-formatted, with the characters that would break the table escaped."""
    if value is None or value == "":
        return "–"
    text = " ".join(str(value).split()).replace("|", "\\|").replace("`", "'")
    return f"`{text}`"


def _table(rows: list[tuple[str, Any]]) -> list[str]:
    lines = ["| | |", "| --- | --- |"]
    lines += [f"| {label} | {_cell(value)} |" for label, value in rows]
    return lines


def _image_lines(data: dict) -> list[str]:
    tags = data.get("tags") or []
    return _table([
        ("Image", data.get("image")),
        ("Revision", data.get("revision")),
        ("Image ID", data.get("image_id")),
        ("Tags", ", ".join(tags)),
    ])


def _push_lines(data: dict) -> list[str]:
    tags = data.get("tags") or []
    return _table([
        ("Repository", data.get("repository")),
        ("Digest", data.get("digest")),
        ("Reference", data.get("reference")),
        ("Tags", ", ".join(tags)),
    ])


def _deploy_lines(data: dict) -> list[str]:
    deployments = data.get("deployments") or []
    counts = {action: 0 for action in DEPLOY_ACTIONS}
    for d in deployments:
        action = d.get("action")
        counts[action] = counts.get(action, 0) + 1
    lines = [f"- Image: {_cell(data.get('reference'))}"]
    if data.get("work_pool"):
        lines.append(f"- Work pool: {_cell(data['work_pool'])}")
    lines.append("")
    lines.append("**" + ", ".join(f"{n} {action}" for action, n in counts.items()) + "**")
    lines.append("")
    lines += ["| Deployment | Action | ID |", "| --- | --- | --- |"]
    for d in deployments:
        lines.append(f"| {_cell(d.get('name'))} | {d.get('action') or '–'} | {_cell(d.get('id'))} |")
    for d in data.get("removed") or []:  # the environment's deployments the release no longer declares
        action = f"{d.get('action') or '–'} (not in this release)"
        lines.append(f"| {_cell(d.get('name'))} | {action} | {_cell(d.get('id'))} |")
    return lines


def _promote_lines(data: dict) -> list[str]:
    return _table([
        ("From", data.get("from")),
        ("To", data.get("to")),
        ("Digest", data.get("digest")),
        ("Reference", data.get("reference")),
        ("Tags", ", ".join(data.get("tags") or [])),
        ("Copied", f"{data.get('copied_blobs', 0)} blob(s), {data.get('copied_bytes', 0)} bytes"),
    ])


def _verify_lines(data: dict) -> list[str]:
    """The smoke run of a release (deploy/verify.py): each run, its end and its page in the Prefect UI."""
    lines = [f"**{_cell(data.get('release'))} {'verified' if data.get('verified') else 'failed verification'}**",
             "", "| Deployment | Run | State | |", "| --- | --- | --- | --- |"]
    for run in data.get("runs") or []:
        state = run.get("state") or "–"
        if run.get("message"):
            state += f": {' '.join(str(run['message']).split())}".replace("|", "\\|")
        lines.append(f"| {_cell(run.get('deployment'))} | {_cell(run.get('run_name'))} | {state} | "
                     f"[open in Prefect]({run.get('url')}) |")
    return lines


_RENDERERS = {"image": _image_lines, "push": _push_lines, "deploy": _deploy_lines, "rollback": _deploy_lines,
              "promote": _promote_lines, "verify": _verify_lines}


def render_summary(verb: str, data: dict, environment: str | None = None) -> str:
    """The Markdown block for one verb's result (verbs outside SUMMARIZED_VERBS are not expected here)."""
    title = f"### slipway {verb}" + (f" → {environment}" if environment else "")
    return "\n".join([title, "", *_RENDERERS[verb](data), "", ""])


def write_step_summary(verb: str | None, data: Any, environment: str | None = None,
                       env: dict[str, str] | None = None) -> Path | None:
    """Append `data`'s Markdown summary to $GITHUB_STEP_SUMMARY; returns the file written, None when skipped.

    Skipped (no-op) when the variable is unset or empty, the verb is not a release verb, or data is not the
    verb's result object (a dict). Appending, not overwriting: `make image deploy` runs two verbs in one step.
    """
    env = os.environ if env is None else env
    target = env.get(SUMMARY_ENV)
    if not target or verb not in SUMMARIZED_VERBS or not isinstance(data, dict):
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(render_summary(verb, data, environment))
    return path


def write_result_file(verb: str | None, data: Any, env: dict[str, str] | None = None) -> Path | None:
    """Write the verb's JSON result to $SLIPWAY_RESULTS_DIR/<verb>.json; None when the variable is unset."""
    env = os.environ if env is None else env
    directory = env.get(RESULTS_DIR_ENV)
    if not directory or verb not in SUMMARIZED_VERBS:
        return None
    path = Path(directory) / f"{verb}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, default=str) + "\n", encoding="utf-8")
    return path


def record_result(verb: str | None, data: Any, environment: str | None = None) -> list[Path]:
    """Both CI outputs for one result; what Reporter.result calls. Returns the files written."""
    written = [write_step_summary(verb, data, environment), write_result_file(verb, data)]
    return [p for p in written if p is not None]
