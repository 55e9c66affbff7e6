"""Database engines beside PostgreSQL (issue 24, docs/engines.md), one module each.

Each engine gives the same four things, in its own terms: a target parsed from the
application's URL (``from_url``, the password apart), ``dump_into_restic`` (a consistent dump
streamed into a new snapshot, with the figures a restore is verified against, taken from the
same snapshot of the data, and the server's version), ``restore_from_restic`` (the backup
proven loadable before the live data is replaced, then verified), and the refusals that
keep a target off system databases. The dump streams through ``stream.command_into_restic``.
PostgreSQL's own module is still ``adapters/pg_dump.py``; the platforms do not call these
engines yet.
"""
