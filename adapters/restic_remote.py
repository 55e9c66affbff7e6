"""restic on an offsite repository reached by URL (a restic REST server), and copies into it.

``adapters/restic.py`` drives repositories in a folder of the worker's storage; an offsite
repository is a URL with basic-auth credentials. That URL, credentials included, reaches
restic only through its environment (``RESTIC_REPOSITORY``, and ``RESTIC_FROM_REPOSITORY``
for the primary a copy reads), never argv (visible in ``ps``) nor a message.

A copy is ``restic copy`` of one backup's snapshots (by its execution tag) from the primary
into an offsite repository initialised with the primary's chunker parameters, so identical
data deduplicates across backups there too. restic skips a snapshot the target already
holds a copy of, so a copy repeated after a killed worker adds no second snapshot; its
blobs already indexed at the target are not sent again.

Written against restic 0.14 (Debian 12); everything here blocks.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from adapters.errors import without_stack_traces
from adapters.offsite_s3 import bucket_protection, delete_object
from adapters.restic import Repository, Restic, ResticError

logger = logging.getLogger(__name__)

# Failures a retry cannot mend: refused credentials or password, a server that refuses to let
# cairn write, a malformed command.
_PERMANENT: Final = re.compile(
    r"wrong password or no key found"
    r"|\(401\)|401 Unauthorized"
    r"|unknown (?:flag|shorthand flag|command)"
    r"|invalid argument",
    re.IGNORECASE,
)
_RETRY_NOTICE: Final = re.compile(r" returned error, retrying after ")
_PACKS: Final = re.compile(rb"(\d+) / (\d+) packs copied")
TICK_SECONDS: Final = 2.0
# How long a connectivity check waits for the server.
CHECK_TIMEOUT: Final = 15.0
# The region an S3 target's check signs for when the target names none.
S3_REGION: Final = "us-east-1"
# The environment variables a Remote is handed over in, beside RESTIC_PASSWORD.
HANDED_KIND: Final = "CAIRN_OFFSITE_KIND"
HANDED_URL: Final = "CAIRN_OFFSITE_URL"
HANDED_USERNAME: Final = "CAIRN_OFFSITE_USERNAME"
HANDED_SECRET: Final = "CAIRN_OFFSITE_SECRET"
HANDED: Final = (HANDED_KIND, HANDED_URL, HANDED_USERNAME, HANDED_SECRET)


@dataclass(frozen=True)
class Remote:
    """One offsite repository: its URL (no credentials), the credentials, its password.

    ``kind`` ``rest``: a restic REST server, ``username``/``secret`` are basic auth.
    ``kind`` ``s3``: ``url`` is ``https://host/bucket[/prefix]`` (path style),
    ``username``/``secret`` the access key id and secret access key.
    """

    url: str
    username: str
    secret: str = field(repr=False)
    password: str = field(repr=False)
    kind: str = "rest"

    @property
    def location(self) -> str:
        """restic's repository string, credentials inside: only ever put in an environment."""
        if self.kind == "s3":
            return "s3:" + self.url.rstrip("/")
        parts = urlsplit(self.url)
        auth = f"{quote(self.username, safe='')}:{quote(self.secret, safe='')}@"
        netloc = auth + parts.netloc
        return "rest:" + urlunsplit(parts._replace(netloc=netloc, path=_slash(parts.path)))

    def environment(self) -> dict[str, str]:
        """restic's environment to reach the repository: the location and its credentials."""
        env = {"RESTIC_REPOSITORY": self.location}
        if self.kind == "s3":
            env |= {"AWS_ACCESS_KEY_ID": self.username, "AWS_SECRET_ACCESS_KEY": self.secret}
        return env

    def at(self, *path: str) -> Remote:
        """The repository at ``path`` below this one's URL, with the same credentials."""
        base = self.url.rstrip("/")
        url = "/".join([base, *path])
        return Remote(url, self.username, self.secret, self.password, self.kind)

    def handed(self) -> dict[str, str]:
        """The whole remote as environment variables, for another process (a Kubernetes
        mover, through its run Secret) to open it again with ``received``."""
        return {
            HANDED_KIND: self.kind,
            HANDED_URL: self.url,
            HANDED_USERNAME: self.username,
            HANDED_SECRET: self.secret,
            "RESTIC_PASSWORD": self.password,
        }

    @classmethod
    def received(cls, environment: Mapping[str, str]) -> Remote:
        """The remote ``handed`` put in ``environment``; ValueError when it is not there."""
        missing = [name for name in (*HANDED, "RESTIC_PASSWORD") if not environment.get(name)]
        if missing:
            raise ValueError(f"the offsite repository is not handed over: {', '.join(missing)}")
        return cls(
            environment[HANDED_URL],
            environment[HANDED_USERNAME],
            environment[HANDED_SECRET],
            environment["RESTIC_PASSWORD"],
            environment[HANDED_KIND],
        )


