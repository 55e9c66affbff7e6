"""``cairn dev``: the whole service on one machine, with embedded defaults and persistent data."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shlex
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
from devstack.temporal import start_dev_server, wait_for_port

ADMIN_EMAIL = "admin@cairn.local"


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


async def _new_admin_token(database_url: str) -> str:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            return await create_admin(session, ADMIN_EMAIL)
    finally:
        await engine.dispose()


def _write_env(path: Path, env: dict[str, str], api_port: int) -> None:
    """The settings of this stack, for operator commands: ``set -a; . .cairn/cairn.env``."""
    keys = ("CAIRN_DATABASE_URL", "CAIRN_TEMPORAL_ADDRESS", "CAIRN_MASTER_KEY",
            "CAIRN_STORAGE_MOUNT_ROOT")  # fmt: skip
    lines = [f"{key}={shlex.quote(env[key])}" for key in keys]
    lines.append(f"CAIRN_API_URL=http://127.0.0.1:{api_port}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")


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


def _wait_ready(api_url: str, processes: list[subprocess.Popen[bytes]], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise click.ClickException(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise click.ClickException(f"the API did not become ready within {seconds}s; see the logs")


@click.command()
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=Path(".cairn"), show_default=True
)
@click.option("--api-port", type=int, default=8000, show_default=True)
@click.option("--temporal-port", type=int, default=7233, show_default=True)
@click.option("--ui-port", type=int, default=8233, show_default=True)
@click.option("--metrics-port", "metrics_port", type=int, default=9464, show_default=True,
              help="the worker's Prometheus endpoint")  # fmt: skip
def dev(data_dir: Path, api_port: int, temporal_port: int, ui_port: int, metrics_port: int) -> None:
    """Start PostgreSQL, the Temporal dev server and UI, migrations, the worker and the API."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    stop_requested = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    processes: list[subprocess.Popen[bytes]] = []
    with running_server(data_dir) as pg:
        try:
            dbname = database_name(data_dir)
            pg.create_database(dbname)
            database_url = pg.url(dbname)
            click.echo(f"database      {database_url}")
            migrate.upgrade(database_url)
            temporal = start_dev_server(data_dir, temporal_port, ui_port, logs / "temporal.log")
            processes.append(temporal)
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
                "CAIRN_MASTER_KEY": os.environ.get("CAIRN_MASTER_KEY")
                or _secret_file(data_dir / "master-key", generate_master_key()),
            }
            _write_env(data_dir / "cairn.env", env, api_port)
            token_file = data_dir / "admin-token"
            if not token_file.exists():
                _secret_file(token_file, asyncio.run(_new_admin_token(database_url)))
                click.echo(f"created platform admin {ADMIN_EMAIL}; token in {token_file}")
            for role in ("worker", "api"):
                log = (logs / f"{role}.log").open("ab")
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "cli.main", role],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            api_url = f"http://127.0.0.1:{api_port}"
            _wait_ready(api_url, processes, seconds=90)
            click.echo(f"API           {api_url}")
            click.echo(f"API docs      {api_url}/docs")
            click.echo(f"Temporal UI   http://127.0.0.1:{ui_port}")
            click.echo(f"metrics       {api_url}/metrics, http://127.0.0.1:{metrics_port}/metrics")
            click.echo(f"admin token   {token_file}")
            click.echo(
                f"settings      {data_dir / 'cairn.env'} (set -a; . {data_dir / 'cairn.env'})"
            )
            click.echo(f"logs          {logs}")
            click.echo("cairn is running; Ctrl-C stops everything")
            while not stop_requested:
                for process in processes:
                    if process.poll() is not None:
                        raise click.ClickException(
                            f"{process.args!r} exited with {process.returncode}; see {logs}"
                        )
                time.sleep(0.5)
        finally:
            click.echo("stopping cairn")
            _stop(processes)
