"""Which backups a retention rule keeps, and why: the one decision every prune path uses.

The GFS counts follow restic's ``forget --keep-last/-daily/-weekly/-monthly/-yearly``
(``ApplyPolicy`` in restic's snapshot_policy.go, the 0.16+ behaviour): backups are walked
newest first; a bucket with count left keeps a backup whose day (ISO week, month, year)
differs from the last one it kept, so it keeps the newest backup of each of its last N
periods; a bucket that still has count left when the walk reaches the oldest backup keeps
that one too, so a short history is not thinned more than the counts ask. Periods are
read in the policy's time zone. The rules are a union: a backup is kept when any of them
keeps it.

On top of restic's rules, cairn keeps:

- every backup started within ``retention_days`` of now (the seed's rule);
- every protected backup (a protected backup still fills its period, as restic's
  ``--keep-tag`` does);
- the newest successful backup, always;
- an unsuccessful run (it holds no data) while it is within ``retention_days`` or newer
  than the oldest successful backup kept (or while none is kept), so recent failures stay
  visible in the history.

Pure: no clock, no database, no restic; the caller passes the backups, the rule, ``now``
and the zone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core.states import RunStatus

# Upper bounds of each field: beyond them a rule is a typo, not a wish.
LIMITS: dict[str, int] = {
    "retention_days": 3650,
    "keep_last": 1000,
    "keep_daily": 3660,
    "keep_weekly": 530,
    "keep_monthly": 1200,
    "keep_yearly": 100,
}
COUNTS = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
FIELDS = ("retention_days", *COUNTS)


@dataclass(frozen=True)
class Rule:
    retention_days: int | None = None
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0

    @property
    def keeps_nothing(self) -> bool:
        """Without any rule every backup but the newest successful would go: refused."""
        return not self.retention_days and not any(getattr(self, c) for c in COUNTS)

    def describe(self) -> dict[str, int | None]:
        return {"retention_days": self.retention_days, **{c: getattr(self, c) for c in COUNTS}}


@dataclass(frozen=True)
class Backup:
    id: str
    started_at: datetime  # aware
    status: RunStatus  # succeeded, failed or cancelled
    protected: bool = False


@dataclass(frozen=True)
class Verdict:
    backup: Backup
    keep: bool
    reasons: tuple[str, ...]


def _label_last(rule: Rule) -> Callable[[datetime, int], tuple[object, str]]:
    return lambda _t, nr: (nr, f"last {rule.keep_last}")


def _daily(t: datetime, _nr: int) -> tuple[object, str]:
    return (t.year, t.month, t.day), f"daily {t:%Y-%m-%d}"


def _weekly(t: datetime, _nr: int) -> tuple[object, str]:
    year, week, _ = t.isocalendar()  # the same ISO week as Go's time.ISOWeek
    return (year, week), f"weekly {year}-W{week:02d}"


def _monthly(t: datetime, _nr: int) -> tuple[object, str]:
    return (t.year, t.month), f"monthly {t:%Y-%m}"


def _yearly(t: datetime, _nr: int) -> tuple[object, str]:
    return t.year, f"yearly {t:%Y}"


def _gfs(good: list[Backup], rule: Rule, zone: ZoneInfo) -> list[list[str]]:
    """restic's bucket walk over the successful backups, newest first; reasons per backup."""
    buckets: list[tuple[Callable[[datetime, int], tuple[object, str]], int]] = [
        (_label_last(rule), rule.keep_last),
        (_daily, rule.keep_daily),
        (_weekly, rule.keep_weekly),
        (_monthly, rule.keep_monthly),
        (_yearly, rule.keep_yearly),
    ]
    counts = [count for _, count in buckets]
    last: list[object] = [None] * len(buckets)
    reasons: list[list[str]] = []
    for nr, backup in enumerate(good):
        local = backup.started_at.astimezone(zone)
        mine: list[str] = []
        for i, (bucket, _) in enumerate(buckets):
            if counts[i] <= 0:
                continue
            value, label = bucket(local, nr)
            oldest = nr == len(good) - 1
            if value != last[i] or oldest:
                mine.append(f"oldest {label}" if value == last[i] else label)
                last[i] = value
                counts[i] -= 1
        reasons.append(mine)
    return reasons


def decide(backups: Iterable[Backup], rule: Rule, now: datetime, zone: ZoneInfo) -> list[Verdict]:
    """Keep or prune for every backup, newest first, each with the reasons that decided it."""
    ordered = sorted(backups, key=lambda b: (b.started_at, b.id), reverse=True)
    good = [b for b in ordered if b.status == RunStatus.SUCCEEDED]
    by_gfs = dict(zip((b.id for b in good), _gfs(good, rule, zone), strict=True))
    cutoff = now - timedelta(days=rule.retention_days) if rule.retention_days else None
    newest = good[0].id if good else None
    kept: dict[str, list[str]] = {}
    for backup in ordered:
        reasons: list[str] = []
        if backup.id == newest:
            reasons.append("newest successful")
        if backup.protected:
            reasons.append("protected")
        if cutoff is not None and backup.started_at >= cutoff:
            reasons.append(f"within {rule.retention_days} days")
        reasons.extend(by_gfs.get(backup.id, []))
        kept[backup.id] = reasons
    oldest_kept = min(
        (b.started_at for b in good if kept[b.id]), default=None
    )  # unsuccessful runs newer than this stay visible
    verdicts: list[Verdict] = []
    for backup in ordered:
        reasons = kept[backup.id]
        recent = oldest_kept is None or backup.started_at > oldest_kept
        if backup.status != RunStatus.SUCCEEDED and not reasons and recent:
            reasons = ["unsuccessful run within the kept history"]
        if reasons:
            verdicts.append(Verdict(backup, True, tuple(reasons)))
        else:
            verdicts.append(Verdict(backup, False, (_why_pruned(backup, rule),)))
    return verdicts


def _why_pruned(backup: Backup, rule: Rule) -> str:
    parts = []
    if rule.retention_days:
        parts.append(f"older than {rule.retention_days} days")
    if backup.status != RunStatus.SUCCEEDED:
        parts.append(f"{backup.status} run older than every successful backup kept")
    elif any(getattr(rule, c) for c in COUNTS):
        parts.append("not the newest of a kept period or among the last kept")
    return "; ".join(parts)
