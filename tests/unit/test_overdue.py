"""The overdue rule (core/overdue.py) against real cron readings (schedules/cron.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.overdue import Grace, Notified, judge, notice_due
from services.overdue import fires_of

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
GRACE = Grace()  # defaults: 1 h minimum, 25 % of the interval, 24 h maximum


def at(day: int, hour: int, minute: int = 0, month: int = 1, zone: ZoneInfo = UTC_ZONE) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=zone)


def test_a_daily_backup_is_overdue_a_quarter_day_after_the_run_it_missed() -> None:
    daily = fires_of("0 3 * * *", UTC_ZONE)
    since, last = at(1, 12), at(5, 3, 5)
    on_time = judge(daily, since, last, at(6, 8, 59), GRACE)
    assert (on_time.overdue, on_time.due_at, on_time.deadline) == (False, at(6, 3), at(6, 9))
    assert on_time.overdue_since is None
    missed = judge(daily, since, last, at(6, 9), GRACE)  # the deadline itself is overdue
    assert missed.overdue and missed.overdue_since == at(6, 9)
    # days later it is still overdue since the first missed run, not the latest
    assert judge(daily, since, last, at(9, 12), GRACE).overdue_since == at(6, 9)
    # the next success clears it
    assert not judge(daily, since, at(9, 12, 30), at(9, 13), GRACE).overdue


def test_a_policy_that_never_succeeded_counts_from_its_creation() -> None:
    daily = fires_of("0 3 * * *", UTC_ZONE)
    created = at(5, 10)
    assert judge(daily, created, None, at(6, 8), GRACE).deadline == at(6, 9)
    assert judge(daily, created, None, at(6, 9), GRACE).overdue
    # a success from before the policy (a manual backup) does not move the clock back
    assert judge(daily, created, at(1, 3, 5), at(6, 9), GRACE).overdue_since == at(6, 9)


def test_a_frequent_schedule_gets_the_minimum_and_a_monthly_one_the_maximum() -> None:
    quarter_hourly = fires_of("*/15 * * * *", UTC_ZONE)
    verdict = judge(quarter_hourly, at(1, 0), at(1, 10, 1), at(1, 11), GRACE)
    assert (verdict.due_at, verdict.deadline) == (at(1, 10, 15), at(1, 11, 15))
    monthly = fires_of("0 3 1 * *", UTC_ZONE)
    verdict = judge(monthly, at(1, 0), at(1, 3, 30), at(1, 0, month=2), GRACE)
    assert verdict.deadline == at(2, 3, month=2)


def test_weekdays_the_weekend_is_no_miss_and_monday_gets_a_quarter_of_its_day() -> None:
    weekdays = fires_of("0 3 * * 1-5", UTC_ZONE)  # 2026-01-02 is a Friday
    friday = at(2, 3, 10)
    assert not judge(weekdays, at(1, 0), friday, at(4, 23), GRACE).overdue  # Sunday night
    monday = judge(weekdays, at(1, 0), friday, at(5, 9), GRACE)
    assert (monday.due_at, monday.overdue_since) == (at(5, 3), at(5, 9))


def test_a_day_missing_from_a_month_is_no_miss() -> None:
    """'0 3 31 * *' skips February: after 31 January the next run owed is 31 March."""
    thirty_first = fires_of("0 3 31 * *", UTC_ZONE)
    february = judge(thirty_first, at(1, 0), at(31, 3, 20), at(28, 23, month=2), GRACE)
    assert not february.overdue and february.due_at == at(31, 3, month=3)


def test_a_time_zone_with_daylight_saving_is_judged_in_absolute_time() -> None:
    """Berlin springs forward on 2026-03-29: 02:30 does not exist that day and the run comes
    at 03:00 local (01:00 UTC); on the fall-back day (25 October) 02:30 comes twice, an hour
    apart, so the first of the two gets only the minimum grace."""
    nightly = fires_of("30 2 * * *", BERLIN)
    spring = judge(nightly, at(1, 0), at(28, 2, 40, month=3, zone=BERLIN), at(29, 0, 0, 3), GRACE)
    assert spring.due_at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    autumn = judge(nightly, at(1, 0), at(24, 2, 40, month=10, zone=BERLIN), at(1, 0), GRACE)
    assert autumn.due_at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert autumn.deadline == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("interval", "grace"),
    [
        (timedelta(minutes=15), timedelta(hours=1)),
        (timedelta(hours=8), timedelta(hours=2)),
        (timedelta(days=30), timedelta(hours=24)),
        (None, timedelta(hours=24)),
    ],
)
def test_the_grace_is_a_clamped_fraction_of_the_interval(
    interval: timedelta | None, grace: timedelta
) -> None:
    assert GRACE.after(interval) == grace


def test_each_overdue_period_is_told_once_and_its_end_once() -> None:
    daily = fires_of("0 3 * * *", UTC_ZONE)
    since, last = at(1, 12), at(5, 3, 5)
    late = judge(daily, since, last, at(6, 10), GRACE)
    assert notice_due(late, last, None) == "overdue"
    told = Notified(overdue=True, overdue_since=at(6, 9))
    assert notice_due(late, last, told) is None  # still the same period
    # a paused policy tells nothing, neither a new period nor an end
    assert notice_due(None, last, told) is None
    # a success after the period began ends it, once
    cleared = judge(daily, since, at(6, 11), at(6, 12), GRACE)
    assert notice_due(cleared, at(6, 11), told) == "recovered"
    assert notice_due(cleared, at(6, 11), Notified(False, at(6, 9))) is None
    # the next missed run is a new period, told again
    again = judge(daily, since, at(6, 11), at(8, 10), GRACE)
    assert notice_due(again, at(6, 11), Notified(False, at(6, 9))) == "overdue"
    # never told and never overdue: nothing
    assert notice_due(cleared, at(6, 11), None) is None
