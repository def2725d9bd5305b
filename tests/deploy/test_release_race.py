"""Two deploys to one environment, a killed or interrupted deploy, a shallow clone: against a real Prefect
server (the kit's, with its services: the lease repossessor runs, the scheduler does not) and a real registry,
each deploy a real `build.py deploy` process.

The lineage: release A is live; B is a child of A and C a child of B, each checked out in its own worktree of
one repository (so every checkout knows the others' commits and the guard can order them). Their images are
the `project` fixture's cheap ones (slipway's release layer on the session's flows image).

Prefect is reached through the kit's proxy (tests/kit/proxy.py), which forwards everything unchanged. In the
ordered races the second deploy starts one second after the first has taken the lease, and the proxy holds
the first one's deployment writes until the second has been refused the lease once, so that "the second
one waits" is certain rather than likely on a busy machine. Every write is held, not only the first: with
several writers (PostgreSQL) the others would land meanwhile, and the second deploy's downgrade guard would
refuse it before it ever asked for the lease.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from slipway.deploy.lease import LEASE_SECONDS, RENEW_SECONDS
from tests.deploy.conftest import make_project, prefect_state, remove_tags_containing
from tests.kit.proxy import FaultProxy, Rule
from tests.kit.repo import REPO_ROOT, git

DEPLOYMENT_WRITE = r"/api/deployments/([0-9a-f-]{36})?"  # POST /api/deployments/: create; PATCH .../<id>: update
TAKE_LEASE = "/api/v2/concurrency_limits/increment-with-lease"
GIVE_BACK_LEASE = "/api/v2/concurrency_limits/decrement-with-lease"


@dataclass
class Run:
    proc: subprocess.Popen
    started: float

    def finish(self, timeout: float = 240) -> Outcome:
        out, err = self.proc.communicate(timeout=timeout)
        return Outcome(self.proc.returncode, out, err, time.monotonic() - self.started)


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]


class Lineage:
    def __init__(self, project, proxy: FaultProxy, shas: dict[str, str], roots: dict[str, Path]):
        self.project, self.proxy, self.shas, self.roots = project, proxy, shas, roots

    def start(self, release: str, *extra: str, env: dict | None = None, sigint_ignored: bool = False) -> Run:
        """`build.py deploy` of one release, as its own process (the code under test, this checkout's);
        `sigint_ignored`: started as a background job of a non-interactive shell starts it, SIGINT ignored."""
        args = [sys.executable, str(REPO_ROOT / "build.py"), "deploy", "--env", "local",
                "--root", str(self.roots[release]), *extra]
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {})}, preexec_fn=ignore)
        return Run(proc, time.monotonic())

    def deploy(self, release: str, *extra: str) -> Outcome:
        return self.start(release, *extra).finish()

    def names(self) -> list[str]:
        name = self.project.name
        return [f"deploy-test-hello/{name}-hourly", f"deploy-test-numbers/{name}-manual",
                f"deploy-test-hello/{name}-rrule"]

    def live_each(self) -> list[tuple[str, str]]:
        """(version, image) of each deployment."""
        state = prefect_state(self.project.server.api_url, self.names())
        return [(d["version"], d["job_variables"]["image"]) for d in state.values()]

    def live(self) -> set[tuple[str, str]]:
        """(version, image) of every deployment: one pair when the environment runs one release."""
        return set(self.live_each())

    def reset_to_a(self) -> None:
        outcome = self.deploy("a", "--rollback")  # the first time, A's first release
        assert outcome.code == 0, outcome.stderr
        assert {v for v, _ in self.live()} == {self.shas["a"]}

    def wait_until_the_lease_is_taken(self) -> None:
        wait_for(lambda: ("POST", TAKE_LEASE, 200) in self.proxy.log, 120)

    def hold_writes_until_the_lease_is_refused(self) -> None:
        """The next deployment writes (as many as the release has) wait, in the proxy, until another process
        has been refused the lease."""
        def wait_for_a_refusal():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if any(path == TAKE_LEASE and status == 423 for _, path, status in list(self.proxy.log)):
                    return
                time.sleep(0.1)

        # One rule per write: a rule picks out one request (tests/kit/proxy.py).
        self.proxy.rules = [Rule("POST|PATCH", DEPLOYMENT_WRITE, before=wait_for_a_refusal)
                            for _ in self.names()]
        self.proxy.log.clear()


@pytest.fixture(scope="module")
def lineage_repo(tmp_path_factory, prefect_server, registry, flows_image, docker_engine):
    """The three releases, built once per server (the tests put A back live before they start)."""
    tmp = tmp_path_factory.mktemp("lineage")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_CONFIG", str(tmp / "docker-config"))
        proxy = FaultProxy(prefect_server.api_url.removesuffix("/api"))
        project = make_project(tmp / "repo", prefect_server, registry, flows_image, docker_engine,
                               api_url=f"{proxy.url}/api")
        shas, roots = {"a": project.sha()}, {}
        for release in ("b", "c"):
            project.write("CHANGES", f"release {release}\n")
            shas[release] = project.commit(f"release {release}")
            project.tag_head_image()
            git(project.root, "branch", f"release-{release}")
        for release in ("a", "b", "c"):
            roots[release] = tmp / f"worktree-{release}"
            git(project.root, "worktree", "add", "-q", "--detach", str(roots[release]), shas[release])
        yield Lineage(project, proxy, shas, roots)
        proxy.close()
        remove_tags_containing(docker_engine, project.name)


@pytest.fixture
def lineage(lineage_repo):
    """A live, B and C ready to deploy; Prefect reached through a proxy without rules."""
    lineage_repo.proxy.rules = []
    lineage_repo.roots.pop("shallow", None)
    lineage_repo.reset_to_a()
    return lineage_repo


def assert_runs_c(lineage: Lineage) -> None:
    live = lineage.live()
    assert len(live) == 1, f"the environment runs a mix: {live}"
    assert next(iter(live))[0] == lineage.shas["c"]


def assert_refused_in_one_line(outcome: Outcome, *fragments: str) -> None:
    assert outcome.code == 1, outcome.stderr
    assert len(outcome.errors) == 1 and "Traceback" not in outcome.stderr, outcome.stderr
    for fragment in fragments:
        assert fragment in outcome.errors[0], outcome.errors[0]


def one_then_the_other(lineage, first: str, second: str) -> tuple[Outcome, Outcome]:
    """`first` deploys and holds the lease at its writes; `second` starts one second later and waits."""
    lineage.hold_writes_until_the_lease_is_refused()
    started = lineage.start(first)
    lineage.wait_until_the_lease_is_taken()
    time.sleep(1)
    then = lineage.start(second)
    return started.finish(), then.finish()


def test_two_deploys_end_on_the_newer_release_in_any_order(lineage):
    c_sha = lineage.shas["c"][:12]

    # C, then B one second later: B waits for C's lease, then the guard refuses it.
    c_done, b_done = one_then_the_other(lineage, "c", "b")
    assert c_done.code == 0, c_done.stderr
    assert "waiting for another release of 'local' to finish (" in b_done.stderr, b_done.stderr
    assert_refused_in_one_line(b_done, f"'local' runs {c_sha}, a newer commit than HEAD", "would downgrade it")
    assert_runs_c(lineage)
    # plan says what deploy would do: the same refusal, nothing written.
    planned = subprocess.run([sys.executable, str(REPO_ROOT / "build.py"), "plan", "--env", "local", "--root",
                              str(lineage.roots["b"])], capture_output=True, text=True)
    assert_refused_in_one_line(Outcome(planned.returncode, planned.stdout, planned.stderr, 0),
                               "would downgrade it", "--rollback")
    assert_runs_c(lineage)

    # B, then C one second later: C waits for B's lease, then releases over it. Both succeed.
    lineage.reset_to_a()
    b_done, c_done = one_then_the_other(lineage, "b", "c")
    assert b_done.code == 0 and c_done.code == 0, (b_done.stderr, c_done.stderr)
    assert "waiting for another release of 'local' to finish (" in c_done.stderr
    assert_runs_c(lineage)

    # Both at once, twice: whichever gets the lease first, the environment ends on C, all of it.
    for _ in range(2):
        lineage.reset_to_a()
        lineage.proxy.rules = []
        b, c = lineage.start("b"), lineage.start("c")
        b_done, c_done = b.finish(), c.finish()
        assert c_done.code == 0, c_done.stderr
        if b_done.code != 0:
            assert_refused_in_one_line(b_done, f"'local' runs {c_sha}", "would downgrade it")
        assert_runs_c(lineage)


def test_a_shallow_clone_is_refused_until_it_has_the_history(lineage, tmp_path):
    assert lineage.deploy("c").code == 0
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", "--branch", "release-b", f"file://{lineage.project.root}",
        str(clone))
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"
    lineage.roots["shallow"] = clone
    before = prefect_state(lineage.project.server.api_url, lineage.names())
    for verb in ("deploy", "plan"):
        proc = subprocess.run([sys.executable, str(REPO_ROOT / "build.py"), verb, "--env", "local", "--root",
                               str(clone)], capture_output=True, text=True)
        assert_refused_in_one_line(Outcome(proc.returncode, proc.stdout, proc.stderr, 0),
                                   f"'local' runs {lineage.shas['c'][:12]}, a commit this clone does not know",
                                   "git fetch --unshallow", "--rollback")
    assert prefect_state(lineage.project.server.api_url, lineage.names()) == before

    git(clone, "fetch", "-q", "--unshallow", "origin", "+refs/heads/*:refs/remotes/origin/*")
    refused = lineage.deploy("shallow")  # with the history, the guard knows: B is older than C
    assert_refused_in_one_line(refused, "a newer commit than HEAD", "would downgrade it")
    assert prefect_state(lineage.project.server.api_url, lineage.names()) == before


def test_a_killed_deploy_blocks_the_next_one_for_about_a_lease(lineage):
    gate = threading.Event()
    lineage.proxy.rules = [Rule("POST|PATCH", DEPLOYMENT_WRITE, before=lambda: gate.wait(300), status=503)]
    killed = lineage.start("b")
    wait_for(lambda: lineage.proxy.rules[0].fired, 120)  # B holds the lease and is writing
    killed.proc.send_signal(signal.SIGKILL)
    killed.finish()
    gate.set()
    lineage.proxy.rules = []
    after = time.monotonic()
    nxt = lineage.deploy("c")
    assert nxt.code == 0, nxt.stderr
    assert "waiting for another release of 'local' to finish (" in nxt.stderr
    # The lease runs out LEASE_SECONDS after its last renewal and the repossessor frees it within its loop.
    assert time.monotonic() - after < LEASE_SECONDS + 2 * RENEW_SECONDS, nxt.stderr
    assert_runs_c(lineage)


@pytest.mark.parametrize(("signum", "sigint_ignored"), [(signal.SIGTERM, False), (signal.SIGINT, False),
                                                        (signal.SIGTERM, True)],
                         ids=["SIGTERM", "SIGINT", "SIGTERM-SIGINT-ignored"])
def test_an_interrupted_deploy_gives_the_lease_back_and_says_where_it_stopped(lineage, signum, sigint_ignored):
    """SIGTERM or Ctrl-C while deployments are written; also SIGTERM to a deploy whose parent ignores SIGINT
    (`make release &` in a CI script, nohup), where Python installs no interrupt handler of its own."""
    gate = threading.Event()
    lineage.proxy.rules = [Rule("POST|PATCH", DEPLOYMENT_WRITE, nth=2, before=lambda: gate.wait(300), status=503)]
    run = lineage.start("b", sigint_ignored=sigint_ignored)
    wait_for(lambda: lineage.proxy.rules[0].fired, 120)  # one deployment written, the second one in flight
    run.proc.send_signal(signum)
    stopped = run.finish(timeout=30)
    gate.set()
    assert stopped.code == 130, stopped.stderr
    assert stopped.errors == ["error: interrupted; run the same command again to finish what it started"]
    said = re.search(r"interrupted after writing (\d) of 3 changed deployment\(s\)"
                     r"(?:; cut off while being written, may have landed: ([^;]+))?; not written: ", stopped.stderr)
    assert said, stopped.stderr
    # And it is true. One writer (SQLite): the first write landed or, refused once, was being retried: 0 or 1
    # written, the held one cut off. Several (PostgreSQL): the other two went out beside the held one; each
    # landed or was cut off. The held write never reached the server.
    written = int(said.group(1))
    cut_off = said.group(2).split(", ") if said.group(2) else []
    assert written + len(cut_off) <= 3 and written <= {"sqlite": 1, "postgres": 2}[lineage.project.server.database]
    versions = [version for version, _ in lineage.live_each()]
    assert written <= versions.count(lineage.shas["b"]) <= written + len(cut_off) - 1, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert ("POST", GIVE_BACK_LEASE, 204) in lineage.proxy.log  # given back on the way out
    lineage.proxy.rules = []
    nxt = lineage.deploy("c")  # at once: the lease was given back
    assert nxt.code == 0, nxt.stderr
    assert "waiting for another release" not in nxt.stderr
    assert_runs_c(lineage)


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
