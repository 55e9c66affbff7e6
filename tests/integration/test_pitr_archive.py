"""Continuous archiving and recovery to a moment, against a PostgreSQL server of the test's
own, real ``pg_receivewal``/``pg_basebackup``, restic and a scratch server per recovery.

A writer commits one row per transaction while the archiver streams; each row's commit time
is the server's own (``track_commit_timestamp``). A recovery to T must give back exactly the
rows committed at or before T, checked row by row.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from adapters import pg_databases
from adapters.pg_archive import base_backup, prune, scratch, stream
from adapters.pg_archive.window import (
    Archive,
    BaseBackup,
    OutsideWindow,
    Shipment,
    plan,
    read_archive,
    segment_number,
    window,
)
from adapters.restic import Repository, Restic
from tests.support import pg_instance

pytestmark = pytest.mark.integration

APP = str(uuid.uuid4())
DB = "shop"
CANARY = f"plain-text-canary-{secrets.token_hex(8)}"


@dataclass
class Archived:
    instance: pg_instance.Instance
    restic: Restic
    repo: Repository
    bases: list[BaseBackup]
    commits: dict[int, datetime]  # row id -> commit time
    marks: dict[str, datetime] = field(default_factory=dict)

    def archive(self) -> Archive:
        return read_archive(self.restic.snapshots(self.repo))


class Shipper(threading.Thread):
    """What the archiver activity does, every half second."""

    def __init__(self, instance: pg_instance.Instance, restic: Restic, repo: Repository) -> None:
        super().__init__(daemon=True)
        self.target = instance.target(DB)
        self.restic, self.repo = restic, repo
        self.spool = Path(tempfile.mkdtemp(prefix="cairn-spool-"))
        self.stop = threading.Event()
        self.last: Shipment | None = None
        self.error: BaseException | None = None

    def ship_once(self) -> None:
        until = stream.covered_until(self.target, stream.slot_name(APP), 30)
        assert until is not None
        shipped = stream.ship(
            self.spool / "wal", self.spool / "outbox", self.restic, self.repo, APP, until
        )
        if shipped is not None:
            if stream.superseded(self.last, shipped):
                assert self.last is not None
                self.restic.forget(self.repo, [self.last.snapshot_id])
            self.last = shipped

    def run(self) -> None:
        try:
            while not self.stop.wait(0.5):
                self.ship_once()
        except BaseException as exc:
            self.error = exc


def _writer(instance: pg_instance.Instance, stop: threading.Event, ids: list[int]) -> None:
    with instance.connect(DB) as conn:
        while not stop.is_set():
            row = conn.execute("INSERT INTO orders DEFAULT VALUES RETURNING id").fetchone()
            assert row is not None
            ids.append(int(row[0]))
            time.sleep(0.01)


def _write_for(instance: pg_instance.Instance, seconds: float, switches: int) -> None:
    """Commits rows for ``seconds``, switching to a new WAL segment ``switches`` times."""
    stop, ids = threading.Event(), []  # type: ignore[var-annotated]
    writer = threading.Thread(target=_writer, args=(instance, stop, ids))
    writer.start()
    try:
        with instance.connect(DB) as conn:
            for _ in range(switches):
                time.sleep(seconds / (switches + 1))
                conn.execute("SELECT pg_switch_wal()")
            time.sleep(seconds / (switches + 1))
    finally:
        stop.set()
        writer.join()
    assert ids


def _now(instance: pg_instance.Instance) -> datetime:
    with instance.connect(DB) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def archived() -> Iterator[Archived]:
    restic = Restic(os.environ.get("CAIRN_RESTIC_BIN", "restic"))
    folder = Path(tempfile.mkdtemp(prefix="cairn-pitr-repo-"))
    repo = Repository(folder / "repo", f"pw-{secrets.token_hex(16)}")
    restic.init(repo)
    try:
        with pg_instance.running() as instance:
            with instance.connect("postgres") as conn:
                conn.execute(f"CREATE DATABASE {DB}")
            with instance.connect(DB) as conn:
                conn.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, note text)")
                conn.execute("INSERT INTO orders (note) VALUES (%s)", (CANARY,))
            target = instance.target(DB)
            slot = stream.slot_name(APP)
            stream.prepare(target, slot)
            shipper = Shipper(instance, restic, repo)
            receiver = stream.receiver(target, slot, shipper.spool / "wal", None)
            shipper.start()
            try:
                marks = {}
                bases = [base_backup.take(target, slot, restic, repo, APP)]
                _write_for(instance, 3, switches=2)
                marks["between"] = _now(instance)
                _write_for(instance, 3, switches=2)
                bases.append(base_backup.take(target, slot, restic, repo, APP))
                _write_for(instance, 3, switches=1)
                marks["recent"] = _now(instance)
                _write_for(instance, 2, switches=0)
                shipper.stop.set()
                shipper.join()
                # everything committed so far, while the receiver still runs: the server
                # writes WAL of its own (standby snapshots) that a stopped one never receives
                shipper.ship_once()
            finally:
                shipper.stop.set()
                shipper.join()
                receiver.terminate()
                receiver.wait()
            assert shipper.error is None, shipper.error
            with instance.connect(DB) as conn:
                commits = {
                    int(row[0]): row[1]
                    for row in conn.execute(
                        "SELECT id, pg_xact_commit_timestamp(xmin) FROM orders"
                    ).fetchall()
                }
            shutil.rmtree(shipper.spool, ignore_errors=True)
            yield Archived(instance, restic, repo, bases, commits, marks)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _recovered_rows(archived: Archived, target: datetime | None) -> set[int]:
    """Recovers to ``target`` in a scratch server and moves the database out into a new
    database on the application's server; the rows that database holds."""
    recovery = plan(archived.archive(), target)
    place = scratch.Scratch(
        Path(tempfile.gettempdir()) / f"cairn-scratch-{uuid.uuid4().hex[:8]}",
        recovery.base.major,
        "postgres" if os.getuid() == 0 else None,
    )
    into = archived.instance.target(f"restored_{uuid.uuid4().hex[:8]}")
    try:
        scratch.recover(place, archived.restic, archived.repo, recovery)
        scratch.move_out(place, archived.instance.target(DB), into, None)
    finally:
        scratch.remove(place)
    assert not place.folder.exists()
    try:
        with archived.instance.connect(into.dbname) as conn:
            return {int(row[0]) for row in conn.execute("SELECT id FROM orders").fetchall()}
    finally:
        pg_databases.drop(into, into.dbname)


