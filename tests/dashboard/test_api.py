"""The dashboard's JSON API through Starlette's TestClient, on a real SQLite store
(and one PostgreSQL variant): views, bounds and errors, and that it never writes."""

from __future__ import annotations

import sqlite3
import time
import warnings
from pathlib import Path

import pytest
from sqlalchemy import update
from starlette.exceptions import StarletteDeprecationWarning

from ma2ml.dashboard.app import create_app
from ma2ml.dashboard.options import DashboardOptions
from ma2ml.dashboard.source import SourceError, open_read_only
from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import Actor, SearchState, Store
from ma2ml.store.models import SEARCHES

from .conftest import Writer, new_search, tiny_spec

# Starlette's TestClient warns on import that it will move from httpx to httpx2: about the
# test client's own transport (httpx is what is installed), not about the dashboard.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


def local_client(store: Store, options: DashboardOptions | None = None) -> TestClient:
    """A client that calls the app as a browser on this machine does (Host: 127.0.0.1)."""
    return TestClient(create_app(store, options), base_url="http://127.0.0.1:8080")


@pytest.fixture
def filled(sqlite_store: Store) -> Store:
    writer = new_search(sqlite_store, "api", max_trials=20)
    writer.finish(3)  # drawn by the uniform policy (version 0): random search's draws
    for _ in range(3):
        writer.finish(1)
    writer.finish(1, fail=True)  # 5 learner updates in all
    writer.propose(2)  # pending
    new_search(sqlite_store, "other", max_trials=5)
    return sqlite_store


@pytest.fixture
def client(filled: Store):
    with open_read_only(filled.url) as store, local_client(store) as test_client:
        yield test_client


def test_searches_and_search_views(client: TestClient) -> None:
    listed = client.get("/api/searches").json()["searches"]
    assert [s["name"] for s in listed] == ["default/other", "default/api"]  # newest first
    newest = client.get("/api/searches?limit=1").json()
    assert newest["total"] == 2 and [s["name"] for s in newest["searches"]] == ["default/other"]
    assert client.get("/api/searches?limit=1001").status_code == 400
    api = listed[1]
    assert api["done"] == 6 and api["max_trials"] == 20 and api["counts"]["failed"] == 1
    assert api["counts"]["pending"] == 2 and api["best"]["reward"] > 0.5
    view = client.get(f"/api/searches/{api['id']}").json()
    assert [a["name"] for a in view["space"]] == ["aug", "nas", "hpo"]
    assert view["preview"] is True and "full fidelity" in view["ranking"]


def test_trials_sort_filter_and_bounds(client: TestClient) -> None:
    rows = client.get("/api/searches/1/trials?sort=reward&desc=1").json()
    rewards = [t["reward"] for t in rows["trials"] if t["reward"] is not None]
    assert rewards == sorted(rewards, reverse=True) and len(rewards) == 6
    assert rows["total"] == 9 and rows["trials"][-1]["reward"] is None  # no reward: last
    failed = client.get("/api/searches/1/trials?status=failed").json()
    assert failed["total"] == 1 and [t["status"] for t in failed["trials"]] == ["failed"]
    assert len(client.get("/api/searches/1/trials?limit=3").json()["trials"]) == 3
    for query, named in (("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"),
                         ("status=done", "status"), ("sort=seconds", "sort"),
                         ("desc=maybe", "desc")):
        response = client.get(f"/api/searches/1/trials?{query}")
        assert response.status_code == 400 and response.json()["error"].startswith(named)
    assert client.get("/api/searches/abc").status_code == 400
    assert client.get("/api/searches/999").status_code == 404
    assert client.get("/api/searches/2/trials/3").status_code == 404  # a trial of another search


def test_trial_details_with_curve_and_error(client: TestClient) -> None:
    trials = client.get("/api/searches/1/trials").json()["trials"]
    done = next(t for t in trials if t["status"] == "completed")
    details = client.get(f"/api/searches/1/trials/{done['id']}").json()
    assert set(details["pipeline"]) == {"aug", "nas", "hpo"}
    assert [p["step"] for p in details["curve"]] == [1, 2]
    assert details["metrics"]["accuracy"] == pytest.approx(done["reward"])
    failed = next(t for t in trials if t["status"] == "failed")
    details = client.get(f"/api/searches/1/trials/{failed['id']}").json()
    assert details["error_tail"].endswith("ValueError: bad <b>pipeline</b>")


