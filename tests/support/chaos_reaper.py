"""``python chaos_reaper.py PIDFILE -- ARGV...``: runs ARGV in a process group of its own and reaps
every process that group leaves behind.

A SIGKILLed worker's restic and pg_dump children are orphans; where PID 1 does not reap (as in
many containers) they stay zombies, and restic takes a zombie's PID for a live lock holder.
This reaper is the "init" of one worker: it marks itself a child subreaper, so orphans come to
it, and it exits once the worker and all of them are gone, with the worker's exit status. The
worker's PID (= its process group id) is written to PIDFILE; SIGTERM is passed on to the group.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    pidfile, separator, *argv = sys.argv[1:]
    assert separator == "--" and argv, __doc__
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    worker = os.fork()
    if worker == 0:
        os.setpgid(0, 0)
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    with open(pidfile + ".tmp", "w") as out:
        out.write(str(worker))
    os.replace(pidfile + ".tmp", pidfile)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return code
        except InterruptedError:
            continue
        if pid == worker:
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