def _inherited() -> dict[str, str]:
    """The worker's environment without restic's or AWS's own variables: a stray one must
    not redirect a command or lend it other credentials."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "AWS_"))}


@dataclass(frozen=True)
class CopyProgress:
    packs_done: int
    packs_total: int


def _slash(path: str) -> str:
    return path if path.endswith("/") else path + "/"


class OffsiteRestic:
    """restic's commands on offsite repositories, with the binary and cache of ``restic``."""

    def __init__(self, restic: Restic) -> None:
        self.binary = restic.binary
        self.cache_dir = restic.cache_dir

    def _env(self, remote: Remote, source: Repository | None) -> dict[str, str]:
        env = {**_inherited(), **remote.environment()}
        env["RESTIC_PASSWORD"] = remote.password
        env["RESTIC_PROGRESS_FPS"] = "0.5"
        if source is not None:
            env["RESTIC_FROM_REPOSITORY"] = str(source.path)
            env["RESTIC_FROM_PASSWORD"] = source.password
        return env

    def _argv(self, args: Sequence[str]) -> list[str]:
        argv = [self.binary]
        if self.cache_dir is not None:
            argv += ["--cache-dir", str(self.cache_dir)]
        return [*argv, *args]

    def _failure(
        self, command: str, exit_code: int, text: str, remote: Remote, source: Repository | None
    ) -> ResticError:
        secrets = [remote.secret, remote.password, *([source.password] if source else [])]
        for secret in secrets:
            text = text.replace(secret, "********")
        logger.warning(
            "restic %s on %s failed (exit %d):\n%s", command, remote.url, exit_code, text
        )
        lines = [ln.strip() for ln in without_stack_traces(text).splitlines() if ln.strip()]
        said = [ln for ln in lines if not _RETRY_NOTICE.search(ln)] or lines or ["no message"]
        return ResticError(
            f"restic {command} on {remote.url} failed (exit {exit_code}): {said[0]}",
            retryable=not _PERMANENT.search(text),
            exit_code=exit_code,
        )

    def _run(self, remote: Remote, args: Sequence[str], source: Repository | None = None) -> str:
        try:
            done = subprocess.run(
                self._argv(args),
                env=self._env(remote, source),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise ResticError(f"cannot run {self.binary}: {exc}", retryable=False) from None
        if done.returncode != 0:
            raise self._failure(args[0], done.returncode, done.stderr, remote, source)
        return done.stdout

    def init(self, remote: Remote) -> None:
        """Creates an empty repository at ``remote`` (restic calibrates its key)."""
        self._run(remote, ["init"])

    def init_copy_of(self, remote: Remote, source: Repository) -> bool:
        """Creates ``remote`` with ``source``'s chunker parameters unless it exists; True if
        created. A repeat after a kill finds the config and leaves the repository as it is."""
        try:
            self._run(remote, ["init", "--copy-chunker-params"], source)
        except ResticError as exc:
            if "config file already exists" in exc.message:
                return False
            raise
        logger.info("initialised offsite repository %s", remote.url)
        return True

    def copy(
        self,
        remote: Remote,
        source: Repository,
        tags: Sequence[str],
        *,
        limit_kib: int | None = None,
        tick: Callable[[CopyProgress | None], None] | None = None,
    ) -> None:
        """Copies the snapshots of ``source`` carrying all ``tags`` that ``remote`` lacks.

        ``tick`` is called every couple of seconds with restic's latest pack count; an
        exception it raises (a cancelled step) kills restic and propagates.
        """
        args = ["copy", "--tag", ",".join(tags)]
        if limit_kib:
            args = ["--limit-upload", str(limit_kib), *args]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    self._argv(args),
                    env=self._env(remote, source),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                )
            except OSError as exc:
                raise ResticError(f"cannot run {self.binary}: {exc}", retryable=False) from None
            with proc:
                while True:
                    try:
                        exit_code = proc.wait(timeout=TICK_SECONDS)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    try:
                        if tick is not None:
                            tick(_latest_packs(out))
                    except BaseException:
                        proc.kill()
                        raise
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        if exit_code != 0:
            raise self._failure("copy", exit_code, stderr, remote, source)

    def snapshot_ids(self, remote: Remote, tags: Sequence[str]) -> list[str]:
        """The ids of the snapshots at ``remote`` carrying all ``tags``."""
        listed = json.loads(self._run(remote, ["snapshots", "--json", "--tag", ",".join(tags)]))
        return [str(item["id"]) for item in listed]

    def unlock(self, remote: Remote) -> None:
        """Removes the stale locks a killed restic left (its process gone, or 30 min old):
        an exclusive lock (prune, check) is refused while one stays. An append-only server
        lets the everyday credentials delete lock files, and only those."""
        self._run(remote, ["unlock"])

    def forget(self, remote: Remote, snapshot_ids: Sequence[str]) -> None:
        """Forgets snapshots and prunes their data: maintenance credentials only."""
        if snapshot_ids:
            self.unlock(remote)  # a killed copy's lock would block the prune
            self._run(remote, ["forget", "--prune", *snapshot_ids])

    def restore(self, remote: Remote, snapshot_id: str, target: Path) -> None:
        self._run(remote, ["restore", snapshot_id, "--target", str(target)])


