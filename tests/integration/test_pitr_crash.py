"""The archiver survives a SIGKILLed worker and a restarted application server (issue 22).

A real ``cairn worker`` process runs the archiver (its own Temporal dev server and metadata
database, ``test_worker_crash.isolated``, so no other worker serves the queues) against a
PostgreSQL server of the test's own with ``max_slot_wal_keep_size`` set, while a writer
commits rows. After each event the window reaches the commits made after it with no gap, the
repository checks clean, a segment shipped twice is the same bytes both times, a restore
through the API to a moment after the event gives exactly the rows committed by then, and
the slot kept less WAL than its bound (and was never lost).

The module runs its own Temporal dev server with its state in a file (the chaos suite's
``TemporalDevServer``), so it can also be stopped for a while and started again under the
archiver.
"""

from __future__ import annotations

import asyncio
import filecmp
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from temporalio.client import WorkflowExecutionStatus

from activities.archive import spool_of
from adapters import pg_databases
from adapters.pg_archive import stream
from adapters.pg_archive.window import Archive, read_archive, segment_number, stamp
from adapters.restic import Repository, Restic
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.integration.test_pitr_api import App, on_instance, policy, register, until_closed
from tests.integration.test_worker_crash import isolated_settings, start_worker
from tests.support import pg_instance
from tests.support.api import ApiClient, build_world, expect, running_app, wait_for
from tests.support.backups import repository_of
from tests.support.chaos import TemporalDevServer
from tests.support.database import libpq_url
from tests.support.histories import HISTORIES

pytestmark = pytest.mark.integration

DB = "shop"
BOUND_MB = 64


class Writer(threading.Thread):
    """Commits a row every 50 ms, reconnecting while the server is away; which rows made it
    is read back from the server (its commit timestamps), not from here."""

    def __init__(self, instance: pg_instance.Instance) -> None:
        super().__init__(daemon=True)
        self.instance = instance
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with self.instance.connect(DB) as conn:
                    while not self.stop.wait(0.05):
                        conn.execute("INSERT INTO orders DEFAULT VALUES")
            except psycopg.OperationalError:
                self.stop.wait(0.2)


