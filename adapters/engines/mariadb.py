"""MariaDB and MySQL (issue 24, docs/engines.md): ``mariadb-dump`` into restic, row counts read
from the dump itself, restores verified in a staging database before the live one is replaced.

- **Consistency.** ``--single-transaction`` dumps InnoDB tables from one consistent snapshot
  without locking them. The figures that verify a restore (rows per table) are counted from the
  dump's own bytes as they stream into restic, so they describe exactly what was stored, even
  while the application writes. (A separate ``COUNT(*)`` could not join mariadb-dump's
  transaction.) Non-transactional tables (MyISAM) are not consistent with the rest; MariaDB
  offers nothing better short of locking the whole database.
- **Restore.** MariaDB has no ``RENAME DATABASE``, and ``RENAME TABLE`` refuses to move a table
  with triggers to another database, so the swap PostgreSQL gets from a database rename is not
  available. The dump is restored into a staging database first and its row counts compared
  with the backup's; only a dump proven complete and loadable there is then loaded under the
  real name (dropped and created again with the backup's character set), and verified again;
  the staging database is dropped last. A failure before the live load leaves the live
  database untouched; a failure during it is repaired by running the restore again (every step
  starts from scratch).
- **Secrets.** The password reaches the tools through an option file readable by cairn's user
  only, never on a command line (where ``ps`` shows it) or in a message.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from adapters.engines.contract import BackedUp, NamedDump, check_identity
from adapters.engines.stream import EngineError, command_into_restic
from adapters.restic import BackupResult, Progress, Repository, Restic, ResticError

SCHEMES: Final = ("mysql", "mariadb")
DUMP_FILE: Final = "database.sql"
"""The only file of a MariaDB/MySQL database part's snapshot: mariadb-dump's SQL."""
SYSTEM_DATABASES: Final = frozenset({"mysql", "information_schema", "performance_schema", "sys"})
DEFAULT_PORT: Final = 3306
_MAX_NAME: Final = 64
# a server restarting or not reachable yet; not a wrong password or an unknown database
_TRANSIENT = re.compile(r"Can't connect|Lost connection|server has gone away|\(111\)|\(2002\)")


@dataclass(frozen=True)
class MariaTarget:
    """A database on a MariaDB or MySQL server; ``host`` may be a Unix socket path."""

    host: str
    port: int
    user: str
    dbname: str
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str, password: str | None = None) -> MariaTarget:
        """``mysql://user[:password]@host[:port]/database`` (or ``mariadb://``); a password
        given apart (opened from its sealed form) wins over one in the URL."""
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise EngineError(f"not a MariaDB/MySQL URL: scheme {parts.scheme!r}", retryable=False)
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname or "/" in dbname or len(dbname) > _MAX_NAME:
            raise EngineError(
                "a MariaDB/MySQL URL names one database: mysql://user@host/database",
                retryable=False,
            )
        if not parts.username:
            raise EngineError("a MariaDB/MySQL URL names its user", retryable=False)
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or DEFAULT_PORT,
            user=unquote(parts.username),
            dbname=dbname,
            password=password if password is not None else unquote(parts.password or "") or None,
        )

    def named(self, dbname: str) -> MariaTarget:
        return MariaTarget(self.host, self.port, self.user, dbname, self.password)


@dataclass(frozen=True)
class MariaDump(BackupResult):
    """A dump's snapshot with the rows per table counted from its own bytes, and what the
    live database is created again with."""

    row_counts: dict[str, int]
    server_version: str
    charset: str
    collation: str


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _option_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextmanager
def _options(target: MariaTarget) -> Iterator[list[str]]:
    """The connection options of every tool, the password in a private option file."""
    with tempfile.TemporaryDirectory(prefix="cairn-mariadb-") as folder:
        path = Path(folder) / "client.cnf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("[client]\n")
            if target.password:
                out.write(f"password={_option_value(target.password)}\n")
        where = (
            ["--socket", target.host]
            if target.host.startswith("/")
            else ["--host", target.host, "--port", str(target.port), "--protocol=TCP"]
        )
        yield [f"--defaults-extra-file={path}", *where, "--user", target.user]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MYSQL")}


def _fail(tool: str, done: subprocess.CompletedProcess[bytes], target: MariaTarget) -> EngineError:
    text = done.stderr.decode(errors="replace").strip() or "no message"
    if target.password:
        text = text.replace(target.password, "********")
    return EngineError(
        f"{tool} failed (exit {done.returncode}): {text}", retryable=bool(_TRANSIENT.search(text))
    )


def query(target: MariaTarget, sql: str, *, database: str | None = None) -> list[list[str]]:
    """Rows of one statement, through the ``mariadb`` client (tab-separated, raw)."""
    with _options(target) as options:
        argv = ["mariadb", *options, "--batch", "--raw", "--skip-column-names", "-e", sql]
        done = subprocess.run(
            [*argv, *([database] if database else [])],
            env=_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=300,
            check=False,
        )
    if done.returncode != 0:
        raise _fail("mariadb", done, target)
    return [line.split("\t") for line in done.stdout.decode().splitlines()]


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def refuse_system(dbname: str) -> None:
    if dbname.lower() in SYSTEM_DATABASES:
        raise EngineError(f"{dbname} is a system database of the server", retryable=False)


def table_row_counts(target: MariaTarget) -> dict[str, int]:
    """``COUNT(*)`` of every base table, in one statement (names come back hex-encoded, so
    any name survives the client's tab-separated output)."""
    rows = query(
        target,
        "SELECT HEX(table_name) FROM information_schema.tables WHERE table_schema = "
        f"{_literal(target.dbname)} AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    names = [bytes.fromhex(hexed).decode() for (hexed,) in rows]
    if not names:
        return {}
    counts = " UNION ALL ".join(
        f"SELECT {i}, COUNT(*) FROM {quote_name(target.dbname)}.{quote_name(name)}"
        for i, name in enumerate(names)
    )
    return {names[int(i)]: int(n) for i, n in query(target, counts)}


# A quoted string of mariadb-dump's output (backslash escapes), or a parenthesis outside one.
_TOKENS = re.compile(rb"'(?:[^'\\]|\\.)*'|\(")
_INSERT = b"INSERT INTO `"
_CREATE = b"CREATE TABLE `"


def _name_after(line: bytes, prefix: bytes) -> str:
    """The backquoted name that follows ``prefix`` (a doubled backquote is one inside it)."""
    rest, out = line[len(prefix) :], bytearray()
    i = 0
    while i < len(rest):
        if rest[i : i + 1] == b"`":
            if rest[i + 1 : i + 2] != b"`":
                break
            i += 1
        out += rest[i : i + 1]
        i += 1
    return out.decode()


class RowCounter:
    """Counts the rows of each table in mariadb-dump's output as it passes.

    A row is one parenthesised tuple of an ``INSERT`` statement; strings are skipped whole
    (the dump escapes their quotes and newlines, so a line never ends inside one). Works for
    one tuple per line (MariaDB 10.x) and for all of them on one line (mysqldump 8).
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._table: str | None = None
        self._rest = b""

    def feed(self, chunk: bytes) -> None:
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            self._line(line)

    def close(self) -> dict[str, int]:
        if self._rest:
            self._line(self._rest)
            self._rest = b""
        return self.counts

    def _line(self, line: bytes) -> None:
        if self._table is None:
            if line.startswith(_CREATE):
                self.counts.setdefault(_name_after(line, _CREATE), 0)
                return
            if not line.startswith(_INSERT):
                return
            self._table = _name_after(line, _INSERT)
            self.counts.setdefault(self._table, 0)
            line = line[line.index(b" VALUES") :]
        if line.startswith(b"(") and b"),(" not in line:
            opened = 1  # one tuple per line (MariaDB): a second one would follow "),("
        else:
            opened = sum(1 for token in _TOKENS.findall(line) if token == b"(")
        self.counts[self._table] += opened
        if line.rstrip().endswith(b";"):
            self._table = None


def dump_into_restic(
    target: MariaTarget,
    restic: Restic,
    repo: Repository,
    tags: list[str],
    *,
    progress: Callable[[Progress], None] | None = None,
) -> MariaDump:
    """One database into a new snapshot holding ``/database.sql``; nothing partial stays."""
    refuse_system(target.dbname)
    found = query(
        target,
        "SELECT VERSION(), default_character_set_name, default_collation_name FROM"
        f" information_schema.schemata WHERE schema_name = {_literal(target.dbname)}",
    )
    if not found:
        raise EngineError(f"database {target.dbname} does not exist", retryable=False)
    version, charset, collation = found[0]
    counter = RowCounter()
    with _options(target) as options:
        argv = [
            "mariadb-dump",
            *options,
            "--single-transaction",
            "--quick",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--default-character-set=utf8mb4",
            "--skip-dump-date",
            target.dbname,
        ]
        result = command_into_restic(
            argv,
            _env(),
            restic,
            repo,
            tags,
            DUMP_FILE,
            watch=counter.feed,
            secret=target.password,
            transient=lambda message: bool(_TRANSIENT.search(message)),
            progress=progress,
        )
    stored = {name: getattr(result, name) for name in BackupResult.__dataclass_fields__}
    return MariaDump(
        **stored,
        row_counts=counter.close(),
        server_version=version,
        charset=charset,
        collation=collation,
    )


def _load(target: MariaTarget, restic: Restic, repo: Repository, snapshot_id: str) -> None:
    """``restic dump`` of the SQL piped into the ``mariadb`` client, into ``target.dbname``."""
    dump = restic.dump(repo, snapshot_id, DUMP_FILE)
    assert dump.stdout is not None
    with _options(target) as options:
        done = subprocess.run(
            ["mariadb", *options, "--binary-mode", target.dbname],
            env=_env(),
            stdin=dump.stdout,
            capture_output=True,
            check=False,
        )
    try:
        restic.finish_dump(repo, dump)
    except ResticError as exc:
        raise EngineError(
            f"reading the dump failed: {exc.message}", retryable=exc.retryable
        ) from exc
    if done.returncode != 0:
        raise _fail("mariadb", done, target)


def _create(target: MariaTarget, charset: str, collation: str) -> None:
    name = quote_name(target.dbname)
    query(
        target,
        f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name} CHARACTER SET {charset}"
        f" COLLATE {collation}",
    )


def _verified(target: MariaTarget, expected: dict[str, int], where: str) -> None:
    found = table_row_counts(target)
    differ = sorted(t for t in set(found) | set(expected) if found.get(t) != expected.get(t))
    if differ:
        raise EngineError(
            f"the restored {where} does not match the backup (rows differ in"
            f" {', '.join(differ[:5])})",
            retryable=False,
        )


def staging_name(dbname: str, run_id: str) -> str:
    """A database beside ``dbname`` for one restore run (at most 64 characters)."""
    suffix = f"_cairn_{re.sub('[^0-9a-z]', '', run_id.lower())[:12]}"
    return dbname[: _MAX_NAME - len(suffix)] + suffix


def server_identity(target: MariaTarget, *, existing: bool = False) -> str:
    """The server's host name, port and data folder, and the database's name (MariaDB has no
    server UUID); ``existing``: connecting to the database also proves it exists (a restore
    may bring back a dropped one, so the check before a write does not ask it)."""
    found = query(
        target, "SELECT @@hostname, @@port, @@datadir", database=target.dbname if existing else None
    )
    return "\t".join([*found[0], target.dbname])


def _check_server(target: MariaTarget, identity: str) -> None:
    """Right before a write: the server still answers as the registered one."""
    where = f"database {target.dbname} at {target.host}:{target.port}"
    check_identity(server_identity(target), identity, where)


def restore_from_restic(
    target: MariaTarget,
    restic: Restic,
    repo: Repository,
    snapshot_id: str,
    backed_up: MariaDump,
    run_id: str,
    *,
    identity: str,
) -> None:
    """Replaces ``target.dbname`` with the backup, proven first in a staging database named
    for ``run_id`` (so a retried run finds and replaces its own). The server must answer
    ``identity`` (``server_identity``) before the staging database is made and again before
    the live one is replaced: ``IdentityRefused`` otherwise, and nothing more is written."""
    refuse_system(target.dbname)
    _check_charset(backed_up)
    staging = target.named(staging_name(target.dbname, run_id))
    _check_server(target, identity)
    _create(staging, backed_up.charset, backed_up.collation)
    try:
        _load(staging, restic, repo, snapshot_id)
        _verified(staging, backed_up.row_counts, "staging copy")
        _check_server(target, identity)
        _create(target, backed_up.charset, backed_up.collation)
        _load(target, restic, repo, snapshot_id)
        _verified(target, backed_up.row_counts, "database")
    finally:
        drop_beside(target, staging.dbname, identity)


def _check_charset(backed_up: MariaDump) -> None:
    for word in (backed_up.charset, backed_up.collation):
        if not re.fullmatch(r"[A-Za-z0-9_]+", word):
            raise EngineError(
                f"the backup names an unknown character set {word!r}", retryable=False
            )


def drop_beside(target: MariaTarget, dbname: str, identity: str) -> None:
    """Drops cairn's database ``dbname`` beside ``target`` (a staging or scratch copy); not
    even a drop on a server that no longer answers as the registered one."""
    if server_identity(target) == identity:
        query(target, f"DROP DATABASE IF EXISTS {quote_name(dbname)}")


def drill_name(dbname: str, drill_id: str) -> str:
    """A drill's scratch database beside ``dbname`` (at most 64 characters): beside it, so a
    user granted the application's name prefix may make it."""
    suffix = f"_cairn_drill_{re.sub('[^0-9a-z]', '', drill_id.lower())[:12]}"
    return dbname[: _MAX_NAME - len(suffix)] + suffix


def drill_from_restic(
    target: MariaTarget,
    restic: Restic,
    repo: Repository,
    snapshot_id: str,
    backed_up: MariaDump,
    drill_id: str,
    *,
    identity: str,
) -> dict[str, int]:
    """The dump loaded into the drill's scratch database beside ``target`` (made after the
    server answered ``identity``), its rows per table counted, and the scratch database
    dropped in every outcome; ``target`` itself is never written."""
    refuse_system(target.dbname)
    _check_charset(backed_up)
    scratch = target.named(drill_name(target.dbname, drill_id))
    _check_server(target, identity)
    _create(scratch, backed_up.charset, backed_up.collation)
    try:
        _load(scratch, restic, repo, snapshot_id)
        return table_row_counts(scratch)
    finally:
        drop_beside(target, scratch.dbname, identity)


def _as_dump(snapshot_id: str, backed_up: BackedUp) -> MariaDump:
    """The backup as its manifest recorded it: what a restore reads (rows per table, the
    character set), not the sizes of the transfer that stored it."""
    return MariaDump(
        snapshot_id, 0, 0, 0, 0, 0,
        row_counts=backed_up.figures,
        server_version="",
        charset=backed_up.restore_with.get("charset", "utf8mb4"),
        collation=backed_up.restore_with.get("collation", "utf8mb4_general_ci"),
    )  # fmt: skip


class MariaEngine:
    """This module as an engine of an application's named database (``contract.Engine``)."""

    kind: str = "mariadb"
    schemes: tuple[str, ...] = SCHEMES

    def check_url(self, url: str) -> None:
        refuse_system(MariaTarget.from_url(url).dbname)

    def identity(self, url: str, password: str | None) -> str:
        """The server's host name, port and data folder, and the database's name (MariaDB
        has no server UUID)."""
        target = MariaTarget.from_url(url, password)
        refuse_system(target.dbname)
        return server_identity(target, existing=True)

    def dump(
        self,
        url: str,
        password: str | None,
        restic: Restic,
        repo: Repository,
        tags: list[str],
        progress: Callable[[Progress], None],
    ) -> NamedDump:
        dump = dump_into_restic(
            MariaTarget.from_url(url, password), restic, repo, tags, progress=progress
        )
        return NamedDump(
            dump.snapshot_id,
            dump.total_bytes_processed,
            dump.data_added,
            dump.row_counts,
            dump.server_version,
            self.kind,
            {"charset": dump.charset, "collation": dump.collation},
        )

    def restore(
        self,
        url: str,
        password: str | None,
        restic: Restic,
        repo: Repository,
        snapshot_id: str,
        backed_up: BackedUp,
        run_id: str,
        identity: str,
    ) -> str:
        target = MariaTarget.from_url(url, password)
        recorded = _as_dump(snapshot_id, backed_up)
        restore_from_restic(target, restic, repo, snapshot_id, recorded, run_id, identity=identity)
        return f"database {target.dbname} loaded from the backup after its staging copy verified"

    def drill(
        self,
        url: str,
        password: str | None,
        restic: Restic,
        repo: Repository,
        snapshot_id: str,
        backed_up: BackedUp,
        drill_id: str,
        identity: str,
    ) -> dict[str, int]:
        target = MariaTarget.from_url(url, password)
        recorded = _as_dump(snapshot_id, backed_up)
        return drill_from_restic(
            target, restic, repo, snapshot_id, recorded, drill_id, identity=identity
        )

    def remove_drill(self, url: str, password: str | None, drill_id: str, identity: str) -> None:
        target = MariaTarget.from_url(url, password)
        drop_beside(target, drill_name(target.dbname, drill_id), identity)

    def size_bytes(self, url: str, password: str | None) -> int:
        """Its tables' data and indexes as the server counts them."""
        target = MariaTarget.from_url(url, password)
        found = query(
            target,
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables"
            f" WHERE table_schema = {_literal(target.dbname)}",
        )
        return int(found[0][0])

    def measure(self, url: str, password: str | None) -> dict[str, int]:
        return table_row_counts(MariaTarget.from_url(url, password))

    def differences(self, found: dict[str, int], backed_up: dict[str, int]) -> list[str]:
        return [
            f"table {table}: {found.get(table)} rows, the backup had {backed_up.get(table)}"
            for table in sorted(set(found) | set(backed_up))
            if found.get(table) != backed_up.get(table)
        ]
