"""``cairn dev`` owns its children: they die with it, a crashed worker or API is restarted
(a crash loop stops the stack), and a taken port stops it before start."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from cli.dev import database_name
from devstack.postgres import PostgresServer, answers
from devstack.processes import RESTART_LIMIT, Port, port_problems
from tests.conftest import free_ports
from tests.integration.test_processes import _wait_for, cairn

pytestmark = pytest.mark.integration

OPTIONS = ("--api-port", "--temporal-port", "--ui-port", "--metrics-port")


def _ports() -> dict[str, int]:
    return dict(zip(OPTIONS, free_ports(len(OPTIONS)), strict=True))


def _args(data: Path, ports: dict[str, int]) -> list[str]:
    args = ["dev", "--data-dir", str(data)]
    for option, port in ports.items():
        args += [option, str(port)]
    return args


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie (an orphan's zombie holds no port and does no work)."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _wait_until_gone(children: list[psutil.Process], ports: dict[str, int]) -> None:
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        alive = [child for child in children if _alive(child)]
        taken = port_problems([Port(p, o, o) for o, p in ports.items()])
        if not alive and not taken:
            return
        time.sleep(0.5)
    pytest.fail(f"left behind: {alive} and ports {taken}")


@dataclass
class Stack:
    """A ``cairn dev`` under test and the children seen so far."""

    process: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int]
    children: list[psutil.Process] = field(default_factory=list)

    def look(self) -> list[str]:
        with contextlib.suppress(psutil.Error):
            self.children = psutil.Process(self.process.pid).children(recursive=True)
        return [" ".join(child.cmdline()) for child in self.children]


@contextlib.contextmanager
def _dev(tmp_path: Path, *extra: str) -> Iterator[Stack]:
    """Starts ``cairn dev``; whatever happens, kills what is left and drops its database."""
    data, log = tmp_path / "data", tmp_path / "dev.log"
    try:
        ports = _ports()
        stack = Stack(cairn(*_args(data, ports), *extra, log=log), log, ports)
        try:
            yield stack
        finally:
            for process in (stack.process, *stack.children):
                with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                    process.kill()
    finally:
        if answers():
            PostgresServer().drop_database(database_name(data))


@pytest.mark.parametrize("kill", [signal.SIGHUP, signal.SIGKILL], ids=["sighup", "sigkill"])
def test_children_die_with_cairn_dev(tmp_path: Path, kill: signal.Signals) -> None:
    with _dev(tmp_path) as stack:
        _wait_for(stack.log, "cairn is running", stack.process, seconds=120)
        commands = stack.look()
        assert any("start-dev" in c for c in commands), commands
        assert any("cli.main worker" in c for c in commands), commands
        assert any("cli.main api" in c for c in commands), commands
        assert port_problems([Port(p, o, o) for o, p in stack.ports.items()]) != []
        os.kill(stack.process.pid, kill)
        code = stack.process.wait(timeout=60)
        assert code == (0 if kill == signal.SIGHUP else -signal.SIGKILL)
        _wait_until_gone(stack.children, stack.ports)


def _role(stack: Stack, role: str, other_than: int | None = None) -> psutil.Process:
    """The ``cairn worker`` or ``cairn api`` child of ``cairn dev`` (a new one, if asked)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert stack.process.poll() is None, stack.log.read_text()
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(stack.process.pid).children():
                if f"cli.main {role}" in " ".join(child.cmdline()) and child.pid != other_than:
                    return child
        time.sleep(0.1)
    pytest.fail(f"no new {role} process: {stack.log.read_text()}")


def _ready(stack: Stack) -> None:
    """The API's /readyz answers 200: the API serves and a worker polls both queues."""
    url = f"http://127.0.0.1:{stack.ports['--api-port']}/readyz"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"/readyz did not answer 200: {stack.log.read_text()}")


def _restarted(stack: Stack, role: str, pid: int) -> psutil.Process:
    """SIGKILLs the child ``pid``; the line cairn dev prints, and the new child."""
    os.kill(pid, signal.SIGKILL)
    said = f"the {role} process exited (killed by SIGKILL); restarted it as pid"
    _wait_for(stack.log, said, stack.process, seconds=30)
    return _role(stack, role, other_than=pid)


GAVE_UP = "so it is not restarted again"


def _killed_and_restarted(stack: Stack, child: psutil.Process) -> bool:
    """SIGKILLs ``child``: True once cairn dev restarted it, False once it gave up."""
    restarts = stack.log.read_text().count("restarted it as pid")
    with contextlib.suppress(psutil.NoSuchProcess):
        child.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        said = stack.log.read_text()
        if GAVE_UP in said:
            return False
        if said.count("restarted it as pid") > restarts:
            return True
        time.sleep(0.1)
    pytest.fail(f"neither restarted nor given up: {stack.log.read_text()}")


