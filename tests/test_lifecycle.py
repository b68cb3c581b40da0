"""One stop rule, one owner per search edge: the learner, the operator and ``ma2ml run``
agree on the same counts.

Each row of ``CASES`` is a budget and trial counts, put into a real SQLite store by
claiming and reporting real trials. Then the store's rule (``budget_verdict``), the
learner's tick (which moves the stored state), the operator's phase and the local
run's controller (``prepare_search``, which reopens a finished search only when the
rule says go on) must all tell the same story.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from ma2ml.learner.loop import Learner
from ma2ml.local.searches import prepare_search
from ma2ml.operator.status import decide
from ma2ml.results.summary import summarize
from ma2ml.spec import Budget, Phase, parse_spec, spec_to_document
from ma2ml.store import (
    Counts,
    SearchState,
    Store,
    TrialProposal,
    Usage,
    budget_verdict,
    reopens,
)
from ma2ml.store.models import SEARCHES

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

        usage = store.usage(record.id)
        verdict = budget_verdict(search.spec.budget, counts, usage)
        assert verdict.state == expected

        outcome = Learner(store, search.key).tick()  # the learner owns finished/failed
        state = store.get_search(search.key).state  # type: ignore[union-attr]
        assert state == (expected or SearchState.running)
        assert (outcome.state if outcome else None) == expected
        if outcome is not None:
            assert (outcome.results, outcome.failures) == (counts.results, counts.failures)

        assert decide(search.spec, SearchState.running, counts, usage).phase == \
            PHASE_OF[expected]
        assert decide(search.spec, state, counts, usage).phase == PHASE_OF[expected]

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


# -- time limits: the same rule, whichever of maxTrials, maxTrainingHours and maxDuration
# comes first ---------------------------------------------------------------------------


def budget(**fields: Any) -> Budget:
    return Budget.model_validate({"maxTrials": 10, "maxFailedTrials": 3, **fields})


@pytest.mark.parametrize(
    ("limits", "counts", "usage", "reason"),
    [
        ({"maxDuration": "10m"}, Counts(completed=2), Usage(599.9, 0), "TrialsRunning"),
        ({"maxDuration": "10m"}, Counts(completed=2), Usage(602, 0), "MaxDurationReached"),
        ({"maxTrainingHours": 0.5}, Counts(completed=2), Usage(5, 1799), "TrialsRunning"),
        ({"maxTrainingHours": 0.5}, Counts(completed=2), Usage(5, 1800), "MaxTrainingHoursReached"),
        # Whichever comes first; once ended, results and training time stay still while the
        # clock goes on, so the reason of a search that ended stays the one that ended it.
        ({"maxDuration": 60, "maxTrainingHours": 1}, Counts(completed=10), Usage(9e9, 9e9),
         "MaxTrialsReached"),
        ({"maxDuration": 60, "maxTrainingHours": 1}, Counts(completed=2), Usage(9e9, 3600),
         "MaxTrainingHoursReached"),
        # Failures are checked first, as always.
        ({"maxDuration": 60}, Counts(failed=3), Usage(600, 0), "TooManyFailedTrials"),
        ({}, Counts(completed=2), Usage(9e9, 9e9), "TrialsRunning"),  # no time limit
    ],
)
def test_time_limits_in_the_one_rule(limits: dict[str, Any], counts: Counts, usage: Usage,
                                     reason: str) -> None:
    verdict = budget_verdict(budget(**limits), counts, usage)
    assert verdict.reason == reason
    assert (verdict.state is None) == (reason == "TrialsRunning")


def test_time_verdicts_say_what_was_used_against_which_limit() -> None:
    limits = budget(maxDuration="10m", maxTrainingHours=2)
    assert budget_verdict(limits, Counts(completed=2), Usage(602, 0)).message == \
        "search ran 10m 2s (maxDuration 10m)"
    assert budget_verdict(limits, Counts(completed=2), Usage(60, 7230)).message == \
        "trials trained 2h 0m 30s (maxTrainingHours 2)"
    assert budget_verdict(limits, Counts(completed=3), Usage(95, 1800)).message == \
        "3/10 trials finished, trained 30m of maxTrainingHours 2, ran 1m 35s of maxDuration 10m"
    assert budget_verdict(budget(), Counts(completed=3), Usage(95, 1800)).message == \
        "3/10 trials finished"


def test_a_raised_time_limit_reopens_only_above_the_time_used() -> None:
    used, counts = Usage(elapsed_seconds=3600, training_seconds=1800), Counts(completed=2)
    finished = SearchState.finished
    assert not reopens(finished, budget(maxDuration="1h"), counts, used)
    assert reopens(finished, budget(maxDuration="2h"), counts, used)
    # The clock counts from the search's creation: a limit raised to less than the time
    # since then does not reopen it, even if it had ended long before.
    assert not reopens(finished, budget(maxDuration="59m"), counts, used)
    assert not reopens(finished, budget(maxTrainingHours=0.5), counts, used)
    assert reopens(finished, budget(maxTrainingHours=0.6), counts, used)
    assert not reopens(SearchState.failed, budget(maxDuration="2h"), counts, used)


def age(store: Store, search_id: int, seconds: float) -> None:
    """Make the search ``seconds`` old on the database clock (its clock counts from there)."""
    with store.engine.begin() as connection:
        connection.execute(update(SEARCHES).where(SEARCHES.c.id == search_id)
                           .values(created_at=time.time() - seconds))


def test_the_clock_ends_a_search_with_trials_out_and_a_raise_reopens_it(tmp_path: Path) -> None:
    document = search_document("clock", max_trials=50)
    document["spec"]["budget"].update(maxDuration=3600, parallelism=2)
    search = parse_spec(document)
    with Store(f"sqlite:///{tmp_path / 'clock.db'}") as store:
        record = store.create_search(search.key, spec_to_document(search))
        learner = Learner(store, search.key)
        assert learner.tick() is None
        proposed = store.counts(record.id).pending
        assert proposed >= 2
        running = store.claim(record.id, "w", 30)
        assert running is not None

        age(store, record.id, 3700)  # the hour is spent: no more proposals, it ends
        outcome = learner.tick()
        assert outcome is not None and outcome.state == SearchState.finished
        ended = store.get_search(search.key)
        assert ended is not None and ended.message is not None
        assert ended.message.startswith("search ran 1h 1m") and "(maxDuration 1h)" in ended.message
        counts = store.counts(record.id)  # what was out is left as it was
        assert (counts.running, counts.pending, counts.total) == (1, proposed - 1, proposed)

        usage = store.usage(record.id)
        verdict = decide(search.spec, ended.state, counts, usage, ended.message)
        assert (verdict.phase, verdict.reason, verdict.message) == (
            Phase.succeeded, "MaxDurationReached", ended.message)
        summary = summarize(store, ended, baseline=False)
        assert summary.ended_by() == "MaxDurationReached"

        # Raised, but still below the time since creation: stays finished (same rule).
        lower = copy.deepcopy(document)
        lower["spec"]["budget"]["maxDuration"] = "1h1m"
        assert prepare_search(store, parse_spec(lower)).state == SearchState.finished
        higher = copy.deepcopy(document)
        higher["spec"]["budget"]["maxDuration"] = "3h"
        assert prepare_search(store, parse_spec(higher)).state == SearchState.running
        store.complete(running.id, running.attempt, 0.5, {})
        while (trial := store.claim(record.id, "w", 30)) is not None:
            store.complete(trial.id, trial.attempt, 0.5, {})
        assert Learner(store, search.key).tick() is None  # proposes again
        assert store.counts(record.id).pending > 0


# -- spec edits: one rule for what may change, applied by both controllers ---------------

EDITS = [
    ("agents", lambda s: s["agents"][1]["decisions"][0].update(values=[0.1, 0.01, 0.001]),
     "spec.agents"),
    ("dataset", lambda s: s.update(dataset={"name": "cifar10"}), "spec.dataset"),
    ("objective", lambda s: s.update(objective={"flopsTarget": 1e6}),
     "spec.objective"),
    ("algorithm", lambda s: s["algorithm"].update(seed=2), "spec.algorithm"),
    ("trainer", lambda s: s.update(trainer={"device": "cuda"}), "spec.trainer"),
    ("budget", lambda s: s["budget"].update(maxTrials=9, parallelism=3), None),
    ("suspend", lambda s: s.update(suspend=True), None),
]


@pytest.mark.parametrize("results", [0, 1], ids=["no-results", "with-results"])
@pytest.mark.parametrize(("case", "change", "fixed"), EDITS, ids=[e[0] for e in EDITS])
def test_both_controllers_apply_one_rule_to_spec_edits(
        case: str, change: Any, fixed: str | None, results: int, tmp_path: Path) -> None:
    # A fixed field edited under results is refused by `ma2ml run` and by the operator
    # alike, and the stored search stays as it was; without results, both start over;
    # any other edit both take over in place.
    from ma2ml.local.searches import SearchConflictError
    from ma2ml.operator.reconcile import EditRefusedError, register

    document = search_document("edit", max_trials=5)
    edited_document = copy.deepcopy(document)
    change(edited_document["spec"])
    search, edited = parse_spec(document), parse_spec(edited_document)
    outcomes = {}
    for controller in ("local", "operator"):
        with Store(f"sqlite:///{tmp_path / controller}.db") as store:
            record = store.create_search(search.key, spec_to_document(search))
            fill(store, record.id, results, 0, 0)
            store.enqueue_trials(record.id, [TrialProposal(
                {"nas": {"width": 8, "depth": 1}, "hpo": {"lr": 0.1}},
                {"nas": [0, 0], "hpo": [0]}, {"nas": -1.4, "hpo": -0.7}, 0)])
            try:
                after = (prepare_search(store, edited) if controller == "local"
                         else register(store, edited))
            except (SearchConflictError, EditRefusedError) as exc:
                assert fixed is not None and fixed in str(exc)
                outcomes[controller] = "refused"
                assert store.get_search(search.key).spec == spec_to_document(search)  # type: ignore[union-attr]
                continue
            assert after.spec == spec_to_document(edited)
            # Started over, the old spec's trials are gone (the new row may reuse the id).
            total = store.counts(after.id).total
            outcomes[controller] = "replaced" if total == 0 else "taken over"
            assert total in (0, results + 1)
    expected = "taken over" if fixed is None else "refused" if results else "replaced"
    assert outcomes == {"local": expected, "operator": expected}
