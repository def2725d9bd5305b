"""README "Adopt slipway in an existing repository", step by step, from the wheel, on a team's repository that
is not this one (tests/kit/foreign.py `write_team_repo`: flows under pipelines/, a dbt project at the root,
no custom-modules package, a prefect.yaml with prefect-docker steps and `pip_packages`, a flow loading a
block at import time, GitHub's Python .gitignore, its own requirements.txt) and nothing copied from this
repository: `slipway init` writes every file slipway needs. Against the kit's real registry and Prefect
server (the guide's `slipway up` is the kit's here): init, doctor, the fixes it names, a release pinned by
digest, a code-only release, a rollback, and a fresh clone on an engine without any of the test's images
that builds and pushes the same commit to the same digest; then the next slipway's wheel, whose template
changed: `init --upgrade` keeps the team's edits, and the upgraded tool rolls back to the older one's release."""
from __future__ import annotations

import hashlib
import shutil
import uuid

import pytest
import yaml

from slipway.init.answers import slipway_range
from tests.deploy.conftest import prefect_state
from tests.kit.foreign import LOCK_DATE, apply_doctors_fixes_to_team, write_team_repo
from tests.kit.repo import REPO_ROOT, commit_all, git
from tests.kit.wheel import build_next_wheel, install

# What init writes in this repository (CI workflows included): the README names each.
INIT_FILES = {"slipway.yaml", ".slipway-answers.yml", "Dockerfile.base", "requirements/runtime.in",
              "requirements/runtime.txt", ".github/workflows/slipway-release.yml",
              ".github/workflows/slipway-rollback.yml"}


