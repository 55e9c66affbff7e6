"""Alembic environment and versions: the only owner of cairn's schema."""
