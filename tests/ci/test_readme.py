"""The README's commands are real: every `make <target>` it names exists (`make -n` accepts it), every
`build.py <verb>` it names exists with the options it shows (`--help` of that verb lists them), every
section it points to from an error message exists, and the files it names exist."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.kit.repo import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
MAKE = re.compile(r"`make ((?:[a-z][a-z-]*\s?)+)(?:[A-Z_]+=[^`\s]*\s?)*[^`]*`")
BUILD = re.compile(r"build\.py ([a-z]+)((?: --?[a-z][a-z-]*(?:[ =][^`\s-][^`\s]*)?)*)")


def make_targets() -> set[str]:
    targets = set()
    for match in MAKE.finditer(README):
        targets.update(t for t in match.group(1).split() if t)
    return targets


def build_calls() -> dict[str, set[str]]:
    calls: dict[str, set[str]] = {}
    for verb, options in BUILD.findall(README):
        calls.setdefault(verb, set()).update(re.findall(r"(--?[a-z][a-z-]*)", options))
    return calls


def test_the_readme_names_commands():
    assert {"image", "deploy", "test", "demo", "rollback"} <= make_targets()
    assert {"deploy", "rollback"} <= set(build_calls())


@pytest.mark.parametrize("target", sorted(make_targets()))
def test_every_make_target_in_the_readme_exists(target):
    proc = subprocess.run(["make", "-n", target], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "No rule to make target" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("verb", sorted(build_calls()))
def test_every_build_py_verb_and_option_in_the_readme_exists(verb):
    proc = subprocess.run([sys.executable, "build.py", verb, "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    for option in build_calls()[verb]:
        assert option in proc.stdout, f"`build.py {verb} {option}` is in the README but not in its --help"


def test_sections_named_in_error_messages_exist():
    headings = {line.lstrip("#").strip() for line in README.splitlines() if line.startswith("#")}
    sources = "\n".join(p.read_text() for p in (REPO_ROOT / "slipway").rglob("*.py"))
    for section in set(re.findall(r"README\.md '([^']+)'", sources)):
        assert any(h == section or h.startswith(section + " ") or h.startswith(section + " (")
                   for h in headings), f"README.md has no section '{section}'"


def test_files_the_readme_names_exist():
    for path in set(re.findall(r"`((?:slipway|tests|bench|scripts|deploy|images|requirements|flows|dbt|modules|"
                               r"\.github)/[A-Za-z0-9_./-]+)`", README)):
        assert (REPO_ROOT / path.rstrip("/")).exists() or path in init_writes(), \
            f"README.md names {path}, which does not exist (nor does slipway init write it)"


def init_writes() -> set[str]:
    """The files `slipway init` writes into a team's repository (its template's, without the .jinja)."""
    from slipway.init.scaffold import TEMPLATES, latest_version

    template = TEMPLATES / latest_version()
    return {str(p.relative_to(template)).removesuffix(".jinja") for p in template.rglob("*") if p.is_file()}
