"""The offsite copy allowance (core/offsite_overdue.py) against real cron readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.offsite_overdue import allowance, copy_deadline
from core.overdue import Grace
from services.overdue import fires_of

GRACE = Grace()  # defaults: 1 h minimum, 25 % of the interval, 24 h maximum


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def test_a_copy_gets_the_grace_of_the_backup_schedule_it_follows() -> None:
    daily = fires_of("0 3 * * *", ZoneInfo("UTC"))
    assert allowance(daily, at(5, 3, 10), GRACE) == timedelta(hours=6)
    assert copy_deadline(daily, at(5, 3, 10), GRACE) == at(5, 9, 10)
    every_15 = fires_of("*/15 * * * *", ZoneInfo("UTC"))
    assert allowance(every_15, at(5, 3, 10), GRACE) == timedelta(hours=1)  # the minimum
    monthly = fires_of("0 3 1 * *", ZoneInfo("UTC"))
    assert allowance(monthly, at(5, 3, 10), GRACE) == timedelta(hours=24)  # the maximum


def test_nothing_waiting_has_no_deadline_and_a_schedule_that_ends_gets_the_longest() -> None:
    daily = fires_of("0 3 * * *", ZoneInfo("UTC"))
    assert copy_deadline(daily, None, GRACE) is None
    assert allowance(lambda _after: None, at(5, 3), GRACE) == timedelta(hours=24)
