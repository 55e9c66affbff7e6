"""backup history outlives its policy

Executions name their application and storage themselves, so deleting a policy keeps the
history of the application's backups (listed and restorable); restores go with their backup
or application instead of blocking their deletion.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("backup_executions", sa.Column("application_id", sa.UUID(), nullable=True))
    op.add_column("backup_executions", sa.Column("storage_id", sa.UUID(), nullable=True))
    op.execute(
        "UPDATE backup_executions e SET application_id = p.application_id,"
        " storage_id = p.storage_id FROM backup_policies p WHERE p.id = e.policy_id"
    )
    op.alter_column("backup_executions", "application_id", nullable=False)
    op.create_foreign_key(
        "backup_executions_application_id_fkey",
        "backup_executions",
        "applications",
        ["application_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        "backup_executions_storage_id_fkey",
        "backup_executions",
        "backup_storages",
        ["storage_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index("ix_backup_executions_application_id", "backup_executions", ["application_id"])
    op.drop_constraint("backup_executions_policy_id_fkey", "backup_executions")
    op.alter_column("backup_executions", "policy_id", nullable=True)
    op.create_foreign_key(
        "backup_executions_policy_id_fkey",
        "backup_executions",
        "backup_policies",
        ["policy_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.drop_constraint("backup_executions_policy_id_idempotency_key_key", "backup_executions")
    op.create_unique_constraint(
        "backup_executions_application_id_idempotency_key_key",
        "backup_executions",
        ["application_id", "idempotency_key"],
    )
    for column, table in (
        ("backup_execution_id", "backup_executions"),
        ("application_id", "applications"),
    ):
        op.drop_constraint(f"backup_restores_{column}_fkey", "backup_restores")
        op.create_foreign_key(
            f"backup_restores_{column}_fkey",
            "backup_restores",
            table,
            [column],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    for column, table in (
        ("backup_execution_id", "backup_executions"),
        ("application_id", "applications"),
    ):
        op.drop_constraint(f"backup_restores_{column}_fkey", "backup_restores")
        op.create_foreign_key(
            f"backup_restores_{column}_fkey", "backup_restores", table, [column], ["id"]
        )
    op.drop_constraint("backup_executions_application_id_idempotency_key_key", "backup_executions")
    op.execute("DELETE FROM backup_executions WHERE policy_id IS NULL")
    op.create_unique_constraint(
        "backup_executions_policy_id_idempotency_key_key",
        "backup_executions",
        ["policy_id", "idempotency_key"],
    )
    op.drop_constraint("backup_executions_policy_id_fkey", "backup_executions")
    op.alter_column("backup_executions", "policy_id", nullable=False)
    op.create_foreign_key(
        "backup_executions_policy_id_fkey",
        "backup_executions",
        "backup_policies",
        ["policy_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.drop_index("ix_backup_executions_application_id", "backup_executions")
    op.drop_constraint("backup_executions_storage_id_fkey", "backup_executions")
    op.drop_constraint("backup_executions_application_id_fkey", "backup_executions")
    op.drop_column("backup_executions", "storage_id")
    op.drop_column("backup_executions", "application_id")
