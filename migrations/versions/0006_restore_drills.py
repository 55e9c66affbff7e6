"""restore drills: a policy's drill settings and the result of every drill

A drill restores an application's newest successful backup into a scratch database and
scratch folders, verifies it against the manifest, runs the application's SQL checks and
records how long recovery took. ``restore_drill_policies`` holds a backup policy's drill
schedule and checks (one per policy, gone with it); ``restore_drills`` one row per drill.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "restore_drill_policies",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("policy_id", sa.UUID(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("schedule", sa.String(length=100), nullable=False),
        sa.Column(
            "checks", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(["policy_id"], ["backup_policies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("policy_id"),
    )
    op.create_table(
        "restore_drills",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("application_id", sa.UUID(), nullable=False),
        sa.Column("backup_execution_id", sa.UUID(), nullable=True),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("run_id", sa.String(length=255), nullable=True),
        sa.Column("trigger", sa.String(length=20), server_default="manual", nullable=False),
        sa.Column("schedule_id", sa.String(length=255), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=50), server_default="pending", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recovery_seconds", sa.Float(), nullable=True),
        sa.Column("bytes_restored", sa.BigInteger(), nullable=True),
        sa.Column("checks", postgresql.JSONB(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("details", postgresql.JSONB(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint("trigger IN ('manual', 'schedule')", name="restore_drills_trigger"),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')",
            name="restore_drills_status",
        ),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["backup_execution_id"], ["backup_executions.id"], ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workflow_id"),
        sa.UniqueConstraint("application_id", "idempotency_key"),
    )
    op.create_index("ix_restore_drills_application_id", "restore_drills", ["application_id"])
    op.create_index(
        "ix_restore_drills_backup_execution_id", "restore_drills", ["backup_execution_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_restore_drills_backup_execution_id", table_name="restore_drills")
    op.drop_index("ix_restore_drills_application_id", table_name="restore_drills")
    op.drop_table("restore_drills")
    op.drop_table("restore_drill_policies")
