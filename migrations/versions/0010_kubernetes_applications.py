"""applications of kind kubernetes

An application's platform may now be ``kubernetes`` (namespace, workloads, PVCs, database
reached in the cluster, ConfigMaps/Secrets) as well as ``local``. Only the check on
``platform_kind`` changes; the settings of both kinds live in ``platform_settings``.
Downgrading refuses while kubernetes applications exist, rather than dropping them.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "applications_platform_kind"


def upgrade() -> None:
    op.drop_constraint(NAME, "applications", type_="check")
    op.create_check_constraint(NAME, "applications", "platform_kind IN ('local', 'kubernetes')")


def downgrade() -> None:
    op.drop_constraint(NAME, "applications", type_="check")
    op.create_check_constraint(NAME, "applications", "platform_kind IN ('local')")
