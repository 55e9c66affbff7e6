"""The retention rule on hand-made histories: GFS periods, time zones, protection, failures.

The comparison with restic itself over 400 days is in tests/integration/test_retention.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.retention_rule import Backup, Rule, Verdict, decide

UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def daily(days: int, *, hour: int = 3, status: str = "succeeded") -> list[Backup]:
    """One backup a day at ``hour`` UTC, the newest yesterday; ids are the dates."""
    out = []
    for back in range(1, days + 1):
        at = (NOW - timedelta(days=back)).replace(hour=hour)
        out.append(Backup(f"{at:%Y-%m-%dT%H}", at, status))
    return out


def kept(verdicts: list[Verdict]) -> dict[str, tuple[str, ...]]:
    return {v.backup.id: v.reasons for v in verdicts if v.keep}


def test_newest_of_each_of_the_last_n_days_weeks_months() -> None:
    rule = Rule(keep_daily=3, keep_weekly=2, keep_monthly=2)
    verdicts = decide(daily(70), rule, NOW, UTC_ZONE)
    assert kept(verdicts) == {
        "2026-11-26T03": (
            "newest successful",
            "daily 2026-11-26",
            "weekly 2026-W48",
            "monthly 2026-11",
        ),
        "2026-11-25T03": ("daily 2026-11-25",),
        "2026-11-24T03": ("daily 2026-11-24",),
        "2026-11-22T03": ("weekly 2026-W47",),  # a Sunday: the newest of its ISO week
        "2026-10-31T03": ("monthly 2026-10",),
    }
    assert len(verdicts) == 70
    pruned = [v for v in verdicts if not v.keep]
    assert all(
        v.reasons == ("not the newest of a kept period or among the last kept",) for v in pruned
    )


def test_two_backups_a_day_keep_the_newest_and_last_n_counts_backups() -> None:
    morning, evening = daily(3, hour=6), daily(3, hour=18)
    rule = Rule(keep_last=2, keep_daily=2)
    assert kept(decide(morning + evening, rule, NOW, UTC_ZONE)) == {
        "2026-11-26T18": ("newest successful", "last 2", "daily 2026-11-26"),
        "2026-11-26T06": ("last 2",),
        "2026-11-25T18": ("daily 2026-11-25",),
    }


def test_periods_are_read_in_the_policy_time_zone() -> None:
    # 23:30 UTC is already the next day in Berlin (and, on 31 Dec, the next year)
    late = [
        Backup("a", datetime(2025, 12, 31, 23, 30, tzinfo=UTC), "succeeded"),
        Backup("b", datetime(2025, 12, 31, 12, 0, tzinfo=UTC), "succeeded"),
    ]
    berlin = decide(late, Rule(keep_daily=5, keep_yearly=5), NOW, ZoneInfo("Europe/Berlin"))
    assert kept(berlin)["a"] == ("newest successful", "daily 2026-01-01", "yearly 2026")
    assert kept(berlin)["b"] == ("daily 2025-12-31", "yearly 2025")
    utc = decide(late, Rule(keep_daily=5, keep_yearly=5), NOW, UTC_ZONE)
    assert kept(utc)["a"] == ("newest successful", "daily 2025-12-31", "yearly 2025")
    assert kept(utc)["b"] == ("oldest daily 2025-12-31", "oldest yearly 2025")


def test_a_bucket_with_count_left_also_keeps_the_oldest_backup() -> None:
    """restic 0.16+: a short history is not thinned more than the counts ask."""
    verdicts = decide(daily(40), Rule(keep_monthly=6), NOW, UTC_ZONE)
    assert kept(verdicts) == {
        "2026-11-26T03": ("newest successful", "monthly 2026-11"),
        "2026-10-31T03": ("monthly 2026-10",),
        "2026-10-18T03": ("oldest monthly 2026-10",),
    }


def test_retention_days_keeps_everything_recent_beside_the_counts() -> None:
    verdicts = decide(daily(20), Rule(retention_days=5, keep_weekly=1), NOW, UTC_ZONE)
    # now is the 27th at noon: the 22nd at 03:00 is more than 5 days ago
    assert sorted(kept(verdicts)) == [f"2026-11-{d}T03" for d in (23, 24, 25, 26)]
    assert kept(verdicts)["2026-11-23T03"] == ("within 5 days",)
    assert {v.reasons for v in verdicts if not v.keep} == {
        ("older than 5 days; not the newest of a kept period or among the last kept",)
    }


def test_protected_and_newest_successful_are_never_pruned() -> None:
    history = daily(10)
    old = history[-1]
    history[-1] = Backup(old.id, old.started_at, old.status, protected=True)
    verdicts = decide(history, Rule(retention_days=1), NOW + timedelta(days=30), UTC_ZONE)
    assert kept(verdicts) == {"2026-11-26T03": ("newest successful",), old.id: ("protected",)}


def test_protected_backups_still_fill_their_period() -> None:
    """As restic's --keep-tag: protection adds a reason, the GFS walk is unchanged."""
    history = daily(3)
    history[1] = Backup(history[1].id, history[1].started_at, "succeeded", protected=True)
    assert kept(decide(history, Rule(keep_daily=2), NOW, UTC_ZONE)) == {
        "2026-11-26T03": ("newest successful", "daily 2026-11-26"),
        "2026-11-25T03": ("protected", "daily 2026-11-25"),
    }


def test_unsuccessful_runs_stay_visible_only_within_the_kept_history() -> None:
    good = daily(10)
    failed = [
        Backup("failed-recent", NOW - timedelta(hours=30), "failed"),
        Backup("cancelled-old", NOW - timedelta(days=9, hours=12), "cancelled"),
    ]
    verdicts = {v.backup.id: v for v in decide(good + failed, Rule(keep_last=3), NOW, UTC_ZONE)}
    assert verdicts["failed-recent"].reasons == ("unsuccessful run within the kept history",)
    assert not verdicts["cancelled-old"].keep
    assert verdicts["cancelled-old"].reasons == (
        "cancelled run older than every successful backup kept",
    )
    # with no successful backup at all, failures are the only history: kept
    only_failures = decide(failed, Rule(keep_last=3), NOW, UTC_ZONE)
    assert all(v.keep for v in only_failures)


def test_a_rule_without_any_keep_is_recognised() -> None:
    assert Rule().keeps_nothing
    assert Rule(retention_days=None, keep_last=0).keeps_nothing
    assert not Rule(keep_yearly=1).keeps_nothing
    assert not Rule(retention_days=1).keeps_nothing
    assert decide([], Rule(keep_last=1), NOW, UTC_ZONE) == []
