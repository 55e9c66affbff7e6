"""a storage's own usage beside its file system's

PVE's storage status describes the file system a storage lives on (``df``), which may hold
other data. cairn now stores its own bytes (its repositories) in ``used_bytes`` and keeps the
file system's figures beside them. Earlier samples' ``used_bytes`` was the reading of that
time; it is copied to ``filesystem_used_bytes`` (cairn's own figure of then is not known).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("backup_storages", sa.Column("filesystem_total_bytes", sa.BigInteger()))
    op.add_column("backup_storages", sa.Column("filesystem_used_bytes", sa.BigInteger()))
    op.add_column(
        "storage_usage_samples", sa.Column("filesystem_used_bytes", sa.BigInteger(), nullable=True)
    )
    op.execute("UPDATE storage_usage_samples SET filesystem_used_bytes = used_bytes")
    op.alter_column("storage_usage_samples", "filesystem_used_bytes", nullable=False)


def downgrade() -> None:
    op.drop_column("storage_usage_samples", "filesystem_used_bytes")
    op.drop_column("backup_storages", "filesystem_used_bytes")
    op.drop_column("backup_storages", "filesystem_total_bytes")
