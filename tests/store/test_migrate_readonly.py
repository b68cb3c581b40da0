"""Commands that only look never change a store (issue 25, item 14).

``status``, ``trials``, ``best``, ``report``, ``export`` and ``delete`` (when it
refuses) open a store at an older schema revision on SQLite and PostgreSQL: before,
they migrated it; now they refuse in one line that says how to upgrade it, and not a
byte of it changes. A SQLite file that is not an ma2ml store was switched to WAL before
it was refused; now it is refused as it is. Real databases, the real command line in
subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool

from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store.engine import make_engine, sqlite_file, write_engine
from ma2ml.store.migrate import HEAD_REVISION, alembic_config

OLDER = "0003"
SPEC = json.dumps(spec_to_document(parse_spec({
    "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch", "metadata": {"name": "old"},
    "spec": {"agents": [{"name": "hpo", "decisions": [{"name": "x", "values": [1, 2]}]}],
             "trainer": {"type": "command", "command": ["true"]}}})))
LOOKING = [["status"], ["trials", "default/old"], ["best", "default/old"],
           ["report", "default/old", "--out", "report"],
           ["export", "default/old", "--out", "export"], ["delete", "default/old"]]


def ma2ml(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # stdin is not a terminal: `delete` without --yes refuses instead of asking.
    return subprocess.run([sys.executable, "-m", "ma2ml", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


def _store_at(url: str, revision: str) -> None:
    """An ma2ml store at ``revision`` (an older ma2ml made it), holding one search."""
    from alembic import command

    engine = make_engine(url, poolclass=NullPool)
    try:
        with write_engine(engine).connect() as connection:
            connection.begin()
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.execute(sqlalchemy.text(
                "INSERT INTO searches (name, spec, state, result_seq, trial_count, created_at) "
                "VALUES ('default/old', :spec, 'running', 0, 0, 0)"), {"spec": SPEC})
            connection.commit()
    finally:
        engine.dispose()


def _fingerprint(url: str, folder: Path) -> object:
    """What would show any change: SQLite, the file's bytes and the folder's names;
    PostgreSQL, the revision, every column and every row of the searches."""
    path = sqlite_file(url)
    if path is not None:
        return (hashlib.sha256(path.read_bytes()).hexdigest(),
                sorted(p.name for p in folder.iterdir()))
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            revision = connection.execute(
                sqlalchemy.text("SELECT version_num FROM alembic_version")).all()
            columns = connection.execute(sqlalchemy.text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' ORDER BY 1, 2")).all()
            rows = connection.execute(sqlalchemy.text("SELECT * FROM searches")).all()
    finally:
        engine.dispose()
    return revision, columns, rows


@pytest.fixture
def old_store(database_url: str, tmp_path: Path) -> str:
    _store_at(database_url, OLDER)
    return database_url


def test_looking_at_an_older_store_refuses_and_changes_nothing(old_store: str,
                                                               tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    before = _fingerprint(old_store, tmp_path)
    for command in LOOKING:
        result = ma2ml(*command, "--db", old_store, cwd=work)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (command, result.stderr)
        assert f"schema revision {OLDER}, older than this ma2ml's {HEAD_REVISION}" in lines[0]
        assert "ma2ml db upgrade" in lines[0], lines[0]
        assert _fingerprint(old_store, tmp_path) == before, f"{command} changed the store"
    assert list(work.iterdir()) == [], "report and export wrote nothing"
    # Upgrading is one explicit command; then looking works.
    upgraded = ma2ml("db", "upgrade", "--db", old_store, cwd=work)
    assert upgraded.returncode == 0, upgraded.stderr
    status = ma2ml("status", "--db", old_store, cwd=work)
    assert status.returncode == 0, status.stderr
    assert "default/old" in status.stdout


def test_a_store_from_a_newer_ma2ml_is_refused_unchanged(sqlite_url: str,
                                                         tmp_path: Path) -> None:
    _store_at(sqlite_url, "head")
    path = sqlite_file(sqlite_url)
    assert path is not None
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099'")
    before = _fingerprint(sqlite_url, tmp_path)
    result = ma2ml("status", "--db", sqlite_url, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "schema revision 0099, which this ma2ml does not know" in result.stderr
    assert _fingerprint(sqlite_url, tmp_path) == before


def test_a_sqlite_file_that_is_no_store_is_refused_as_it_is(tmp_path: Path) -> None:
    """Before: the file was switched to WAL (its header rewritten) before the refusal."""
    path = tmp_path / "notes.db"
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
        connection.execute("INSERT INTO notes VALUES ('mine')")
    url = f"sqlite:///{path}"
    before = _fingerprint(url, tmp_path)
    for command in LOOKING:
        result = ma2ml(*command, "--db", url, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        assert "holds no ma2ml store" in result.stderr, result.stderr
        assert _fingerprint(url, tmp_path) == before, f"{command} changed the file"
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
