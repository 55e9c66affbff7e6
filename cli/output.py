"""How the operator CLI prints answers: tables for people, JSON for programs, ids for scripts.

``-o json`` prints the API's answer unchanged (a list command prints the page: ``items`` and
``next_cursor``); ``-o table`` a table of the fields that matter; ``-q`` only ids, one per
line. Without ``-o`` a terminal gets a table and a pipe JSON. Messages about what is going
on go to stderr, so stdout stays parseable.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import click
from rich import box
from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from cli.client import NotConfirmed

F = TypeVar("F", bound=Callable[..., Any])
Getter = str | Callable[[dict[str, Any]], Any]
Field = tuple[str, Getter]


def when(value: str | None) -> str | None:
    """An API timestamp to the second, UTC."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + ("Z" if moment.utcoffset() is not None else "")


def size(value: int | None) -> str | None:
    return None if value is None else decimal(value)


def transfer_bar() -> Progress:
    """A bar of bytes sent or received, on stderr (stdout stays parseable); silent when
    stderr is not a terminal."""
    console = Console(stderr=True)
    return Progress(
        *Progress.get_default_columns()[:1],
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _read(record: dict[str, Any], getter: Getter) -> Any:
    return getter(record) if callable(getter) else record.get(getter)


def ids(body: Any) -> list[str]:
    """The ids an answer holds: its own, or its items'."""
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        return [str(item["id"]) for item in body["items"]]
    if isinstance(body, dict) and "id" in body:
        return [str(body["id"])]
    return []


def note(message: str) -> None:
    """A message for the person at the terminal (stderr), never mixed into stdout."""
    click.echo(message, err=True)


def typed_confirmation(name: str, given: str | None, what: str) -> None:
    """``name`` typed at a prompt, or passed with ``--confirm``, before data is destroyed.

    Without a terminal there is nobody to ask: the command stops unless ``--confirm`` said
    the name. A wrong name stops it too (exit 2), and nothing is changed.
    """
    if given is None:
        if not sys.stdin.isatty():
            raise NotConfirmed(f"not confirmed: pass --confirm {name} to {what}")
        try:
            given = click.prompt(f"Type {name} to {what}", err=True)
        except click.Abort:  # Ctrl-C or end of input at the prompt
            raise NotConfirmed("not confirmed; nothing was changed") from None
    if given != name:
        raise NotConfirmed(f"{given!r} is not {name}; nothing was changed")


@dataclass(frozen=True)
class Output:
    format: str  # json | table
    quiet: bool

    def _console(self) -> Console:
        # In a pipe a row stays one line, whatever its width, so grep and cut work on it.
        width = None if sys.stdout.isatty() else 1000
        return Console(soft_wrap=False, highlight=False, width=width)

    def record(self, body: dict[str, Any], fields: Sequence[Field]) -> None:
        """One object: its id (``-q``), the API's JSON, or a field/value table."""
        if self.quiet:
            click.echo("\n".join(ids(body)))
        elif self.format == "json":
            click.echo(json.dumps(body, indent=2))
        else:
            table = Table(show_header=False, box=box.SIMPLE)
            table.add_column(style="bold")
            table.add_column()
            for header, getter in fields:
                table.add_row(header, cell(_read(body, getter)))
            self._console().print(table)

    def rows(self, items: Sequence[dict[str, Any]], columns: Sequence[Field], title: str) -> None:
        """A table with one row per item (table format only)."""
        table = Table(title=title, box=box.SIMPLE, title_justify="left")
        for header, _ in columns:
            table.add_column(header)
        for item in items:
            table.add_row(*(cell(_read(item, getter)) for _, getter in columns))
        self._console().print(table)

    def page(self, body: dict[str, Any], columns: Sequence[Field], what: str) -> None:
        """A list answer: ids, the page as JSON, or a table and how to get the next page."""
        if self.quiet:
            if body["items"]:
                click.echo("\n".join(ids(body)))
        elif self.format == "json":
            click.echo(json.dumps(body, indent=2))
        elif not body["items"]:
            note(f"no {what}")
        else:
            self.rows(body["items"], columns, title="")
            if body.get("next_cursor"):
                note(f"more: add --cursor {body['next_cursor']}")


def output_options(command: F) -> F:
    """``-o/--output`` and ``-q/--quiet``; the command receives them as ``out``."""

    @click.option(
        "-o",
        "--output",
        type=click.Choice(["json", "table"]),
        default=None,
        help="json: the API's answer unchanged; table: the fields that matter"
        " [default: table on a terminal, json otherwise]",
    )
    @click.option(
        "-q", "--quiet", is_flag=True, help="print only ids, one per line (for $(...) in scripts)"
    )
    @functools.wraps(command)
    def wrapper(*args: Any, output: str | None, quiet: bool, **kwargs: Any) -> Any:
        chosen = output or ("table" if sys.stdout.isatty() else "json")
        return command(*args, out=Output(chosen, quiet), **kwargs)

    return wrapper  # type: ignore[return-value]


def limit_options(command: F) -> F:
    """``--limit`` and ``--cursor`` of a list command (the API's pagination)."""
    command = click.option(
        "--cursor", metavar="CURSOR", help="next page: the next_cursor of the previous answer"
    )(command)
    return click.option(
        "--limit",
        type=click.IntRange(1, 200),
        default=50,
        show_default=True,
        help="at most this many, newest first",
    )(command)
