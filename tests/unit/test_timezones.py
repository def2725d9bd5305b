"""Prefect's time-zone list is read once per process (slipway/timezones.py), and its validators still accept
and refuse the same names."""
from __future__ import annotations

import pytest

from slipway.timezones import list_once


def test_the_zone_database_is_listed_once_however_many_schedules_are_validated(monkeypatch):
    from prefect._internal.schemas import validators
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.types import _datetime

    list_once()
    validators.get_timezones.cache_clear()
    listings = []
    real = _datetime.available_timezones
    monkeypatch.setattr(_datetime, "available_timezones", lambda: listings.append(1) or real())
    for _ in range(50):
        assert validators.default_timezone("Europe/Paris") == "Europe/Paris"
        CronSchedule(cron="0 6 * * *", timezone="America/New_York")
    assert len(listings) == 1


def test_the_validators_still_refuse_an_unknown_zone():
    from prefect._internal.schemas.validators import default_timezone
    from prefect.client.schemas.schedules import CronSchedule

    list_once()
    with pytest.raises(ValueError, match="Nowhere/Atlantis"):
        default_timezone("Nowhere/Atlantis")
    with pytest.raises(ValueError, match="Invalid timezone"):
        CronSchedule(cron="0 6 * * *", timezone="Nowhere/Atlantis")
    assert CronSchedule(cron="0 6 * * *", timezone="UTC").timezone == "UTC"
