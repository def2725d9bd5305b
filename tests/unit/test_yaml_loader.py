"""slipway.yaml and deployments.yaml are parsed with libyaml's safe loader when PyYAML has it: the same data
as PyYAML's pure-Python safe loader, the same refusal of arbitrary Python objects, the same line in errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slipway.errors import SlipwayError
from slipway.project.config import YAML_LOADER, load_yaml
from slipway.project.declarations import parse_declarations

ROOT = Path(__file__).resolve().parents[2]


def test_libyaml_is_used_when_pyyaml_has_it():
    assert YAML_LOADER is getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    assert YAML_LOADER.__name__ == "CSafeLoader"  # the venv's PyYAML wheel has it


@pytest.mark.parametrize("name", ["slipway.yaml", "deployments.yaml"])
def test_the_repositorys_files_parse_as_with_the_pure_python_loader(name):
    text = (ROOT / name).read_text()
    assert load_yaml(ROOT / name) == yaml.safe_load(text)


def test_a_python_object_tag_is_refused():
    with pytest.raises(SlipwayError, match="not valid YAML"):
        parse_declarations("deployments: !!python/object/apply:os.system ['true']\n")


def test_a_syntax_error_names_its_line(tmp_path):
    path = tmp_path / "slipway.yaml"
    path.write_text("image: x\nenvironments:\n  local: [unclosed\n")
    with pytest.raises(SlipwayError, match=r"slipway.yaml: line \d+ is not valid YAML"):
        load_yaml(path)
