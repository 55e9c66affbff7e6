"""Operator commands: ``.cairn/cairn.env`` read by themselves, one-line errors, the first admin."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core import crypto
from core.crypto import generate_master_key
from core.secret_contexts import repository_password
from core.tokens import hash_token
from devstack.postgres import PostgresServer
from tests.conftest import free_port
from tests.support import database as dbsupport

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_database(database_server: PostgresServer) -> Iterator[str]:
    """A migrated database of this test alone: bootstrap needs one without any admin."""
    with dbsupport.fresh_database(database_server, f"cairn_ops_{uuid.uuid4().hex[:10]}") as url:
        yield url


def cairn(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``cairn`` as an operator runs it: in ``cwd``, with no CAIRN_* but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def _admins(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(dbsupport.libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT u.email, count(t.id) FROM users u LEFT JOIN api_tokens t ON t.user_id = u.id"
            " WHERE u.is_platform_admin GROUP BY u.email"
        ).fetchall()
    return [(str(email), int(count)) for email, count in rows]


def test_bootstrap_reads_cairn_env_makes_one_admin_and_refuses_a_second(
    own_database: str, tmp_path: Path
) -> None:
    (tmp_path / ".cairn").mkdir()
    (tmp_path / ".cairn" / "cairn.env").write_text(f"CAIRN_DATABASE_URL='{own_database}'\n")

    made = cairn("admin", "bootstrap", "--email", "ops@example.com", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert "shown only this once" in made.stderr and token not in made.stderr
    with psycopg.connect(dbsupport.libpq_url(own_database)) as conn:
        owner = conn.execute(
            "SELECT u.email FROM api_tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.token_hash = %s AND u.is_platform_admin",
            (hash_token(token),),
        ).fetchone()
        actions = {row[0] for row in conn.execute("SELECT action FROM audit_events")}
    assert owner == ("ops@example.com",)
    assert {"user.create", "token.issue"} <= actions

    again = cairn("admin", "bootstrap", "--email", "other@example.com", cwd=tmp_path)
    line = _one_line_error(again)
    assert "a platform admin exists already (ops@example.com)" in line
    assert _admins(own_database) == [("ops@example.com", 1)]  # no second admin, no new token


def test_the_environment_wins_over_cairn_env(own_database: str, tmp_path: Path) -> None:
    (tmp_path / ".cairn").mkdir()
    (tmp_path / ".cairn" / "cairn.env").write_text(f"CAIRN_DATABASE_URL='{own_database}'\n")
    missing = own_database.rsplit("/", 1)[0] + "/cairn_no_such_db"
    done = cairn("migrate", cwd=tmp_path, env={"CAIRN_DATABASE_URL": missing})
    line = _one_line_error(done)
    assert 'database "cairn_no_such_db" does not exist' in line
    assert "settings read from" in line and "cairn.env" in line


def test_a_missing_database_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    missing = "postgresql+psycopg://postgres@127.0.0.1:5432/cairn_no_such_db"
    line = _one_line_error(cairn("migrate", cwd=tmp_path, env={"CAIRN_DATABASE_URL": missing}))
    assert f"cannot reach cairn's database {missing}" in line
    assert "check CAIRN_DATABASE_URL" in line


def test_a_malformed_setting_is_one_line(tmp_path: Path) -> None:
    line = _one_line_error(cairn("migrate", cwd=tmp_path, env={"CAIRN_API_PORT": "eighty"}))
    assert "invalid settings: CAIRN_API_PORT: Input should be a valid integer" in line


def test_unreachable_temporal_is_one_line(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    for args in (("temporal", "setup"), ("schedules", "reconcile")):
        line = _one_line_error(cairn(*args, cwd=tmp_path, env={"CAIRN_TEMPORAL_ADDRESS": address}))
        assert f"cannot reach Temporal at {address}" in line, args


def test_a_wrong_master_key_is_one_line(own_database: str, tmp_path: Path) -> None:
    env = {"CAIRN_DATABASE_URL": own_database, "CAIRN_MASTER_KEY": generate_master_key()}
    made = cairn("admin", "bootstrap", "--email", "ops@example.com", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    app_id, storage_id = uuid.uuid4(), uuid.uuid4()
    sealed = crypto.seal(
        b"restic-pw",
        master_key=generate_master_key(),  # not the key the command is given
        context=repository_password(app_id, storage_id),
    )
    with psycopg.connect(dbsupport.libpq_url(own_database)) as conn:
        user = conn.execute("SELECT id FROM users").fetchone()
        assert user is not None
        workspace = conn.execute(
            "INSERT INTO workspaces (name, plan) VALUES ('ws', 'dedicated') RETURNING id"
        ).fetchone()
        assert workspace is not None
        conn.execute(
            "INSERT INTO applications (id, workspace_id, owner_id, name, platform_kind)"
            " VALUES (%s, %s, %s, 'web', 'local')",
            (app_id, workspace[0], user[0]),
        )
        conn.execute(
            "INSERT INTO backup_storages (id, workspace_id, name, type, proxmox_storage_id,"
            " capacity_gb) VALUES (%s, %s, 'main', 'local', %s, 1)",
            (storage_id, workspace[0], f"cairn-{storage_id.hex[:16]}"),
        )
        conn.execute(
            "INSERT INTO backup_repositories (application_id, storage_id, path, password_sealed)"
            " VALUES (%s, %s, '/nowhere', %s)",
            (app_id, storage_id, sealed),
        )
    done = cairn(
        "admin",
        "--token",
        made.stdout.strip(),
        "repo-password",
        str(app_id),
        cwd=tmp_path,
        env=env,
    )
    line = _one_line_error(done)
    assert "cannot be opened with this master key" in line
    assert "CAIRN_MASTER_KEY must be the key the worker uses" in line
    assert "restic-pw" not in done.stdout + done.stderr
