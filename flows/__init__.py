"""The jaffle-shop flows. The app root (the repo root locally, /opt/prefect in the image) is the working
directory, so `flows.<module>` imports work both for Prefect's entrypoint loader and for `python -m`."""
