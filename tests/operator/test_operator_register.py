"""How the operator registers a search and mirrors spec edits into the store, on SQLite
and PostgreSQL (the store suite's parametrised ``store`` fixture)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ma2ml.operator.reconcile import finalize, register
from ma2ml.spec import PipelineSearch, parse_spec, spec_to_document
from ma2ml.store import Actor, SearchState, Store, TrialProposal

EXAMPLE = yaml.safe_load((Path(__file__).parents[2] / "examples/fashion-mnist.yaml").read_text())


def search(**spec: Any) -> PipelineSearch:
    document = copy.deepcopy(EXAMPLE)
    document["metadata"] = {"name": "fmnist", "namespace": "lab"}
    document["spec"].update(spec)
    return parse_spec(document)


def finish(store: Store, search_id: int, n: int) -> None:
    store.enqueue_trials(search_id, [TrialProposal({"hpo": {"lr": 0.1}}, {"hpo": [0]},
                                                   {"hpo": 0.0}, 0)] * n)
    for _ in range(n):
        trial = store.claim(search_id, "w", 30)
        store.complete(trial.id, trial.attempt, 0.5, {"accuracy": 0.5})


def test_register_is_idempotent_and_stores_the_whole_resource(store: Store) -> None:
    first = register(store, search())
    again = register(store, search())
    assert again.id == first.id and len(store.list_searches()) == 1
    assert first.name == "lab/fmnist" and first.state == "running"
    assert parse_spec(first.spec) == search()


def test_spec_edits_and_suspend_reach_the_store(store: Store) -> None:
    register(store, search())
    edited = register(store, search(budget={"maxTrials": 7, "parallelism": 3}))
    assert edited.spec == spec_to_document(search(budget={"maxTrials": 7, "parallelism": 3}))
    assert register(store, search(suspend=True)).state == "suspended"
    assert register(store, search(suspend=False)).state == "running"


def test_raising_max_trials_reopens_a_finished_search_only_below_its_results(
        store: Store) -> None:
    # The same rule as the learner's stop rule (store.lifecycle.reopens): a finished
    # search runs on only while the budget verdict says "go on".
    record = register(store, search(budget={"maxTrials": 2}))
    finish(store, record.id, 2)
    store.move_search(record.id, SearchState.finished, by=Actor.learner)
    assert register(store, search(budget={"maxTrials": 2, "parallelism": 2})).state == "finished"
    assert register(store, search(budget={"maxTrials": 5})).state == "running"
    finish(store, record.id, 3)
    store.move_search(record.id, SearchState.finished, by=Actor.learner)
    assert register(store, search(budget={"maxTrials": 4})).state == "finished"  # lowered


def test_finalizer_applies_retention(store: Store) -> None:
    for retention, kept in (("keep", True), ("delete", False)):
        resource = search(retention=retention)
        register(store, resource)
        body = {**spec_to_document(resource), "metadata": {"name": "fmnist", "namespace": "lab"}}
        assert finalize(body, store) is not kept
        assert (store.get_search("lab/fmnist") is not None) is kept