def test_progress_policy_and_decisions(client: TestClient) -> None:
    progress = client.get("/api/searches/1/progress").json()
    assert progress["finished"] == 7 and len(progress["points"]) == 7
    best = [b for _, b in progress["best"]]
    assert best == sorted(best) and progress["best"][-1][0] == 7
    # Three uniform draws: at 7 trials random search's expected best is extrapolated.
    assert progress["random"]["n"] == 3 and progress["random"]["expected_best"][-1][4] is True
    policy = client.get("/api/searches/1/policy?versions=3").json()
    assert policy["version"] == 5 and policy["updates"] == 5 and policy["sampled"] == 3
    assert [v for v, _ in policy["entropy"]["nas"]] == [1, 3, 5]
    assert policy["policy"]["aug"][0][0] == 0.9 and len(policy["policy_history"]["aug"]) == 3
    assert client.get("/api/searches/1/policy?since=5").json() == {"version": 5,
                                                                   "unchanged": True}
    assert client.get("/api/searches/1/policy?versions=1").status_code == 400
    decisions = client.get("/api/searches/1/decisions?limit=4").json()
    assert decisions["sampled"] == 4 and all(set(t[3]) == {"aug", "nas", "hpo"}
                                             for t in decisions["trials"])
    assert client.get("/api/searches/1/decisions?limit=5001").status_code == 400


def test_random_search_interval_of_accuracies_stays_within_0_and_1(
        sqlite_store: Store) -> None:
    """Issue 25, item 10: uniform draws whose rewards are their accuracies, near 1. The
    dashboard's interval of random search's expected best stays within [0, 1], as the
    CLI's does (``Summary.reward_bounds``); before, it reached past 1."""
    writer = new_search(sqlite_store, "accuracies", max_trials=20)
    for accuracy in (0.99, 0.5, 0.98, 0.97, 0.2):
        writer.propose()  # version 0: uniform draws
        claimed = sqlite_store.claim(writer.record.id, "worker-0", 30)
        sqlite_store.complete(claimed.id, claimed.attempt, accuracy, {"accuracy": accuracy})
    with open_read_only(sqlite_store.url) as store, local_client(store) as client:
        progress = client.get(f"/api/searches/{writer.record.id}/progress").json()
    expected_best = progress["random"]["expected_best"]
    assert progress["random"]["n"] == 5 and len(expected_best) == 5
    for n, expected, low, high, _extrapolated in expected_best:
        assert 0.0 <= low <= expected <= high <= 1.0, (n, expected, low, high)


