"""The typed spec the store hands out (``SearchRecord.search``): parsed once with
``stored=True``, again only after an edit; and no reader outside ``ma2ml.spec`` reads a
setting from the raw document with a default of its own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import ma2ml
from ma2ml.spec import Budget, PipelineSearch
from ma2ml.store import Store
from ma2ml.store import parsed as parsed_specs


def document(name: str, budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stored spec as written by the front doors (budget left to its defaults)."""
    spec: dict[str, Any] = {
        "agents": [{"name": "hpo", "decisions": [{"name": "lr", "values": [0.1, 0.01]}]}],
        "algorithm": {"name": "random", "seed": 1}}
    if budget is not None:
        spec["budget"] = budget
    return {"apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
            "metadata": {"name": name}, "spec": spec}


def test_the_record_carries_the_parsed_spec_parsed_once(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = parsed_specs.parse_spec

    def counting(doc: Any, *, stored: bool = False) -> PipelineSearch:
        calls.append(stored)
        return real(doc, stored=stored)

    monkeypatch.setattr(parsed_specs, "parse_spec", counting)
    record = store.create_search("default/parsed", document("parsed"))
    search = record.search
    assert search.spec.budget.max_trials == Budget().max_trials  # the default, from spec
    assert record.search is search and calls == [True]  # stored=True, once
    # A fresh record of the same stored document: not parsed again (the learner's tick).
    again = store.get_search_by_id(record.id)
    assert again is not None and again.search is search and calls == [True]
    assert again == record  # the parsed spec is no part of a record's equality
    edited = store.update_search_spec("default/parsed",
                                      document("parsed", {"maxTrials": 7}))
    assert edited.search.spec.budget.max_trials == 7 and len(calls) == 2
    latest = store.get_search("default/parsed")
    assert latest is not None and latest.search is edited.search and len(calls) == 2


def test_a_changed_dict_is_parsed_again() -> None:
    doc = document("mutated", {"maxTrials": 3})
    first = parsed_specs.stored_search(-1, doc)
    doc["spec"]["budget"]["maxTrials"] = 4  # the caller's dict, changed after the parse
    assert parsed_specs.stored_search(-1, doc).spec.budget.max_trials == 4
    assert first.spec.budget.max_trials == 3


#: A setting read from a raw spec document (``["budget"]``, ``.get("maxTrials", 50)``,
#: ``"trialEpochs"``): each would restate the default ``ma2ml.spec`` holds.
_RAW_READ = re.compile(
    r"""\[\s*["'](budget|earlyStopping)["']\s*\]"""
    r"""|\.get\(\s*["'](budget|earlyStopping|algorithm|maxTrials|trialEpochs|parallelism)["']"""
    r"""|["'](maxTrials|trialEpochs)["']""")


def test_nothing_outside_spec_reads_a_setting_from_the_raw_document() -> None:
    root = Path(ma2ml.__file__).parent
    allowed = {
        root / "spec.py",  # the one place defaults live
        # writes trialEpochs into a document it then parses (a retraining's epochs)
        root / "trainer" / "retrain.py",
    }
    found = [f"{path.relative_to(root)}:{number}: {line.strip()}"
             for path in sorted(root.rglob("*.py")) if path not in allowed
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if _RAW_READ.search(line)]
    assert found == []


def test_a_step_is_judged_by_the_stored_rule_not_the_workers_copy(
        store: Store, stopping_search: Any) -> None:
    """A worker parsed the spec before ``earlyStopping`` was edited: its reports are judged
    by the rule stored now (read under the search row's lock), both ways."""
    from ma2ml.spec import EarlyStopping
    from ma2ml.store import TrialProposal
    from ma2ml.worker.loop import StepReporter

    record = stopping_search(store, "default/edited-rule", EarlyStopping(), 9)
    worker_copy = record.search  # earlyStopping: none, as the worker parsed it
    store.enqueue_trials(record.id, [TrialProposal({"x": i}, {"a": [i]}, {"a": -1.0}, 0)
                                     for i in range(4)])
    good, bad, late, last = (store.claim(record.id, "w", 60) for _ in range(4))
    assert good and bad and late and last
    edited = {**record.spec, "spec": {**record.spec["spec"], "earlyStopping": {
        "type": "asha", "minEpochs": 1, "reductionFactor": 2}}}
    store.update_search_spec(record.name, edited)
    assert worker_copy.spec.early_stopping.type == "none"
    assert store.report_step(good.id, good.attempt, 1, 0.9, {}) == "continue"
    assert StepReporter(store, bad)(1, 0.1, {}) is False  # ASHA stops it: bottom half
    assert store.get_trial(bad.id).status == "stopped"  # type: ignore[union-attr]
    # Edited back to none: a worker holding ASHA sees its trial go on.
    store.update_search_spec(record.name, record.spec)
    assert store.report_step(late.id, late.attempt, 1, 0.0, {}) == "continue"
    assert StepReporter(store, last)(1, 0.0, {}) is True
