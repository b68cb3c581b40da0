"""Opening a store read-only: never create a file, never migrate, never write.

* SQLite: the file must exist; it is opened through a ``mode=ro`` URI, so
  SQLite itself refuses every write (WAL readers may still create the
  ``-wal``/``-shm`` files beside it, as every reader does).
* PostgreSQL: sessions run with ``default_transaction_read_only=on``, so the
  server refuses writes even when the role could write. In a cluster, give
  the dashboard a role with ``SELECT`` only (README, Dashboard). A statement
  runs at most ``timeout`` seconds (``statement_timeout``) and a connection
  waits as long for the pool, so a query stuck behind a lock frees its
  connection (``deadline`` answers the request itself).
* The schema must be at the revision this ma2ml knows: the dashboard does
  not migrate, and says which command does.

A database that cannot be reached is not an error here: the server starts
and answers 503 until it can (a pod may start before its database).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy.engine import URL, make_url

from ma2ml.dashboard.options import DB_TIMEOUT_SECONDS
from ma2ml.store import Store, StoreError, StoreUnavailableError, resolve_database_url
from ma2ml.store.engine import sqlite_file
from ma2ml.store.migrate import HEAD_REVISION, current_revision


class SourceError(ValueError):
    """The database URL can never serve the dashboard (one line, password masked)."""


def masked(url: str | URL) -> str:
    """``url`` with its password hidden, for messages (a read-only SQLite URI is shown as
    the ``sqlite:///PATH`` it was made from)."""
    try:
        parsed = make_url(url)
    except Exception:  # not a URL at all: say so without echoing a secret
        return "<unparsable URL>"
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database.startswith("file:"):
        return f"sqlite:///{unquote(database[len('file:'):])}"
    return parsed.render_as_string(hide_password=True)


def read_only_url(url: str) -> str:
    """``url`` changed so that the database refuses writes (SQLite: a ``mode=ro`` URI)."""
    try:
        parsed = make_url(url)
    except Exception as error:
        raise SourceError(f"database URL is not a URL ({type(error).__name__}); expected "
                          f"e.g. sqlite:///search.db or postgresql://user@host/db") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise SourceError(f"database {masked(parsed)}: unsupported database {backend!r} "
                          f"(ma2ml stores in postgresql or sqlite)")
    if backend == "postgresql":
        return parsed.render_as_string(hide_password=False)
    path = sqlite_file(parsed)
    if path is None:
        raise SourceError(f"database {masked(parsed)}: the dashboard reads a SQLite file, "
                          f"not an in-memory or URI database")
    if not path.is_file():
        raise SourceError(f"database {masked(parsed)}: no such file {str(path)!r} "
                          f"(the dashboard never creates a store)")
    uri = f"file:{quote(str(path.resolve()))}"
    return parsed.set(database=uri, query={"mode": "ro", "uri": "true"}).render_as_string(
        hide_password=False)


def open_read_only(url: str | None, timeout: float = DB_TIMEOUT_SECONDS) -> Store:
    """A ``Store`` on ``url`` (resolved as everywhere) that cannot write, whose PostgreSQL
    statements and waits for a pooled connection last at most ``timeout`` seconds.

    ``SourceError`` for a URL that can never work or a schema at another revision;
    an unreachable PostgreSQL gives a store whose reads raise ``StoreUnavailableError``.
    """
    resolved = resolve_database_url(url)
    target = read_only_url(resolved)
    options: dict[str, Any] = {"pool_timeout": timeout}
    if make_url(target).get_backend_name() == "postgresql":
        milliseconds = max(1, round(timeout * 1000))
        options["connect_args"] = {
            "connect_timeout": max(2, round(timeout)), "application_name": "ma2ml-dashboard",
            "options": f"-c default_transaction_read_only=on -c statement_timeout={milliseconds}"}
    store = Store(target, migrate=False, pool_pre_ping=True, **options)
    try:
        check_schema(store)
    except StoreUnavailableError:
        pass  # served as 503 until the database is back
    except BaseException:
        store.close()
        raise
    return store


def check_schema(store: Store) -> None:
    """``SourceError`` unless the schema is at this ma2ml's revision."""
    from ma2ml.store.engine import error_cause, translate_errors

    try:
        with translate_errors():
            revision = current_revision(store.engine)
    except StoreUnavailableError:
        raise
    except Exception as error:  # e.g. a SQLite file that is no ma2ml store (not even WAL)
        raise SourceError(f"database {masked(store.url)}: cannot read it as an ma2ml store "
                          f"({error_cause(error)})") from None
    if revision != HEAD_REVISION:
        found = "no ma2ml schema" if revision is None else f"schema revision {revision}"
        raise SourceError(f"database {masked(store.url)}: {found}, this ma2ml reads "
                          f"{HEAD_REVISION}; run `ma2ml db upgrade --url ...` (the "
                          f"dashboard never migrates)")


__all__ = ["SourceError", "StoreError", "check_schema", "masked", "open_read_only",
           "read_only_url"]
