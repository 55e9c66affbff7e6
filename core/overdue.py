"""When a scheduled backup (or drill) is overdue: the one rule, pure, for API, CLI, UI and metrics.

A schedule promises a run at each fire time. The run at fire time ``F`` has until ``F + grace``
to succeed; an application with no success since the first fire time its last success (or its
policy's creation, when it never succeeded since) left behind is *overdue* from that deadline
on, and stays overdue until the next success. The grace is a fraction of the interval that
starts at ``F`` (the time until the next fire), clamped between a minimum and a maximum, so a
15-minute schedule gets the minimum (an hour by default), a daily one six hours and a monthly
one no more than a day.

This catches the quiet failures no run reports: a schedule paused or deleted in Temporal behind
cairn's back, a worker that no longer polls, runs that keep failing. A policy paused in cairn
(``enabled`` false) is not judged: pausing is a decision, shown as such.

The fire times are given as a function (``schedules/cron.py::next_times`` reads cron the way
Temporal does), so this module asks nothing of cron, the database or the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

# the fire time strictly after a moment, None when the calendar runs out
NextFire = Callable[[datetime], datetime | None]


@dataclass(frozen=True)
class Grace:
    """How long after its fire time a run may take to succeed before it is missed."""

    minimum: timedelta = timedelta(hours=1)
    fraction: float = 0.25
    maximum: timedelta = timedelta(hours=24)

    def after(self, interval: timedelta | None) -> timedelta:
        """The grace of a fire time followed by the next one ``interval`` later (None: never)."""
        if interval is None:
            return max(self.minimum, self.maximum)
        return max(self.minimum, min(interval * self.fraction, self.maximum))


@dataclass(frozen=True)
class Verdict:
    """Whether a success is overdue and since when.

    ``due_at`` is the fire time whose run is awaited (the first one after the last success);
    ``deadline`` is ``due_at`` plus its grace: overdue from then on (``overdue_since``).
    Both are None when the schedule never fires again.
    """

    overdue: bool
    due_at: datetime | None
    deadline: datetime | None

    @property
    def overdue_since(self) -> datetime | None:
        return self.deadline if self.overdue else None


def judge(
    next_fire: NextFire,
    since: datetime,
    last_success: datetime | None,
    now: datetime,
    grace: Grace,
) -> Verdict:
    """The verdict at ``now`` for a schedule judged from ``since`` (when the policy was made).

    A success before ``since`` does not move the clock back: the first run owed is the first
    fire time after both. A success exactly at a fire time counts for the fire after it (a run
    cannot finish at the instant it starts).
    """
    anchor = max(since, last_success) if last_success is not None else since
    due = _absolute(next_fire(anchor))
    if due is None:
        return Verdict(overdue=False, due_at=None, deadline=None)
    following = _absolute(next_fire(due))
    deadline = due + grace.after(following - due if following is not None else None)
    return Verdict(overdue=now >= deadline, due_at=due, deadline=deadline)


def _absolute(moment: datetime | None) -> datetime | None:
    """In UTC: Python subtracts and adds times of one zone on the wall clock, which would
    make the two 02:30 of a fall-back night the same moment and a day 23 or 25 hours long."""
    return moment.astimezone(UTC) if moment is not None else None


@dataclass(frozen=True)
class Notified:
    """The latest notice sent about one schedule of an application: an overdue one (or a
    recovered one) about the period overdue since ``overdue_since``."""

    overdue: bool
    overdue_since: datetime


def notice_due(
    verdict: Verdict | None, last_success: datetime | None, latest: Notified | None
) -> Literal["overdue", "recovered"] | None:
    """Which notice to send now, so each overdue period is told once and its end once.

    ``verdict`` None (a paused policy) sends nothing: neither a new overdue period nor a
    recovery, which only a success after the period began makes.
    """
    if verdict is None:
        return None
    if verdict.overdue:
        told = latest is not None and latest.overdue and latest.overdue_since == verdict.deadline
        return None if told else "overdue"
    if (
        latest is not None
        and latest.overdue
        and last_success is not None
        and last_success >= latest.overdue_since
    ):
        return "recovered"
    return None
