"""cairn's metadata database carries a marker

The database's comment becomes ``cairn metadata database <random uuid>``. Every role on the
server can read it from any database (``pg_shdescription``), so a restore, drill or dump
aimed at this database under any address or alias recognises it and refuses
(``adapters/pg_identity.py``). Commenting needs the database's owner; a role that is not
gets a warning and cairn still knows its database by the server's system identifier and
the database's OID.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        DO $$
        BEGIN
            EXECUTE format('COMMENT ON DATABASE %I IS %L', current_database(),
                           'cairn metadata database ' || gen_random_uuid());
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'cairn: not the owner of database %, so it carries no marker',
                current_database();
        END $$
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DO $$
        BEGIN
            EXECUTE format('COMMENT ON DATABASE %I IS NULL', current_database());
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;
        END $$
        """
    )
