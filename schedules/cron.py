"""Cron expressions a policy may use: five fields or a macro, no faster than a minimum interval."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from croniter import croniter

MACROS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
EXAMPLE = "'0 3 * * *' (every day at 03:00) or '30 */6 * * *' (every 6 hours at :30)"
SAMPLE = (
    500  # fire times examined for the minimum interval: covers irregular lists like 0,5 3 * * *
)


class CronError(ValueError):
    """The reason a schedule is refused, written for the person who typed it."""


def check_timezone(name: str) -> ZoneInfo:
    if name not in available_timezones():
        raise CronError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        )
    return ZoneInfo(name)


def next_times(
    expression: str, zone: ZoneInfo, count: int, after: datetime | None = None
) -> list[datetime]:
    start = (after or datetime.now(zone)).astimezone(zone)
    it = croniter(expression, start)
    return [it.get_next(datetime) for _ in range(count)]


def check(expression: str, zone: ZoneInfo, min_interval: timedelta) -> None:
    text = expression.strip()
    if text != expression or not text:
        raise CronError(
            f"the schedule must be a cron expression without surrounding spaces, e.g. {EXAMPLE}"
        )
    if text.startswith("@"):
        if text not in MACROS:
            raise CronError(f"unknown macro {text!r}; use one of {', '.join(MACROS)} or {EXAMPLE}")
    elif len(text.split()) != 5:
        raise CronError(
            f"a cron expression has five fields (minute hour day-of-month month day-of-week);"
            f" {text!r} has {len(text.split())}. Example: {EXAMPLE}"
        )
    if not croniter.is_valid(text):
        raise CronError(f"{text!r} is not a valid cron expression. Example: {EXAMPLE}")
    times = next_times(text, zone, SAMPLE)
    gap = min(b - a for a, b in itertools.pairwise(times))
    if gap < min_interval:
        raise CronError(
            f"{text!r} fires every {_minutes(gap)}; backups may run at most every"
            f" {_minutes(min_interval)}. Example: {EXAMPLE}"
        )


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
