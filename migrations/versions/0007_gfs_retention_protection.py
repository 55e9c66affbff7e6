"""GFS retention counts on policies; protected backups

A policy may keep the last N backups and the newest of each of the last N days, weeks,
months and years beside ``retention_days``, which becomes optional (NULL: no age rule).
Until now a NULL ``retention_days`` meant 30 days; such rows get 30 so they keep behaving
as they did. A rule that keeps nothing is refused by a check constraint as by the API.

A backup can be protected (who and when recorded): retention never prunes it.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


def upgrade() -> None:
    for name in COUNTS:
        op.add_column(
            "backup_policies",
            sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False),
        )
        op.create_check_constraint(
            f"backup_policies_{name}_nonneg", "backup_policies", f"{name} >= 0"
        )
    op.execute("UPDATE backup_policies SET retention_days = 30 WHERE retention_days IS NULL")
    op.create_check_constraint(
        "backup_policies_retention_days_positive", "backup_policies", "retention_days >= 1"
    )
    op.create_check_constraint(
        "backup_policies_keeps_something",
        "backup_policies",
        "retention_days IS NOT NULL OR " + " + ".join(COUNTS) + " > 0",
    )
    op.add_column(
        "backup_executions",
        sa.Column("protected", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("backup_executions", sa.Column("protected_by", sa.String(320)))
    op.add_column("backup_executions", sa.Column("protected_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("backup_executions", "protected_at")
    op.drop_column("backup_executions", "protected_by")
    op.drop_column("backup_executions", "protected")
    op.drop_constraint("backup_policies_keeps_something", "backup_policies")
    op.drop_constraint("backup_policies_retention_days_positive", "backup_policies")
    for name in COUNTS:
        op.drop_constraint(f"backup_policies_{name}_nonneg", "backup_policies")
        op.drop_column("backup_policies", name)
