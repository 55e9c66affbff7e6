"""``cairn dev``: the whole service on one machine, with embedded defaults and persistent data."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx

from core.crypto import generate_master_key
from db import migrate
from db.bootstrap import create_admin
from db.session import make_engine, make_sessionmaker
from devstack.postgres import running_server
from devstack.processes import RESTART_LIMIT, RESTART_WINDOW_SECONDS, Child, Port, port_problems
from devstack.secrets_check import unopened_secrets
from devstack.temporal import start_dev_server, wait_for_port

ADMIN_EMAIL = "admin@cairn.local"
# What ``cairn dev`` writes in its data folder; ``--reset`` deletes these and nothing else.
DATA_ENTRIES = (
    "master-key",
    "admin-token",
    "metrics-token",
    "cairn.env",
    "storages",
    "apps",
    "logs",
    "pgdata",
)
PORT = click.IntRange(1, 65535)


def database_name(data_dir: Path) -> str:
    """One database per data folder: its master key must match the secrets inside."""
    return "cairn_" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]


def _secret_file(path: Path, make: str) -> str:
    """Reads a 0600 file, creating it with ``make`` on first start."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make)
    return path.read_text().strip()


def _master_key(data_dir: Path, database_url: str, dbname: str) -> str:
    """The stack's master key, once it is known to open the secrets already in the database.

    A new key file is written only after the check, so a reset data folder next to a kept
    database does not leave a useless key behind.
    """
    from_env = os.environ.get("CAIRN_MASTER_KEY")
    key_file = data_dir / "master-key"
    if from_env:
        key, where = from_env, "CAIRN_MASTER_KEY"
    elif key_file.exists():
        key, where = key_file.read_text().strip(), str(key_file)
    else:
        key, where = generate_master_key(), f"{key_file} (missing, so a new one)"
    unopened = asyncio.run(unopened_secrets(database_url, key))
    if unopened:
        kinds = ", ".join(f"{u.kind} ({u.row})" for u in unopened)
        old_key = "CAIRN_MASTER_KEY" if from_env else str(key_file)
        raise click.ClickException(
            f"the master key in {where} cannot open the secrets already stored in database"
            f" {dbname}: {kinds}; every backup and restore would fail. Either put the old key"
            f" back in {old_key} and start again, or start over with 'cairn dev --data-dir"
            f" {data_dir} --reset', which deletes this data folder's database, Temporal"
            " history, storages (with every backup in them) and key."
        )
    return from_env or _secret_file(key_file, key)


def _reset(data_dir: Path, dbname: str) -> None:
    """Drops the database the data folder used, then the folder itself.

    Only what ``cairn dev`` writes there is deleted (``DATA_ENTRIES`` and the Temporal
    database), so a ``--data-dir`` pointed at a folder with other files keeps them; a storage
    root set by ``CAIRN_STORAGE_MOUNT_ROOT`` is not this folder's to delete.
    """
    with running_server(data_dir) as pg:  # the embedded server, when used, lives in the folder
        pg.drop_database(dbname)
    click.echo(f"reset         dropped database {dbname}")
    if not data_dir.is_dir():
        return
    doomed = [*sorted(data_dir.glob("temporal.db*")), *(data_dir / n for n in DATA_ENTRIES)]
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    left = sorted(p.name for p in data_dir.iterdir())
    if left:
        click.echo(f"reset         emptied {data_dir}; kept files cairn did not write: {left}")
    else:
        data_dir.rmdir()
        click.echo(f"reset         deleted {data_dir}")


async def _new_admin_token(database_url: str) -> str:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            return await create_admin(session, ADMIN_EMAIL)
    finally:
        await engine.dispose()


