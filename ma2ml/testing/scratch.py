"""Throw-away PostgreSQL databases for tests and benchmarks.

One fresh database per test (or benchmark run) keeps runs independent of
each other and of whatever the server already holds; it is dropped
``WITH (FORCE)`` afterwards so a leaked connection cannot keep it alive.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from psycopg2 import sql as pg_sql
from sqlalchemy.engine import URL, make_url


def admin_connect(url: URL | str, timeout: int = 5) -> psycopg2.extensions.connection:
    """An autocommit connection to a server's maintenance database."""
    url = make_url(url)
    connection = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username,
                                  password=url.password, dbname=url.database or "postgres",
                                  connect_timeout=timeout)
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    return connection


@contextmanager
def scratch_database(admin_url: URL | str, prefix: str = "ma2ml_scratch") -> Iterator[str]:
    """Create an empty database on the server of ``admin_url``; yield its URL; drop it."""
    admin_url = make_url(admin_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = admin_connect(admin_url)
    try:
        with admin.cursor() as cursor:
            cursor.execute(pg_sql.SQL("CREATE DATABASE {}").format(pg_sql.Identifier(name)))
        try:
            yield admin_url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(pg_sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                               .format(pg_sql.Identifier(name)))
    finally:
        admin.close()
