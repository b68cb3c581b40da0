"""Shared pytest fixtures. Each component keeps its fixtures in its own delimited block."""

from __future__ import annotations

# ==== ma2ml.store fixtures: BEGIN =====================================================
# Database fixtures: every store test runs on SQLite (a temporary file) and on the
# local PostgreSQL (a fresh database per test). `database_url` is a fresh, empty
# database (schema not created); `store` is a `Store` on it. PostgreSQL tests are
# marked `postgres`; they skip when the server is unreachable, except under CI=true,
# where they fail. Override the server with MA2ML_TEST_POSTGRES_URL
# (e.g. postgresql+psycopg2://user@host:5432/postgres).
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg2
import pytest
from sqlalchemy.engine import URL, make_url

from ma2ml.testing.scratch import admin_connect, scratch_database

if TYPE_CHECKING:
    from ma2ml.store import Store

_POSTGRES_CANDIDATES = (
    "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
    "postgresql+psycopg2://root@127.0.0.1:5432/postgres",
)


@pytest.fixture(scope="session")
def postgres_admin_url() -> URL:
    """URL of the maintenance database of a reachable PostgreSQL server."""
    explicit = os.environ.get("MA2ML_TEST_POSTGRES_URL")
    errors = []
    for candidate in (explicit,) if explicit else _POSTGRES_CANDIDATES:
        url = make_url(candidate)
        try:
            admin_connect(url).close()
        except psycopg2.Error as error:
            errors.append(f"{url.render_as_string(hide_password=True)}: {error}".strip())
            continue
        return url
    reason = "PostgreSQL unreachable: " + "; ".join(errors)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


@pytest.fixture
def postgres_url(postgres_admin_url: URL) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped (WITH FORCE) after the test."""
    with scratch_database(postgres_admin_url, "ma2ml_test") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file in the test's temporary directory (not created yet)."""
    return f"sqlite:///{tmp_path / 'ma2ml.db'}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on each backend in turn."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A `ma2ml.store.Store` on a fresh database (schema created), closed afterwards."""
    from ma2ml.store import Store  # imported late: other suites need not import the store

    with Store(database_url) as opened:
        yield opened


@pytest.fixture
def stopping_search():
    """``stopping_search(store, key, rule, trial_epochs)``: a new search whose stored spec
    has ``earlyStopping: rule`` and ``budget.trialEpochs``, which ``Store.report_step``
    judges every step report by."""
    from ma2ml.spec import parse_spec

    def create(store, key: str, rule, trial_epochs: int):
        document = {
            "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
            "metadata": {"name": key.rsplit("/", 1)[-1]},
            "spec": {"agents": [{"name": "a", "decisions": [{"name": "x", "values": [0, 1]}]}],
                     "algorithm": {"name": "random", "seed": 1},
                     "budget": {"trialEpochs": trial_epochs},
                     "earlyStopping": rule.model_dump(by_alias=True, mode="json")}}
        parse_spec(document, stored=True)  # a mistake here fails the test, not the store
        return store.create_search(key, document)

    return create


# ==== ma2ml.store fixtures: END =======================================================


# ==== benchmarks: BEGIN ===============================================================
@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("search_efficiency")``: a script of ``benchmarks/`` as a module."""
    import importlib.util
    import sys

    def load(name: str):
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load
# ==== benchmarks: END =================================================================


# ==== waits: BEGIN ====================================================================
class WaitWatch:
    """What the code under test does with a store's waiters (``Store.listen``): how many
    waits it began, and which are under way with what timeout. A test synchronises on
    this instead of sleeping until the code "must be waiting by now"."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.entered = 0
        self._under_way: list[float] = []  # the timeouts of the waits in progress

    def wrap(self, waiter: Any) -> Any:
        watch = self

        class Watched:
            def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
                with watch._cond:
                    watch.entered += 1
                    watch._under_way.append(timeout)
                    watch._cond.notify_all()
                try:
                    return bool(waiter.wait(timeout, stop))
                finally:
                    with watch._cond:
                        watch._under_way.remove(timeout)
                        watch._cond.notify_all()

        return Watched()

    def until_waiting(self, longer_than: float, timeout: float = 60.0) -> None:
        """Return once a wait of more than ``longer_than`` seconds is under way."""
        with self._cond:
            assert self._cond.wait_for(
                lambda: any(t > longer_than for t in self._under_way), timeout), \
                f"nothing began a wait longer than {longer_than} s within {timeout} s"

    def until_entered(self, count: int, timeout: float = 60.0) -> None:
        """Return once ``count`` waits have begun in all."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.entered >= count, timeout), \
                f"only {self.entered} of {count} waits began within {timeout} s"


@pytest.fixture
def watch_waits(monkeypatch: pytest.MonkeyPatch) -> Callable[[Store], WaitWatch]:
    """``watch_waits(store)``: a `WaitWatch` over the waiters ``store.listen`` hands out
    from now on (the real ones, NOTIFY or polling, wrapped)."""

    def watch(store: Store) -> WaitWatch:
        watched = WaitWatch()
        listen = store.listen
        monkeypatch.setattr(store, "listen", lambda *channels: watched.wrap(listen(*channels)))
        return watched

    return watch
# ==== waits: END ======================================================================
