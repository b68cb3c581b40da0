"""Schema creation on first use, migrations, URL resolution, unavailable databases."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import exc, inspect, text

from ma2ml.store import Store, StoreError, StoreUnavailableError, resolve_database_url, upgrade
from ma2ml.store import engine as engine_module
from ma2ml.store.engine import make_engine
from ma2ml.store.migrate import HEAD_REVISION, current_revision, script_head
from ma2ml.store.models import Base

from .workers import open_fresh


def test_head_revision_constant_matches_scripts() -> None:
    assert script_head() == HEAD_REVISION


def test_schema_created_on_first_use(database_url: str) -> None:
    with Store(database_url) as store:
        assert set(inspect(store.engine).get_table_names()) >= {
            "searches",
            "trials",
            "policy_snapshots",
            "alembic_version",
        }
        assert current_revision(store.engine) == HEAD_REVISION


def test_upgrade_is_idempotent(database_url: str) -> None:
    assert upgrade(database_url) == HEAD_REVISION
    assert upgrade(database_url) == HEAD_REVISION
    with Store(database_url) as store:  # a store on an upgraded database migrates nothing
        store.create_search("a/b", {})
        assert upgrade(database_url) == HEAD_REVISION
        assert store.get_search("a/b") is not None


def test_models_match_migrations(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_newer_schema_is_refused(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="newer ma2ml"):
        Store(database_url)


def test_sqlite_pragmas(sqlite_url: str) -> None:
    with Store(sqlite_url) as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_concurrent_first_use(database_url: str) -> None:
    processes = 6
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=open_fresh, args=(database_url, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    assert len({search_id for _, search_id in outcomes}) == 1  # one search, created once
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    finally:
        engine.dispose()
    assert versions == [(HEAD_REVISION,)]


def test_resolve_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MA2ML_DATABASE_URL", raising=False)
    assert resolve_database_url(None) == "sqlite:///ma2ml.db"
    monkeypatch.setenv("MA2ML_DATABASE_URL", "postgresql://u@h/db")
    assert resolve_database_url(None) == "postgresql://u@h/db"
    assert resolve_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_unreachable_database_is_unavailable() -> None:
    with pytest.raises(StoreUnavailableError):
        Store("postgresql://postgres@127.0.0.1:1/nothing")


def test_a_schema_bug_is_not_unavailable(store: Store) -> None:
    """Only connection-class failures are retried; a missing table is a programming error
    that must surface (a learner or operator would otherwise retry it forever)."""
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE policy_snapshots"))
    with pytest.raises(exc.SQLAlchemyError) as raised:
        store.load_snapshot(1)
    assert not isinstance(raised.value, StoreUnavailableError)
    assert "policy_snapshots" in str(raised.value)


def test_a_locked_sqlite_database_is_unavailable(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    with Store(url) as store:
        monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
        impatient = Store(url, connect_args={"timeout": 0.05})
        holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreUnavailableError, match="locked"):
                impatient.create_search("ns/x", {})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
            impatient.close()
        assert store.create_search("ns/x", {}).name == "ns/x"
