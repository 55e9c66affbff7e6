"""When an offsite copy is overdue: the one rule, pure, for the API, UI, CLI and metrics.

A backup's copy is owed from the moment the backup completed. It gets the same slack a
scheduled run gets (``core/overdue.py``'s grace: a quarter of the backup schedule's interval,
between an hour and a day by default, ``CAIRN_OVERDUE_GRACE_*``), so a daily backup's copy
may take six hours (a target away that long is waited out without a word) and an hourly one
an hour. Past that, the application's newest backups have no offsite copy within the
allowance: overdue until a later copy lands (the lag, ``OffsiteLag``, is then 0 again).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.overdue import Grace, NextFire


def allowance(next_fire: NextFire, completed_at: datetime, grace: Grace) -> timedelta:
    """How long the copy of a backup completed at ``completed_at`` may take: the grace of the
    schedule's interval after that moment (the longest grace when it never fires again)."""
    first = next_fire(completed_at)
    following = next_fire(first) if first is not None else None
    if first is None or following is None:
        return grace.after(None)
    return grace.after(following.astimezone(UTC) - first.astimezone(UTC))


def copy_deadline(
    next_fire: NextFire, behind_since: datetime | None, grace: Grace
) -> datetime | None:
    """When the oldest backup still without a copy (completed at ``behind_since``) becomes
    overdue offsite; None when no backup waits for its copy."""
    if behind_since is None:
        return None
    return behind_since + allowance(next_fire, behind_since, grace)
