"""Alembic environment: runs the store's revisions on a shared or a fresh connection.

``ma2ml.store.migrate`` passes its own connection (already inside the transaction
that holds the migration lock) through ``config.attributes["connection"]``; the
``alembic`` command line gets a connection to ``-x url=...`` or the resolved default.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from ma2ml.store.engine import make_engine, resolve_database_url, write_engine
from ma2ml.store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    explicit = context.get_x_argument(as_dictionary=True).get("url")
    return resolve_database_url(explicit or config.get_main_option("sqlalchemy.url"))


def run_on(connection: Connection) -> None:
    """Run the pending revisions on ``connection`` (the caller commits if it began)."""
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade head --sql``)."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run on the caller's connection, or open one (NullPool: nothing lingers)."""
    shared = config.attributes.get("connection")
    if shared is not None:
        run_on(shared)
        return
    engine = make_engine(_url(), poolclass=NullPool)
    try:
        with write_engine(engine).connect() as connection:
            run_on(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
