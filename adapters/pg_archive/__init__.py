"""Continuous archiving of a PostgreSQL server with its own tools (docs/pitr.md).

``window`` reads what a repository's archive snapshots hold and which moments they restore;
``stream`` runs ``pg_receivewal`` on a replication slot and ships its segments into the
repository; ``base_backup`` stores ``pg_basebackup``'s copy there; ``scratch`` recovers a
scratch server to a moment and moves the database out of it.
"""
