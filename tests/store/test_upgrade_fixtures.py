"""Upgrading a store an older ma2ml left behind keeps every row (issue 24, item 6).

``fixtures/revision-NNNN.db`` are committed SQLite stores, one per earlier schema
revision, made by ``fixtures/make_fixtures.py`` with that revision's migrations and
filled as that ma2ml filled them. On SQLite a copy of the file (never the committed
file) is upgraded; on PostgreSQL a fresh database gets the revision's schema by the
same migrations and the file's rows. Then, on both:

* ``ma2ml status`` refuses the old store in one line and changes not a byte of it;
* ``ma2ml db upgrade`` (the real command line) brings it to the head revision;
* every row of every table reads back as it was, each column added since has its
  documented default (``searches.message`` NULL, ``trials.last_step`` NULL,
  ``trials.trained_seconds`` 0), and a table added since is empty;
* the upgraded store is read by ``ma2ml status`` and by the store's counts.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool

from ma2ml.store import Counts, Store
from ma2ml.store.engine import sqlite_file
from ma2ml.store.migrate import HEAD_REVISION
from ma2ml.store.models import Base

from .fixtures import make_fixtures

#: Columns added after revision 0001, with the default an upgrade gives existing rows
#: (README, "The database").
ADDED_COLUMNS = {("searches", "message"): None, ("trials", "last_step"): None,
                 ("trials", "trained_seconds"): 0.0}
TABLES = ("searches", "trials", "trial_steps", "policy_snapshots")


def ma2ml(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ma2ml", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


def read_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every store table the database has, through the store's own column
    types (JSON decoded, bytes as bytes), ordered by primary key."""
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            inspector = sqlalchemy.inspect(connection)
            found: dict[str, list[dict[str, Any]]] = {}
            for name in TABLES:
                if not inspector.has_table(name):
                    continue
                table = Base.metadata.tables[name]
                present = {c["name"] for c in inspector.get_columns(name)}
                columns = [c for c in table.columns if c.name in present]
                query = sqlalchemy.select(*columns).order_by(*table.primary_key.columns)
                found[name] = [dict(row._mapping) for row in connection.execute(query)]
            return found
    finally:
        engine.dispose()


def load_into_postgres(url: str, revision: str, source: Path) -> None:
    """The revision's schema by its migrations, then the fixture's rows, as they are."""
    make_fixtures.create_schema(url, revision)
    rows = read_rows(f"sqlite:///{source}")
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            for name, table_rows in rows.items():  # TABLES' order: parents first
                if table_rows:
                    # Only the revision's columns (the head table would add later ones'
                    # defaults), with the store's types (JSON encoded, bytes as bytea).
                    model = Base.metadata.tables[name]
                    table = sqlalchemy.table(name, *(sqlalchemy.column(c, model.c[c].type)
                                                     for c in table_rows[0]))
                    connection.execute(table.insert(), table_rows)
                if "id" in Base.metadata.tables[name].columns:
                    # Explicit ids leave the sequence behind; an older ma2ml's had moved on.
                    connection.execute(sqlalchemy.text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {name}), false)"))
    finally:
        engine.dispose()


def fingerprint(url: str) -> object:
    """SQLite: the file's bytes and the names beside it; PostgreSQL: revision and rows."""
    path = sqlite_file(url)
    if path is not None:
        return (hashlib.sha256(path.read_bytes()).hexdigest(),
                sorted(p.name for p in path.parent.iterdir()))
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            revision = connection.execute(
                sqlalchemy.text("SELECT version_num FROM alembic_version")).all()
    finally:
        engine.dispose()
    return revision, read_rows(url)


def sort_by_key(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    keys = {name: [c.name for c in Base.metadata.tables[name].primary_key.columns]
            for name in rows}
    return {name: sorted(table_rows, key=lambda r, n=name: [r[k] for k in keys[n]])
            for name, table_rows in rows.items()}


@pytest.mark.parametrize("revision", make_fixtures.REVISIONS)
def test_an_older_store_upgrades_with_every_row_intact(revision: str, database_url: str,
                                                       tmp_path: Path) -> None:
    committed = make_fixtures.path_of(revision)
    committed_hash = hashlib.sha256(committed.read_bytes()).hexdigest()
    work = tmp_path / "work"
    work.mkdir()
    copy = tmp_path / f"revision-{revision}.db"
    shutil.copyfile(committed, copy)
    with closing(sqlite3.connect(copy)) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (revision,)]
    before = read_rows(f"sqlite:///{copy}")
    # The committed file holds what its script says (decoded: JSON as data, bytes as bytes).
    assert before == sort_by_key(make_fixtures.rows(revision))

    if sqlite_file(database_url) is not None:
        url = f"sqlite:///{copy}"
    else:
        load_into_postgres(database_url, revision, copy)
        url = database_url
        assert read_rows(url) == before

    untouched = fingerprint(url)
    refused = ma2ml("status", "--db", url, cwd=work)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert f"schema revision {revision}, older than this ma2ml's {HEAD_REVISION}" in lines[0]
    assert "`ma2ml db upgrade --db URL` upgrades it" in lines[0]
    assert fingerprint(url) == untouched, "ma2ml status changed the old store"

    upgraded = ma2ml("db", "upgrade", "--db", url, cwd=work)
    assert upgraded.returncode == 0, upgraded.stderr
    after = read_rows(url)
    assert set(after) == set(TABLES)
    for name, table_rows in after.items():
        if name not in before:  # a table added since: nothing to carry over
            assert table_rows == [], name
            continue
        old_columns = set(before[name][0]) if before[name] else set()
        assert len(table_rows) == len(before[name]), name
        for old, new in zip(before[name], table_rows, strict=True):
            assert {k: v for k, v in new.items() if k in old_columns} == old, (name, old)
            added = {k: v for k, v in new.items() if k not in old_columns}
            assert added == {k: ADDED_COLUMNS[name, k] for k in added}, (name, added)

    looked = ma2ml("status", "--db", url, cwd=work)
    assert looked.returncode == 0, looked.stderr
    assert "default/fixture" in looked.stdout and "team-a/finished" in looked.stdout
    with Store(url, create=False) as store:
        record = store.get_search("default/fixture")
        assert record is not None and record.state == "running"
        stopped = int(revision >= "0003")
        assert store.counts(record.id) == Counts(completed=2, diverged=1, stopped=stopped,
                                                 failed=1, running=1, pending=2)
    assert hashlib.sha256(committed.read_bytes()).hexdigest() == committed_hash
