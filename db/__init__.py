"""The metadata database: SQLAlchemy models, sessions and shared queries."""
