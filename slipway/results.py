"""What each verb prints: its `--json` object and its human summary, derived in one place from the typed
values the pipeline returns (slipway/pipeline.py). The JSON keys are a contract CI scripts rely on: they
are documented in README.md ('Commands') and tested.
"""
from __future__ import annotations

import io
from typing import Any

from slipway.deploy.history import HistoryEntry
from slipway.deploy.plan import Plan, PlanRow
from slipway.deploy.unchanged import Printed, Unchanged
from slipway.errors import Finding
from slipway.image.build import BuiltImage
from slipway.registry.copy import CopyResult
from slipway.registry.push import PushedImage
from slipway.registry.releases import Release


def image_json(built: BuiltImage) -> dict[str, Any]:
    return {"image": built.reference, "tags": built.tags, "revision": built.revision, "image_id": built.image_id}


def image_human(built: BuiltImage) -> str:
    return "\n".join(f"{built.name}:{t}" for t in built.tags)


def push_json(pushed: PushedImage) -> dict[str, Any]:
    return {"repository": pushed.repository, "digest": pushed.digest, "reference": pushed.reference,
            "tags": pushed.tags}


def push_human(pushed: PushedImage) -> str:
    return f"{pushed.reference}\ntags: {', '.join(pushed.tags)}"


def _pool(plan: Plan) -> dict[str, Any]:
    return {"name": plan.pool.name, "action": plan.pool.action, "changes": plan.pool.changes}


def _row(row: PlanRow, changes: bool) -> dict[str, Any]:
    out = {"name": row.name, "id": row.id, "action": row.action, "paused_by": row.paused_by}
    if changes:
        out["changes"] = row.changes
    return out


def _removed(plan: Plan) -> list[dict[str, Any]]:
    """The environment's deployments the release no longer declares: paused | deleted | unchanged (already
    paused), and who holds the pause afterwards (slipway | hand)."""
    return [{"name": r.name, "id": r.live.id, "action": r.action, "paused_by": r.paused_by} for r in plan.removed]


def plan_json(plan: Plan, pushed: bool) -> dict[str, Any]:
    return {"environment": plan.environment, "reference": plan.reference, "work_pool": _pool(plan),
            "deployments": [_row(r, changes=True) for r in plan.rows], "removed": _removed(plan), "pushed": pushed}


def deploy_json(plan: Plan) -> dict[str, Any]:
    out = {"reference": plan.reference, "work_pool": _pool(plan),
           "deployments": [_row(r, changes=False) for r in plan.rows], "removed": _removed(plan)}
    if plan.verification is not None:
        out["verification"] = plan.verification
    return out


def deploy_outputs(outcome: Plan | Unchanged) -> tuple[dict[str, Any], str]:
    """deploy's JSON and human summary; a redeploy told unchanged prints what a full run that found it so
    printed (deploy/unchanged.py), which `unchanged_outputs` wrote."""
    if isinstance(outcome, Unchanged):
        return outcome.deploy.json, outcome.deploy.human
    return deploy_json(outcome), plan_human(outcome, "deploy")


def plan_outputs(plan: Plan | Unchanged, pushed: bool = True,
                 reference_text: str | None = None) -> tuple[dict[str, Any], str]:
    if isinstance(plan, Unchanged):
        return plan.plan.json, plan.plan.human
    return plan_json(plan, pushed), plan_human(plan, "plan", reference_text)


def unchanged_outputs(plan: Plan) -> tuple[Printed, Printed]:
    """What deploy and plan print for `plan`, a release pushed and changing nothing, kept for the next run."""
    deploy_printed, deploy_text = deploy_outputs(plan)
    return Printed(deploy_printed, deploy_text), Printed(*plan_outputs(plan, True, plan.reference))


def rollback_json(plan: Plan, release: Release) -> dict[str, Any]:
    return {"reference": plan.reference, "revision": release.revision, "work_pool": _pool(plan),
            "deployments": [_row(r, changes=False) for r in plan.rows], "removed": _removed(plan),
            "paused": sorted(d.full_name for d in plan.to_pause),
            **({"verification": plan.verification} if plan.verification is not None else {})}


_PAUSED_BY = {"slipway": "paused by slipway", "hand": "paused by hand"}


def plan_human(plan: Plan, verb: str, reference_text: str | None = None) -> str:
    out = io.StringIO()
    out.write(f"{plan.environment}: {reference_text or plan.reference}\n")
    out.write(f"  work pool {plan.pool.name}: {plan.pool.action}\n")
    width = max((len(r.name) for r in [*plan.rows, *plan.removed]), default=0)
    for row in plan.rows:
        changes = f" ({', '.join(row.changes)})" if row.changes else ""
        note = f" — {row.note}" if row.note else ""
        out.write(f"  {row.name:<{width}}  {row.action}{changes}{note}\n")
    for gone in plan.removed:
        what = {"paused": "paused", "deleted": "deleted (--prune)",
                "unchanged": f"unchanged, {_PAUSED_BY.get(gone.paused_by or '', 'paused')}"}[gone.action]
        out.write(f"  {gone.name:<{width}}  {what}: not in this release\n")
    counts = plan.counts()
    for gone in plan.removed:
        if gone.action != "unchanged":
            counts[gone.action] = counts.get(gone.action, 0) + 1
    tally = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
    prefix = "would be: " if verb == "plan" else ""
    out.write(f"{prefix}{tally}" + (" (nothing written)" if verb == "plan" else "") + "\n")
    for run in (plan.verification or {}).get("runs", []):
        out.write(f"verified by {run['deployment']}: run {run['run_name']} {run['state']} ({run['url']})\n")
    return out.getvalue()


