"""scheduled drills to a moment: a drill policy's target_time (issue 22)

Revision ID: 0020
Revises: 0019
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("restore_drill_policies", sa.Column("target_time", sa.String(10)))
    op.create_check_constraint(
        "restore_drill_policies_target_time",
        "restore_drill_policies",
        "target_time IN ('latest', 'random')",
    )


def downgrade() -> None:
    op.drop_constraint(
        "restore_drill_policies_target_time", "restore_drill_policies", type_="check"
    )
    op.drop_column("restore_drill_policies", "target_time")
