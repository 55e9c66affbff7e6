"""A failure message is short, free of stack traces, and within Temporal's limits.

restic prints an unexpected error with its Go stack trace and, before it, every retry of
the storage operation that failed; that text used to become the step's failure. The
message keeps restic's first meaningful line and names a storage that refused; the whole
text goes to the worker log.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter

from activities.errors import to_application_error
from adapters.errors import MESSAGE_LIMIT, AdapterError
from adapters.restic import Repository, Restic, ResticError

# What restic 0.14 printed for ``restic backup`` into a repository made immutable
# (``chattr -R +i``), shortened to two retries and a few frames; REPO stands for its path.
LOCK_REFUSED = """\
Save(<lock/8af8ae1d53>) returned error, retrying after 552.330144ms: open REPO/locks/8af8-tmp-1: operation not permitted
Save(<lock/8af8ae1d53>) returned error, retrying after 1.080381816s: open REPO/locks/8af8-tmp-2: operation not permitted
open REPO/locks/8af8-tmp-3: operation not permitted
github.com/restic/restic/internal/backend/local.(*Local).Save
\tgithub.com/restic/restic/internal/backend/local/local.go:153
github.com/restic/restic/internal/restic.(*Lock).createLock
\tgithub.com/restic/restic/internal/restic/lock.go:161
main.main
\tgithub.com/restic/restic/cmd/restic/main.go:98
runtime.goexit
\truntime/asm_amd64.s:1594
unable to create lock in backend
"""  # noqa: E501

DISK_FULL = "Fatal: unable to save snapshot: write REPO/data/1a/1a2b: no space left on device\n"


def fake_restic(folder: Path, stderr: str) -> Restic:
    """A restic that fails with ``stderr``, as the real one did."""
    said = folder / "stderr.txt"
    said.write_text(stderr)
    script = folder / "restic"
    script.write_text(f"#!/bin/sh\ncat '{said}' >&2\nexit 1\n")
    script.chmod(0o755)
    return Restic(str(script))


def repository(tmp_path: Path) -> Repository:
    (tmp_path / "repo" / "locks").mkdir(parents=True)
    return Repository(tmp_path / "repo", "a-password")


def test_an_immutable_storage_is_named_in_one_line_and_not_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = repository(tmp_path)
    restic = fake_restic(tmp_path, LOCK_REFUSED.replace("REPO", str(repo.path)))
    with caplog.at_level(logging.WARNING), pytest.raises(ResticError) as caught:
        restic.snapshots(repo)
    error = caught.value
    assert error.message == (
        "restic snapshots failed (exit 1): the storage is read-only for the worker (operation"
        f" not permitted, as for an immutable folder): open {repo.path}/locks/8af8-tmp-3:"
        " operation not permitted"
    )
    assert not error.retryable
    assert "github.com/restic" in caplog.text  # the whole text is in the worker log


def test_a_full_storage_is_named_and_may_be_retried(tmp_path: Path) -> None:
    repo = repository(tmp_path)
    restic = fake_restic(tmp_path, DISK_FULL.replace("REPO", str(repo.path)))
    with pytest.raises(ResticError) as caught:
        restic.forget(repo, ["1a2b"])
    assert caught.value.message.startswith("restic forget failed (exit 1): the storage is full:")
    assert caught.value.retryable


def test_a_refusal_outside_the_repository_does_not_blame_the_storage(tmp_path: Path) -> None:
    repo = repository(tmp_path)
    said = "ignoring error for /srv/app/f: lchown /srv/app/f: operation not permitted\n"
    restic = fake_restic(tmp_path, said + "Fatal: There were 1 errors\n")
    with pytest.raises(ResticError) as caught:
        restic.restore(repo, "1a2b", tmp_path / "target")
    assert "storage" not in caught.value.message
    assert caught.value.message.endswith(said.strip())


def test_a_long_message_is_cut_at_a_line_and_logged_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = "\n".join(f"pg_restore: error: line {n} " + "x" * 60 for n in range(200))
    with caplog.at_level(logging.WARNING):
        error = AdapterError(text, retryable=True)
    assert len(error.message) < MESSAGE_LIMIT + 80
    assert error.message.startswith("pg_restore: error: line 0 ")
    assert f"the worker log has all {len(text)} characters" in error.message
    assert "line 199" in caplog.text


async def test_the_temporal_failure_stays_small_and_carries_no_chained_cause() -> None:
    huge = "restic check failed (exit 1): " + "pack 1a2b damaged\n" * 200_000  # 3.6 MB
    try:
        try:
            raise RuntimeError("x" * 1_000_000)
        except RuntimeError:
            raise to_application_error(ResticError(huge, retryable=False), "verify")  # noqa: B904
    except Exception as raised:
        failure = Failure()
        await DataConverter.default.encode_failure(raised, failure)
    assert failure.ByteSize() < 10_000
    assert failure.message.startswith("verify: restic check failed (exit 1): pack 1a2b damaged")
    assert not failure.HasField("cause")
    assert failure.application_failure_info.non_retryable