def test_a_killed_worker_is_restarted_and_the_stack_still_stops_cleanly(tmp_path: Path) -> None:
    with _dev(tmp_path) as stack:
        _wait_for(stack.log, "cairn is running", stack.process, seconds=120)
        worker_log = tmp_path / "data" / "logs" / "worker.log"
        served = worker_log.read_text().count("worker serving")
        first = _role(stack, "worker")
        second = _restarted(stack, "worker", first.pid)
        deadline = time.monotonic() + 60
        while worker_log.read_text().count("worker serving") == served:
            assert time.monotonic() < deadline, worker_log.read_text()[-3000:]
            assert second.is_running(), worker_log.read_text()[-3000:]
            time.sleep(0.5)
        _ready(stack)
        stack.look()
        stack.process.send_signal(signal.SIGTERM)
        assert stack.process.wait(timeout=60) == 0, stack.log.read_text()
        _wait_until_gone(stack.children, stack.ports)


def test_an_api_that_keeps_crashing_stops_the_stack(tmp_path: Path) -> None:
    with _dev(tmp_path) as stack:
        _wait_for(stack.log, "cairn is running", stack.process, seconds=120)
        api = _restarted(stack, "api", _role(stack, "api").pid)
        _ready(stack)  # the new API serves: the killed one's uvicorn workers left its port
        for _ in range(4 * RESTART_LIMIT):  # the window may drop an early restart: kill on
            stack.look()
            if not _killed_and_restarted(stack, api):
                break
            api = _role(stack, "api", other_than=api.pid)
        assert stack.process.wait(timeout=60) == 1, stack.log.read_text()
        said = stack.log.read_text()
        assert GAVE_UP in said
        assert f"the api process exited (killed by SIGKILL) after {RESTART_LIMIT} restarts" in said
        assert "stopping everything" in said
        _wait_until_gone(stack.children, stack.ports)


def test_a_hangup_while_starting_stops_what_was_started(tmp_path: Path) -> None:
    with _dev(tmp_path) as stack:
        deadline = time.monotonic() + 120
        while not any("start-dev" in c for c in stack.look()):
            assert time.monotonic() < deadline, stack.log.read_text()
            assert stack.process.poll() is None, stack.log.read_text()
            time.sleep(0.2)
        os.kill(stack.process.pid, signal.SIGHUP)
        assert stack.process.wait(timeout=60) == 1
        _wait_until_gone(stack.children, stack.ports)


def test_reset_drops_the_database_and_the_folder_but_not_foreign_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with _dev(tmp_path) as stack:
        _wait_for(stack.log, "cairn is running", stack.process, seconds=120)
        stack.process.send_signal(signal.SIGTERM)
        assert stack.process.wait(timeout=60) == 0
    PostgresServer().create_database(database_name(data))  # _dev dropped it: as if kept
    old_key = (data / "master-key").read_text()
    (data / "apps" / "uploads").mkdir()
    (data / "notes.txt").write_text("the operator's own file")
    with psycopg.connect(PostgresServer().url(database_name(data), driver="postgresql")) as conn:
        conn.execute("CREATE TABLE marker (x int)")
    with _dev(tmp_path, "--reset", "--yes") as stack:
        _wait_for(stack.log, "cairn is running", stack.process, seconds=120)
        stack.process.send_signal(signal.SIGTERM)
        assert stack.process.wait(timeout=60) == 0
        said = stack.log.read_text()
        assert f"dropped database {database_name(data)}" in said
        assert "kept files cairn did not write: ['notes.txt']" in said
        assert (data / "notes.txt").exists() and not (data / "apps" / "uploads").exists()
        assert (data / "master-key").read_text() != old_key
        with psycopg.connect(
            PostgresServer().url(database_name(data), driver="postgresql")
        ) as conn:
            assert conn.execute("SELECT to_regclass('marker')").fetchone() == (None,)


def test_a_taken_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    data, ports = tmp_path / "data", _ports()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["--temporal-port"]))
        squatter.listen()
        refused = subprocess.run(
            [sys.executable, "-m", "cli.main", *_args(data, ports)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert refused.returncode != 0
    message = refused.stderr
    port = ports["--temporal-port"]
    assert f"port {port} (Temporal, --temporal-port) is in use by pid {os.getpid()}" in message
    assert "Nothing was started" in message
    assert "Traceback" not in message
    assert not data.exists()  # no folder, no database, no process
