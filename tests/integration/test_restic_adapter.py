"""The restic adapter against the real restic binary and throw-away repositories."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adapters import restic_format
from adapters.restic import Progress, Repository, Restic, ResticError
from adapters.restic_format import CHEAP_SCRYPT, irreducible

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def restic() -> Restic:
    return Restic(os.environ.get("CAIRN_RESTIC_BIN", "restic"))


@pytest.fixture(scope="module")
def template(restic: Restic, tmp_path_factory: pytest.TempPathFactory) -> Repository:
    """One freshly initialised repository that each test gets a copy of."""
    repository = Repository(
        tmp_path_factory.mktemp("restic") / "template", f"pw-{secrets.token_hex(16)}"
    )
    assert restic.init(repository) is True
    return repository


@pytest.fixture
def repo(template: Repository, tmp_path: Path) -> Repository:
    shutil.copytree(template.path, tmp_path / "repo")
    return Repository(tmp_path / "repo", template.password, cache_dir=tmp_path / "cache")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def tree(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under root (symlinks as their target)."""
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            files[key] = b"->" + os.readlink(path).encode()
        elif path.is_file():
            files[key] = path.read_bytes()
        else:
            files[key] = b"<dir>"
    return files


def sample_source(root: Path) -> Path:
    write(root / "readme.txt", b"hello\n")
    write(root / "empty", b"")
    write(root / "nested" / "deeper" / "blob.bin", os.urandom(2 * MiB))
    write(root / "nested" / "names with spaces & ünïcode.txt", "ök\n".encode())
    (root / "link").symlink_to("readme.txt")
    return root


def repository_bytes(repo: Repository) -> int:
    return sum(p.stat().st_size for p in repo.path.rglob("*") if p.is_file())


def test_init_is_idempotent_and_makes_a_version_2_repository(
    restic: Restic, repo: Repository
) -> None:
    assert restic.version().startswith("0.")
    assert restic.init(repo) is False
    config = subprocess.run(
        [restic.binary, "--repo", str(repo.path), "--no-cache", "cat", "config"],
        env={**os.environ, "RESTIC_PASSWORD": repo.password},
        capture_output=True,
        check=True,
    )
    assert json.loads(config.stdout)["version"] == 2

    with pytest.raises(ResticError) as caught:
        restic.init(Repository(repo.path, "not-the-password"))
    assert not caught.value.retryable


def test_a_repository_cairn_writes_is_one_plain_restic_opens_with_a_cheap_key(
    restic: Restic, tmp_path: Path
) -> None:
    """init writes the repository itself: no scrypt calibration (a second of CPU)."""
    repo = Repository(tmp_path / "by-cairn", f"pw-{secrets.token_hex(16)}")
    assert restic.init(repo) is True
    [key_file] = (repo.path / "keys").iterdir()
    key = json.loads(key_file.read_text())
    assert {k: key[k] for k in CHEAP_SCRYPT} == CHEAP_SCRYPT
    assert key_file.name == hashlib.sha256(key_file.read_bytes()).hexdigest()  # restic's naming
    assert {oct(p.stat().st_mode & 0o777) for p in (key_file, repo.path / "config")} == {"0o400"}
    env = {**os.environ, "RESTIC_PASSWORD": repo.password}
    opened = subprocess.run(
        [restic.binary, "--repo", str(repo.path), "--no-cache", "cat", "config"],
        env=env,
        capture_output=True,
        check=True,
    )
    config = json.loads(opened.stdout)
    assert config["version"] == 2 and len(config["id"]) == 64
    assert irreducible(int(config["chunker_polynomial"], 16))
    restic.backup_paths(repo, sample_source(tmp_path / "src"), ["t=1"])
    restic.check(repo, read_data=True)
    assert restic.init(repo) is False  # exists: opened, not written again
    with pytest.raises(ResticError) as caught:
        restic.snapshots(Repository(repo.path, "not-the-password"))
    assert not caught.value.retryable


