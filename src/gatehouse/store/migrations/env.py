"""Alembic environment: migrations run programmatically on the connection we pass in."""

from alembic import context

from gatehouse.store.models import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")

if connection is None:
    from sqlalchemy import create_engine

    from gatehouse.core.config import Settings
    from gatehouse.store.db import normalise_url

    engine = create_engine(normalise_url(Settings.from_env().database_url))
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
