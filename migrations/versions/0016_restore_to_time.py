"""restores to a moment: a restore row without a backup

A restore to a moment (docs/pitr.md) replays the application's WAL archive; it comes from
no one backup, so ``backup_restores.backup_execution_id`` may be null (its moment is in
``details.target_time``).

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("backup_restores", "backup_execution_id", nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM backup_restores WHERE backup_execution_id IS NULL")
    op.alter_column("backup_restores", "backup_execution_id", nullable=False)
