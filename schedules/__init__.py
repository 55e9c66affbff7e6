"""Backup policies as Temporal Schedules: validation, sync and drift repair."""
