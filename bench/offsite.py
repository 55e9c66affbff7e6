"""Offsite copies against the primary backup, same data, same run (issue 23).

    .venv/bin/python -m bench.run --only offsite

Each run adds a new application (so its first copy starts from an empty repository at the
target) over one pgbench database (its filler made hex, so that it compresses about as a real
database does rather than to almost nothing), with a policy naming a real ``rclone serve restic
--append-only`` target (``tests/support/offsite_servers.py``), then:
  1. a backup through the API (POST until ``succeeded``), then its copy, timed as the copy
     workflow's own duration (``offsite-copy-…``, from its history);
  2. 1 % more rows appended to ``pgbench_accounts`` (a day of ``bench/growth.py``'s
     append-mostly kind: uniform updates change every chunk of the dump, and a copy then
     sends as much as the backup added, which the last figure shows either way);
  3. a second backup and its copy, timed the same way.
The bytes each copy sent are what the application's folder at the target grew by (restic's
packs, indexes and snapshots: HTTP framing is not counted), set against what the same backup
added to the primary repository.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.database import MB, Databases
from bench.figures import Figure, Report, activity_seconds
from bench.growth import _bytes
from bench.stack import Stack, _ok
from contracts.copy import copy_workflow_id
from tests.support.offsite_servers import OffsiteSite

APPENDED = 0.01  # rows added to pgbench_accounts between the two backups, as a share


async def _target(stack: Stack, site: OffsiteSite) -> str:
    created = await _ok(
        await stack.api.post(
            f"/api/v1/workspaces/{stack.workspace_id}/offsite-targets",
            json=site.target_body("bench-offsite"),
            headers=stack.owner,
        ),
        201,
    )
    return str(created["id"])


async def _app(stack: Stack, dbs: Databases, name: str, target_id: str) -> str:
    app = await stack.new_app(f"offsite-{time.monotonic_ns()}", dbs.url(name))
    await _ok(
        await stack.api.post(
            f"/api/v1/applications/{app}/backup-policy",
            json={
                "storage_id": stack.storage_id,
                "schedule": "0 3 * * *",
                "include_volumes": False,
                "offsite_target_id": target_id,
            },
            headers=stack.owner,
        ),
        200,
    )
    return app


def _repository_bytes(root: Path, app: str) -> int:
    """Bytes of the application's repository under a storage's (or the target's) root:
    ``…/workspaces/{workspace}/applications/{app}``, 0 before its first backup."""
    return sum(_bytes(p) for p in root.glob(f"**/workspaces/*/applications/{app}"))


async def _backup_and_copy(
    stack: Stack, app: str, target_id: str, storages: Path, site: Path
) -> tuple[float, float, int, int]:
    """Seconds of the backup and of its copy; bytes it added to the primary and the target."""
    primary_before, offsite_before = _repository_bytes(storages, app), _repository_bytes(site, app)
    backup_s, done = await stack.backup(app)
    await stack.workflow_closed(done["workflow_id"])  # the copy has been started by now
    copy_id = copy_workflow_id(done["id"], target_id)
    await stack.workflow_closed(copy_id)
    places = await _ok(
        await stack.api.get(
            f"/api/v1/applications/{app}/backups/{done['id']}/copies", headers=stack.owner
        ),
        200,
    )
    if places[-1]["status"] != "copied":
        raise SystemExit(f"offsite copy of {done['id']} did not succeed: {places[-1]}")
    spent = await activity_seconds(stack.temporal, copy_id)
    print("  copy steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in spent.items()), flush=True)
    copy_s = spent["(whole workflow)"]
    return (
        backup_s,
        copy_s,
        _repository_bytes(storages, app) - primary_before,
        _repository_bytes(site, app) - offsite_before,
    )


async def run(
    stack: Stack,
    dbs: Databases,
    work: Path,
    storages: Path,
    size_mb: int,
    runs: int,
    report: Report,
) -> None:
    """The rows; ``storages`` is the stack's storage mount root (its primary repositories)."""
    name = dbs.pgbench("offsite", size_mb)
    # pgbench's filler is blanks, which restic compresses to almost nothing: hex instead, so
    # the bytes sent are those of a database that compresses like a real one (about 2x)
    dbs.execute(name, "UPDATE pgbench_accounts SET filler = md5(aid::text) || md5(random()::text)")
    print(f"database {name}: {dbs.size(name) / MB:.0f} MiB", flush=True)
    site = OffsiteSite.started(work / "offsite-site")
    try:
        target_id = await _target(stack, site)
        backup_s: list[float] = []
        copy_s: list[float] = []
        incremental_s: list[float] = []
        first_bytes: list[int] = []
        second_bytes: list[int] = []
        primary_second: list[int] = []
        for i in range(runs):
            app = await _app(stack, dbs, name, target_id)
            b1, c1, _p1, o1 = await _backup_and_copy(stack, app, target_id, storages, site.root)
            dbs.execute(
                name,
                f"INSERT INTO pgbench_accounts SELECT m + i, 1, 0, md5(random()::text)"
                f" || md5(random()::text) FROM (SELECT max(aid) m FROM pgbench_accounts) a,"
                f" generate_series(1, (SELECT count(*) * {APPENDED} FROM pgbench_accounts)::int) i",
            )
            _b2, c2, p2, o2 = await _backup_and_copy(stack, app, target_id, storages, site.root)
            backup_s.append(b1)
            copy_s.append(c1)
            incremental_s.append(c2)
            first_bytes.append(o1)
            second_bytes.append(o2)
            primary_second.append(p2)
            print(
                f"run {i + 1}/{runs}: backup {b1:.2f} s, copy {c1:.2f} s ({o1 / MB:.1f} MiB),"
                f" second copy {c2:.2f} s ({o2 / MB:.2f} MiB; primary grew {p2 / MB:.2f} MiB)",
                flush=True,
            )
    finally:
        site.stop()
    report.add(
        Figure("offsite_backup_s", "backup through the API (copied offsite)", backup_s, " s")
    )
    report.add(Figure("offsite_copy_s", "its offsite copy (copy workflow)", copy_s, " s"))
    report.add(
        Figure(
            "offsite_copy_vs_backup",
            "offsite copy / the backup it copies",
            [c / b for c, b in zip(copy_s, backup_s, strict=True)],
            "x",
        )
    )
    report.add(
        Figure(
            "offsite_incremental_copy_s", "second copy, 1 % of rows appended", incremental_s, " s"
        )
    )
    report.add(
        Figure(
            "offsite_incremental_bytes_ratio",
            "bytes sent by the second copy / by the first",
            [s / f for s, f in zip(second_bytes, first_bytes, strict=True)],
            "x",
        )
    )
    report.add(
        Figure(
            "offsite_incremental_vs_primary",
            "bytes sent by the second copy / what its backup added to the primary",
            [s / p for s, p in zip(second_bytes, primary_second, strict=True)],
            "x",
        )
    )
    report.notes.append(
        f"offsite rows: {size_mb} MiB pgbench database, first copy"
        f" {statistics.median(first_bytes) / MB:.1f} MiB sent to rclone serve restic --append-only"
    )
