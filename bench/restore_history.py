"""A restore's cost against the history its repository keeps (issue 27, item 1).

The same application is backed up once and restored (the newest backup, the only one), then
backed up ``history - 1`` more times, each after 5 % of ``pgbench_accounts`` was rewritten so
every backup adds data of its own, and restored again (the newest of ``history``). The ratio
of the two restores is the history's cost: 1.0 means a restore costs the backup restored,
not every backup kept. The verification step's seconds are shown beside it.
"""

from __future__ import annotations

from bench.database import MB, Databases
from bench.figures import Figure, Report, activity_seconds
from bench.stack import Stack

CHURN = 0.05
VERIFY = "verify_backup"


async def _restore(stack: Stack, app: str, backup_id: str) -> tuple[float, float]:
    """The restore's seconds through the API and its verification step's."""
    elapsed, restored = await stack.restore(app, backup_id)
    await stack.workflow_closed(restored["workflow_id"])
    steps = await activity_seconds(stack.temporal, restored["workflow_id"])
    return elapsed, steps.get(VERIFY, 0.0)


async def run(stack: Stack, dbs: Databases, size_mb: int, history: int, report: Report) -> None:
    name = dbs.pgbench("history", size_mb)
    print(f"database {name}: {dbs.size(name) / MB:.0f} MiB, {history} backups", flush=True)
    app = await stack.new_app("history", dbs.url(name))
    _, first = await stack.backup(app)
    one, verify_one = await _restore(stack, app, first["id"])
    print(f"  restore with 1 backup kept: {one:.2f} s (verify {verify_one:.2f} s)", flush=True)
    newest = first
    for i in range(history - 1):
        dbs.execute(
            name,
            "UPDATE pgbench_accounts SET filler = md5(random()::text) || md5(random()::text)"
            f" WHERE random() < {CHURN}",
        )
        _, newest = await stack.backup(app)
        print(f"  backup {i + 2}/{history}", flush=True)
    many, verify_many = await _restore(stack, app, newest["id"])
    print(
        f"  restore with {history} backups kept: {many:.2f} s (verify {verify_many:.2f} s)",
        flush=True,
    )
    report.notes.append(
        f"restore history rows: {size_mb} MiB pgbench database, {history} backups,"
        f" {CHURN:.0%} of the accounts rewritten between backups"
    )
    report.add(
        Figure(
            "restore_history_ratio",
            f"restore of the newest of {history} backups / of the only backup",
            [many / one],
            "x",
            "about 1x",
        )
    )
    report.add(
        Figure(
            "restore_history_verify_s",
            f"verification step, newest of {history} backups",
            [verify_many],
            " s",
        )
    )
