"""Offsite servers for tests, run for real: Debian's ``rclone serve restic`` and moto's S3.

One folder is served twice, as a real offsite deployment does: append-only for cairn's
everyday credentials, and with deletes allowed (another port, another user) for the
maintenance credentials only offsite retention holds.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]  # moto's dependency (test extras)

from tests.conftest import free_port

RCLONE = "rclone"


def _wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{what} ended ({process.returncode})") from None
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen within 20 s")


@dataclass
class RestServer:
    """``rclone serve restic`` over ``root`` on a fixed loopback port (kept across restarts)."""

    root: Path
    append_only: bool
    username: str
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}

    def start(self) -> None:
        argv = [RCLONE, "serve", "restic", str(self.root), "--addr", f"127.0.0.1:{self.port}"]
        argv += ["--user", self.username, "--pass", self.password]
        if self.append_only:
            argv.append("--append-only")
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        _wait_listening(self.port, self.process, "rclone serve restic")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@dataclass
class OffsiteSite:
    """The two endpoints over one folder."""

    root: Path
    everyday: RestServer
    maintenance: RestServer

    @classmethod
    def started(cls, root: Path) -> OffsiteSite:
        root.mkdir(parents=True, exist_ok=True)
        site = cls(
            root,
            RestServer(root, append_only=True, username="cairn"),
            RestServer(root, append_only=False, username="maintenance"),
        )
        site.everyday.start()
        site.maintenance.start()
        return site

    def stop(self) -> None:
        self.everyday.stop()
        self.maintenance.stop()

    def target_body(self, name: str = "offsite", **extra: object) -> dict[str, object]:
        """What a workspace admin sends to add this site as a target."""
        return {
            "name": name,
            "kind": "rest",
            "url": self.everyday.url,
            "credentials": self.everyday.credentials,
            "maintenance_url": self.maintenance.url,
            "maintenance_credentials": self.maintenance.credentials,
            **extra,
        }


BUCKET = "cairn-offsite"
# A second bucket with versioning and object lock: a compliance default retention of
# LOCK_DAYS keeps every version of every object, whoever asks to delete it.
LOCKED_BUCKET = "cairn-offsite-locked"
LOCK_DAYS = 14
# The everyday credentials' policy: read, list and write anything, delete only restic's lock
# files (which it removes after every command). moto names some S3 actions its own way
# (HeadBucket, HeadObject, ListObjectsV2), hence the wildcards.
EVERYDAY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:Get*", "s3:Head*", "s3:List*", "s3:PutObject"],
            "Resource": [f"arn:aws:s3:::{BUCKET}*"],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:DeleteObject"],
            "Resource": [f"arn:aws:s3:::{BUCKET}*/*/locks/*"],
        },
    ],
}
MAINTENANCE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}
# The requests that set the buckets and users up, made before moto starts enforcing IAM.
_SETUP_REQUESTS = 9


@dataclass
class S3Site:
    """moto's S3 server with IAM enforced: a plain bucket and one with object lock, an
    everyday user that cannot delete (but restic's lock files) and a maintenance user that
    can (what object lock lets anyone delete)."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    everyday: dict[str, str] = field(default_factory=dict)
    maintenance: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, bucket: str = BUCKET) -> str:
        return f"{self.endpoint}/{bucket}/cairn"

    def client(self, keys: dict[str, str]) -> Any:
        """boto3's S3 client with these keys (``username``/``password``)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=keys["username"],
            aws_secret_access_key=keys["password"],
            region_name="us-east-1",
        )

    @classmethod
    def started(cls, root: Path) -> S3Site:
        site = cls(root)
        site.start()
        return site

    def start(self) -> None:
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_REQUESTS)}
        env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        log = (self.root / "moto.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_listening(self.port, self.process, "moto server")
        setup = {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup",
            "region_name": "us-east-1",
        }
        s3 = boto3.client("s3", **setup)
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket=LOCKED_BUCKET, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(
            Bucket=LOCKED_BUCKET,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": LOCK_DAYS}},
            },
        )
        iam = boto3.client("iam", **setup)
        for user, policy in (("cairn", EVERYDAY_POLICY), ("maintenance", MAINTENANCE_POLICY)):
            iam.create_user(UserName=user)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            iam.put_user_policy(
                UserName=user, PolicyName="offsite", PolicyDocument=json.dumps(policy)
            )
            keys = {"username": key["AccessKeyId"], "password": key["SecretAccessKey"]}
            (self.everyday if user == "cairn" else self.maintenance).update(keys)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def target_body(
        self, name: str = "offsite-s3", bucket: str = BUCKET, **extra: object
    ) -> dict[str, object]:
        return {
            "name": name,
            "kind": "s3",
            "url": self.url(bucket),
            "credentials": self.everyday,
            "maintenance_url": self.url(bucket),
            "maintenance_credentials": self.maintenance,
            **extra,
        }
