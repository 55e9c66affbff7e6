"""an index for every list query and for the running-run checks

Every list is a keyset page: ``WHERE <owner> = … ORDER BY created_at DESC, id DESC LIMIT n``
(audit events by ``occurred_at``). A composite index on (owner, created_at, id) answers a
page by reading exactly its rows, however long the history grows. Starting a run and the
run reconciler look for the few running rows: partial indexes hold only those.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name -> (table, key columns, partial index predicate)
INDEXES: dict[str, tuple[str, list[str], str | None]] = {
    "ix_backup_executions_page": (
        "backup_executions",
        ["application_id", "created_at DESC", "id DESC"],
        None,
    ),
    "ix_backup_executions_running": ("backup_executions", ["application_id"], "status = 'running'"),
    "ix_backup_restores_page": (
        "backup_restores",
        ["application_id", "created_at DESC", "id DESC"],
        None,
    ),
    "ix_backup_restores_running": (
        "backup_restores",
        ["application_id"],
        "status IN ('pending', 'running')",
    ),
    "ix_applications_page": ("applications", ["workspace_id", "created_at DESC", "id DESC"], None),
    "ix_backup_storages_page": (
        "backup_storages",
        ["workspace_id", "created_at DESC", "id DESC"],
        None,
    ),
    "ix_workspace_members_page": (
        "workspace_members",
        ["workspace_id", "created_at DESC", "user_id DESC"],
        None,
    ),
    "ix_audit_events_page": ("audit_events", ["workspace_id", "occurred_at DESC", "id DESC"], None),
    "ix_users_page": ("users", ["created_at DESC", "id DESC"], None),
    "ix_workspaces_page": ("workspaces", ["created_at DESC", "id DESC"], None),
}


def upgrade() -> None:
    for name, (table, columns, where) in INDEXES.items():
        op.create_index(
            name,
            table,
            [sa.text(c) for c in columns],
            postgresql_where=sa.text(where) if where else None,
        )


def downgrade() -> None:
    for name, (table, _columns, _where) in reversed(INDEXES.items()):
        op.drop_index(name, table_name=table)
