"""Child processes that die with ``cairn dev``, and the ports they need checked before start.

A terminal closed under ``cairn dev`` (SIGHUP), or a ``kill -9`` of it, used to leave the
Temporal server, worker and API running on their ports; the next start then failed with
"address already in use" hidden in a log file. Each child now asks the kernel for SIGTERM
when its parent dies (``PR_SET_PDEATHSIG``), and every port is checked, with the process
holding it named, before anything starts.

A worker or API that crashes is started again (``Child.restart``), so one crash does not
take the whole stack down; one that keeps crashing is not.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import psutil

_PR_SET_PDEATHSIG = 1

# A child restarted this many times within the window and crashing again crash-loops: a
# restart would only hide why (a port, a setting, a missing tool), so cairn dev stops.
RESTART_LIMIT: Final = 5
RESTART_WINDOW_SECONDS: Final = 60.0


def _die_with(parent: int) -> Callable[[], None]:
    """Runs in the child between fork and exec: SIGTERM when ``parent`` dies.

    The signal follows the parent's death only from the ``prctl`` on; a parent already gone
    by then (its pid no longer our parent's) means exiting at once.
    """

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def spawn(
    args: Sequence[str], log_file: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts ``args`` in its own session (Ctrl-C reaches ``cairn dev`` only, which stops the
    children in order), its output appended to ``log_file``, tied to this process's life."""
    with log_file.open("ab") as log:
        return subprocess.Popen(
            list(args),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),
        )


@dataclass
class Child:
    """A process ``cairn dev`` started: its name, log, and how to start it again."""

    name: str
    log: Path
    process: subprocess.Popen[bytes]
    args: Sequence[str] | None = None  # None: never restarted (Temporal: its exit stops all)
    env: dict[str, str] | None = None
    restarts: deque[float] = field(default_factory=deque)

    @classmethod
    def spawned(cls, name: str, args: Sequence[str], log: Path, env: dict[str, str]) -> Child:
        return cls(name, log, spawn(args, log, env), list(args), env)

    def exit_status(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def crash_looping(self, now: float) -> bool:
        """Restarted ``RESTART_LIMIT`` times within the window already."""
        while self.restarts and now - self.restarts[0] > RESTART_WINDOW_SECONDS:
            self.restarts.popleft()
        return len(self.restarts) >= RESTART_LIMIT

    def end_leftovers(self) -> None:
        """Kills what the exited process left in its process group (its own session): the
        API's uvicorn workers would keep its port, the worker's restic would run on."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def restart(self, now: float) -> None:
        assert self.args is not None
        self.restarts.append(now)
        self.process = spawn(self.args, self.log, self.env)


@dataclass(frozen=True)
class Port:
    """A port ``cairn dev`` will listen on, and the option that sets it."""

    number: int
    option: str
    purpose: str


def _bind_error(port: int) -> OSError | None:
    """Why 127.0.0.1:``port`` cannot be listened on (taken, privileged, ...), if it cannot."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "taken"
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc
    return None


def holder(port: int) -> str | None:
    """Who listens on ``port``: ``pid 123 (temporal server start-dev ...)``, when visible."""
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return None
    for connection in connections:
        if connection.status != psutil.CONN_LISTEN or connection.laddr.port != port:
            continue
        if connection.pid is None:
            return None
        try:
            words = " ".join(psutil.Process(connection.pid).cmdline()).split()
            command = " ".join(words) or "?"  # one line, even for ``python -c`` scripts
        except psutil.Error:
            command = "?"
        if len(command) > 120:
            command = command[:117] + "..."
        return f"pid {connection.pid} ({command})"
    return None


def port_problems(ports: Sequence[Port]) -> list[str]:
    """One line per port that cannot be used: taken by another process, or given twice."""
    problems = []
    seen: dict[int, Port] = {}
    for port in ports:
        if port.number in seen:
            first = seen[port.number]
            problems.append(f"port {port.number} is given to both {first.option} and {port.option}")
            continue
        seen[port.number] = port
        error = _bind_error(port.number)
        if error is None:
            continue
        if error.errno == errno.EADDRINUSE:
            who = holder(port.number)
            by = f" by {who}" if who else ""
            problems.append(
                f"port {port.number} ({port.purpose}, {port.option}) is in use{by};"
                f" stop that process or choose another port with {port.option}"
            )
        else:
            problems.append(
                f"port {port.number} ({port.purpose}, {port.option}) cannot be used:"
                f" {error.strerror}; choose another port with {port.option}"
            )
    return problems
