"""A dump tool's output streamed into ``restic backup --stdin``, seen on its way.

Every engine's backup is the same motion: a tool writes the dump on its stdout, restic stores
it as one file of a new snapshot, and nothing partial may stay when either side fails (a retry
would take a half snapshot for a backup). ``watch`` sees every chunk as it passes, so figures
can be read from exactly the bytes stored (the dump's own snapshot of the data).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence

from adapters.errors import AdapterError
from adapters.restic import BackupResult, Progress, Repository, Restic, ResticError

CHUNK = 1 << 20


class EngineError(AdapterError):
    """Dumping a database into restic, or restoring one from it, failed."""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _first_lines(errors: tempfile._TemporaryFileWrapper[bytes], secret: str | None) -> str:
    errors.seek(0)
    text = errors.read(4000).decode(errors="replace").strip()
    if secret:
        text = text.replace(secret, "********")
    return text or "no message"


def command_into_restic(
    argv: Sequence[str],
    env: Mapping[str, str],
    restic: Restic,
    repo: Repository,
    tags: Sequence[str],
    filename: str,
    *,
    watch: Callable[[bytes], object] | None = None,
    secret: str | None = None,
    transient: Callable[[str], bool] = lambda message: False,
    progress: Callable[[Progress], None] | None = None,
) -> BackupResult:
    """Runs ``argv`` into a new snapshot holding ``/{filename}``; forgets a partial one.

    ``secret`` (a password) is blanked out of any message; ``transient`` says from the tool's
    message whether trying again may help (a server restarting, not a wrong password).
    """
    tool = argv[0]
    with tempfile.NamedTemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        except OSError as exc:
            raise EngineError(f"cannot run {tool}: {exc}", retryable=False) from None
        assert proc.stdout is not None
        read_end, write_end = os.pipe()
        copied: list[BaseException] = []

        def copy() -> None:
            """Tool → (watch) → restic; ends restic's input when the tool's output ends."""
            assert proc.stdout is not None
            try:
                with os.fdopen(write_end, "wb") as into:
                    while chunk := os.read(proc.stdout.fileno(), CHUNK):
                        if watch is not None:
                            watch(chunk)
                        into.write(chunk)
            except BaseException as exc:  # a broken pipe when restic stopped reading
                copied.append(exc)

        copier = threading.Thread(target=copy, name=f"cairn-{os.path.basename(tool)}")
        copier.start()
        result: BackupResult | None = None
        restic_error: ResticError | None = None
        try:
            with os.fdopen(read_end, "rb") as source:
                result = restic.backup_stdin(repo, source, filename, tags, progress=progress)
        except ResticError as exc:
            restic_error = exc
        except BaseException:
            _stop(proc)
            copier.join()
            raise
        finally:
            if restic_error is not None or result is None:
                _stop(proc)
            copier.join()
            proc.stdout.close()
        exit_code = proc.wait()
        message = _first_lines(errors, secret)
    failed = exit_code != 0 or (copied and restic_error is None)
    if failed and result is not None:
        try:
            restic.forget(repo, [result.snapshot_id])
        except ResticError as exc:
            raise EngineError(
                f"{tool} failed and discarding its partial snapshot {result.snapshot_id} failed"
                f" too: {exc.message}",
                retryable=exc.retryable,
            ) from exc
    if restic_error is not None:
        raise EngineError(
            f"storing the dump in the repository failed: {restic_error.message}",
            retryable=restic_error.retryable,
        ) from restic_error
    if exit_code != 0:
        raise EngineError(
            f"{tool} failed (exit {exit_code}): {message}", retryable=transient(message)
        )
    if copied:
        raise EngineError(f"reading {tool}'s output failed: {copied[0]}", retryable=True)
    assert result is not None
    return result
