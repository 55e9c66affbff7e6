"""storage usage samples

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 13:17:56.777137
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "storage_usage_samples",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("storage_id", sa.UUID(), nullable=False),
        sa.Column(
            "sampled_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("used_bytes", sa.BigInteger(), nullable=False),
        sa.Column("available_bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["storage_id"], ["backup_storages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_storage_usage_samples_storage_id"),
        "storage_usage_samples",
        ["storage_id"],
        unique=False,
    )
    op.create_unique_constraint(
        "backup_storages_proxmox_storage_id_key", "backup_storages", ["proxmox_storage_id"]
    )


def downgrade() -> None:
    op.drop_constraint("backup_storages_proxmox_storage_id_key", "backup_storages", type_="unique")
    op.drop_index(op.f("ix_storage_usage_samples_storage_id"), table_name="storage_usage_samples")
    op.drop_table("storage_usage_samples")