class RemoteReader(Restic):
    """``adapters/restic.py``'s commands on one offsite repository, for a restore reading it.

    The platforms restore through a ``Restic`` and a ``Repository``; this one sends their
    commands to ``remote`` (through ``RESTIC_REPOSITORY``) instead of a folder, so a restore
    from the copy runs the very same steps without touching the primary storage. restic
    creates and deletes its own lock files there: an append-only server allows both.
    """

    def __init__(self, restic: Restic, remote: Remote) -> None:
        super().__init__(restic.binary, restic.cache_dir)
        self.remote = remote

    def repository(self) -> Repository:
        """What the platforms are handed: named by the URL's path, opened by the password."""
        return Repository(path=Path(urlsplit(self.remote.url).path), password=self.remote.password)

    def _env(self, repo: Repository | None) -> dict[str, str]:
        env = {
            k: v
            for k, v in super()._env(repo).items()
            if not k.startswith("AWS_") and k not in HANDED  # restic needs its own words only
        }
        return {**env, **self.remote.environment()}

    def _argv(self, repo: Repository, args: Sequence[str]) -> list[str]:
        argv = [self.binary]
        cache_dir = repo.cache_dir or self.cache_dir
        if cache_dir is not None:
            argv += ["--cache-dir", str(cache_dir)]
        return [*argv, *args]


def _latest_packs(out: IO[bytes]) -> CopyProgress | None:
    """restic copy's latest ``N / M packs copied`` line from its stdout file."""
    out.seek(0, os.SEEK_END)
    size = out.tell()
    out.seek(max(0, size - 4096))
    found = _PACKS.findall(out.read())
    out.seek(0, os.SEEK_END)
    if not found:
        return None
    done, total = found[-1]
    return CopyProgress(int(done), int(total))


class TargetRefused(Exception):
    """A target failed its check when added: the message says which step and why."""


def check_target(offsite: OffsiteRestic, remote: Remote, region: str = S3_REGION) -> dict[str, Any]:
    """Proves a target takes cairn's copies and refuses deletes with these credentials;
    what immutability it gives, to be recorded with the target.

    A fresh probe repository (``.cairn-checks/<random>``) is written with restic (reach,
    credentials, write permission, restic's protocol), then one of its files is deleted: an
    append-only REST server, or an S3 bucket whose policy grants these credentials no
    ``s3:DeleteObject``, refuses (403). The probe stays (it cannot be deleted); it is a few
    hundred bytes. An S3 bucket is then asked for its versioning and object lock (what keeps
    an overwritten file's earlier version, which no policy can refuse).
    """
    probe = remote.at(".cairn-checks", uuid.uuid4().hex)
    try:
        offsite.init(probe)
    except ResticError as exc:
        raise TargetRefused(f"writing a probe repository failed: {exc.message}") from None
    if remote.kind != "s3":
        _refuses_rest_delete(probe)
        return {"deletes_refused": True, "overwrites_refused": True}
    _refuses_s3_delete(probe, region)
    parts = urlsplit(remote.url)
    bucket = f"{parts.scheme}://{parts.netloc}/{parts.path.strip('/').split('/')[0]}"
    try:
        kept = bucket_protection(bucket, remote.username, remote.secret, region, CHECK_TIMEOUT)
    except (httpx.HTTPError, ValueError, SyntaxError) as exc:  # ParseError is a SyntaxError
        raise TargetRefused(
            f"reading the bucket's versioning and object lock failed: {exc}"
        ) from None
    return {"deletes_refused": True, "overwrites_refused": False, **kept}