def _write_env(path: Path, env: dict[str, str], api_port: int) -> None:
    """The settings of this stack, for operator commands: ``set -a; . .cairn/cairn.env``."""
    keys = (
        "CAIRN_DATABASE_URL",
        "CAIRN_TEMPORAL_ADDRESS",
        "CAIRN_MASTER_KEY",
        "CAIRN_STORAGE_MOUNT_ROOT",
        "CAIRN_DATA_DIR",
        "CAIRN_VOLUME_ROOTS",
    )
    lines = [f"{key}={shlex.quote(env[key])}" for key in keys]
    lines.append(f"CAIRN_API_URL=http://127.0.0.1:{api_port}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def _check_ports(ports: list[Port]) -> None:
    """Refuses to start anything while a port is taken (naming who holds it) or doubled."""
    problems = port_problems(ports)
    if problems:
        raise click.ClickException(
            "cannot start: " + "; ".join(problems) + ". Nothing was started."
        )


def _tail(log: Path, lines: int = 5) -> str:
    """The end of a child's log: why it exited, without opening the file."""
    with contextlib.suppress(OSError):
        text = log.read_text(errors="replace").strip().splitlines()[-lines:]
        return "\n".join(f"  | {line}" for line in text)
    return ""


def _exited(child: Child, after: str = "") -> click.ClickException:
    return click.ClickException(
        f"the {child.name} process exited ({child.exit_status()}){after}; the end of"
        f" {child.log}:\n{_tail(child.log)}"
    )


def _supervise(children: list[Child]) -> None:
    """Restarts a worker or API that exited, saying so in one line; stops the stack (by
    raising) when Temporal exits or a child crash-loops."""
    for child in children:
        if child.process.poll() is None:
            continue
        child.end_leftovers()
        if child.args is None:
            raise _exited(child)
        now = time.monotonic()
        if child.crash_looping(now):
            raise _exited(
                child,
                f" after {RESTART_LIMIT} restarts within {RESTART_WINDOW_SECONDS:.0f}s, so it"
                " is not restarted again: stopping everything",
            )
        status = child.exit_status()
        child.restart(now)
        click.echo(
            f"restarted     the {child.name} process exited ({status}); restarted it as pid"
            f" {child.process.pid} (log: {child.log})"
        )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 40
    for process in reversed(processes):
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        if process.poll() is None:
            process.kill()


def _wait_ready(api_url: str, children: list[Child], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for child in children:
            if child.process.poll() is not None:
                raise _exited(child)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise click.ClickException(f"the API did not become ready within {seconds}s; see the logs")


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path(".cairn"),
    show_default=True,
    help="where the stack keeps its key, admin and metrics tokens, settings, Temporal history,"
    " storages and logs",
)
@click.option(
    "--api-port", type=PORT, default=8000, show_default=True, help="the REST API and its docs"
)
@click.option(
    "--temporal-port",
    type=PORT,
    default=7233,
    show_default=True,
    help="the Temporal dev server's gRPC frontend",
)
@click.option("--ui-port", type=PORT, default=8233, show_default=True, help="the Temporal UI")
@click.option(
    "--metrics-port",
    "metrics_port",
    type=PORT,
    default=9464,
    show_default=True,
    help="the worker's Prometheus endpoint",
)
@click.option(
    "--reset",
    is_flag=True,
    help="start over: drop the database this data folder used and delete the folder"
    " (key, admin and metrics tokens, Temporal history, storages with every backup, apps,"
    " logs)",
)
@click.option("--yes", is_flag=True, help="confirm --reset without asking")
def dev(
    data_dir: Path,
    api_port: int,
    temporal_port: int,
    ui_port: int,
    metrics_port: int,
    reset: bool,
    yes: bool,
) -> None:
    """Start PostgreSQL, the Temporal dev server and UI, migrations, the worker and the API.

    Every process it starts stops with it, however it ends (Ctrl-C, SIGTERM, a closed
    terminal, kill -9); a crashed worker or API is restarted, unless it crash-loops. It
    checks its ports first and starts nothing while one is taken.
    """
    data_dir = data_dir.resolve()
    _check_ports(
        [
            Port(api_port, "--api-port", "the API"),
            Port(temporal_port, "--temporal-port", "Temporal"),
            Port(ui_port, "--ui-port", "the Temporal UI"),
            Port(metrics_port, "--metrics-port", "the worker's metrics"),
        ]
    )
    dbname = database_name(data_dir)
    if reset:
        if not yes:
            click.confirm(
                f"--reset drops database {dbname} and deletes {data_dir}: its master key,"
                " admin and metrics tokens, Temporal history, storages (every backup in"
                " them), application folders (apps) and logs. Continue?",
                abort=True,
            )
        _reset(data_dir, dbname)
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    apps = data_dir / "apps"  # where applications' volumes may live (CAIRN_VOLUME_ROOTS)
    apps.mkdir(exist_ok=True)
    phase = "starting"  # then "running", then "stopping"

    def request_stop(signum: int, _frame: object) -> None:
        """Ends the wait while running; while starting, abandons the start (what was started
        is stopped on the way out); while stopping, changes nothing."""
        nonlocal phase
        if signum == signal.SIGHUP:  # the terminal is gone: writing to it would fail
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.dup2(devnull, sys.stderr.fileno())
            os.close(devnull)
        if phase == "starting":
            phase = "stopping"
            raise click.ClickException(f"{signal.Signals(signum).name} while starting")
        if phase == "running":
            phase = "stopping"

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, request_stop)

    children: list[Child] = []  # in start order; stopped in reverse
    with running_server(data_dir) as pg:
        try:
            pg.create_database(dbname)
            database_url = pg.url(dbname)
            click.echo(f"database      {database_url}")
            migrate.upgrade(database_url)
            master_key = _master_key(data_dir, database_url, dbname)
            temporal = start_dev_server(data_dir, temporal_port, ui_port, logs / "temporal.log")
            children.append(Child("temporal", logs / "temporal.log", temporal))
            wait_for_port(temporal_port, temporal)
            env = {
                **os.environ,
                "CAIRN_DATABASE_URL": database_url,
                "CAIRN_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
                "CAIRN_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui_port}",
                "CAIRN_API_PORT": str(api_port),
                "CAIRN_WORKER_METRICS_PORT": str(metrics_port),
                "CAIRN_STORAGE_MOUNT_ROOT": os.environ.get(
                    "CAIRN_STORAGE_MOUNT_ROOT", str(data_dir / "storages")
                ),
                "CAIRN_MASTER_KEY": master_key,
                # cairn's own folder, refused as an application volume except its apps area
                "CAIRN_DATA_DIR": str(data_dir),
                "CAIRN_VOLUME_ROOTS": os.environ.get("CAIRN_VOLUME_ROOTS", str(apps)),
            }
            # the scrape token of both metrics endpoints (the API's and the worker's)
            scrape_token = "CAIRN_METRICS_TOKEN (from the environment)"
            if not env.get("CAIRN_METRICS_TOKEN"):
                scrape_file = data_dir / "metrics-token"
                env["CAIRN_METRICS_TOKEN"] = _secret_file(scrape_file, secrets.token_urlsafe(32))
                scrape_token = str(scrape_file)
            _write_env(data_dir / "cairn.env", env, api_port)
            token_file = data_dir / "admin-token"
            if not token_file.exists():
                _secret_file(token_file, asyncio.run(_new_admin_token(database_url)))
                click.echo(f"created platform admin {ADMIN_EMAIL}; token in {token_file}")
            for role in ("worker", "api"):
                argv = [sys.executable, "-m", "cli.main", role]
                children.append(Child.spawned(role, argv, logs / f"{role}.log", env))
            api_url = f"http://127.0.0.1:{api_port}"
            _wait_ready(api_url, children, seconds=90)
            click.echo(f"API           {api_url}")
            click.echo(f"API docs      {api_url}/docs")
            click.echo(f"Temporal UI   http://127.0.0.1:{ui_port}")
            click.echo(f"metrics       {api_url}/metrics, http://127.0.0.1:{metrics_port}/metrics")
            click.echo(f"metrics token {scrape_token} (send 'Authorization: Bearer <token>')")
            click.echo(f"admin token   {token_file}")
            click.echo(f"app volumes   {env['CAIRN_VOLUME_ROOTS']} (CAIRN_VOLUME_ROOTS)")
            click.echo(f"settings      {data_dir / 'cairn.env'} (operator commands read it)")
            click.echo(f"logs          {logs}")
            click.echo("cairn is running; Ctrl-C stops everything")
            if phase == "starting":
                phase = "running"
            while phase == "running":
                _supervise(children)
                time.sleep(0.5)
        finally:
            phase = "stopping"
            with contextlib.suppress(OSError):
                click.echo("stopping cairn")
            _stop([child.process for child in children])
