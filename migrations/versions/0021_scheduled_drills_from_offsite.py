"""scheduled drills from an offsite copy: a drill policy's source (issue 23)

``source``: null (the primary storage), ``offsite`` (the newest backup with a finished copy at
any target) or one target's id. Not a foreign key: one column holds both kinds; deleting a
target a drill policy names is refused by ``services/offsite_targets.py::delete``.

Revision ID: 0021
Revises: 0020
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCE_CHECK = (
    "source = 'offsite' OR source ~"
    " '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"
)


def upgrade() -> None:
    op.add_column("restore_drill_policies", sa.Column("source", sa.String(36)))
    op.create_check_constraint(
        "restore_drill_policies_source", "restore_drill_policies", SOURCE_CHECK
    )


def downgrade() -> None:
    op.drop_constraint("restore_drill_policies_source", "restore_drill_policies", type_="check")
    op.drop_column("restore_drill_policies", "source")
