"""What every operator command shares: ``cairn dev``'s settings file, and one-line errors.

An operator in a new shell next to ``cairn dev`` should not have to ``source`` anything:
commands read ``.cairn/cairn.env`` when it is there (variables already set win). Expected
failures (no database, no Temporal, a master key that opens nothing, bad settings) end with
one line that says what to fix and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import psycopg
import sqlalchemy.exc
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from core.crypto import CryptoError

ENV_FILE = "cairn.env"
_loaded: Path | None = None  # the cairn.env this command read, for the hints in errors


def env_file() -> Path:
    """``$CAIRN_DATA_DIR/cairn.env``, else ``.cairn/cairn.env`` in the current folder."""
    return Path(os.environ.get("CAIRN_DATA_DIR") or ".cairn") / ENV_FILE


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines as ``cairn dev`` writes them (values shell-quoted)."""
    values = {}
    for line in path.read_text().splitlines():
        key, sep, raw = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            words = shlex.split(raw)
            values[key] = words[0] if words else ""
    return values


def load_env_file() -> Path | None:
    """Sets the file's variables that the environment does not set; the file, if read."""
    path = env_file()
    if not path.is_file():
        return None
    for key, value in read_env_file(path).items():
        os.environ.setdefault(key, value)
    return path.resolve()


def _where_settings_come_from(loaded: Path | None, variable: str) -> str:
    if loaded is not None:
        return f"settings read from {loaded}; is 'cairn dev' still running?"
    if variable in os.environ:
        return f"check {variable}"
    return (
        f"{variable} is not set and there is no {env_file()}: run this in the folder where"
        " 'cairn dev' runs, or set CAIRN_DATABASE_URL, CAIRN_TEMPORAL_ADDRESS and"
        " CAIRN_MASTER_KEY as the worker has them"
    )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _database_problem(exc: BaseException, loaded: Path | None) -> str:
    from core.settings import get_settings

    url = make_url(get_settings().database_url).render_as_string(hide_password=True)
    return (
        f"cannot reach cairn's database {url}: {_first_line(exc)}"
        f" ({_where_settings_come_from(loaded, 'CAIRN_DATABASE_URL')})"
    )


@contextlib.contextmanager
def reaching_temporal() -> Iterator[None]:
    """Turns a failed connection to Temporal into one line naming the address."""
    from core.settings import get_settings

    try:
        yield
    except (TimeoutError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not str(exc).startswith("Failed client connect"):
            raise
        settings = get_settings()
        raise click.ClickException(
            f"cannot reach Temporal at {settings.temporal_address} (namespace"
            f" {settings.temporal_namespace}): {_first_line(exc) if str(exc) else 'no answer'}"
            f" ({_where_settings_come_from(_loaded, 'CAIRN_TEMPORAL_ADDRESS')})"
        ) from None


# Commands that read cairn's settings and so its cairn.env; not ``dev``, which writes one for
# its own data folder, nor the servers (``api``, ``worker``), configured by their deployment.
OPERATOR_COMMANDS = {"migrate", "temporal", "schedules", "admin", "catalog"}


def prepare(command: str | None) -> None:
    """Called by the ``cairn`` group before ``command`` parses its options (so ``--api-url``
    and the like see the file's values too)."""
    global _loaded
    if command in OPERATOR_COMMANDS:
        _loaded = load_env_file()


class OperatorGroup(click.Group):
    """The ``cairn`` group: expected errors of any command end as one line, exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.InterfaceError,
            psycopg.OperationalError,
        ) as exc:
            raise click.ClickException(_database_problem(exc, _loaded)) from None
        except CryptoError as exc:
            raise click.ClickException(
                f"{exc}: CAIRN_MASTER_KEY must be the key the worker uses"
                f" ({_where_settings_come_from(_loaded, 'CAIRN_MASTER_KEY')})"
            ) from None
        except ValidationError as exc:
            if exc.title != "Settings":  # another model's error is not an operator's to fix
                raise
            problems = "; ".join(
                f"CAIRN_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
                for error in exc.errors()
            )
            raise click.ClickException(f"invalid settings: {problems}") from None
