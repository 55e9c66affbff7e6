"""backup repositories

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 13:35:47.815363
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backup_repositories",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("application_id", sa.UUID(), nullable=False),
        sa.Column("storage_id", sa.UUID(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("password_sealed", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["storage_id"], ["backup_storages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("application_id", "storage_id"),
    )
    op.create_unique_constraint(
        "backup_executions_policy_id_idempotency_key_key",
        "backup_executions",
        ["policy_id", "idempotency_key"],
    )


def downgrade() -> None:
    op.drop_constraint(
        "backup_executions_policy_id_idempotency_key_key", "backup_executions", type_="unique"
    )
    op.drop_table("backup_repositories")
