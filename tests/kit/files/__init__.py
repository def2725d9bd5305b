"""Files the kit writes into the repositories it makes, kept as they are published."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON_GITIGNORE = HERE / "Python.gitignore"  # GitHub's gitignore template for Python (github/gitignore)
