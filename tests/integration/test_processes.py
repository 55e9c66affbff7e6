"""The processes an operator runs: ``cairn worker`` and ``cairn dev``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from cli.dev import database_name
from contracts.task_queues import CONTROL_TASK_QUEUE, DATA_TASK_QUEUE
from core.crypto import generate_master_key
from core.settings import Settings
from devstack.postgres import PostgresServer, answers
from tests.conftest import free_port, free_ports
from worker.system_schedules import (
    OFFSITE_RETENTION_SCHEDULE_ID,
    OVERDUE_NOTICES_SCHEDULE_ID,
    RECONCILE_SCHEDULE_ID,
    RETENTION_SCHEDULE_ID,
    SETTLE_RUNS_SCHEDULE_ID,
    USAGE_SCHEDULE_ID,
)

pytestmark = pytest.mark.integration

SYSTEM_SCHEDULES = (
    USAGE_SCHEDULE_ID,
    RECONCILE_SCHEDULE_ID,
    RETENTION_SCHEDULE_ID,
    SETTLE_RUNS_SCHEDULE_ID,
    OFFSITE_RETENTION_SCHEDULE_ID,
    OVERDUE_NOTICES_SCHEDULE_ID,
)


def cairn(*args: str, env: dict[str, str] | None = None, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        env={**os.environ, **(env or {})},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def polled_by(client: Client, queue: str, kind: TaskQueueType.ValueType, pid: int) -> bool:
    """Whether the process ``pid`` polls the queue (the SDK's identity is ``pid@host``)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind
        )
    )
    return any(p.identity.startswith(f"{pid}@") for p in response.pollers)


def worker_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        "CAIRN_DATABASE_URL": settings.database_url,
        "CAIRN_TEMPORAL_ADDRESS": settings.temporal_address,
        "CAIRN_MASTER_KEY": settings.master_key_text or "",
        "CAIRN_STORAGE_MOUNT_ROOT": str(tmp_path),
    }


