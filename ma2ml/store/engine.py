"""Engine creation, the database clock and the one session context manager.

* ``resolve_database_url``: explicit URL, else ``MA2ML_DATABASE_URL``, else a SQLite
  file ``ma2ml.db`` in the current directory.
* ``parse_database_url`` is the one check of a URL: unparsable text, a database other
  than PostgreSQL or SQLite, or a driver that is not installed raise
  ``DatabaseUrlError`` with one line naming the URL (password masked, ``masked_url``).
  ``make_engine(url, create=False)`` also refuses a SQLite file that does not exist,
  so a read-only command never creates one, and leaves its journal mode as it is: a
  file that is not an ma2ml store is refused unchanged, not switched to WAL first.
* SQLite connections run in WAL mode with a 30 s busy timeout and foreign keys on.
  pysqlite's own transaction handling is switched off (SQLAlchemy's documented
  connect/begin event recipe) so that *we* emit ``BEGIN``: ``BEGIN IMMEDIATE`` for
  write transactions, so a writer takes the write lock up front and waits in the
  busy handler instead of failing on a read-to-write upgrade.
* ``db_epoch()`` is the database's clock as float epoch seconds. Leases use it so
  that workers on machines with skewed clocks agree on when a lease expires.
* ``SessionScope`` wraps every operation: commit, rollback on error, translate
  driver errors that mean "database not reachable / busy" into
  ``StoreUnavailableError``, always close.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Double, Engine, Result, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from ma2ml.store.errors import DatabaseUrlError, StoreUnavailableError

ENV_DATABASE_URL = "MA2ML_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///ma2ml.db"
#: The databases the store runs on (SQLAlchemy backend names).
SUPPORTED_BACKENDS = ("postgresql", "sqlite")
#: Longest URL text quoted in an error (a pasted file is no URL).
MAX_QUOTED_URL = 200
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Execution option carried by connections of write transactions (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "ma2ml_write"


def resolve_database_url(url: str | None = None) -> str:
    """The database URL to use: ``url``, else ``$MA2ML_DATABASE_URL``, else ``sqlite:///ma2ml.db``."""
    if url:
        return url
    return os.environ.get(ENV_DATABASE_URL) or DEFAULT_DATABASE_URL


def masked_url(url: str | URL) -> str:
    """``url`` as text safe to print: the password replaced by ``***``, even when the
    text does not parse as a URL, and cut to ``MAX_QUOTED_URL`` characters."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    text = re.sub(r"(://[^:/@\s]*):[^@\s]*@", r"\1:***@", url)
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_QUOTED_URL else text[:MAX_QUOTED_URL - 3] + "..."


def parse_database_url(url: str | None = None) -> URL:
    """The resolved URL, parsed and checked (``DatabaseUrlError`` names what is wrong)."""
    text = resolve_database_url(url)
    try:
        parsed = _default_driver(make_url(text))
    except (exc.ArgumentError, ValueError) as error:
        raise DatabaseUrlError(f"database URL {masked_url(text)!r} is not a URL ({error}); "
                               f"expected e.g. sqlite:///ma2ml.db or "
                               f"postgresql+psycopg2://user@host:5432/db") from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise DatabaseUrlError(f"database {masked_url(text)}: unsupported database "
                               f"{backend!r}; ma2ml stores in "
                               f"{' or '.join(SUPPORTED_BACKENDS)}")
    try:
        parsed.get_dialect().import_dbapi()
    except (exc.NoSuchModuleError, ImportError) as error:
        raise DatabaseUrlError(f"database {masked_url(text)}: driver "
                               f"{parsed.drivername!r} is not available ({error})") from None
    return parsed


def error_cause(error: BaseException) -> str:
    """The driver's own first line of a database error (no SQL, no background link)."""
    original = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


def sqlite_file(url: str | URL) -> Path | None:
    """The file behind a SQLite URL, or None for other backends and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


class db_epoch(FunctionElement[float]):  # noqa: N801 - reads like a SQL function
    """The database clock as float epoch seconds (rendered per dialect below)."""

    type = Double()
    inherit_cache = True


def rowcount(result: Result[Any]) -> int:
    """The rows an INSERT, UPDATE or DELETE matched. ``Session.execute`` is typed as
    returning a ``Result``; for those statements it is a ``CursorResult``, which counts."""
    return cast(CursorResult[Any], result).rowcount


@compiles(db_epoch)
def _db_epoch_sqlite(element: db_epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # julianday() counts days from noon 4714 BC; 2440587.5 is 1970-01-01T00:00Z.
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(db_epoch, "postgresql")
def _db_epoch_postgresql(element: db_epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # clock_timestamp(), not now(): now() is frozen at transaction start.
    # extract() returns numeric on PostgreSQL 14+, which psycopg2 maps to Decimal.
    return "CAST(extract(epoch from clock_timestamp()) AS double precision)"


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None (JSON has no NaN/Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    # NumPy scalars and arrays (metrics computed with NumPy/PyTorch) have .tolist().
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps_json(value: Any) -> str:
    """JSON for the database: compact, NaN/Infinity stored as null, NumPy values unwrapped."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_json_default)
    except ValueError:
        sanitised = _finite(json.loads(json.dumps(value, default=_json_default)))
        return json.dumps(sanitised, separators=(",", ":"), allow_nan=False)


