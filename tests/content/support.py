"""Paths and import setup shared by the content tests."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULES_SRC = REPO_ROOT / "modules" / "src"
RAW_DIR = REPO_ROOT / "data" / "raw"
DBT_PROJECT = REPO_ROOT / "dbt"

# The flows import `flows.*` (the app root is the working directory in the image) and `jaffle_common`
# (pip-installed in the image). Make both importable when the dev venv has not installed ./modules.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
if importlib.util.find_spec("jaffle_common") is None:
    sys.path.insert(0, str(MODULES_SRC))


def python_path_for_subprocesses() -> str:
    """PYTHONPATH that gives a child Python process the same imports as this one."""
    return os.pathsep.join([str(REPO_ROOT), str(MODULES_SRC), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