@dataclass
class Archiving:
    temporal: TemporalDevServer
    settings: Settings
    api: ApiClient
    owner: dict[str, str]
    app: App
    instance: pg_instance.Instance
    repo: Repository
    restic: Restic
    log: Path
    worker: subprocess.Popen[bytes]
    earliest: datetime
    retained: list[int] = field(default_factory=list)

    @property
    def slot(self) -> str:
        return stream.slot_name(self.app.id)

    def now(self) -> datetime:
        with self.instance.connect(DB) as conn:
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            return row[0]  # type: ignore[no-any-return]

    def commits(self) -> dict[int, datetime]:
        with self.instance.connect(DB) as conn:
            rows = conn.execute("SELECT id, pg_xact_commit_timestamp(xmin) FROM orders")
            return {int(row[0]): row[1] for row in rows}

    def archive(self) -> Archive:
        return read_archive(self.restic.snapshots(self.repo))

    async def window(self) -> dict[str, object]:
        shown = await expect(
            await self.api.get(
                f"/api/v1/applications/{self.app.id}/recovery-window", headers=self.owner
            ),
            200,
        )
        return dict(shown)

    async def window_reaches(self, moment: datetime, seconds: float = 120) -> dict[str, object]:
        """The window once it reaches ``moment``; the slot's retained WAL sampled meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            self.retained.append(
                stream.slot_state(self.instance.target(DB), self.slot).retained_bytes
            )
            shown = await self.window()
            latest = shown["latest"]
            if isinstance(latest, str) and datetime.fromisoformat(latest) >= moment:
                return shown
            assert time.monotonic() < deadline, (shown, self.log.read_text()[-3000:])
            await asyncio.sleep(1)


@pytest.fixture(scope="module")
def instance() -> Iterator[pg_instance.Instance]:
    with pg_instance.running({"max_slot_wal_keep_size": f"{BOUND_MB}MB"}) as server:
        with server.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {DB}")
        with server.connect(DB) as conn:
            conn.execute("CREATE TABLE orders (id bigserial PRIMARY KEY)")
        yield server


@pytest.fixture(scope="module")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(tmp_path_factory.mktemp("pitr-temporal"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def isolated(
    settings: Settings,
    temporal: TemporalDevServer,
    tmp_path_factory: pytest.TempPathFactory,
    database_server: PostgresServer,
) -> AsyncIterator[Settings]:
    async with isolated_settings(
        settings, temporal.address, tmp_path_factory, database_server
    ) as it:
        yield it


@pytest.fixture(scope="module")
async def archiving(
    temporal: TemporalDevServer,
    isolated: Settings,
    instance: pg_instance.Instance,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Archiving]:
    """An application archived by a worker process, its first base backup stored, a writer
    committing."""
    log = tmp_path_factory.mktemp("pitr-crash") / "worker.log"
    worker = start_worker(isolated, log)
    writer = Writer(instance)
    app: App | None = None
    try:
        async with running_app(isolated) as api:
            world = await build_world(api)
            app = await register(api, world, on_instance(instance))
            owner = world.auth("owner")
            body = policy(app, continuous_archiving=True)
            await expect(await api.post(app.policy, json=body, headers=owner), 201)
            shown = await wait_for(
                api,
                f"/api/v1/applications/{app.id}/recovery-window",
                owner,
                lambda w: w["earliest"] is not None,
                seconds=120,
            )
            writer.start()
            state = Archiving(
                temporal,
                isolated,
                api,
                owner,
                app,
                instance,
                await repository_of(isolated, app.id, app.storage),
                Restic(isolated.restic_bin),
                log,
                worker,
                datetime.fromisoformat(str(shown["earliest"])),
            )
            yield state
            worker = state.worker
            writer.stop.set()
            writer.join()
            body = policy(app, continuous_archiving=False)
            await expect(await api.post(app.policy, json=body, headers=owner), 200)
            # the stream's activity ends before the worker is stopped (it has 30 s to finish)
            await until_closed(await api.app.state.temporal.get(), app)  # type: ignore[attr-defined]
    finally:
        writer.stop.set()
        if writer.is_alive():
            writer.join()
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
        if app is not None:
            shutil.rmtree(spool_of(isolated, app.id), ignore_errors=True)


def _same_bytes_when_shipped_twice(archiving: Archiving) -> None:
    """A complete segment in two shipments (the worker killed between storing a shipment
    and clearing its spool) must be the same bytes in both."""
    holders: dict[int, list[str]] = {}
    for shipment in archiving.archive().shipments:
        for number in shipment.complete():
            holders.setdefault(number, []).append(shipment.snapshot_id)
    twice = {n: ids for n, ids in holders.items() if len(ids) > 1}
    if not twice:
        return
    folder = Path(tempfile.mkdtemp(prefix="cairn-pitr-twice-"))
    try:
        for number, ids in twice.items():
            copies = []
            for snapshot_id in ids:
                into = folder / snapshot_id
                if not into.exists():
                    archiving.restic.restore(archiving.repo, snapshot_id, into)
                (found,) = [
                    p
                    for p in into.rglob("*")
                    if p.is_file() and len(p.name) == 24 and segment_number(p.name) == number
                ]
                copies.append(found)
            assert all(filecmp.cmp(copies[0], c, shallow=False) for c in copies[1:]), number
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _restores_exactly(archiving: Archiving, moment: datetime) -> set[int]:
    """Restores to ``moment`` through the API into a new database (dropped after): exactly the
    rows committed by then, with commits after it to leave out."""
    commits = archiving.commits()
    assert any(at > moment for at in commits.values())
    restores = f"/api/v1/applications/{archiving.app.id}/restores"
    into = f"shop_{uuid.uuid4().hex[:8]}"
    body = {"target_time": moment.isoformat(), "target": {"database_name": into}}
    started = await expect(
        await archiving.api.post(restores, json=body, headers=archiving.owner), 202
    )
    done = await wait_for(
        archiving.api,
        f"{restores}/{started['id']}",
        archiving.owner,
        lambda r: r["status"] not in ("pending", "running"),
        seconds=120,
    )
    assert done["status"] == "succeeded", (done["error_message"], archiving.log.read_text()[-3000:])
    try:
        with archiving.instance.connect(into) as conn:
            ids = {int(row[0]) for row in conn.execute("SELECT id FROM orders").fetchall()}
    finally:
        pg_databases.drop(archiving.instance.target(into), into)
    assert ids == {i for i, at in commits.items() if at <= moment}
    return ids


async def _after_the_event(archiving: Archiving, event_at: datetime) -> None:
    """Every check after an event: the window, the repository, a restore, the slot."""
    await asyncio.sleep(2)
    moment = archiving.now()  # after the event (for the kill: inside the outage)
    await asyncio.sleep(2)
    shown = await archiving.window_reaches(archiving.now())
    assert shown["gaps"] == [], shown
    assert datetime.fromisoformat(str(shown["earliest"])) == archiving.earliest
    _same_bytes_when_shipped_twice(archiving)

    commits = archiving.commits()
    assert any(event_at < at <= moment for at in commits.values()), "no commit after the event"
    ids = await _restores_exactly(archiving, moment)

    state = stream.slot_state(archiving.instance.target(DB), archiving.slot)
    assert not state.lost
    assert state.keep_limit_bytes == BOUND_MB * 1024 * 1024
    assert max([*archiving.retained, state.retained_bytes]) < state.keep_limit_bytes
    print(
        f"restored {len(ids)} rows to {moment}; slot kept at most"
        f" {max(archiving.retained) / 1e6:.1f} MB (bound {BOUND_MB} MB)"
    )


async def test_a_worker_killed_while_streaming_resumes_the_window_without_a_gap(
    archiving: Archiving,
) -> None:
    # streaming: a shipment made after the writer started
    await archiving.window_reaches(archiving.now())
    os.killpg(archiving.worker.pid, signal.SIGKILL)  # the worker and its pg_receivewal
    archiving.worker.wait()
    killed_at = archiving.now()
    archiving.worker = start_worker(archiving.settings, archiving.log)
    # the killed attempt is retried once its heartbeat times out (30 s); meanwhile the slot
    # keeps what the writer commits
    await _after_the_event(archiving, killed_at)


async def test_temporal_stopped_for_a_while_resumes_the_window_without_a_gap(
    archiving: Archiving,
) -> None:
    """The Temporal server away for 20 s under the archiver (its state kept in its file):
    the stream goes on or resumes, and nothing committed meanwhile is missing."""
    await archiving.window_reaches(archiving.now())
    stopped_at = archiving.now()
    archiving.temporal.stop()
    try:
        await asyncio.sleep(20)
    finally:
        archiving.temporal.start()
    await _after_the_event(archiving, stopped_at)


async def test_the_application_server_restarted_resumes_the_window_without_a_gap(
    archiving: Archiving,
) -> None:
    await archiving.window_reaches(archiving.now())
    restarted_at = archiving.now()
    log = archiving.instance.folder / "server.log"
    archiving.instance.pg_ctl("restart", "--mode=fast", "--wait", f"--log={log}")
    await _after_the_event(archiving, restarted_at)


async def test_a_slot_past_its_bound_is_lost_and_the_archiver_replaces_it_recording_the_gap(
    archiving: Archiving,
) -> None:
    """The archiver down while the server writes more WAL than ``max_slot_wal_keep_size``:
    the slot is lost. The restarted archiver finds it lost and, with nobody turning archiving
    off and on, drops it and its spool, makes a new slot and base backup and goes on; the
    window shows exactly the gap from the last archived moment to that base backup, refuses
    a moment inside it and restores exactly after it."""
    await archiving.window_reaches(archiving.now())
    os.killpg(archiving.worker.pid, signal.SIGKILL)
    archiving.worker.wait()
    target = archiving.instance.target(DB)
    with archiving.instance.connect(DB) as conn:
        for _ in range(BOUND_MB // 16 + 2):
            conn.execute("INSERT INTO orders DEFAULT VALUES")
            conn.execute("SELECT pg_switch_wal()")
        for _ in range(10):
            conn.execute("CHECKPOINT")  # removes the segments past the bound
            if stream.slot_state(target, archiving.slot).lost:
                break
    assert stream.slot_state(target, archiving.slot).lost
    last_archived = datetime.fromisoformat(str((await archiving.window())["latest"]))
    bases_before = {b.snapshot_id for b in archiving.archive().bases}
    temporal = await archiving.api.app.state.temporal.get()  # type: ignore[attr-defined]
    handle = temporal.get_workflow_handle(f"archiver-{archiving.app.id}")
    lost_run = (await handle.describe()).run_id

    archiving.worker = start_worker(archiving.settings, archiving.log)
    # the killed attempt times out (30 s); its retry finds the slot lost and ends the stretch
    shown = await archiving.window_reaches(archiving.now(), seconds=240)
    new_bases = [b for b in archiving.archive().bases if b.snapshot_id not in bases_before]
    assert len(new_bases) == 1, archiving.log.read_text()[-3000:]
    newest_base = new_bases[0].consistent_from
    gaps = shown["gaps"]
    assert isinstance(gaps, list)
    found = [(datetime.fromisoformat(g["from"]), datetime.fromisoformat(g["to"])) for g in gaps]
    assert found == [(last_archived, newest_base)], shown
    assert datetime.fromisoformat(str(shown["earliest"])) == archiving.earliest
    described = await handle.describe()  # the same archiver, continued as new
    assert described.status == WorkflowExecutionStatus.RUNNING
    assert described.run_id != lost_run
    if os.environ.get("CAIRN_RECORD_HISTORIES"):
        lost = temporal.get_workflow_handle(handle.id, run_id=lost_run)
        (HISTORIES / "archiver-slot-lost.json").write_text((await lost.fetch_history()).to_json())
    assert not stream.slot_state(target, archiving.slot).lost
    with psycopg.connect(libpq_url(archiving.settings.database_url)) as conn:
        said = conn.execute(
            "SELECT actor, target_id, details->>'last_archived' FROM audit_events"
            " WHERE action = 'archive.slot_lost'"
        ).fetchall()
    assert said and set(said) == {("system:archiver", archiving.app.id, stamp(last_archived))}

    inside = last_archived + (newest_base - last_archived) / 2
    restores = f"/api/v1/applications/{archiving.app.id}/restores"
    problem = await expect(
        await archiving.api.post(
            restores, json={"target_time": inside.isoformat()}, headers=archiving.owner
        ),
        422,
    )
    assert "is not restorable" in problem["errors"][0]["message"], problem
    await asyncio.sleep(2)
    moment = archiving.now()
    await asyncio.sleep(2)
    await archiving.window_reaches(archiving.now())
    await _restores_exactly(archiving, moment)
