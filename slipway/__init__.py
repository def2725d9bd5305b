"""slipway: one commit of a Prefect + dbt repo -> one image -> one digest -> Prefect deployments pinned to it.

The verbs follow the data one way: image (commit -> image), push (image -> digest), plan/deploy
(digest -> deployments), releases/rollback (older digest -> deployments).
"""