def _refuses_s3_delete(probe: Remote, region: str) -> None:
    """The probe's config object cannot be deleted (a versioned, object-locked bucket alone
    still takes a delete marker, which hides the file from restic: the policy must refuse)."""
    try:
        status = delete_object(
            f"{probe.url}/config", probe.username, probe.secret, region, CHECK_TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise TargetRefused(f"deleting a probe file failed to reach S3: {exc}") from None
    if status < 300:
        raise TargetRefused(
            f"the bucket let cairn's everyday credentials delete a file (HTTP {status}): give"
            " them a policy without s3:DeleteObject (except on */locks/*) so a compromised cairn"
            " cannot remove copies"
        )
    if status != 403:
        raise TargetRefused(f"S3 answered a delete with HTTP {status}, not 403 AccessDenied")


def _refuses_rest_delete(probe: Remote) -> None:
    """One of the probe's key files cannot be deleted over the REST protocol."""
    auth = (probe.username, probe.secret)
    base = probe.url.rstrip("/")
    try:
        with httpx.Client(auth=auth, timeout=CHECK_TIMEOUT) as http:
            listed = http.get(
                f"{base}/keys/", headers={"Accept": "application/vnd.x.restic.rest.v2"}
            )
            listed.raise_for_status()
            names = [item["name"] for item in listed.json()]
            deleted = http.delete(f"{base}/keys/{names[0]}")
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
        raise TargetRefused(f"reading the probe repository back failed: {exc}") from None
    if deleted.is_success:
        raise TargetRefused(
            "the server let cairn's everyday credentials delete a file (HTTP"
            f" {deleted.status_code}): run it append-only (rest-server --append-only,"
            " rclone serve restic --append-only) so a compromised cairn cannot remove copies"
        )
    if deleted.status_code != 403:
        raise TargetRefused(
            f"the server answered a delete with HTTP {deleted.status_code}, not the 403 of an"
            " append-only restic REST server"
        )


def check_maintenance(offsite: OffsiteRestic, remote: Remote, region: str = S3_REGION) -> None:
    """Proves maintenance credentials can do what offsite retention needs: write (restic's
    locks) and delete. A probe repository (``.cairn-checks/<random>``) is written, then its
    key and config files are deleted again (TargetRefused saying what failed)."""
    probe = remote.at(".cairn-checks", uuid.uuid4().hex)
    try:
        offsite.init(probe)
    except ResticError as exc:
        raise TargetRefused(f"writing a probe repository failed: {exc.message}") from None
    base = probe.url.rstrip("/")
    if remote.kind == "s3":
        try:
            status = delete_object(
                f"{base}/config", probe.username, probe.secret, region, CHECK_TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise TargetRefused(f"deleting a probe file failed to reach S3: {exc}") from None
        if status >= 300:
            raise TargetRefused(
                f"S3 refused the maintenance credentials a delete (HTTP {status}): offsite"
                " retention could not remove expired copies"
            )
        return
    try:
        with httpx.Client(auth=(probe.username, probe.secret), timeout=CHECK_TIMEOUT) as http:
            listed = http.get(
                f"{base}/keys/", headers={"Accept": "application/vnd.x.restic.rest.v2"}
            )
            listed.raise_for_status()
            files = [f"keys/{item['name']}" for item in listed.json()] + ["config"]
            answers = [http.delete(f"{base}/{file}") for file in files]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise TargetRefused(f"reading the probe repository back failed: {exc}") from None
    refused = [a.status_code for a in answers if not a.is_success]
    if refused:
        raise TargetRefused(
            f"the server refused the maintenance credentials a delete (HTTP {refused[0]}):"
            " offsite retention could not remove expired copies; the maintenance endpoint must"
            " not be append-only"
        )