def _enable_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode = WAL``, retried: while several processes open a brand-new
    file at once, the switch can fail with "database is locked" without waiting on the
    busy handler (seen in CI); the mode is persistent, so only the first switch races."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            if time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    _sqlite_settings(dbapi_connection, wal=True)


def _sqlite_on_connect_as_is(dbapi_connection: Any, connection_record: Any) -> None:
    # An existing file (create=False): WAL is persistent, so switching writes to the
    # file; an ma2ml store is in WAL already, and anything else must stay as it is.
    _sqlite_settings(dbapi_connection, wal=False)


def _sqlite_settings(dbapi_connection: Any, *, wal: bool) -> None:
    # Disable pysqlite's implicit BEGIN; _sqlite_on_begin emits our own.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL needs a lock other processes may hold.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if wal:
            _enable_wal(cursor)
        # NORMAL is durable across application crashes in WAL mode (not power loss).
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _default_driver(url: URL) -> URL:
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; ma2ml depends on psycopg2.
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg2")
    return url


def make_engine(url: str | None = None, *, create: bool = True, **kwargs: Any) -> Engine:
    """An engine for ``url`` (resolved and checked) with the store's connection settings;
    ``create=False`` refuses a SQLite file that does not exist instead of creating it."""
    parsed = parse_database_url(url)
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {"json_serializer": dumps_json, **kwargs}
    if backend == "sqlite":
        path = sqlite_file(parsed)
        if path is not None and not create and not path.is_file():
            raise DatabaseUrlError(f"database {masked_url(parsed)}: no such file "
                                   f"{str(path)!r}")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        options.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        engine = create_engine(parsed, **options)
        event.listen(engine, "connect", _sqlite_on_connect if create else _sqlite_on_connect_as_is)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if backend == "postgresql" and parsed.get_driver_name() == "psycopg2":
        options.setdefault("connect_args", {"connect_timeout": 10, "application_name": "ma2ml"})
    return create_engine(parsed, **options)


def write_engine(engine: Engine) -> Engine:
    """A view of ``engine`` (same pool) whose transactions are write transactions."""
    return engine.execution_options(**{WRITE_OPTION: True})


# PostgreSQL SQLSTATE classes and codes that mean "not now" rather than "wrong":
# 08 connection exception, 53 insufficient resources, 57 operator intervention
# (shutdown, cannot connect now); serialization failure, deadlock, lock not available.
_PG_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57"})
_PG_BUSY_CODES = frozenset({"40001", "40P01", "55P03"})
# SQLite reports every failure as OperationalError; only these are about availability.
_SQLITE_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "no space left")


def is_unavailable(error: BaseException) -> bool:
    """Whether a SQLAlchemy error means the database is unreachable, busy or gone.

    Only connection-class failures: a schema bug ("no such table", "relation does
    not exist"), a constraint violation or bad data is not retried; it surfaces.
    """
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, exc.InterfaceError | exc.DisconnectionError | exc.TimeoutError):
        return True
    if not isinstance(error, exc.OperationalError):
        return False
    original = error.orig
    if isinstance(original, sqlite3.Error):
        return any(marker in str(original).lower() for marker in _SQLITE_UNAVAILABLE)
    code = getattr(original, "pgcode", None)
    if code:
        return code[:2] in _PG_UNAVAILABLE_CLASSES or code in _PG_BUSY_CODES
    # psycopg2 without a SQLSTATE: the connection itself failed (refused, reset, timeout).
    return True


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise "database unreachable or busy" errors as ``StoreUnavailableError``."""
    try:
        yield
    except exc.SQLAlchemyError as error:
        if is_unavailable(error):
            raise StoreUnavailableError(f"database unavailable: {error_cause(error)}") from error
        raise


class SessionScope:
    """``with scope(write=...) as session``: the one way the store talks to the database."""

    def __init__(self, engine: Engine) -> None:
        self._read = sessionmaker(bind=engine, expire_on_commit=False)
        self._write = sessionmaker(bind=write_engine(engine), expire_on_commit=False)

    @contextmanager
    def __call__(self, *, write: bool = False) -> Iterator[Session]:
        session = (self._write if write else self._read)()
        try:
            with translate_errors():
                try:
                    yield session
                    session.commit()
                except BaseException:
                    with suppress(exc.SQLAlchemyError):
                        session.rollback()
                    raise
        finally:
            with suppress(exc.SQLAlchemyError):
                session.close()
