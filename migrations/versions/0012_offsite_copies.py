"""offsite targets, their per-application repositories and each backup's copies

``offsite_targets`` holds a workspace's offsite locations (a restic REST server today) with
two sets of credentials sealed apart: the everyday ones (append only: copies) and the
maintenance ones (retention only). ``offsite_repositories`` is the sealed password of an
application's repository at a target. ``backup_copies`` says where each backup was copied
and how that copy stands. A policy may name one target.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "offsite_targets",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("location", postgresql.JSONB(), nullable=False),
        sa.Column("credentials_sealed", sa.Text(), nullable=False),
        sa.Column("maintenance_sealed", sa.Text(), nullable=True),
        sa.Column("protection_days", sa.Integer(), server_default=sa.text("14"), nullable=False),
        sa.Column("upload_limit_kib", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint("kind IN ('rest')", name="offsite_targets_kind"),
        sa.CheckConstraint("protection_days >= 1", name="offsite_targets_protection"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "name"),
    )
    op.create_table(
        "offsite_repositories",
        sa.Column("application_id", sa.UUID(), nullable=False),
        sa.Column("target_id", sa.UUID(), nullable=False),
        sa.Column("password_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["target_id"], ["offsite_targets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("application_id", "target_id"),
    )
    op.create_table(
        "backup_copies",
        sa.Column("execution_id", sa.UUID(), nullable=False),
        sa.Column("target_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("copied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("snapshot_ids", postgresql.JSONB(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'copied', 'failed', 'expired')", name="backup_copies_status"
        ),
        sa.ForeignKeyConstraint(["execution_id"], ["backup_executions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["target_id"], ["offsite_targets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("execution_id", "target_id"),
    )
    op.add_column("backup_policies", sa.Column("offsite_target_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        "backup_policies_offsite_target_id_fkey",
        "backup_policies",
        "offsite_targets",
        ["offsite_target_id"],
        ["id"],
    )


def downgrade() -> None:
    op.drop_constraint(
        "backup_policies_offsite_target_id_fkey", "backup_policies", type_="foreignkey"
    )
    op.drop_column("backup_policies", "offsite_target_id")
    op.drop_table("backup_copies")
    op.drop_table("offsite_repositories")
    op.drop_table("offsite_targets")
