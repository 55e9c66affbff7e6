"""Starting cairn's real dependencies on a developer machine: PostgreSQL, Temporal."""
