"""The platform contract (``adapters/platform.py``): the same tests for every platform.

In the spirit of restic's backend test suite: what a backup, a restore in place, a restore
into another database and a drill ask of a platform, each step repeated as a retry repeats
it, the refusals, and nothing left behind. The tests talk to the platform only through the
contract; what they check from outside (live rows and files, whether the application runs,
what cairn left) each platform's ``Application`` gives (``applications.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from adapters.platform import (
    DatabaseDump,
    OtherDatabase,
    PlatformError,
    PointInTime,
    Scratch,
    SqlCheck,
    VolumeFigures,
    VolumeUpload,
)
from adapters.restic import Progress, Restic
from repository import names
from tests.conformance.applications import TABLE_ROWS, Application

pytestmark = [pytest.mark.integration, pytest.mark.conformance]


def no_progress(_p: Progress) -> None:
    """The tests look at results, not at progress."""


def tags(run: str, part: str) -> list[str]:
    return [names.execution_tag(run), names.part_tag(part)]


@dataclass(frozen=True)
class Backup:
    """One backup through the contract, and what the application held when it was taken."""

    run: str
    point: PointInTime
    again: PointInTime
    dump: DatabaseDump
    uploads: dict[str, VolumeUpload]
    rows: str
    files: dict[str, dict[str, str]]

    def figures(self) -> dict[str, VolumeFigures]:
        return {v: VolumeFigures(u.files, u.bytes_processed) for v, u in self.uploads.items()}


@pytest.fixture(scope="module")
def backup(application: Application) -> Backup:
    """A backup as activities/backup.py runs it, its snapshot step retried once."""
    app, platform = application, application.platform
    run = str(uuid.uuid4())
    platform.check_targets(True, app.volumes)
    try:
        point = platform.snapshot(run, app.volumes)
        again = platform.snapshot(run, app.volumes)
        dump = platform.dump_database(run, app.repo, tags(run, names.DATABASE), no_progress)
        uploads = {
            volume: platform.upload_volume(
                run,
                volume,
                point.volumes[volume],
                app.repo,
                tags(run, names.volume_part(volume)),
                parent=None,
                force=False,
                progress=no_progress,
            )
            for volume in app.volumes
        }
    finally:
        platform.release(run)
        platform.release(run)  # safe to repeat
    files = {volume: app.files(volume) for volume in app.volumes}
    return Backup(run, point, again, dump, uploads, app.rows(), files)


def test_a_backup_stores_the_database_and_each_volume_once(
    application: Application, backup: Backup
) -> None:
    app, platform = application, application.platform
    assert platform.has_database() and platform.volume_names() == app.volumes
    assert platform.estimate_bytes(True, app.volumes) > 0
    assert set(backup.point.volumes) == set(app.volumes)
    assert backup.again.volumes == backup.point.volumes  # a retried snapshot step
    assert backup.dump.row_counts == {"public.items": TABLE_ROWS}
    assert backup.dump.server_major >= 13
    assert {v: u.files for v, u in backup.uploads.items()} == {
        v: len(files) for v, files in backup.files.items()
    }
    stored = Restic().snapshots(app.repo, [names.execution_tag(backup.run)])
    wanted = [backup.dump.snapshot_id, *(u.snapshot_id for u in backup.uploads.values())]
    assert len(stored) == len(wanted)  # one snapshot a part: none twice
    assert all(any(s.id.startswith(w) for s in stored) for w in wanted)
    assert app.leftovers([backup.run]) == []


def test_a_restore_in_place_gives_back_every_byte_and_is_safe_to_repeat(
    application: Application, backup: Backup
) -> None:
    app, platform = application, application.platform
    app.damage_rows()
    for volume in app.volumes:
        app.damage_files(volume)
    restore = str(uuid.uuid4())
    assert app.running()
    try:
        for _ in range(2):  # a retry calls each step again
            platform.quiesce()
            assert not app.running()
        for _ in range(2):  # a retry after a crash finds the swap done and changes nothing
            platform.restore_database(restore, app.repo, backup.dump.snapshot_id, no_progress)
            for volume, upload in backup.uploads.items():
                platform.restore_volume(restore, volume, app.repo, upload.snapshot_id, no_progress)
            assert app.rows() == backup.rows
            assert {volume: app.files(volume) for volume in app.volumes} == backup.files
        measured = platform.measure(True, app.volumes)
    finally:
        for _ in range(2):
            platform.resume()
        platform.release(restore)
    assert app.running()
    assert measured.row_counts == backup.dump.row_counts
    assert measured.volumes == backup.figures()
    assert app.leftovers([restore]) == []


def test_a_restore_into_another_database_leaves_the_original_alone(
    application: Application, backup: Backup
) -> None:
    app, platform = application, application.platform
    app.damage_rows()
    damaged = app.rows()
    run, into = str(uuid.uuid4()), OtherDatabase(name=f"{app.dbname}_copy")
    try:
        for _ in range(2):  # safe to repeat
            platform.restore_database(
                run, app.repo, backup.dump.snapshot_id, no_progress, into=into
            )
            assert app.rows(into.name) == backup.rows
        measured = platform.measure(True, [], into=into)
    finally:
        platform.release(run)
        app.server.drop_database(str(into.name))
    assert measured.row_counts == backup.dump.row_counts
    assert app.rows() == damaged
    assert app.leftovers([run]) == []


def test_a_drill_restores_scratch_copies_checks_them_and_removes_them(
    application: Application, backup: Backup
) -> None:
    app, platform = application, application.platform
    rows, files = app.rows(), {volume: app.files(volume) for volume in app.volumes}
    drill = str(uuid.uuid4())
    into = Scratch(drill)
    assert platform.describe_scratch(drill)
    checks = [
        SqlCheck(
            "the backup's rows",
            "SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY id))"
            f" = '{backup.rows}' FROM items t",
        ),
        SqlCheck("broken", "SELECT 1 / 0 > 0"),
        SqlCheck(
            "read only", "WITH d AS (DELETE FROM items RETURNING 1) SELECT count(*) = 0 FROM d"
        ),
    ]
    try:
        for _ in range(2):  # retried steps
            platform.restore_database(
                drill, app.repo, backup.dump.snapshot_id, no_progress, into=into
            )
            for volume, upload in backup.uploads.items():
                note = platform.restore_volume(
                    drill, volume, app.repo, upload.snapshot_id, no_progress, into=into
                )
                assert volume in note
        measured = platform.measure(True, app.volumes, into=into)
        results = platform.run_checks(drill, checks, 5)
    finally:
        for _ in range(2):  # safe to repeat
            platform.remove_scratch(drill)
    assert measured.row_counts == backup.dump.row_counts
    assert measured.volumes == backup.figures()
    assert [(r.name, r.outcome) for r in results] == [
        ("the backup's rows", "passed"),
        ("broken", "error"),
        ("read only", "error"),
    ]
    assert app.rows() == rows  # the application's own data was never touched
    assert {volume: app.files(volume) for volume in app.volumes} == files
    assert app.leftovers([drill]) == []


def test_resume_of_an_application_never_stopped_changes_nothing(
    application: Application,
) -> None:
    application.platform.resume()
    assert application.running()


def test_what_may_not_be_touched_is_refused_for_good_and_leaves_nothing(
    application: Application, backup: Backup
) -> None:
    app, platform = application, application.platform
    rows = app.rows()
    run = str(uuid.uuid4())
    snapshot, upload = backup.dump.snapshot_id, next(iter(backup.uploads.values())).snapshot_id

    def into(name: str) -> Callable[[], object]:
        target = OtherDatabase(name=name)
        return lambda: platform.restore_database(run, app.repo, snapshot, no_progress, into=target)

    refusals: dict[str, Callable[[], object]] = {
        "nope": lambda: platform.check_targets(False, ["nope"]),
        "no volume nope": lambda: platform.restore_volume(
            run, "nope", app.repo, upload, no_progress
        ),
        "the original": into(app.dbname),
        "named like cairn's own": into(f"cairn_restore_{uuid.uuid4().hex[:12]}"),
    }
    try:
        for words, call in refusals.items():
            with pytest.raises(PlatformError) as refused:
                call()
            assert words in refused.value.message, refused.value.message
            assert refused.value.retryable is False, words
    finally:
        platform.release(run)
    assert app.rows() == rows
    assert app.leftovers([run]) == []


def test_releasing_what_was_never_made_is_fine(application: Application) -> None:
    """(``remove_scratch`` of a drill already removed: the drill test's second call.)"""
    run = str(uuid.uuid4())
    application.platform.release(run)
    assert application.leftovers([run]) == []
