"""backup downloads may be zstd-compressed

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "backup_downloads_compression"


def upgrade() -> None:
    op.drop_constraint(_NAME, "backup_downloads", type_="check")
    op.create_check_constraint(_NAME, "backup_downloads", "compression IN ('none', 'gzip', 'zstd')")


def downgrade() -> None:
    # zstd links cannot exist before this revision; they live a day at most, so they go
    op.execute("DELETE FROM backup_downloads WHERE compression = 'zstd'")
    op.drop_constraint(_NAME, "backup_downloads", type_="check")
    op.create_check_constraint(_NAME, "backup_downloads", "compression IN ('none', 'gzip')")
