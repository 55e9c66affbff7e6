"""Cron expressions a policy may use: five fields or a macro, no faster than a minimum interval.

Temporal runs the schedule, so the checks here read an expression the way Temporal does:
only numbers, ranges, lists, steps and month/day names (no ``? L W # R H``, which croniter
knows but Temporal refuses or reads differently), and when day-of-month and day-of-week
are both restricted, both must match (``0 0 13 * 5`` is Friday the 13th, not "the 13th and
every Friday" as in classic cron).
"""

from __future__ import annotations

import calendar
import itertools
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterError, croniter

MACROS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
EXAMPLE = "'0 3 * * *' (every day at 03:00) or '30 */6 * * *' (every 6 hours at :30)"
SAMPLE = (
    500  # fire times examined for the minimum interval: covers irregular lists like 0,5 3 * * *
)
FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
NAMES = {
    3: tuple(m.lower() for m in calendar.month_abbr[1:]),
    4: ("sun", "mon", "tue", "wed", "thu", "fri", "sat"),
}
GRAMMAR = (
    "use numbers, ranges (1-5), lists (1,15), steps (*/6) and, for month and day of week,"
    " names (jan, mon)"
)
# One list item: '*', a number or a name, optionally a range end and a step.
_ITEM = re.compile(r"(\*|[0-9]+|[a-z]{3})(-([0-9]+|[a-z]{3}))?(/[0-9]+)?", re.ASCII | re.I)


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
    """Up to ``count`` fire times, as Temporal computes them (day fields ANDed).

    Fewer come back when the calendar runs out (an expression that never fires gives none).
    """
    start = (after or datetime.now(zone)).astimezone(zone)
    it = croniter(expression, start, day_or=False)
    times: list[datetime] = []
    for _ in range(count):
        try:
            times.append(it.get_next(datetime))
        except (CroniterError, OverflowError, ValueError):
            break  # no further date within croniter's search window or datetime's range
    return times


def check(expression: str, zone: ZoneInfo, min_interval: timedelta) -> None:
    text = expression.strip()
    if text != expression or not text:
        raise CronError(
            f"the schedule must be a cron expression without surrounding spaces, e.g. {EXAMPLE}"
        )
    if text.startswith("@"):
        if text not in MACROS:
            raise CronError(f"unknown macro {text!r}; use one of {', '.join(MACROS)} or {EXAMPLE}")
    else:
        fields = text.split()
        if len(fields) != 5:
            raise CronError(
                "a cron expression has five fields (minute hour day-of-month month day-of-week);"
                f" {_short(text)} has {len(fields)}. Example: {EXAMPLE}"
            )
        _check_items(text, fields)
    if not croniter.is_valid(text):
        raise CronError(f"{_short(text)} is not a valid cron expression. Example: {EXAMPLE}")
    times = next_times(text, zone, SAMPLE)
    if not times:
        raise CronError(f"this schedule never fires ({_why_never(text)}). Example: {EXAMPLE}")
    if len(times) < 2:
        return  # fires once more within the calendar's reach: rare, never too often
    gap = min(b - a for a, b in itertools.pairwise(times))
    if gap < min_interval:
        raise CronError(
            f"{text!r} fires every {_minutes(gap)}; backups may run at most every"
            f" {_minutes(min_interval)}. Example: {EXAMPLE}"
        )


def _check_items(text: str, fields: list[str]) -> None:
    """Refuses what croniter accepts but Temporal does not run the same way."""
    for index, field in enumerate(fields):
        for item in field.split(","):
            match = _ITEM.fullmatch(item)
            if match is None:
                if item.isascii() and item.isprintable() and item:
                    raise CronError(
                        f"{item!r} in the {FIELDS[index]} field is not supported; {GRAMMAR}."
                        f" Example: {EXAMPLE}"
                    )
                raise CronError(
                    f"{_short(text)} is not a valid cron expression. Example: {EXAMPLE}"
                )
            for name in (match.group(1), match.group(3)):
                if name and name.isalpha() and name.lower() not in NAMES.get(index, ()):
                    raise CronError(
                        f"{item!r} in the {FIELDS[index]} field is not supported; {GRAMMAR}."
                        f" Example: {EXAMPLE}"
                    )


def _why_never(text: str) -> str:
    """Names the days that do not exist, e.g. 'no 30 February'."""
    days, months = croniter(text).expanded[2:4]
    if "*" in days:
        return "no date matches it"
    wanted = list(range(1, 13)) if "*" in months else [int(m) for m in months]
    longest = {m: 29 if m == 2 else calendar.monthrange(2001, m)[1] for m in wanted}
    names = [calendar.month_name[m] for m in wanted]
    return (
        f"no {_either([str(d) for d in days])} {_either(names)}"
        if all(int(d) > longest[m] for d in days for m in wanted)
        else "no date matches it"
    )


def _either(words: list[str]) -> str:
    if len(words) == 1:
        return words[0]
    if len(words) == 2:
        return f"{words[0]} or {words[1]}"
    return f"{', '.join(words[:-1])} or {words[-1]}"


def _short(text: str) -> str:
    """The expression for a message, cut so a long input does not flood the answer."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
