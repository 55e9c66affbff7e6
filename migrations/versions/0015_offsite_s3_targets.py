"""Offsite targets may be S3 buckets (issue 23)

Revision ID: 0015
Revises: 0013 (0014 was never committed; 0016 follows this one)
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("offsite_targets_kind", "offsite_targets", type_="check")
    op.create_check_constraint("offsite_targets_kind", "offsite_targets", "kind IN ('rest', 's3')")


def downgrade() -> None:
    op.drop_constraint("offsite_targets_kind", "offsite_targets", type_="check")
    op.create_check_constraint("offsite_targets_kind", "offsite_targets", "kind IN ('rest')")
