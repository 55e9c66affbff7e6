"""Entry point of the ``cairn`` console script."""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from typing import Any

import click
import uvicorn

from cli import operator
from cli.admin import admin
from cli.backups import backups
from cli.catalog import catalog
from cli.dev import dev
from cli.drills import drills
from cli.mover import mover
from cli.notification_channels import notification_channels
from cli.offsite_targets import offsite_targets
from cli.policies import policies
from cli.restores import restores
from cli.storages import storages
from core.settings import get_settings


@click.group(cls=operator.OperatorGroup)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="how much the command logs",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str) -> None:
    """cairn: backup and restore of PaaS applications on Temporal.

    Operator commands (migrate, temporal, schedules, catalog, admin) read .cairn/cairn.env,
    written by 'cairn dev', when it is there; variables already set in the environment win.
    """
    operator.prepare(ctx.invoked_subcommand)
    logging.config.dictConfig(log_config(log_level.upper()))


def log_config(level: str) -> dict[str, Any]:
    """One logging set-up, also for the API's processes, which uvicorn starts afresh."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"level": level, "handlers": ["stderr"]},
        # one line per request is noise here
        "loggers": {"httpx": {"level": "WARNING"}},
    }


@cli.command()
def migrate() -> None:
    """Bring the database schema to the newest revision."""
    from db.migrate import upgrade

    upgrade(get_settings().database_url)
    click.echo("database schema is at head")


@cli.command()
def worker() -> None:
    """Serve the cairn-control and cairn-data task queues (graceful on SIGTERM)."""
    from worker.main import main as run_worker

    run_worker(get_settings())


@cli.command()
def api() -> None:
    """Serve the REST API with uvicorn, one process per core (CAIRN_API_PROCESSES)."""
    settings = get_settings()
    uvicorn.run(
        "api.asgi:app",
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_processes,
        log_config=log_config(logging.getLevelName(logging.getLogger().level)),
    )


@cli.group()
def temporal() -> None:
    """Temporal cluster set-up."""


@temporal.command("setup")
def temporal_setup() -> None:
    """Register cairn's search attributes on the configured namespace (idempotent)."""
    import asyncio

    from core.temporal import register_search_attributes

    with operator.reaching_temporal():
        added = asyncio.run(register_search_attributes(get_settings()))
    click.echo(f"search attributes added: {', '.join(added) or 'none (already present)'}")


@cli.group()
def schedules() -> None:
    """Backup and drill policy schedules in Temporal."""


@schedules.command("reconcile")
def schedules_reconcile() -> None:
    """Repair drift between backup/drill policies and their schedules; prints what changed."""
    import asyncio
    import json
    from dataclasses import asdict

    from core.temporal import connect
    from db.session import make_engine, make_sessionmaker
    from schedules.reconcile import reconcile_all

    async def run() -> dict[str, object]:
        settings = get_settings()
        engine = make_engine(settings.database_url)
        try:
            client = await connect(settings)
            return asdict(await reconcile_all(client, make_sessionmaker(engine), settings))
        finally:
            await engine.dispose()

    with operator.reaching_temporal():
        report = asyncio.run(run())
    click.echo(json.dumps(report, indent=2))


cli.add_command(dev)
cli.add_command(admin)
cli.add_command(mover)
cli.add_command(catalog)
for operator_group in (
    storages,
    policies,
    backups,
    restores,
    drills,
    offsite_targets,
    notification_channels,
):
    cli.add_command(operator_group)


SERVERS = {"dev", "worker", "api"}


def main() -> None:
    try:
        cli()
    except SystemExit as done:
        if "temporalio.runtime" not in sys.modules or SERVERS & set(sys.argv[1:]):
            raise
        # A short command that made a Temporal client skips the interpreter's finalization:
        # the SDK's runtime threads may call into Python while it finalizes and abort a
        # clean exit with SIGABRT (temporalio/sdk-python#300; seen after a failed connect).
        # The servers end through their own shutdown, with atexit handlers.
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