def check_metrics_need_the_token(port: int, token: str, pid: int) -> None:
    """The worker's endpoint: 401 without the scrape token, the metrics with it, on loopback."""
    url = f"http://127.0.0.1:{port}/metrics"
    anonymous = httpx.get(url)
    assert anonymous.status_code == 401, anonymous.text
    assert "CAIRN_METRICS_TOKEN" in anonymous.text
    assert "cairn_" not in anonymous.text
    assert httpx.get(url, headers={"Authorization": "Bearer not-the-token"}).status_code == 401
    scraped = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert scraped.status_code == 200, scraped.text
    assert "cairn_backups_started_total" in scraped.text
    listening = [
        c.laddr
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    assert [address.ip for address in listening] == ["127.0.0.1"]


async def test_worker_serves_both_queues_and_stops_on_sigterm(
    settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    metrics_port, token = free_port(), secrets.token_urlsafe(16)
    env = {
        **worker_env(settings, tmp_path),
        "CAIRN_WORKER_METRICS_PORT": str(metrics_port),
        "CAIRN_METRICS_TOKEN": token,
    }
    process = cairn("worker", env=env, log=tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            control = await polled_by(
                temporal_client,
                CONTROL_TASK_QUEUE,
                TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                process.pid,
            )
            data = await polled_by(
                temporal_client,
                DATA_TASK_QUEUE,
                TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                process.pid,
            )
            if control and data:
                break
            assert process.poll() is None, (tmp_path / "worker.log").read_text()
            await asyncio.sleep(0.5)
        else:
            pytest.fail("the worker never polled both task queues")
        for schedule_id in SYSTEM_SCHEDULES:
            await temporal_client.get_schedule_handle(schedule_id).describe()
        check_metrics_need_the_token(metrics_port, token, process.pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "worker stopping" in (tmp_path / "worker.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
        await delete_system_schedules(temporal_client)


def test_worker_refuses_a_metrics_port_without_the_scrape_token(
    settings: Settings, tmp_path: Path
) -> None:
    env = {**worker_env(settings, tmp_path), "CAIRN_WORKER_METRICS_PORT": str(free_port())}
    refused = subprocess.run(
        [sys.executable, "-m", "cli.main", "worker"],
        env={k: v for k, v in {**os.environ, **env}.items() if k != "CAIRN_METRICS_TOKEN"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert "cairn worker cannot start: CAIRN_WORKER_METRICS_PORT is set but" in refused.stderr
    assert "Traceback" not in refused.stderr


async def delete_system_schedules(client: Client) -> None:
    """The session's Temporal is shared: left behind, the usage refresh would change storages
    every 5 minutes under the tests that assert a refused request changed nothing."""
    for schedule_id in SYSTEM_SCHEDULES:
        with contextlib.suppress(RPCError):
            await client.get_schedule_handle(schedule_id).delete()


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in path.read_text():
            return
        assert process.poll() is None, path.read_text()
        time.sleep(0.5)
    pytest.fail(f"{text!r} not printed in {seconds}s:\n{path.read_text()}")


def worker_pid(dev: int) -> int:
    """The pid of the worker ``cairn dev`` started."""
    workers: list[int] = [
        child.pid
        for child in psutil.Process(dev).children()
        if "cli.main worker" in " ".join(child.cmdline())
    ]
    assert len(workers) == 1, workers
    return workers[0]


def _port_closed(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.TransportError:
        return True
    return False


def test_cairn_dev_starts_everything_and_restarts_on_the_same_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    api_port, temporal_port, ui_port, metrics_port = free_ports(4)
    args = (
        "dev",
        "--data-dir",
        str(data),
        "--api-port",
        str(api_port),
        "--metrics-port",
        str(metrics_port),
        "--temporal-port",
        str(temporal_port),
        "--ui-port",
        str(ui_port),
    )
    tokens = []
    try:
        for attempt in range(2):
            log = tmp_path / f"dev-{attempt}.log"
            process = cairn(*args, log=log)
            try:
                _wait_for(log, "cairn is running", process, seconds=120)
                api = f"http://127.0.0.1:{api_port}"
                assert httpx.get(f"{api}/readyz").status_code == 200
                token_file = data / "admin-token"
                assert token_file.stat().st_mode & 0o777 == 0o600
                token = token_file.read_text().strip()
                me = httpx.get(f"{api}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
                assert me.status_code == 200 and me.json()["user"]["is_platform_admin"]
                assert httpx.get(f"http://127.0.0.1:{ui_port}/").status_code == 200
                scrape = data / "metrics-token"
                assert scrape.stat().st_mode & 0o777 == 0o600
                check_metrics_need_the_token(
                    metrics_port, scrape.read_text().strip(), worker_pid(process.pid)
                )
                tokens.append(token)
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=60) == 0
                assert _port_closed(api_port) and _port_closed(ui_port)
            finally:
                if process.poll() is None:
                    process.kill()
        assert tokens[0] == tokens[1]
    finally:
        # dropped also when an assertion failed, so no run leaves a database behind
        if answers():
            PostgresServer().drop_database(database_name(data))


def _dev_args(data: Path) -> tuple[list[str], int]:
    api_port = free_port()
    args = [
        "dev",
        "--data-dir",
        str(data),
        "--api-port",
        str(api_port),
        "--metrics-port",
        str(free_port()),
        "--temporal-port",
        str(free_port()),
        "--ui-port",
        str(free_port()),
    ]
    return args, api_port


def _seal_a_secret(api: str, token: str) -> None:
    """An application with a database password: a secret sealed with this stack's key."""
    auth = {"Authorization": f"Bearer {token}"}
    me = httpx.get(f"{api}/api/v1/me", headers=auth).json()["user"]
    workspace = httpx.post(
        f"{api}/api/v1/admin/workspaces",
        json={"name": "ws-key", "plan": "dedicated", "backup_quota_gb": 10},
        headers=auth,
    )
    assert workspace.status_code == 201, workspace.text
    members = f"{api}/api/v1/workspaces/{workspace.json()['id']}/members"
    joined = httpx.post(members, json={"user_id": me["id"], "role": "admin"}, headers=auth)
    assert joined.status_code == 201, joined.text
    body = {
        "name": "shop",
        "owner_id": me["id"],
        "platform": {
            "kind": "local",
            "database_url": "postgresql://shop:s3cret-pw@127.0.0.1:5432/shop",
        },
    }
    created = httpx.post(
        f"{api}/api/v1/workspaces/{workspace.json()['id']}/applications", json=body, headers=auth
    )
    assert created.status_code == 201, created.text


def test_cairn_dev_stops_on_a_master_key_that_opens_nothing_and_reset_recovers(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    args, api_port = _dev_args(data)
    api = f"http://127.0.0.1:{api_port}"
    try:
        first = tmp_path / "dev-first.log"
        process = cairn(*args, log=first)
        try:
            _wait_for(first, "cairn is running", process, seconds=120)
            assert f"app volumes   {data / 'apps'}" in first.read_text()
            assert (data / "apps").is_dir()
            old_token = (data / "admin-token").read_text().strip()
            _seal_a_secret(api, old_token)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                process.kill()

        # the data folder's key is replaced (a reset folder next to a kept database)
        (data / "master-key").write_text(generate_master_key())
        worker_log = data / "logs" / "worker.log"
        worker_log_size = worker_log.stat().st_size
        refused = tmp_path / "dev-refused.log"
        process = cairn(*args, log=refused)
        try:
            assert process.wait(timeout=120) != 0
        finally:
            if process.poll() is None:
                process.kill()
        message = refused.read_text()
        assert "cannot open the secrets already stored" in message
        assert "application database password" in message
        assert f"put the old key back in {data / 'master-key'}" in message
        assert "--reset" in message
        assert worker_log.stat().st_size == worker_log_size  # stopped before the worker
        assert _port_closed(api_port)

        # --reset asks first; without an answer nothing is touched
        aborted = subprocess.run(
            [sys.executable, "-m", "cli.main", *args, "--reset"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert aborted.returncode != 0 and "Aborted" in aborted.stderr
        assert (data / "admin-token").read_text().strip() == old_token

        reset = tmp_path / "dev-reset.log"
        process = cairn(*args, "--reset", "--yes", log=reset)
        try:
            _wait_for(reset, "cairn is running", process, seconds=120)
            assert f"dropped database {database_name(data)}" in reset.read_text()
            assert httpx.get(f"{api}/readyz").status_code == 200
            new_token = (data / "admin-token").read_text().strip()
            assert new_token != old_token
            auth = {"Authorization": f"Bearer {new_token}"}
            workspaces = httpx.get(f"{api}/api/v1/admin/workspaces", headers=auth)
            assert workspaces.status_code == 200 and workspaces.json()["items"] == []
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                process.kill()
    finally:
        if answers():
            PostgresServer().drop_database(database_name(data))