def _committed_by(archived: Archived, moment: datetime) -> set[int]:
    return {row for row, at in archived.commits.items() if at <= moment}


def test_the_window_spans_from_the_first_base_backup_to_the_last_shipment(
    archived: Archived,
) -> None:
    shown = window(archived.archive())
    assert shown.earliest == archived.bases[0].consistent_from
    assert shown.latest is not None and shown.latest >= max(archived.commits.values())
    assert shown.gaps == []


@pytest.mark.parametrize("mark", ["between", "recent"])
def test_restore_to_a_moment_gives_exactly_the_rows_committed_by_then(
    archived: Archived, mark: str
) -> None:
    moment = archived.marks[mark]
    if mark == "between":
        assert archived.bases[0].consistent_from < moment < archived.bases[1].consistent_from
    expected = _committed_by(archived, moment)
    assert 0 < len(expected) < len(archived.commits)
    assert _recovered_rows(archived, moment) == expected


def test_restore_to_a_moment_between_two_commits_splits_them(archived: Archived) -> None:
    """Two consecutive commits: a target between them keeps the first, not the second."""
    ordered = sorted(archived.commits.items(), key=lambda item: item[1])
    (first, at), (second, next_at) = next(
        (a, b)
        for a, b in itertools.pairwise(ordered)
        if b[1] - a[1] > timedelta(0) and a[1] > archived.bases[1].consistent_from
    )
    moment = at + (next_at - at) / 2
    rows = _recovered_rows(archived, moment)
    assert first in rows and second not in rows
    assert rows == _committed_by(archived, moment)


