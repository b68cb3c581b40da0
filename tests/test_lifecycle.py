"""One stop rule, one owner per search edge: the learner, the operator and ``ma2ml run``
agree on the same counts.

Each row of ``CASES`` is a budget and trial counts, put into a real SQLite store by
claiming and reporting real trials. Then the store's rule (``budget_verdict``), the
learner's tick (which moves the stored state), the operator's phase and the local
run's controller (``prepare_search``, which reopens a finished search only when the
rule says go on) must all tell the same story.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ma2ml.learner.loop import Learner
from ma2ml.local.results import summarize
from ma2ml.local.searches import prepare_search
from ma2ml.operator.status import decide
from ma2ml.spec import Phase, parse_spec, spec_to_document
from ma2ml.store import Counts, SearchState, Store, TrialProposal, budget_verdict

PHASE_OF = {SearchState.finished: Phase.succeeded, SearchState.failed: Phase.failed,
            None: Phase.running}

# (maxTrials, maxFailedTrials, completed, diverged, failed) -> state the budget calls for
CASES = [
    ((3, 2, 3, 0, 0), SearchState.finished),
    ((3, 2, 2, 1, 0), SearchState.finished),  # a diverged training is a result
    ((3, 2, 2, 0, 1), None),
    ((3, 2, 0, 0, 2), SearchState.failed),
    ((3, 2, 3, 0, 2), SearchState.failed),  # both limits: failures win
    ((3, 2, 1, 1, 1), None),
    ((1, 1, 0, 0, 0), None),
]


def search_document(name: str, *, max_trials: int, max_failed: int = 10) -> dict[str, Any]:
    """A random-search spec over two small custom agents."""
    return spec_to_document(parse_spec({
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": name},
        "spec": {
            "agents": [
                {"name": "nas", "decisions": [{"name": "width", "values": [8, 16]},
                                              {"name": "depth", "values": [1, 2]}]},
                {"name": "hpo", "decisions": [{"name": "lr", "values": [0.1, 0.01]}]},
            ],
            "algorithm": {"name": "random", "seed": 1},
            "budget": {"maxTrials": max_trials, "maxFailedTrials": max_failed,
                       "parallelism": 1, "prefetch": 0},
        },
    }))


def fill(store: Store, search_id: int, completed: int, diverged: int, failed: int) -> None:
    """Report real trials: ``completed`` results, ``diverged`` ones, ``failed`` failures."""
    total = completed + diverged + failed
    proposal = TrialProposal({"nas": {"width": 8, "depth": 1}, "hpo": {"lr": 0.1}},
                             {"nas": [0, 0], "hpo": [0]}, {"nas": -1.4, "hpo": -0.7}, 0)
    store.enqueue_trials(search_id, [proposal] * total)
    for index in range(total):
        trial = store.claim(search_id, "w", 30)
        assert trial is not None
        if index < completed:
            store.complete(trial.id, trial.attempt, 0.5 + index / 100, {"accuracy": 0.5})
        elif index < completed + diverged:
            store.complete(trial.id, trial.attempt, float("nan"), {}, diverged=True)
        else:
            store.fail(trial.id, trial.attempt, "boom", retryable=False, max_retries=0)


@pytest.mark.parametrize(("row", "expected"), CASES, ids=[str(row) for row, _ in CASES])
def test_learner_operator_and_local_run_agree(row: tuple[int, ...], expected: SearchState | None,
                                             tmp_path: Path) -> None:
    max_trials, max_failed, completed, diverged, failed = row
    document = search_document("agree", max_trials=max_trials,
                               max_failed=max_failed)
    search = parse_spec(document)
    with Store(f"sqlite:///{tmp_path / 'agree.db'}") as store:
        record = store.create_search(search.key, document)
        fill(store, record.id, completed, diverged, failed)
        counts = store.counts(record.id)
        assert counts == Counts(completed=completed, diverged=diverged, failed=failed)
        assert (counts.results, counts.failures) == (completed + diverged, failed)

        verdict = budget_verdict(search.spec.budget, counts)
        assert verdict.state == expected

        outcome = Learner(store, search.key).tick()  # the learner owns finished/failed
        state = store.get_search(search.key).state  # type: ignore[union-attr]
        assert state == (expected or SearchState.running)
        assert (outcome.state if outcome else None) == expected
        if outcome is not None:
            assert (outcome.results, outcome.failures) == (counts.results, counts.failures)

        assert decide(search.spec, SearchState.running, counts).phase == PHASE_OF[expected]
        assert decide(search.spec, state, counts).phase == PHASE_OF[expected]

        again = prepare_search(store, search)  # `ma2ml run` again: no reopen past the rule
        assert again.state == state
        assert summarize(store, again, baseline=False).done == counts.results


def test_a_raised_max_trials_reopens_through_the_same_rule(tmp_path: Path) -> None:
    document = search_document("reopen", max_trials=2)
    search = parse_spec(document)
    with Store(f"sqlite:///{tmp_path / 'reopen.db'}") as store:
        record = store.create_search(search.key, document)
        fill(store, record.id, 2, 0, 0)
        finished = Learner(store, search.key).tick()
        assert finished is not None and finished.state == SearchState.finished
        raised = parse_spec(search_document("reopen", max_trials=3))
        assert prepare_search(store, raised).state == SearchState.running
        assert Learner(store, search.key).tick() is None  # proposes the third trial
        assert store.counts(record.id).pending == 1
