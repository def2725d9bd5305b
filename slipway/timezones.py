"""Prefect's schedule validators, without listing the time-zone database once per schedule.

Every validation of a schedule's `timezone` by Prefect (`default_timezone`: deployments.yaml's schedules when
loaded, and every schedule of every deployment read back from the API) calls `get_timezones()`, which walks
the zoneinfo directory on disk (`zoneinfo.available_timezones()`, 10-40 ms). A thousand deployments with a
schedule spent 20-50 s there per command. The database does not change while slipway runs: it is listed
once per process, and Prefect's validators are otherwise untouched (same names accepted, same errors).
"""
from __future__ import annotations

import functools

_installed = False


def list_once() -> None:
    """Make Prefect's validators reuse one listing of the time zones for the rest of the process."""
    global _installed
    if _installed:
        return
    from prefect._internal.schemas import validators
    from prefect.types import _datetime

    cached = functools.cache(_datetime.get_timezones)
    _datetime.get_timezones = cached
    validators.get_timezones = cached  # imported by name there: the one default_timezone calls
    _installed = True
