"""continuous archiving (point-in-time recovery) on a backup policy

``continuous_archiving`` turns the application's archiver on (docs/pitr.md);
``archive_window_days`` is how far back a restore to a moment should reach.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "backup_policies",
        sa.Column(
            "continuous_archiving", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.add_column(
        "backup_policies",
        sa.Column("archive_window_days", sa.Integer(), server_default=sa.text("7"), nullable=False),
    )
    op.create_check_constraint(
        "backup_policies_archive_window_days",
        "backup_policies",
        "archive_window_days BETWEEN 1 AND 35",
    )


def downgrade() -> None:
    op.drop_constraint("backup_policies_archive_window_days", "backup_policies", type_="check")
    op.drop_column("backup_policies", "archive_window_days")
    op.drop_column("backup_policies", "continuous_archiving")
