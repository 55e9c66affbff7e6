"""Fault injection for the chaos suite: processes we can kill, a Temporal server we can stop,
a metadata database whose connections we can cut, a restic we can break, a storage we can
make read-only — all real, all cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from core.search_attributes import SEARCH_ATTRIBUTE_KEYS
from core.settings import Settings
from devstack.postgres import PostgresServer
from devstack.temporal import cli_path
from tests.conftest import free_ports
from tests.support.api import ApiClient, World
from tests.support.webhook import WebhookReceiver

REAPER = Path(__file__).with_name("chaos_reaper.py")
TERMINAL = ("succeeded", "failed", "cancelled")
# Temporal's closed workflow status (as the API's timeline spells it) -> the row's status.
ROW_STATUS_OF = {
    "completed": "succeeded",
    "failed": "failed",
    "terminated": "failed",
    "timed_out": "failed",
    "canceled": "cancelled",
}


def _wait_port(port: int, process: subprocess.Popen[bytes], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on port {port} in {seconds}s")


def _stop_group(process: subprocess.Popen[bytes] | None, sig: int, grace: float) -> None:
    """Signals the process group of ``process`` (it leads its own session), then reaps it."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


class TemporalDevServer:
    """``temporal server start-dev`` with its state in a file and fixed ports, so a stop and a
    start bring the same server (same workflows, same address) back."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port, self.http_port, self.metrics_port = free_ports(3)
        self.log = folder / "temporal.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            cli_path(),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(self.http_port),
            "--metrics-port",
            str(self.metrics_port),
            "--db-filename",
            str(self.folder / "temporal.db"),
            "--log-level",
            "error",
        ]
        for key in SEARCH_ATTRIBUTE_KEYS:
            args += ["--search-attribute", f"{key.name}=Keyword"]
        self.process = subprocess.Popen(
            args, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait_port(self.port, self.process, 60, "the Temporal dev server")

    def stop(self) -> None:
        _stop_group(self.process, signal.SIGTERM, 20)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1


class WorkerProcess:
    """``cairn worker`` (``python -m cli.main worker``) in its own process group, so a SIGKILL
    takes its restic and pg_dump children with it. With ``private_mounts`` it runs in a mount
    namespace of its own, where the suite may remount a folder read-only for it alone."""

    def __init__(
        self,
        settings: Settings,
        log: Path,
        *,
        env: dict[str, str] | None = None,
        private_mounts: bool = False,
    ) -> None:
        self.settings = settings
        self.log = log
        self.extra_env = env or {}
        self.private_mounts = private_mounts
        self.process: subprocess.Popen[bytes] | None = None  # the reaper
        self.worker_pid: int | None = None
        self.kills = 0
        self.starts = 0

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        env.update(
            {
                "CAIRN_DATABASE_URL": s.database_url,
                "CAIRN_TEMPORAL_ADDRESS": s.temporal_address,
                "CAIRN_TEMPORAL_NAMESPACE": s.temporal_namespace,
                "CAIRN_MASTER_KEY": s.master_key_text or "",
                "CAIRN_STORAGE_MOUNT_ROOT": str(s.storage_mount_root),
                "CAIRN_WORKER_SHUTDOWN_GRACE_SECONDS": "2",
                "CAIRN_RESTIC_BIN": s.restic_bin,
            }
        )
        if getattr(s, "volume_roots", None):
            env["CAIRN_VOLUME_ROOTS"] = ":".join(str(p) for p in s.volume_roots)
        if s.failure_webhook_url:
            env["CAIRN_FAILURE_WEBHOOK_URL"] = s.failure_webhook_url
        env.update(self.extra_env)
        return env

    @property
    def pid(self) -> int:
        """The worker's PID, which is also its process group id."""
        assert self.worker_pid is not None
        return self.worker_pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        argv = [sys.executable, "-m", "cli.main", "worker"]
        if self.private_mounts:
            argv = ["unshare", "--mount", "--propagation", "private", "--", *argv]
        with self.log.open("ab") as out:
            out.write(f"\n===== chaos: worker start #{self.starts + 1} =====\n".encode())
        pidfile = self.log.with_suffix(".pid")
        pidfile.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, str(REAPER), str(pidfile), "--", *argv],
            env=self.env(),
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        deadline = time.monotonic() + 10
        while not pidfile.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the worker did not start: {self.tail()}")
            time.sleep(0.01)
        self.worker_pid = int(pidfile.read_text())
        self.starts += 1

    def _signal(self, sig: int) -> None:
        if self.worker_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker_pid, sig)

    def kill(self) -> None:
        """SIGKILL of the whole process group: the worker and its restic / pg_dump children
        (reaped by the worker's reaper, which then exits)."""
        if self.process is None:
            return
        self._signal(signal.SIGKILL)
        self._reap(30)
        self.kills += 1
        with self.log.open("ab") as out:
            out.write(b"\n===== chaos: worker SIGKILLed =====\n")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._reap(30)

    def _reap(self, seconds: float) -> None:
        assert self.process is not None
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:  # a child left its group: take the reaper down too
            _stop_group(self.process, signal.SIGKILL, 5)

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class ResticSwitch:
    """``CAIRN_RESTIC_BIN`` for the worker: a script that runs the real restic, or that fails the
    way a missing or broken restic does."""

    MESSAGE = "restic: cannot execute: chaos made restic unrunnable"

    def __init__(self, folder: Path) -> None:
        real = shutil.which("restic")
        if real is None:
            raise RuntimeError("restic is not installed")
        self.real = real
        self.path = folder / "restic"
        self.working()

    def _write(self, body: str) -> None:
        self.path.write_text(f"#!/bin/sh\n{body}\n")
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def working(self) -> None:
        self._write(f'exec {self.real} "$@"')

    def broken(self) -> None:
        """Exits 127 with a shell's "cannot execute" message, like a restic that cannot run."""
        self._write(f"echo '{self.MESSAGE}' >&2\nexit 127")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def kill_connections(pg: PostgresServer, dbname: str) -> int:
    """``pg_terminate_backend`` on every session connected to ``dbname``; how many died."""
    with psycopg.connect(pg.url("postgres", driver="postgresql"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def allow_connections(pg: PostgresServer, dbname: str, allowed: bool) -> None:
    with psycopg.connect(pg.url("postgres", driver="postgresql"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(dbname), sql.SQL("true" if allowed else "false")
            )
        )


@contextlib.contextmanager
def database_down(pg: PostgresServer, dbname: str) -> Iterator[None]:
    """No new connection to ``dbname`` and every existing one cut, until the block ends."""
    allow_connections(pg, dbname, False)
    try:
        kill_connections(pg, dbname)
        yield
    finally:
        allow_connections(pg, dbname, True)


def remount_read_only(worker: WorkerProcess, folder: Path) -> None:
    """Inside the worker's own mount namespace only: ``folder`` becomes a read-only bind mount
    (root ignores file modes, a read-only mount it cannot). Gone with the worker's process."""
    assert worker.private_mounts and worker.alive()
    script = f"mount --bind '{folder}' '{folder}' && mount -o remount,ro,bind '{folder}'"
    subprocess.run(
        ["nsenter", "--target", str(worker.pid), "--mount", "--", "sh", "-c", script],
        check=True,
        capture_output=True,
    )


def snapshot_parts(repo_path: str, password: str) -> Counter[tuple[str, str]]:
    """(execution, part) -> number of restic snapshots carrying those tags."""
    listed = subprocess.run(
        [shutil.which("restic") or "restic", "-r", repo_path, "--no-lock", "snapshots", "--json"],
        env={**os.environ, "RESTIC_PASSWORD": password},
        capture_output=True,
        check=True,
    )
    counts: Counter[tuple[str, str]] = Counter()
    for snap in json.loads(listed.stdout) or []:
        tags = dict(t.split("=", 1) for t in snap.get("tags") or [] if "=" in t)
        counts[(tags.get("execution", "?"), tags.get("part", "?"))] += 1
    return counts


async def read(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> Any:
    """The body of a GET, or None while the API cannot answer (5xx, unreadable body)."""
    try:
        response = await client.get(path, headers=headers)
    except Exception:  # the in-process app may raise while its database is cut
        return None
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def settled(body: Any) -> bool:
    """The row is terminal and Temporal says the workflow has closed."""
    if not body or body.get("status") not in TERMINAL:
        return False
    status = (body.get("timeline") or {}).get("workflow_status")
    return status is not None and status != "running"


def truthful(body: dict[str, Any]) -> bool:
    status = (body.get("timeline") or {}).get("workflow_status")
    return ROW_STATUS_OF.get(status or "") == body["status"]


@dataclass
class Run:
    kind: str  # backup | restore
    id: str
    path: str
    app: str
    started: float
    backup_id: str | None = None  # for a restore: the backup it restores
    workflow_id: str | None = None
    body: dict[str, Any] | None = None
    last_seen: dict[str, Any] | None = None
    ended: float | None = None
    faults: int = 0

    @property
    def status(self) -> str:
        if self.body is not None:
            return str(self.body["status"])
        return str((self.last_seen or {}).get("status", "unknown"))

    @property
    def workflow_status(self) -> str | None:
        source = self.body or self.last_seen or {}
        return (source.get("timeline") or {}).get("workflow_status")

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started

    def open_steps(self) -> list[str]:
        """The steps of the last body seen that had not completed, with their last failure."""
        steps = ((self.body or self.last_seen or {}).get("timeline") or {}).get("steps") or []
        return [
            f"{s['step']} ({s['status']}, attempt {s.get('attempts')}"
            + (f", last failure: {str(s['last_failure'])[:160]}" if s.get("last_failure") else "")
            + ")"
            for s in steps
            if s.get("status") not in ("completed",)
        ]


async def settle(
    client: httpx.AsyncClient,
    run: Run,
    headers: dict[str, str],
    deadline: Any,
    closed_grace: float = 30,
) -> Run:
    """Polls the run's detail until it settles or ``deadline()`` (monotonic) passes.

    A row still open ``closed_grace`` seconds after Temporal closed its workflow is stuck for
    good (nothing is left to write it): the wait ends there instead of at the deadline.
    """
    closed_since: float | None = None
    while time.monotonic() < deadline():
        body = await read(client, run.path, headers)
        if body is not None:
            run.last_seen = body
            if settled(body):
                run.body, run.ended = body, time.monotonic()
                return run
            status = (body.get("timeline") or {}).get("workflow_status")
            if status in ROW_STATUS_OF:
                closed_since = closed_since or time.monotonic()
                if time.monotonic() - closed_since > closed_grace:
                    return run
        await asyncio.sleep(0.5)
    return run


@dataclass
class Figures:
    """What one chaos test did and saw; printed at the end of the pytest run."""

    name: str
    seed: int | None = None
    runs: list[Run] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duplicates: int = 0
    webhooks_missing: int = 0
    restores_checked: int = 0
    restores_identical: int = 0

    def stuck(self) -> list[Run]:
        return [r for r in self.runs if r.body is None]

    def not_succeeded(self) -> int:
        return sum(1 for r in self.runs if r.body is not None and r.status != "succeeded")

    def untruthful(self) -> list[Run]:
        return [r for r in self.runs if r.body is not None and not truthful(r.body)]

    def text(self) -> str:
        by_status = Counter(r.status for r in self.runs if r.body is not None)
        kinds = Counter(r.kind for r in self.runs)
        times = sorted(r.seconds for r in self.runs if r.seconds is not None)
        slowest = f"{times[-1]:.0f}s" if times else "-"
        median = f"{times[len(times) // 2]:.0f}s" if times else "-"
        lines = [
            f"[chaos] {self.name}" + (f" seed={self.seed}" if self.seed is not None else ""),
            f"  runs: {len(self.runs)} ({', '.join(f'{n} {k}s' for k, n in sorted(kinds.items()))})"
            f" -> {dict(sorted(by_status.items()))}",
            f"  faults injected: {len(self.faults)}",
            *(f"    - {f}" for f in self.faults),
            f"  time to terminal status: median {median}, max {slowest}",
            f"  runs ended failed/cancelled: {self.not_succeeded()}",
            *(
                f"    - {r.kind} {r.id} {r.status}: {str(r.body.get('error_message'))[:300]}"
                for r in self.runs
                if r.body is not None and r.status != "succeeded"
            ),
            f"  stuck (not terminal in time): {len(self.stuck())}",
            *(
                f"    - {r.kind} {r.id}: row {r.status}, workflow {r.workflow_status};"
                f" open steps: {r.open_steps() or 'none'}"
                for r in self.stuck()
            ),
            f"  status differs from Temporal: {len(self.untruthful())}",
            f"  duplicate snapshots: {self.duplicates}",
            f"  failed/cancelled runs without webhook: {self.webhooks_missing}",
            f"  restores checked byte-identical: {self.restores_identical}/{self.restores_checked}",
            *(f"  note: {n}" for n in self.notes),
        ]
        return "\n".join(lines)


REPORTS: list[Figures] = []


@dataclass
class Stack:
    pg: PostgresServer
    dbname: str
    folder: Path
    settings: Settings
    temporal: TemporalDevServer
    restic: ResticSwitch
    webhook: WebhookReceiver
    worker: WorkerProcess
    api: ApiClient = field(init=False)
    world: World = field(init=False)
    restore_ids: list[str] = field(default_factory=list)

    def app_folder(self, name: str) -> Path:
        """Where an application's volumes live: inside the allowed volume roots."""
        return self.folder / "apps" / name

    def replace_worker(self, *, private_mounts: bool = False) -> WorkerProcess:
        self.worker.stop()
        worker = WorkerProcess(
            self.settings,
            self.worker.log,
            env=self.worker.extra_env,
            private_mounts=private_mounts,
        )
        worker.start()
        self.worker = worker
        return worker


def app_state(app: Any) -> dict[str, Any]:
    """Hashes of everything a backup of ``app`` holds: each volume's files and each table."""
    from tests.support.backups import table_hashes, tree_hashes

    return {
        "volumes": {name: tree_hashes(path) for name, path in sorted(app.volumes.items())},
        "tables": table_hashes(app.db_url),
    }


def disturb(app: Any, tag: str) -> None:
    """Changes the application's data, so that a restore has something to put back."""
    volume = next(iter(app.volumes.values()))
    (volume / "file-0.txt").write_text(f"changed after the backup ({tag})\n")
    (volume / f"new-{tag}.txt").write_text("not in any backup\n")
    with psycopg.connect(app.db_url) as conn:
        conn.execute("INSERT INTO items (name) VALUES (%s)", (f"after-{tag}",))


async def trigger_backup(
    client: httpx.AsyncClient, app: Any, headers: dict[str, str]
) -> tuple[int, Any]:
    response = await client.post(app.backups, headers=headers)
    body = response.json() if response.content else None
    return response.status_code, body


async def trigger_restore(
    client: httpx.AsyncClient, app: Any, backup_id: str, headers: dict[str, str]
) -> tuple[int, Any]:
    response = await client.post(
        f"{app.backups}/{backup_id}/restore", json={"restore_type": "full"}, headers=headers
    )
    body = response.json() if response.content else None
    return response.status_code, body


async def started_steps(client: Any, workflow_id: str, since: float = 0.0) -> list[str]:
    """Activities of the workflow a worker has started (after ``since``, wall clock)."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except Exception:
        return []
    names = []
    for pending in description.raw_description.pending_activities:
        started = pending.last_started_time.ToDatetime(tzinfo=UTC).timestamp() if since else 0.0
        if pending.state == 2 and started >= since:  # PENDING_ACTIVITY_STATE_STARTED
            names.append(pending.activity_type.name)
    return names


async def wait_for_step(client: Any, workflow_id: str, names: set[str], seconds: float) -> str:
    """The first of ``names`` seen running in the workflow, or "none" after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name in await started_steps(client, workflow_id):
            if name in names:
                return name
        await asyncio.sleep(0.05)
    return "none"


def open_rows(settings: Settings) -> int:
    """Backup rows still ``running`` and restore rows ``pending``/``running``, read directly."""
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM backup_executions WHERE status = 'running')"
            " + (SELECT count(*) FROM backup_restores WHERE status IN ('pending', 'running'))"
        ).fetchone()
    return int(row[0]) if row else -1


async def backup_run(stack: Stack, app: Any) -> Run:
    """Triggers a backup of ``app`` as its owner; the run to settle."""
    code, body = await trigger_backup(stack.api, app, stack.world.auth("owner"))
    assert code == 202, (code, body)
    run = Run("backup", body["id"], f"{app.backups}/{body['id']}", app.id, time.monotonic())
    run.workflow_id = body["workflow_id"]
    return run
