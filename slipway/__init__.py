"""slipway: one commit of a Prefect + dbt repo -> one image -> one digest -> Prefect deployments pinned to it.

The verbs follow the data one way: image (commit -> image), push (image -> digest), plan/deploy
(digest -> deployments), releases/rollback (older digest -> deployments).
"""

# The one place the version is kept: pyproject.toml reads it (setuptools' `attr:`), `slipway --version`
# prints it, and every release layer records it (image/release_layer.py).
__version__ = "0.5.0"
