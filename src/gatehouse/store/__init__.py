"""Database models, sessions and migrations (SQLite by default, PostgreSQL in production)."""

from gatehouse.store.db import Database

__all__ = ["Database"]