def releases_json(releases: list[Release], live: set[str], history: list[HistoryEntry]) -> dict[str, Any]:
    """`{"releases": [...], "history": [...]}`: the registry's releases, newest commit first, and the
    environment's release history, newest first. `promoted_from`: where promote copied a release from."""
    return {"releases": [{"revision": r.revision, "tags": r.sorted_tags(), "digest": r.digest, "created": r.created,
                          "live": r.digest in live,
                          "promoted_from": r.promoted_from.as_json() if r.promoted_from else None}
                         for r in releases],
            "history": [entry.to_json() for entry in history]}


HISTORY_SHOWN = 20


def _origin(release: Release) -> str:
    """Where a release came from: `pushed` (built and pushed here) or the environment it was promoted from."""
    return f"from {release.promoted_from.environment}" if release.promoted_from else "pushed"


def releases_human(releases: list[Release], live: set[str], repository: str, api_url: str,
                   history: list[HistoryEntry]) -> str:
    width = max([len(_origin(r)) for r in releases] + [len("origin")])
    lines = [f"{'':2}{'revision':<13} {'created':<26} {'digest':<20} {'origin':<{width}} tags"]
    for r in releases:
        lines.append(f"{'*' if r.digest in live else ' ':2}{(r.revision or '?')[:12]:<13} {r.created or '?':<26} "
                     f"{r.digest[:19]:<20} {_origin(r):<{width}} {', '.join(r.sorted_tags())}")
    if not releases:
        lines.append(f"  (no releases in {repository})")
    lines.append("* live: pinned by the active deployments in " + api_url)
    lines += ["", f"history (newest first{', latest ' + str(HISTORY_SHOWN) if len(history) > HISTORY_SHOWN else ''}):"]
    for entry in history[:HISTORY_SHOWN]:
        previous = f" (was {entry.previous.short})" if entry.previous else ""
        run = f" {entry.run_url}" if entry.run_url else ""
        message = f": {entry.message}" if entry.message else ""
        lines.append(f"  {entry.time}  {entry.verb:<8} {entry.release.short}{previous}  by {entry.actor}{run}{message}")
    if not history:
        lines.append("  (nothing recorded yet: deploy and rollback record each release)")
    return "\n".join(lines)


def promote_json(done) -> dict[str, Any]:
    """`done`: pipeline.Promoted."""
    copied: CopyResult = done.copied
    return {"from": done.source, "to": done.destination, "digest": done.release.digest,
            "reference": done.reference, "tags": done.tags, "copied_blobs": copied.copied_blobs,
            "copied_bytes": copied.copied_bytes}


def promote_human(done) -> str:
    copied: CopyResult = done.copied
    moved = f"{copied.copied_blobs} blob(s) copied ({copied.copied_bytes / 1e6:.1f} MB)"
    if copied.mounted_blobs:
        moved += f", {copied.mounted_blobs} mounted"
    if copied.present_blobs:
        moved += f", {copied.present_blobs} already there"
    if not copied.manifests_written:
        moved = "the image was already there: nothing copied"
    return (f"{done.reference}\ntags: {', '.join(done.tags)}\n"
            f"{done.source} -> {done.destination}: {moved}")


def doctor_json(findings: list[Finding]) -> dict[str, Any]:
    return {"ok": not any(f.level == "error" for f in findings), "findings": [f.json() for f in findings]}


def doctor_human(findings: list[Finding]) -> str:
    """One line per finding, then `ok` (a release would pass these checks) or how many errors stop it."""
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    said = f" ({warnings} warning{'s' * (warnings != 1)})" if warnings else ""
    summary = (f"{errors} error{'s' * (errors != 1)}{said}: a release would fail" if errors else f"ok{said}")
    return "\n".join([*(f.line() for f in findings), summary])


def init_json(done) -> dict[str, Any]:
    placement = done.placement
    return {"written": placement.written, "unchanged": placement.unchanged, "kept": placement.kept,
            "notes": done.notes, "already": done.already}


def init_human(done) -> str:
    """Each file written; each one kept (the repository's own, never overwritten) with what init would have
    written; what was moved into the lock; then the next steps."""
    if done.already:
        return done.already
    placement = done.placement
    lines = [f"wrote {path}" for path in placement.written]
    lines += [f"unchanged {path}" for path in placement.unchanged]
    for path, diff in placement.kept.items():
        lines.append(f"kept {path} (yours, not overwritten); slipway init would write:")
        lines += [f"  {line}" for line in diff.splitlines()]
    lines += [f"note: {note}" for note in done.notes]
    if placement.written:
        lines.append("next: review and commit these files, then `slipway doctor`, `slipway up` and "
                     "`slipway release --env local`")
    return "\n".join(lines)


def upgrade_json(done) -> dict[str, Any]:
    return {"from": done.before, "to": done.after, "changed": done.changed, "conflicts": done.conflicts}


def upgrade_human(done) -> str:
    if done.before == done.after:
        return f"up to date: slipway init's files are this slipway's template ({done.after}); nothing changed"
    lines = [f"upgraded slipway init's files from template {done.before} to {done.after}"]
    lines += [f"changed {path}" for path in done.changed if path not in done.conflicts]
    lines += [f"error: {path}: the upgrade and your edit overlap (marked <<<<<<< / >>>>>>>); resolve it, "
              "then commit" for path in done.conflicts]
    if not done.conflicts:
        lines.append("next: review the diff (git diff) and commit it")
    return "\n".join(lines)
