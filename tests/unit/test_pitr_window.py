"""The window and pruning to it, over archives described by tags as the archiver writes them.

Pure: the real archive (real WAL, restic, recoveries) is in tests/integration/test_pitr_archive.py;
here the edge cases a real run cannot be steered into: a shipment holding the base backup's
own segment shipped before its ``from``, archiving off long ago, no base backup yet.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.pg_archive.window import (
    Archive,
    OutsideWindow,
    plan,
    read_archive,
    segment_name,
    stamp,
    unneeded,
    window,
)
from adapters.restic import Snapshot
from repository import names

T0 = datetime(2026, 12, 1, tzinfo=UTC)
APP = "app"


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _seg(number: int) -> str:
    return segment_name(1, number * 16 * 1024 * 1024)


def _snapshot(snapshot_id: str, part: str, values: dict[str, str]) -> Snapshot:
    tags = names.archive_tags(APP, part, values)
    return Snapshot(id=snapshot_id, short_id=snapshot_id, time="", paths=[], tags=tags, parent=None)


def base(snapshot_id: str, first: int, minutes: int) -> Snapshot:
    values = {"wal-first": _seg(first), "from": stamp(_at(minutes)), "major": "15"}
    return _snapshot(snapshot_id, names.BASE_BACKUP, values)


def wal(snapshot_id: str, first: int, last: int, minutes: int, partial: bool = True) -> Snapshot:
    values = {
        "wal-first": _seg(first),
        "wal-last": _seg(last),
        "wal-partial": "yes" if partial else "no",
        "until": stamp(_at(minutes)),
    }
    return _snapshot(snapshot_id, names.WAL, values)


def archive_of(*snapshots: Snapshot) -> Archive:
    return read_archive(snapshots)


# Two base backups a day apart (minutes 0 and 1440), segments 1..9 shipped in between.
DAYS = [
    wal("w0", 0, 0, -5, partial=False),  # before the first base backup: segment 0
    base("b1", 1, 0),
    wal("w1", 1, 3, 600),
    wal("w2", 3, 5, 1430),
    base("b2", 5, 1440),
    wal("w3", 5, 7, 2000),
    wal("w4", 7, 9, 2880),
]


def test_pruning_keeps_the_newest_base_backup_at_or_before_the_window_start() -> None:
    archive = archive_of(*DAYS)
    assert window(archive).earliest == _at(0)
    # the window starts between the base backups: b1 is the newest at or before it
    assert unneeded(archive, _at(700), archiving=True) == ["w0"]
    # the window starts after b2: b1 and every shipment ending before b2's first segment go
    doomed = unneeded(archive, _at(1500), archiving=True)
    assert sorted(doomed) == ["b1", "w0", "w1"]
    kept = archive_of(*(s for s in DAYS if s.id not in doomed))
    shown = window(kept)
    assert (shown.earliest, shown.latest, shown.gaps) == (_at(1440), _at(2880), [])
    assert plan(kept, _at(1500)).base.snapshot_id == "b2"
    # every moment from the window's start on that was restorable stays restorable
    for minute in range(1500, 2881, 60):
        assert window(kept).contains(_at(minute)) == window(archive).contains(_at(minute))


def test_a_window_starting_before_the_first_base_backup_keeps_all_but_older_wal() -> None:
    assert unneeded(archive_of(*DAYS), _at(-100), archiving=True) == ["w0"]


def test_archiving_on_keeps_the_last_restorable_moments_however_old() -> None:
    doomed = unneeded(archive_of(*DAYS), _at(10_000), archiving=True)
    assert sorted(doomed) == ["b1", "w0", "w1"]


def test_archiving_off_and_the_window_past_lets_everything_go() -> None:
    doomed = unneeded(archive_of(*DAYS), _at(10_000), archiving=False)
    assert sorted(doomed) == sorted(s.id for s in DAYS)
    # still inside the window: pruned as when on
    assert sorted(unneeded(archive_of(*DAYS), _at(1500), archiving=False)) == ["b1", "w0", "w1"]


def test_no_base_backup_yet_keeps_the_wal_streamed_for_it() -> None:
    only_wal = archive_of(wal("w0", 0, 1, 5), wal("w1", 1, 2, 10))
    assert unneeded(only_wal, _at(100), archiving=True) == []


def test_the_segment_a_base_backup_ends_in_may_be_shipped_before_its_from() -> None:
    """The backup's own WAL switch completes segment 5 and a shipment takes it with an
    ``until`` read just before the backup's ``from``: the recovery from b2 must read it."""
    archive = archive_of(
        base("b1", 1, 0),
        wal("w1", 1, 4, 1430, partial=False),  # segments 1..4 complete
        wal("w2", 5, 5, 1439, partial=False),  # segment 5 complete, shipped before b2's from
        base("b2", 5, 1440),
        wal("w3", 6, 6, 1500),  # the partial of 6 only
    )
    recovery = plan(archive, _at(1450))
    assert recovery.base.snapshot_id == "b2"
    assert [s.snapshot_id for s in recovery.shipments] == ["w2", "w3"]
    assert window(archive).latest == _at(1500)


def test_a_drills_random_moment_leaves_the_gaps_out() -> None:
    """Segment 4 lost: the window is 0..600 and 1440..2000, the gap 600..1440 never chosen."""
    archive = archive_of(
        base("b1", 1, 0),
        wal("w1", 1, 3, 600),
        base("b2", 5, 1440),
        wal("w3", 5, 7, 2000),
    )
    shown = window(archive)
    assert [(g.start, g.end) for g in shown.gaps] == [(_at(600), _at(1440))]
    assert shown.moment_at(0) == _at(0)
    assert shown.moment_at(1) == _at(2000)
    # 1160 restorable minutes: 600 before the gap, 560 after it
    assert shown.moment_at(300 / 1160) == _at(300)
    assert shown.moment_at(600 / 1160) == _at(600)
    assert shown.moment_at(700 / 1160) == _at(1540)
    for step in range(101):
        assert shown.contains(shown.moment_at(step / 100))
    with pytest.raises(OutsideWindow, match="nothing is restorable yet"):
        window(archive_of(wal("w0", 0, 1, 5))).moment_at(0.5)