def tree_digest(root) -> str:
    """Every file of the working tree (not .git), names and bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("prefect_server", ["sqlite"], indirect=True)
def test_a_team_adopts_slipway_with_init_and_releases_rolls_back_and_rebuilds_the_same_digest(
        installed_slipway, registry, prefect_server, docker_engine, tmp_path):
    from tests.conftest import remove_tags_containing
    from tests.deploy.conftest import delete_deployments_of

    name = f"adopt-{uuid.uuid4().hex[:8]}"
    repo = write_team_repo(tmp_path / name, name)
    env = {**LOCK_DATE, "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    names = [f"ingest/hourly-{name}", f"nightly/nightly-{name}"]
    try:
        # 2. slipway init: every file slipway needs, nothing of the team's touched.
        before = {p: (repo / p).read_bytes() for p in git(repo, "ls-files").split()}
        init = installed_slipway.run("init", "--yes", "--json", cwd=repo, env=env)
        assert init.code == 0, init.stderr
        done = init.json()
        assert set(done["written"]) == INIT_FILES and done["kept"] == {}, done
        assert len(done["written"]) <= 10
        readme = (REPO_ROOT / "README.md").read_text()
        assert [path for path in done["written"] if f"`{path}`" not in readme] == []
        assert {p: (repo / p).read_bytes() for p in before} == before
        assert any("pandas==2.2.3 (pip_packages of 'hourly-" in note and "remove pip_packages from prefect.yaml"
                   in note for note in done["notes"]), done["notes"]
        lock = (repo / "requirements" / "runtime.txt").read_text()
        assert "\nprefect==3.8.8 " in lock and "\npandas==2.2.3 " in lock  # the team's Prefect, kept
        config = yaml.safe_load((repo / "slipway.yaml").read_text())
        assert config["image"] == {"name": name, "code": ["pipelines"], "dbt": "."}
        assert config["deployments"] == "prefect.yaml"

        # Run twice, nothing changes.
        tree = tree_digest(repo)
        again = installed_slipway.run("init", "--yes", cwd=repo, env=env)
        assert again.code == 0 and "set this repository up already" in again.stdout, again.stdout + again.stderr
        assert tree_digest(repo) == tree

        # The team's own edits of a generated file, line by line as a person makes them (where its registry and
        # server are; a second repository sharing local's build cache, for the fresh clone below): kept by
        # --upgrade.
        text = (repo / "slipway.yaml").read_text()
        for old, new in (("address: localhost:5000", f"address: {registry.address}"),
                         ("api_url: http://127.0.0.1:4200/api", f"api_url: {prefect_server.api_url}"),
                         ("name: team-docker", f"name: {name}-docker")):
            assert text.count(old) == 1, old
            text = text.replace(old, new)
        text += (f"\n  mirror:\n    registry: {{kind: generic, address: '{registry.address}', insecure: true}}\n"
                 f"    repository: {name}-mirror\n    cache_repository: {name}/slipway-cache\n"
                 f"    prefect: {{api_url: '{prefect_server.api_url}'}}\n"
                 f"    work_pool: {{name: {name}-docker, type: docker}}\n")
        (repo / "slipway.yaml").write_text(text)
        commit_all(repo, "slipway init, on our registry and server")

        # 3. slipway doctor names what a release would fail on; the team fixes it.
        found = installed_slipway.run("doctor", cwd=repo, env=env)
        assert found.code == 1, found.stdout + found.stderr
        errors = [line for line in found.stdout.splitlines() if line.startswith("error: ")]
        assert len(errors) == 3, found.stdout
        assert any("pipelines/build/nightly.py" in e and "is ignored by Git" in e for e in errors), errors
        assert any("pipelines/ingest.py:ingest does not load" in e and "at import time" in e for e in errors), errors
        assert any("pip_packages: unknown job variable" in e for e in errors), errors
        apply_doctors_fixes_to_team(repo, name)
        fixed = installed_slipway.run("doctor", cwd=repo, env=env)
        assert fixed.code == 0 and fixed.stdout.splitlines()[-1].startswith("ok"), fixed.stdout + fixed.stderr

        # 5. The first release: pinned by digest, the registry's digest is Prefect's image.
        first = installed_slipway.run("release", "--env", "local", "--json", cwd=repo, env=env)
        assert first.code == 0, first.stderr
        pinned = first.json()["deploy"]["reference"]
        assert pinned.startswith(f"{registry.address}/{name}@sha256:")
        assert registry.digest(name, git(repo, "rev-parse", "HEAD")) == pinned.split("@")[1]
        assert {d["job_variables"]["image"] for d in prefect_state(prefect_server.api_url, names).values()} == {pinned}

        # 6. A code-only release: no docker build.
        (repo / "pipelines" / "jobs" / "nightly.py").write_text(
            (repo / "pipelines" / "jobs" / "nightly.py").read_text() + "# a code change\n")
        sha = commit_all(repo, "a code change")
        second = installed_slipway.run("release", "--env", "local", "--json", cwd=repo, env=env)
        assert second.code == 0, second.stderr
        assert "is up to date (no build)" in second.stderr
        moved = second.json()["deploy"]["reference"]
        assert moved != pinned

        # 8. The rollback: the first release again, from the registry.
        back = installed_slipway.run("rollback", "--env", "local", "--json", cwd=repo, env=env)
        assert back.code == 0, back.stderr
        assert back.json()["reference"] == pinned
        assert {d["job_variables"]["image"] for d in prefect_state(prefect_server.api_url, names).values()} == {pinned}

        # Another machine: a fresh clone, an engine without any image of this test (the runtime base too).
        content = next(t for s in docker_engine.api.images() for t in s.get("RepoTags") or []
                       if t.startswith(f"{name}:content-"))
        base = next(t for layer in docker_engine.api.history(content) for t in layer.get("Tags") or []
                    if t.startswith("slipway-base:"))
        assert registry.tags(f"{name}/slipway-cache") == [content.split(":")[1]]  # the release pushed it there
        remove_tags_containing(docker_engine, name)
        docker_engine.images.remove(base, force=True)
        clone = tmp_path / "clone"
        git(tmp_path, "clone", "-q", str(repo), str(clone))
        built = installed_slipway.run("image", "--env", "mirror", cwd=clone, env=env)
        assert built.code == 0, built.stderr
        assert "from the build cache" in built.stderr  # pulled, not rebuilt
        elsewhere = installed_slipway.run("push", "--env", "mirror", "--json", cwd=clone, env=env)
        assert elsewhere.code == 0, elsewhere.stderr
        assert elsewhere.json()["digest"] == moved.split("@")[1]  # the same commit, the same digest
        assert registry.digest(f"{name}-mirror", sha) == moved.split("@")[1]

        # 10. Upgrade. With this slipway: its template is the one init used, nothing to bring forward.
        same = installed_slipway.run("init", "--upgrade", cwd=repo, env=env)
        assert same.code == 0 and same.stdout.startswith("up to date"), same.stdout + same.stderr
        assert git(repo, "status", "--porcelain") == ""
        # The next slipway, whose template changed, installed as a team would (a wheel, its own venv).
        wheel, nxt = build_next_wheel(tmp_path / "next")
        newer = install(wheel, tmp_path / "next-venv")
        assert newer.run("--version", cwd=repo).stdout.strip() == f"slipway {nxt}"
        refused = newer.run("releases", "--env", "local", cwd=repo, env=env)
        assert refused.code == 1 and "needs slipway" in refused.stderr, refused.stderr  # slipway.yaml's range
        upgraded = newer.run("init", "--upgrade", "--json", cwd=repo, env=env)
        assert upgraded.code == 0, upgraded.stdout + upgraded.stderr
        assert set(upgraded.json()["changed"]) == {"slipway.yaml", ".slipway-answers.yml"}, upgraded.stdout
        after = yaml.safe_load((repo / "slipway.yaml").read_text())
        assert after["slipway"] == slipway_range(nxt)  # the range moved with the tool
        assert after["environments"]["local"]["registry"]["address"] == registry.address  # the team's edits,
        assert "mirror" in after["environments"]  # kept
        assert after["environments"]["local"]["job_variables"]["auto_remove"] is False  # the template's change
        commit_all(repo, f"slipway {nxt}")
        # The upgraded tool rolls back to a release the older one made.
        listed = newer.run("releases", "--env", "local", cwd=repo, env=env)
        assert listed.code == 0 and sha[:12] in listed.stdout, listed.stdout + listed.stderr
        forward = newer.run("rollback", "--env", "local", "--to", sha, "--json", cwd=repo, env=env)
        assert forward.code == 0, forward.stderr
        assert {d["job_variables"]["image"] for d in prefect_state(prefect_server.api_url, names).values()} == {moved}
    finally:
        remove_tags_containing(docker_engine, name)
        delete_deployments_of(prefect_server.api_url, f"{registry.address}/{name}")
        shutil.rmtree(tmp_path / "clone", ignore_errors=True)
