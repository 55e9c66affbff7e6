"""Cron validation: every refusal is a CronError with a reason, never a crash.

The rules follow what Temporal runs (its cron parser), not classic cron: when day-of-month
and day-of-week are both restricted, both must match.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules.cron import CronError, check, next_times

UTC = ZoneInfo("UTC")
MIN = timedelta(minutes=15)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 3 30 2 *", "never fires (no 30 February)"),
        ("0 0 31 4 *", "never fires (no 31 April)"),
        ("0 0 30,31 2 *", "never fires (no 30 or 31 February)"),
        ("0 0 31 2,4,6 *", "never fires (no 31 February, April or June)"),
        ("0 0 30 feb mon", "never fires (no 30 February)"),
    ],
)
def test_a_schedule_that_never_fires_is_refused_with_the_reason(
    expression: str, reason: str
) -> None:
    with pytest.raises(CronError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check(expression, UTC, MIN)


@pytest.mark.parametrize(
    ("expression", "mention"),
    [
        ("*/0 * * * *", "not a valid cron expression"),
        ("60 * * * *", "not a valid cron expression"),
        ("0 24 * * *", "not a valid cron expression"),
        ("0 0 0 * *", "not a valid cron expression"),
        ("0 0 * 13 *", "not a valid cron expression"),
        ("0 3 * * 8", "not a valid cron expression"),
        ("* * * * * *", "five fields"),
        ("0 3 * *", "five fields"),
        ("@reboot", "unknown macro"),
        ("@every 1h", "unknown macro"),
        ("", "cron expression"),
        (" 0 3 * * *", "surrounding spaces"),
        ("0 3 * * *\n", "surrounding spaces"),
        ("\uff10 3 * * *", "not a valid cron expression"),  # fullwidth zero
        ("é * * * *", "not a valid cron expression"),
        ("0 3 * * \x00", "not a valid cron expression"),
        ("0 " * 300 + "0", "five fields"),
        ("9" * 400 + " 3 * * *", "not a valid cron expression"),
        # forms croniter knows but Temporal refuses or reads differently
        ("0 3 ? * *", "not supported"),
        ("0 3 L * *", "not supported"),
        ("0 3 15W * *", "not supported"),
        ("0 3 * * 1#2", "not supported"),
        ("0 3 * * 5L", "not supported"),
        ("0 3 R * *", "not supported"),
        ("H 3 * * *", "not supported"),
        ("0 3 * mon *", "not supported"),
        ("0 3 * * jan", "not supported"),
        ("*/5 * * * *", "fires every 5 minutes"),
        ("0,5 3 * * *", "fires every 5 minutes"),
    ],
)
def test_bad_expressions_are_refused_with_a_reason(expression: str, mention: str) -> None:
    with pytest.raises(CronError, match=mention):
        check(expression, UTC, MIN)


@pytest.mark.parametrize(
    "expression",
    [
        "0 3 * * *",
        "30 */6 * * *",
        "0 0 29 2 *",  # every leap year: rare, but it fires
        "0 3 * jan *",
        "0 3 * * MON",
        "0 3 * * mon-fri",
        "0 3 * * 7",
        "0 0 13 * 5",
        "0\t3 * * *",
        "@daily",
        "@yearly",
        "15 1-5/2 * * *",
    ],
)
def test_valid_expressions_pass(expression: str) -> None:
    check(expression, UTC, MIN)


def test_day_of_month_and_day_of_week_both_must_match_as_in_temporal() -> None:
    """Temporal ANDs the two day fields: '0 0 13 * 5' is every Friday the 13th only."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = next_times("0 0 13 * 5", UTC, 3, after=start)
    assert [t.date().isoformat() for t in times] == ["2026-02-13", "2026-03-13", "2026-11-13"]
    assert all(t.weekday() == 4 and t.day == 13 for t in times)