def test_page_static_files_and_headers(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/dashboard.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "https://" not in page.text and "http://" not in page.text
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    assert client.get("/static/dashboard.css").status_code == 200
    assert client.get("/healthz").text == "ok\n" and client.get("/readyz").status_code == 200


def test_preview_of_a_trial(client: TestClient) -> None:
    """The augmentation preview of a stored trial: real torch on real Fashion-MNIST images
    (torch is imported by this request, not by the server's start)."""
    trial = client.get("/api/searches/1/trials?limit=1").json()["trials"][0]
    response = client.get(f"/api/searches/1/trials/{trial['id']}/preview.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG") and len(response.content) > 2000
    again = client.get(f"/api/searches/1/trials/{trial['id']}/preview.png")
    assert again.content == response.content  # drawn once, then kept


def test_preview_needs_an_augmentation_agent(sqlite_store: Store) -> None:
    """Drawing a real preview (torch, data) is covered by the worker's tests; here: a search
    without an augmentation agent gets a clear 404, and the server goes on."""
    document = tiny_spec("noaug")
    document["spec"]["agents"] = document["spec"]["agents"][1:]
    search = parse_spec(document)
    record = sqlite_store.create_search(search.key, spec_to_document(search))
    Writer(sqlite_store, record).finish(1)
    with open_read_only(sqlite_store.url) as store, local_client(store) as client:
        response = client.get(f"/api/searches/{record.id}/trials/1/preview.png")
        assert response.status_code == 404 and "augmentation" in response.json()["error"]
        assert client.get("/api/searches").status_code == 200


def test_time_used_and_why_a_time_limit_ended_the_search(sqlite_store: Store) -> None:
    document = tiny_spec("clock")
    document["spec"]["budget"].update(maxDuration="1m", maxTrainingHours=2)
    search = parse_spec(document)
    record = sqlite_store.create_search(search.key, spec_to_document(search))
    Writer(sqlite_store, record).finish(2)
    with open_read_only(sqlite_store.url) as store, local_client(store) as client:
        running = client.get(f"/api/searches/{record.id}").json()
        assert running["time_used"].startswith("ran ") and " of 1m, trained " in \
            running["time_used"] and running["time_used"].endswith(" of 2h")
        assert running["ended_by"] is None and running["training_seconds"] >= 0
        assert (running["max_duration"], running["max_training_hours"]) == (60, 2)
    # Over an hour old (by a margin: the store's clock and Python's may differ by a
    # rounding, and 3600 s exactly read back as 59m 59s once): the minute is spent.
    with sqlite_store.engine.begin() as connection:
        connection.execute(update(SEARCHES).where(SEARCHES.c.id == record.id)
                           .values(created_at=time.time() - 3660))
    sqlite_store.move_search(record.id, SearchState.finished, by=Actor.learner,
                             message="search ran 1h (maxDuration 1m)")  # as the learner does
    with open_read_only(sqlite_store.url) as store, local_client(store) as client:
        ended = client.get("/api/searches").json()["searches"][0]
        assert (ended["state"], ended["ended_by"], ended["message"]) == (
            "finished", "MaxDurationReached", "search ran 1h (maxDuration 1m)")
        assert ended["time_used"].startswith("ran 1h")  # until it ended


def test_read_only_never_creates_or_writes(tmp_path: Path, filled: Store) -> None:
    missing = tmp_path / "missing" / "none.db"
    with pytest.raises(SourceError, match="no such file"):
        open_read_only(f"sqlite:///{missing}")
    assert not missing.parent.exists()
    with pytest.raises(SourceError, match="unsupported database 'mysql'"):
        open_read_only("mysql://user:secret@host/db")
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(SourceError, match=f"sqlite:///{empty}: cannot read it as an ma2ml"):
        open_read_only(f"sqlite:///{empty}")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(SourceError, match="no ma2ml schema.*never migrates"):
        open_read_only(f"sqlite:///{other}")
    with open_read_only(filled.url) as store, pytest.raises(Exception, match="readonly"):
        store.create_search("default/write", {"spec": {}})
    assert [r.name for r in filled.list_searches()] == ["default/api", "default/other"]


def test_unreachable_database_is_503_and_the_server_goes_on() -> None:
    store = open_read_only("postgresql+psycopg2://nobody:secret@127.0.0.1:1/x")
    with store, local_client(store) as client:
        for _ in range(2):
            response = client.get("/api/searches")
            assert response.status_code == 503
            assert "unavailable" in response.json()["error"]
            assert "secret" not in response.text
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503


@pytest.mark.postgres
def test_postgresql_store_read_only(postgres_url: str) -> None:
    with Store(postgres_url) as writable:
        writer = new_search(writable, "pg", max_trials=10)
        writer.finish(3)
        with open_read_only(postgres_url) as store, local_client(store) as client:
            listed = client.get("/api/searches").json()["searches"]
            assert [(s["name"], s["done"]) for s in listed] == [("default/pg", 3)]
            search_id = listed[0]["id"]
            assert client.get(f"/api/searches/{search_id}/policy").json()["version"] == 1
            assert len(client.get(f"/api/searches/{search_id}/trials").json()["trials"]) == 3
            writer.finish(1)  # live: the next poll sees it
            assert client.get(f"/api/searches/{search_id}/progress").json()["finished"] == 4
            with pytest.raises(Exception, match="read-only transaction"):
                store.create_search("default/write", {"spec": {}})


@pytest.mark.postgres
def test_postgresql_select_only_role(postgres_url: str) -> None:
    """The README's read-only role (CREATE ROLE ... GRANT SELECT) is all the dashboard needs."""
    import uuid

    from sqlalchemy.engine import make_url

    from ma2ml.testing.scratch import admin_connect

    with Store(postgres_url) as writable:
        new_search(writable, "role", max_trials=4).finish(2)
    role = f"ma2ml_dash_{uuid.uuid4().hex[:8]}"
    url = make_url(postgres_url)
    admin = admin_connect(url)  # the scratch database itself, as its owner
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA public TO {role}; "
                           f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        reader = url.set(username=role).render_as_string(hide_password=False)
        with open_read_only(reader) as store, local_client(store) as client:
            listed = client.get("/api/searches").json()["searches"]
            assert [(s["name"], s["done"]) for s in listed] == [("default/role", 2)]
            search_id = listed[0]["id"]
            for view in ("progress", "policy", "decisions", "trials"):
                assert client.get(f"/api/searches/{search_id}/{view}").status_code == 200
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
        admin.close()


def test_the_status_vocabulary_is_the_stores(client: TestClient) -> None:
    """The page's filter, plot and colours come from here, not from lists of its own
    (issue 24, item 4)."""
    from ma2ml.store import TERMINAL_STATUSES, TrialStatus
    from ma2ml.store.lifecycle import HELD

    vocabulary = client.get("/api/statuses").json()
    assert vocabulary["trial"] == list(TrialStatus)
    assert vocabulary["terminal"] == ["completed", "stopped", "diverged", "failed"]
    assert set(vocabulary["terminal"]) == TERMINAL_STATUSES
    assert vocabulary["active"] == ["pending", "running"]
    assert vocabulary["held"] == HELD
    assert vocabulary["search"] == list(SearchState)
    assert set(vocabulary["search_terminal"]) == {"finished", "failed"}
    assert set(vocabulary["colours"]) == set(TrialStatus)
