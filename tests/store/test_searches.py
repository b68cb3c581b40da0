"""Searches (create, find, update, state, delete with cascade) and policy snapshots."""

from __future__ import annotations

import pytest

from ma2ml.store import (
    Actor,
    SearchExistsError,
    SearchNotFoundError,
    SearchState,
    Store,
    TrialProposal,
)


def test_create_and_find(store: Store) -> None:
    spec = {"z": 1, "agents": ["aug", "nas"], "a": {"b": None}}
    created = store.create_search("default/fmnist", spec)
    assert (created.name, created.spec, created.state) == ("default/fmnist", spec, "running")
    assert list(created.spec) == ["z", "agents", "a"]  # key order kept (JSON, not JSONB)
    assert created.finished_at is None and created.best_trial_id is None
    assert store.get_search("default/fmnist") == created
    assert store.get_search_by_id(created.id) == created
    assert store.get_search("default/other") is None
    assert store.get_search_by_id(created.id + 100) is None


def test_create_existing(store: Store) -> None:
    first = store.create_search("ns/a", {"v": 1})
    assert store.create_search("ns/a", {"v": 2}) == first  # exist_ok: returned unchanged
    with pytest.raises(SearchExistsError):
        store.create_search("ns/a", {"v": 2}, exist_ok=False)


def test_list_update_state(store: Store) -> None:
    a = store.create_search("ns/a", {})
    b = store.create_search("ns/b", {})
    assert [s.name for s in store.list_searches()] == ["ns/a", "ns/b"]
    assert store.update_search_spec("ns/b", {"parallelism": 4}).spec == {"parallelism": 4}
    assert store.get_search("ns/b").spec == {"parallelism": 4}  # type: ignore[union-attr]
    suspended = store.move_search(a.id, SearchState.suspended, by=Actor.controller)
    assert (suspended.state, suspended.finished_at) == ("suspended", None)
    finished = store.move_search(a.id, SearchState.finished, by=Actor.learner)
    assert finished.finished_at is not None and finished.finished_at >= a.created_at
    assert store.move_search(a.id, SearchState.running, by=Actor.controller).finished_at is None
    assert store.move_search(b.id, SearchState.failed, by=Actor.learner).finished_at is not None
    with pytest.raises(SearchNotFoundError):
        store.update_search_spec("ns/none", {})
    with pytest.raises(SearchNotFoundError):
        store.move_search(b.id + 100, SearchState.finished, by=Actor.learner)


def test_each_search_edge_has_one_owner_and_moves_only_from_its_source(store: Store) -> None:
    record = store.create_search("ns/edges", {})
    # Not the controller's edge, and no edge at all: programming errors, refused.
    with pytest.raises(ValueError, match="controller owns no edge"):
        store.move_search(record.id, SearchState.finished, by=Actor.controller)
    with pytest.raises(ValueError, match="learner owns no edge"):
        store.move_search(record.id, SearchState.suspended, by=Actor.learner)
    # Compare-and-set: the learner finished it first, so a late "suspend" decided on
    # the old 'running' read changes nothing, and nor does a failed -> finished.
    store.move_search(record.id, SearchState.finished, by=Actor.learner)
    late = store.move_search(record.id, SearchState.suspended, by=Actor.controller)
    assert late.state == SearchState.finished
    failed = store.create_search("ns/failed", {})
    store.move_search(failed.id, SearchState.failed, by=Actor.learner)
    assert store.move_search(failed.id, SearchState.running, by=Actor.controller).state == "failed"
    assert store.get_search("ns/failed").state is SearchState.failed  # type: ignore[union-attr]


def test_delete_cascades(store: Store) -> None:
    doomed = store.create_search("ns/doomed", {})
    kept = store.create_search("ns/kept", {})
    proposal = TrialProposal({"x": 1}, {"aug": [1]}, {"aug": -1.0}, 0)
    doomed_ids = store.enqueue_trials(doomed.id, [proposal, proposal])
    kept_ids = store.enqueue_trials(kept.id, [proposal])
    trial = store.claim(doomed.id, "w", 60)
    assert trial is not None
    store.save_snapshot(doomed.id, 1, b"state", {"loss": 1.0})
    assert store.delete_search("ns/doomed") is True
    assert store.delete_search("ns/doomed") is False
    assert store.get_search("ns/doomed") is None
    assert all(store.get_trial(i) is None for i in doomed_ids)
    assert store.load_snapshot(doomed.id) is None and store.snapshot_stats(doomed.id) == []
    assert not store.heartbeat(trial.id, trial.attempt, 60)
    assert store.get_trial(kept_ids[0]) is not None


def test_snapshots(store: Store) -> None:
    search = store.create_search("ns/snap", {})
    assert store.load_snapshot(search.id) is None
    store.save_snapshot(search.id, 1, b"\x00one", {"entropy": {"aug": 1.2}})
    store.save_snapshot(search.id, 2, b"\x00two", {"entropy": {"aug": 0.9}})
    latest = store.load_snapshot(search.id)
    assert latest is not None
    assert (latest.version, latest.state, latest.stats) == (
        2,
        b"\x00two",
        {"entropy": {"aug": 0.9}},
    )
    store.save_snapshot(search.id, 2, b"\x00two'", {"entropy": {"aug": 0.8}})  # overwrite
    latest = store.load_snapshot(search.id)
    assert latest is not None and latest.state == b"\x00two'"
    stats = store.snapshot_stats(search.id)
    assert [(v, s) for v, _, s in stats] == [
        (1, {"entropy": {"aug": 1.2}}),
        (2, {"entropy": {"aug": 0.8}}),
    ]
    assert stats[0][1] <= stats[1][1]


def test_snapshot_states_pruned_stats_kept(store: Store) -> None:
    search = store.create_search("ns/prune", {})
    for version in range(1, 7):
        store.save_snapshot(search.id, version, bytes([version]), {"v": version}, keep_states=2)
    assert [v for v, _, _ in store.snapshot_stats(search.id)] == [1, 2, 3, 4, 5, 6]
    latest = store.load_snapshot(search.id)
    assert latest is not None and latest.version == 6 and latest.state == bytes([6])
    with store.engine.connect() as connection:
        kept = (
            connection.exec_driver_sql(
                "SELECT version FROM policy_snapshots WHERE state IS NOT NULL ORDER BY version"
            )
            .scalars()
            .all()
        )
    assert kept == [5, 6]