def test_restic_itself_refuses_a_reducible_chunker_polynomial(
    restic: Restic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So a repository restic opens has a polynomial restic's own test calls irreducible."""
    # an even number of terms: divisible by x + 1
    monkeypatch.setattr(restic_format, "random_polynomial", lambda: (1 << 53) | (1 << 7) | 3)
    repo = Repository(tmp_path / "bad", f"pw-{secrets.token_hex(16)}")
    restic_format.create_repository(repo.path, repo.password)
    with pytest.raises(ResticError, match="polynomial"):
        restic.snapshots(repo)


def test_concurrent_inits_make_one_repository(restic: Restic, tmp_path: Path) -> None:
    """Parallel backup steps of a new application all create its repository at once."""
    repo = Repository(tmp_path / "apps" / "new", f"pw-{secrets.token_hex(16)}")
    with ThreadPoolExecutor(4) as pool:
        created = list(pool.map(lambda _: restic.init(repo), range(4)))
    assert created.count(True) == 1
    assert len(list((repo.path / "keys").iterdir())) == 1
    assert [p.name for p in (tmp_path / "apps").iterdir()] == ["new"]  # no staging left
    restic.backup_paths(repo, sample_source(tmp_path / "src"), ["t=1"])
    assert len(restic.snapshots(repo)) == 1


def test_the_cache_folder_of_the_worker_holds_each_repository_s_index(
    restic: Restic, repo: Repository, tmp_path: Path
) -> None:
    cached = Restic(restic.binary, cache_dir=tmp_path / "worker-cache")
    plain = Repository(repo.path, repo.password)  # no cache folder of its own
    cached.backup_paths(plain, sample_source(tmp_path / "src"), ["t=1"])
    [folder] = [p for p in (tmp_path / "worker-cache").iterdir() if p.is_dir()]
    assert (folder / "index").is_dir() and any((folder / "index").iterdir())
    assert len(cached.snapshots(plain)) == 1


def test_backup_then_restore_is_byte_identical(
    restic: Restic, repo: Repository, tmp_path: Path
) -> None:
    source = sample_source(tmp_path / "source")
    result = restic.backup_paths(repo, source, ["application=a", "execution=1"])
    assert result.files_new == 4
    assert result.total_bytes_processed == 2 * MiB + len(b"hello\n") + len("ök\n".encode())

    [snapshot] = restic.snapshots(repo)
    assert snapshot.short_id == result.snapshot_id
    assert snapshot.id.startswith(snapshot.short_id)
    assert sorted(snapshot.tags) == ["application=a", "execution=1"]
    assert snapshot.parent is None
    assert snapshot.paths == [str(source)]  # restic 0.14 records "." as the absolute folder

    target = tmp_path / "restored"
    restic.restore(repo, snapshot.id, target)
    # the snapshot starts at the folder's contents: nothing of the host's layout above it
    assert tree(target) == tree(source)


def test_incremental_backup_adds_little(restic: Restic, repo: Repository, tmp_path: Path) -> None:
    source = sample_source(tmp_path / "source")
    first = restic.backup_paths(repo, source, ["part=volumes"])
    assert first.data_added > 2 * MiB

    write(source / "new.txt", b"a small change\n")
    second = restic.backup_paths(repo, source, ["part=volumes"], parent=first.snapshot_id)
    assert (second.files_new, second.files_changed, second.files_unmodified) == (1, 0, 4)
    assert second.data_added < 64 * 1024

    [_, latest] = restic.snapshots(repo)
    assert latest.short_id == second.snapshot_id
    assert latest.parent is not None and latest.parent.startswith(first.snapshot_id)


def test_force_rereads_every_file(restic: Restic, repo: Repository, tmp_path: Path) -> None:
    source = sample_source(tmp_path / "source")
    first = restic.backup_paths(repo, source, [])

    incremental = restic.backup_paths(repo, source, [], parent=first.snapshot_id)
    assert (incremental.files_new, incremental.files_unmodified) == (0, 4)

    # restic --force compares with no parent: every file is read and counted as new
    full = restic.backup_paths(repo, source, [], parent=first.snapshot_id, force=True)
    assert (full.files_new, full.files_changed, full.files_unmodified) == (4, 0, 0)
    assert full.total_bytes_processed == first.total_bytes_processed
    assert full.data_added < 64 * 1024  # read again, but deduplicated
    assert restic.snapshots(repo)[-1].parent is None


def test_snapshots_filter_needs_every_tag(restic: Restic, repo: Repository, tmp_path: Path) -> None:
    source = sample_source(tmp_path / "source")
    ids = {
        key: restic.backup_paths(repo, source, tags).snapshot_id
        for key, tags in {
            "a1": ["application=a", "execution=1"],
            "a2": ["application=a", "execution=2"],
            "b3": ["application=b", "execution=3"],
        }.items()
    }

    def found(*tags: str) -> list[str]:
        return [s.short_id for s in restic.snapshots(repo, tags)]

    assert found() == [ids["a1"], ids["a2"], ids["b3"]]
    assert found("application=a") == [ids["a1"], ids["a2"]]
    assert found("application=a", "execution=2") == [ids["a2"]]
    assert found("application=b", "execution=2") == []
    assert found("application=c") == []

    with pytest.raises(ResticError) as caught:
        restic.snapshots(repo, ["application=a,execution=2"])
    assert not caught.value.retryable


def test_forget_and_prune_remove_a_snapshot(
    restic: Restic, repo: Repository, tmp_path: Path
) -> None:
    old = restic.backup_paths(repo, write(tmp_path / "old" / "f", os.urandom(3 * MiB)).parent, [])
    new = restic.backup_paths(repo, write(tmp_path / "new" / "f", os.urandom(MiB)).parent, [])

    restic.forget(repo, [])
    assert len(restic.snapshots(repo)) == 2

    before = repository_bytes(repo)
    restic.forget(repo, [old.snapshot_id])
    assert [s.short_id for s in restic.snapshots(repo)] == [new.snapshot_id]
    restic.forget(repo, [old.snapshot_id])  # a retried forget finds nothing to do

    restic.prune(repo)
    assert repository_bytes(repo) < before - 2 * MiB
    restic.check(repo, read_data=True)
    restic.restore(repo, new.snapshot_id, tmp_path / "restored")
    assert tree(tmp_path / "restored") == tree(tmp_path / "new")


def test_check_detects_a_corrupted_pack(restic: Restic, repo: Repository, tmp_path: Path) -> None:
    restic.backup_paths(repo, write(tmp_path / "src" / "f", os.urandom(MiB)).parent, [])
    restic.check(repo, read_data=True)

    pack = max((p for p in (repo.path / "data").rglob("*") if p.is_file()), key=os.path.getsize)
    pack.chmod(0o600)
    with pack.open("r+b") as handle:
        handle.seek(pack.stat().st_size // 2)
        handle.write(os.urandom(64))

    with pytest.raises(ResticError) as caught:
        restic.check(repo, read_data=True)
    assert not caught.value.retryable
    assert caught.value.exit_code == 1
    assert pack.name[:8] in caught.value.message


def test_wrong_password_is_permanent_and_never_shown(
    restic: Restic, repo: Repository, tmp_path: Path
) -> None:
    wrong = Repository(repo.path, f"wrong-{secrets.token_hex(8)}", tmp_path / "cache")
    with pytest.raises(ResticError) as caught:
        restic.snapshots(wrong)
    error = caught.value
    assert not error.retryable
    assert "wrong password" in error.message
    for text in (error.message, str(error), repr(error), repr(wrong)):
        assert wrong.password not in text
        assert repo.password not in text

    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.retryable, copy.exit_code) == (error.message, False, 1)

    with pytest.raises(ResticError) as missing:
        restic.snapshots(Repository(tmp_path / "nowhere", repo.password))
    assert not missing.value.retryable

    with pytest.raises(ResticError):
        Repository(repo.path, "")


def test_repository_does_not_contain_plain_data(
    restic: Restic, repo: Repository, tmp_path: Path
) -> None:
    marker = f"CAIRN-PLAINTEXT-MARKER-{secrets.token_hex(8)}".encode()
    source = tmp_path / "source"
    write(source / "secret.txt", marker * 1000)
    write(source / marker.decode() / "x", marker)
    restic.backup_paths(repo, source, [])
    with (tmp_path / "stream").open("wb") as handle:
        handle.write(marker * 100)
    with (tmp_path / "stream").open("rb") as handle:
        restic.backup_stdin(repo, handle, marker.decode(), [])

    files = [p for p in repo.path.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        content = path.read_bytes()
        assert marker not in content, path
        assert repo.password.encode() not in content, path


def test_backup_stdin_from_a_pipe_and_dump_it_back(
    restic: Restic, repo: Repository, tmp_path: Path
) -> None:
    payload = write(tmp_path / "payload", os.urandom(3 * MiB) + b"tail")
    producer = subprocess.Popen(["cat", str(payload)], stdout=subprocess.PIPE)
    assert producer.stdout is not None
    updates: list[Progress] = []
    try:
        result = restic.backup_stdin(
            repo, producer.stdout, "database.dump", ["part=database"], progress=updates.append
        )
    finally:
        producer.stdout.close()
    assert producer.wait() == 0
    assert result.files_new == 1
    assert result.total_bytes_processed == payload.stat().st_size
    assert updates

    [snapshot] = restic.snapshots(repo, ["part=database"])
    assert snapshot.paths == ["/database.dump"]

    dump = restic.dump(repo, snapshot.id, "database.dump")
    assert dump.stdout is not None
    digest = hashlib.sha256()
    while chunk := dump.stdout.read(256 * 1024):
        digest.update(chunk)
    restic.finish_dump(repo, dump)
    assert digest.hexdigest() == hashlib.sha256(payload.read_bytes()).hexdigest()

    with pytest.raises(ResticError) as caught:
        restic.finish_dump(repo, restic.dump(repo, snapshot.id, "no-such-file"))
    assert not caught.value.retryable


def test_empty_stdin_makes_no_snapshot(restic: Restic, repo: Repository) -> None:
    with open(os.devnull, "rb") as empty, pytest.raises(ResticError) as caught:
        restic.backup_stdin(repo, empty, "database.dump", [])
    assert not caught.value.retryable
    assert restic.snapshots(repo) == []


def test_progress_callback_sees_the_backup(
    restic: Restic, repo: Repository, tmp_path: Path
) -> None:
    source = sample_source(tmp_path / "source")
    updates: list[Progress] = []
    restic.backup_paths(repo, source, [], progress=updates.append)
    assert updates
    assert all(0 <= u.percent <= 100 for u in updates)
    assert max(u.total_files for u in updates) >= 1
    assert all(u.bytes_done <= u.total_bytes or u.total_bytes == 0 for u in updates)


def test_failing_progress_callback_stops_the_backup(
    restic: Restic, repo: Repository, tmp_path: Path
) -> None:
    def cancel(_: Progress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restic.backup_paths(repo, sample_source(tmp_path / "source"), [], progress=cancel)
    restic.unlock(repo)
    assert restic.snapshots(repo) == []


def test_a_live_lock_is_retryable_and_a_dead_ones_lock_is_cleared(
    restic: Restic, repo: Repository, tmp_path: Path
) -> None:
    # a restic holding its lock, then dying with it, as a worker killed mid-backup leaves it
    holder = subprocess.Popen(
        [restic.binary, "--repo", str(repo.path), "--no-cache", "backup", "--stdin"],
        env={**os.environ, "RESTIC_PASSWORD": repo.password},
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not any((repo.path / "locks").iterdir()):
        assert time.monotonic() < deadline, "restic took no lock"
        time.sleep(0.05)

    with pytest.raises(ResticError) as caught:  # a live run's lock is never removed
        restic.prune(repo)
    assert caught.value.retryable
    assert "locked" in caught.value.message

    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert holder.stdin is not None
    holder.stdin.close()
    assert any((repo.path / "locks").iterdir())
    restic.prune(repo)  # the dead one's lock is cleared on the way, no 30-minute wait
    restic.check(repo)


def test_unreadable_files_fail_the_backup_and_leave_no_snapshot(
    restic: Restic, repo: Repository
) -> None:
    """restic exits 3 and still saves a snapshot; the adapter discards it and says which file."""
    with tempfile.TemporaryDirectory() as tmp:  # tmp_path's parents are private to root
        work = Path(tmp)
        shutil.copytree(repo.path, work / "repo")
        write(work / "src" / "fine.txt", b"fine")
        write(work / "src" / "locked.txt", b"locked").chmod(0)
        runner = restic
        if os.geteuid() == 0:  # root reads anything: run restic as nobody instead
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv to drop privileges")
            for path in [work, *work.rglob("*")]:
                os.chown(path, 65534, 65534, follow_symlinks=False)
            wrapper = write(
                work / "restic-as-nobody",
                f"#!/bin/sh\nexec {setpriv} --reuid=65534 --regid=65534 --clear-groups "
                f'{shutil.which(restic.binary)} "$@"\n'.encode(),
            )
            wrapper.chmod(0o755)
            runner = Restic(str(wrapper))
        copy = Repository(work / "repo", repo.password, work / "cache")

        with pytest.raises(ResticError) as caught:
            runner.backup_paths(copy, work / "src", ["execution=1"])
        assert caught.value.exit_code == 3
        assert not caught.value.retryable
        assert "locked.txt (Permission denied)" in caught.value.message
        assert runner.snapshots(copy) == []


@pytest.mark.parametrize(
    ("code", "retryable"), [(errno.EROFS, False), (errno.EACCES, False), (errno.ENOSPC, True)]
)
def test_a_repository_that_cannot_be_written_says_so_and_whether_a_retry_helps(
    restic: Restic,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    retryable: bool,
) -> None:
    def refused(path: Path, password: str) -> None:
        path.mkdir()  # the half-made folder is removed too
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("adapters.restic.create_repository", refused)
    repo = Repository(tmp_path / "apps" / "new", f"pw-{secrets.token_hex(16)}")
    (tmp_path / "apps").mkdir()
    said = f"cannot create the repository.*{os.strerror(code)}"
    with pytest.raises(ResticError, match=said) as caught:
        restic.init(repo)
    assert caught.value.retryable is retryable
    assert list((tmp_path / "apps").iterdir()) == []
