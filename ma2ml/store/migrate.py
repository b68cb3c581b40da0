"""Schema migrations, run programmatically with Alembic.

``ensure_schema(engine)`` brings a database to the head revision on first use and
costs one small query afterwards. Many processes may open a fresh database at the
same time (a worker Deployment scaling up), so the upgrade runs under a lock:

* PostgreSQL: ``pg_advisory_xact_lock`` taken in the very transaction that runs
  the revisions; it is released by the commit (or the rollback, or the lost
  connection), so a crashed migrator cannot leave it held.
* SQLite: an ``fcntl`` lock on ``<database>.migrate.lock`` beside the file (the
  kernel drops it when the process dies); in-memory databases need none.

Whoever gets the lock second finds the schema at head and Alembic does nothing.

On SQLite the revisions run with foreign keys off (``_foreign_keys_off``), as
SQLite's own recipe for altering a table says: Alembic's batch mode rebuilds a
table by copying it and dropping the old one, and with foreign keys on, dropping
the old ``trials`` deleted every learning-curve row that referenced it (the
upgrade 0003 -> 0004 emptied ``trial_steps``). ``PRAGMA foreign_key_check``
then refuses an upgrade that left a dangling reference, before it commits.

Commands that only look (``Store(create=False)``) never migrate: a store at an
older revision is refused by ``require_schema`` with one line that says how to
upgrade it (``ma2ml db upgrade``), and not one byte of it changes.

Alembic is imported only when a migration actually runs: it doubles the import
time of the store, which every worker process pays at start-up. Its INFO lines
("Context impl SQLiteImpl.", one per revision) are held back while it runs: a
user's first ``ma2ml run`` would open with them. One line of ours says what
changed instead.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, func, inspect, select, text
from sqlalchemy.pool import NullPool

from ma2ml.store.engine import make_engine, sqlite_file, translate_errors, write_engine
from ma2ml.store.errors import DatabaseUrlError, StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: The newest revision in ``migrations/versions`` (a test keeps the two in step).
HEAD_REVISION = "0004"
#: Key of the PostgreSQL advisory lock that serialises migrations ("ma2ml" in ASCII).
ADVISORY_LOCK_KEY = 0x6D61326D6C

log = logging.getLogger(__name__)


def alembic_config() -> Config:
    """An Alembic configuration pointing at the store's migration scripts."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def script_head() -> str | None:
    """The head revision according to the scripts on disk."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def require_schema(engine: Engine, shown: str) -> None:
    """Refuse (``DatabaseUrlError``, one line naming ``shown``) a database that holds no
    ma2ml store or one at another revision than ``HEAD_REVISION``; read only."""
    revision = current_revision(engine)
    if revision is None:
        raise DatabaseUrlError(f"database {shown}: holds no ma2ml store")
    if revision == HEAD_REVISION:
        return
    # Revisions are zero-padded numbers: text order is their order.
    if len(revision) == len(HEAD_REVISION) and revision.isdigit() and revision < HEAD_REVISION:
        raise DatabaseUrlError(
            f"database {shown}: its ma2ml store has schema revision {revision}, older than "
            f"this ma2ml's {HEAD_REVISION}; `ma2ml db upgrade --db URL` upgrades it (a "
            f"command that only looks never changes a store)")
    raise DatabaseUrlError(f"database {shown}: its ma2ml store has schema revision "
                           f"{revision}, which this ma2ml does not know (it knows up to "
                           f"{HEAD_REVISION}); is it from a newer ma2ml?")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(f"{path}.migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic's loggers at WARNING for the duration (their level restored after)."""
    logger = logging.getLogger("alembic")
    previous = logger.level
    logger.setLevel(max(previous, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(previous)


def _run_upgrade(connection: Connection) -> None:
    with _quiet_alembic():  # importing alembic logs too (its plugins)
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.util import CommandError

        config = alembic_config()
        config.attributes["connection"] = connection
        try:
            before = MigrationContext.configure(connection).get_current_revision()
            command.upgrade(config, "head")
            after = MigrationContext.configure(connection).get_current_revision()
        except CommandError as error:
            raise StoreError(
                f"cannot migrate the database schema ({error}); is it from a newer ma2ml?"
            ) from error
    if after != before:  # whoever waited on the lock finds nothing to do and says nothing
        log.info("store schema %s revision %s", "created at" if before is None
                 else f"upgraded from {before} to", after)


@contextmanager
def _foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite: foreign keys off while the revisions run, on again after (PostgreSQL: as
    is). The pragma does nothing inside a transaction, so it goes to the driver's
    connection before ours begins."""
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys = ON")


def upgrade_engine(engine: Engine) -> None:
    """Run every pending revision on ``engine``'s database, under the migration lock."""
    path = sqlite_file(engine.url)
    lock: AbstractContextManager[None] = _file_lock(path) if path is not None else nullcontext()
    with lock, write_engine(engine).connect() as connection, _foreign_keys_off(connection):
        # Begin before Alembic sees the connection: Alembic then runs inside our
        # transaction (PostgreSQL: it holds the advisory lock; SQLite: BEGIN IMMEDIATE).
        connection.begin()
        if engine.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
        _run_upgrade(connection)
        if engine.dialect.name == "sqlite":
            dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if dangling:  # rolled back as the connection closes: the store stays as it was
                raise StoreError(f"a schema upgrade left {len(dangling)} rows referring to "
                                 f"rows that do not exist (first: {tuple(dangling[0])}); "
                                 f"the store was left as it was")
        connection.commit()


def ensure_schema(engine: Engine) -> None:
    """Bring the database to head unless it is there already (one query when it is)."""
    if current_revision(engine) == HEAD_REVISION:
        return
    upgrade_engine(engine)


def upgrade(url: str | None = None) -> str | None:
    """Upgrade the database at ``url`` (resolved as usual) to head; returns the revision.

    Backs ``ma2ml db upgrade``. Idempotent, and safe to run from many processes.
    """
    engine = make_engine(url, poolclass=NullPool)
    try:
        with translate_errors():
            upgrade_engine(engine)
            return current_revision(engine)
    finally:
        engine.dispose()