def test_restore_to_latest_gives_every_committed_row(archived: Archived) -> None:
    assert _recovered_rows(archived, None) == set(archived.commits)


def test_a_moment_outside_the_window_is_refused_naming_it(archived: Archived) -> None:
    before = archived.bases[0].consistent_from - timedelta(seconds=1)
    with pytest.raises(OutsideWindow, match="the window is from"):
        plan(archived.archive(), before)


def test_a_lost_wal_segment_shows_as_a_gap_and_a_restore_into_it_is_refused(
    archived: Archived,
) -> None:
    """Late: it removes a shipment of complete segments taken between the base backups."""
    archive = archived.archive()
    lost = next(
        s
        for s in archive.shipments
        if archived.bases[0].consistent_from < s.until < archived.bases[1].consistent_from
        and len(s.complete()) > 0
        and s.until > min(x.until for x in archive.shipments)
        # not a segment a base backup starts in (the second's may be shipped before its
        # ``from``): without it that base backup restores nothing at all
        and segment_number(archived.bases[0].first)
        < s.complete()[0]
        <= s.complete()[-1]
        < segment_number(archived.bases[1].first)
    )
    archived.restic.forget(archived.repo, [lost.snapshot_id])
    shown = window(archived.archive())
    assert len(shown.gaps) == 1
    gap = shown.gaps[0]
    assert gap.start < lost.until <= gap.end == archived.bases[1].consistent_from
    assert not shown.contains(lost.until)
    with pytest.raises(OutsideWindow, match="except"):
        plan(archived.archive(), lost.until)
    assert shown.contains(archived.marks["recent"])


def test_pruning_to_the_window_moves_its_earliest_and_keeps_every_moment_after_restorable(
    archived: Archived, tmp_path: Path
) -> None:
    """After the lost segment: a window starting after the second base backup forgets the
    first one and the WAL before the second's first segment; nothing else, no dump's snapshot,
    and a restore inside the window still gives exactly the rows committed by then."""
    start = archived.bases[1].consistent_from - timedelta(milliseconds=1)
    shown = window(archived.archive())
    early = prune.forget_outside(archived.restic, archived.repo, start, archiving=True)
    before = archived.archive()  # at most WAL from before the first base backup went
    assert len(before.bases) == 2 and not {s.snapshot_id for s in before.shipments} & set(early)
    assert window(before) == shown
    start = archived.marks["recent"] - timedelta(milliseconds=1)
    assert archived.bases[1].consistent_from < start
    (tmp_path / "database.dump").write_bytes(b"a dump of the application")
    dump = archived.restic.backup_paths(archived.repo, tmp_path, [f"execution={uuid.uuid4()}"])
    forgotten = prune.forget_outside(archived.restic, archived.repo, start, archiving=True)
    after = archived.archive()
    assert set(forgotten) == {before.bases[0].snapshot_id} | {
        s.snapshot_id for s in before.shipments if s not in after.shipments
    }
    assert [b.snapshot_id for b in after.bases] == [before.bases[1].snapshot_id]
    assert any(s.id.startswith(dump.snapshot_id) for s in archived.restic.snapshots(archived.repo))
    first = segment_number(archived.bases[1].first)
    assert all(segment_number(s.last) >= first for s in after.shipments)
    assert len(after.shipments) < len(before.shipments)
    shown = window(after)
    assert shown.earliest == archived.bases[1].consistent_from and shown.gaps == []
    assert shown.latest == window(before).latest
    with pytest.raises(OutsideWindow):
        plan(after, archived.marks["between"])
    moment = archived.marks["recent"]
    assert _recovered_rows(archived, moment) == _committed_by(archived, moment)


def test_nothing_on_the_storage_is_plain_text(archived: Archived) -> None:
    """restic encrypts every file it writes: no row's text and no WAL page header is readable."""
    wal_page_magic = (0xD110).to_bytes(2, "little")  # XLOG_PAGE_MAGIC of PostgreSQL 15
    for path in archived.repo.path.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert CANARY.encode() not in content
            assert not content.startswith(wal_page_magic), path
