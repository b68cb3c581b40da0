"""Early stopping: the ASHA, median and learned rules and the bracket shares by hand, and
decided in the store exactly once, under concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ma2ml.spec import EarlyStopping
from ma2ml.store import StaleAttemptError, Store, TrialProposal
from ma2ml.store.stopping import (
    StepDecision,
    bracket_of,
    decide,
    hyperband_shares,
    judged,
    rungs,
    shares,
    survival,
)

from .workers import report_steps_until_empty, run_together

ASHA = EarlyStopping(type="asha", min_epochs=1, reduction_factor=3)
MEDIAN = EarlyStopping(type="median", min_epochs=2, min_trials=3)
GO, STOP = StepDecision.proceed, StepDecision.stop


def test_asha_rungs_and_decisions_by_hand() -> None:
    assert rungs(ASHA, 27) == [1, 3, 9]
    assert rungs(EarlyStopping(type="asha", min_epochs=2, reduction_factor=2), 20) == [2, 4, 8, 16]
    assert [judged(ASHA, s, 27) for s in (1, 2, 3, 9, 27)] == [True, False, True, True, False]
    # Results arriving one by one at a rung: continue iff among the best ceil(n / 3).
    arrivals = [0.5, 0.4, 0.6, 0.3, 0.55, 0.7, 0.52]
    expected = [GO,  # n=1: the first result always continues
                STOP,  # n=2: best 1 is 0.5
                GO,  # n=3: best 1, 0.6 is it
                STOP,  # n=4: best 2 are 0.6, 0.5
                GO,  # n=5: best 2 are 0.6, 0.55
                GO,  # n=6: best 2 are 0.7, 0.6
                STOP]  # n=7: best 3 are 0.7, 0.6, 0.55
    decisions = [decide(ASHA, value, arrivals[:i]) for i, value in enumerate(arrivals)]
    assert decisions == expected
    assert decide(ASHA, 0.5, [0.5, 0.5, 0.5]) == GO  # ties count in its favour
    assert decide(ASHA, None, [0.1]) == STOP and decide(ASHA, None, []) == GO


def test_median_by_hand() -> None:
    assert [judged(MEDIAN, s, 5) for s in (1, 2, 4, 5)] == [False, True, True, False]
    assert decide(MEDIAN, 0.1, [0.5, 0.6]) == GO  # fewer than minTrials others
    assert decide(MEDIAN, 0.55, [0.5, 0.6, 0.7]) == STOP  # median 0.6
    assert decide(MEDIAN, 0.65, [0.5, 0.6, 0.7]) == GO


def _proposals(count: int) -> list[TrialProposal]:
    return [TrialProposal({"x": i}, {"aug": [i % 5]}, {"aug": -1.6}, 0) for i in range(count)]


def test_a_stopped_trial_ends_with_its_last_result_once(store: Store, stopping_search) -> None:
    search = stopping_search(store, "default/stopping", ASHA, 9)
    store.enqueue_trials(search.id, _proposals(3))
    good, bad, full = (store.claim(search.id, "w", 30) for _ in range(3))
    assert good and bad and full
    assert store.report_step(good.id, good.attempt, 1, 0.8, {"accuracy": 0.8}) == GO
    assert store.report_step(bad.id, bad.attempt, 1, 0.2, {"accuracy": 0.2}) == STOP
    assert store.report_step(good.id, good.attempt, 1, 0.8, {}) == GO  # asked again
    with pytest.raises(StaleAttemptError):  # stopped: no longer running
        store.report_step(bad.id, bad.attempt, 2, 0.3, {})
    assert store.report_step(good.id, good.attempt, 2, 0.85, {}) == GO  # not a rung
    store.complete(good.id, good.attempt, 0.9, {"accuracy": 0.9})
    store.report_step(full.id, full.attempt, 1, 0.95, {"accuracy": 0.95})
    store.complete(full.id, full.attempt, 0.5, {"accuracy": 0.5})

    stopped = store.get_trial(bad.id)
    assert stopped is not None and stopped.status == "stopped" and stopped.reward == 0.2
    assert stopped.metrics == {"accuracy": 0.2, "stopped_at_epoch": 1}
    assert (stopped.last_step, stopped.finished_seq) == (1, 1)
    counts = store.counts(search.id)
    assert (counts.stopped, counts.completed, counts.results) == (1, 2, 3)
    best = store.best_trial(search.id)
    assert best is not None and best.id == good.id  # the full-fidelity best, never a stopped one
    curves = store.curves(search.id)
    assert [(s.step, s.value, s.decision) for s in curves[good.id]] == [
        (1, 0.8, "continue"), (2, 0.85, "continue")]
    assert [s.decision for s in curves[bad.id]] == ["stop"]
    assert list(store.curves(search.id, [bad.id])) == [bad.id]


TRIALS, PROCESSES = 120, 8


@pytest.mark.slow
def test_decisions_are_exactly_once_under_concurrency(store: Store, database_url: str,
                                                       stopping_search) -> None:
    # The rule the workers are judged by (report_steps_until_empty: epochs 1 and 2 of 4).
    rule = EarlyStopping(type="asha", min_epochs=1, reduction_factor=2)
    search = stopping_search(store, "default/asha-concurrency", rule, 4)
    store.enqueue_trials(search.id, _proposals(TRIALS))
    outcomes = run_together(report_steps_until_empty, database_url, search.id, PROCESSES)
    assert [kind for kind, _ in outcomes] == ["ok"] * PROCESSES, outcomes
    answers = [answer for _, batch in outcomes for answer in batch]

    # Each (trial, step) answered once, and asking again gives the same answer.
    assert len({(t, s) for t, s, _, _ in answers}) == len(answers)
    assert all(again == (decision if decision == "continue" else "stale")
               for _, _, decision, again in answers)
    curves = store.curves(search.id)
    recorded = {(t, s.step): s.decision for t, steps in curves.items() for s in steps}
    assert recorded == {(t, s): d for t, s, d, _ in answers}
    # The status agrees with the answers, and every trial finished exactly once.
    stopped = {t for t, _, d, _ in answers if d == "stop"}
    trials = store.list_trials(search.id)
    assert {t.id for t in trials if t.status == "stopped"} == stopped
    assert all(t.status == "completed" for t in trials if t.id not in stopped)
    assert sorted(t.finished_seq for t in trials) == list(range(1, TRIALS + 1))
    # At every rung the best result continued (whatever the order, it ranks first).
    for step in (1, 2):
        at_rung = [s for steps in curves.values() for s in steps if s.step == step]
        assert max(at_rung, key=lambda s: s.value or 0).decision == "continue"
    assert 0 < len(stopped) < TRIALS


LEARNED = EarlyStopping(type="learned", min_epochs=1, reduction_factor=2, min_trials=4)


def test_learned_rule_by_hand() -> None:
    """The bar at a rung is the lowest result the top half of the completed trials had
    there; nothing stops before ``minTrials`` completed."""
    assert [judged(LEARNED, s, 9) for s in (1, 2, 3, 4, 8, 9)] == [
        True, True, False, True, True, False]
    # (result at this epoch, final reward) of completed trials: the best two finals
    # (0.9, 0.8) had 0.3 and 0.6 here, so the bar is 0.3 (a late bloomer sets it low).
    completed = [(0.6, 0.8), (0.3, 0.9), (0.7, 0.5), (0.5, 0.4)]
    assert decide(LEARNED, 0.29, [0.9, 0.9], completed) == STOP
    assert decide(LEARNED, 0.3, [], completed) == GO  # ties continue
    assert decide(LEARNED, 0.0, [0.5], completed[:3]) == GO  # 3 < minTrials completed
    # Where early results ranked the finals well, the bar sits near the top.
    consistent = [(0.7, 0.9), (0.6, 0.8), (0.5, 0.5), (0.3, 0.4)]
    assert decide(LEARNED, 0.55, [], consistent) == STOP
    # A missing result stops once there is a bar; a top trial without one sets none.
    assert decide(LEARNED, None, [], completed) == STOP
    assert decide(LEARNED, 0.0, [], [(None, 0.9), *completed[:3]]) == GO
    # Diverged finals (None) are not completed results and do not count.
    assert decide(LEARNED, 0.0, [], [(0.9, None)] * 3 + completed[:3]) == GO


def test_learned_rule_reads_the_completed_trials_in_the_store(store: Store,
                                                             stopping_search) -> None:
    search = stopping_search(store, "default/learned", LEARNED, 9)
    store.enqueue_trials(search.id, _proposals(7))
    trials = [store.claim(search.id, "w", 30) for _ in range(7)]
    assert all(trials)
    # Four trials complete with known curves (epoch 2 is a rung: 1, 2, 4, 8 below 9).
    for trial, (at_2, final) in zip(trials[:4], [(0.6, 0.8), (0.3, 0.9), (0.7, 0.5),
                                                 (0.5, 0.4)], strict=True):
        for step, value in ((1, at_2 / 2), (2, at_2)):
            assert store.report_step(trial.id, trial.attempt, step, value, {}) == GO
        store.complete(trial.id, trial.attempt, final, {"accuracy": final})
    # Two trials still running: they do not count as completed.
    early, running, late = trials[4:]
    store.report_step(early.id, early.attempt, 2, 0.95, {})
    store.report_step(running.id, running.attempt, 2, 0.99, {})
    assert store.report_step(late.id, late.attempt, 2, 0.29, {}) == STOP
    assert store.get_trial(late.id).status == "stopped"
    assert store.report_step(early.id, early.attempt, 4, 0.31, {}) == GO  # no bar at 4


def test_equal_brackets_judge_later_trials_from_later_rungs() -> None:
    """Equal shares: trial n is judged from rung (n - 1) mod brackets on; a bracket past
    the last rung is never judged, and more brackets than that wrap around earlier."""
    by_turns = EarlyStopping(type="asha", min_epochs=1, reduction_factor=3, brackets=100,
                             bracket_shares="equal")
    assert rungs(by_turns, 27) == [1, 3, 9]  # 4 brackets: from 1, 3, 9, never
    judged_at = {n: [s for s in range(1, 28) if judged(by_turns, s, 27, n)] for n in range(1, 7)}
    assert judged_at == {1: [1, 3, 9], 2: [3, 9], 3: [9], 4: [], 5: [1, 3, 9], 6: [3, 9]}
    two = EarlyStopping(type="learned", min_epochs=1, reduction_factor=3, brackets=2,
                        bracket_shares="equal")
    assert [judged(two, 1, 27, n) for n in (1, 2, 3)] == [True, False, True]
    assert judged(ASHA, 1, 27, 2)  # one bracket (the default): every trial from rung 1


def test_hyperband_shares_and_the_trials_that_follow_them() -> None:
    """Synchronous Hyperband's configurations per bracket (81, 33.75, 15, 7.5, 5 for four
    rungs at eta 3); consecutive trial numbers fall into brackets in those shares."""
    raw = [81, 33.75, 15, 7.5, 5]
    assert hyperband_shares(5, 3) == pytest.approx([r / sum(raw) for r in raw])
    rule = EarlyStopping(type="asha", min_epochs=1, reduction_factor=3, brackets=100,
                         bracket_shares="hyperband")
    fixed = shares(rule, 50)  # rungs 1, 3, 9, 27
    assert fixed == pytest.approx(hyperband_shares(5, 3))
    counts = [0] * 5
    for number in range(1, 1001):
        counts[bracket_of(number, fixed)] += 1
    assert counts == pytest.approx([1000 * f for f in fixed], abs=3)
    # Fewer brackets than rungs: the first ones' shares, renormalised; none is never stopped.
    two = EarlyStopping(type="asha", min_epochs=1, reduction_factor=3, brackets=2,
                        bracket_shares="hyperband")
    assert shares(two, 50) == pytest.approx([81 / 114.75, 33.75 / 114.75])
    assert [judged(two, 27, 50, n) for n in range(1, 30)] == [True] * 29  # no bracket past 27


def test_survival_counts_the_top_trials_a_rung_would_keep() -> None:
    """Of the top third by final reward, how many are also in the top third at the rung
    (Laplace prior): all of them where early results rank finals, none where inverted."""
    ranked = [(x / 10, x / 10) for x in range(9)]
    inverted = [(-x / 10, x / 10) for x in range(9)]
    assert survival(ranked, 3) == pytest.approx((3 + 1) / (3 + 2))
    assert survival(inverted, 3) == pytest.approx(1 / 5)
    assert survival(ranked[:5], 3) is None  # fewer than 2 * eta pairs
    # A top trial with no result at the rung (a diverged epoch) is not kept.
    assert survival([(None, 0.9)] + ranked[:8], 3) == pytest.approx((2 + 1) / (3 + 2))


def test_adaptive_shares_move_off_rungs_that_rank_finals_badly() -> None:
    """Without curves, Hyperband's shares; where epoch 1 ranks the final results inverted
    but later rungs rank them well, the first bracket loses most of its share."""
    rule = EarlyStopping(type="asha", min_epochs=1, reduction_factor=3, brackets=100)
    assert rule.bracket_shares == "adaptive"
    assert shares(rule, 50) == pytest.approx(hyperband_shares(5, 3))
    ranked = [(x / 10, x / 10) for x in range(12)]
    inverted = [(-x / 10, x / 10) for x in range(12)]
    good = shares(rule, 50, [ranked] * 4)
    bad_start = shares(rule, 50, [inverted] + [ranked] * 3)
    assert good[0] > 0.4 and bad_start[0] < good[0] / 2
    assert bad_start[1] > good[1] and bad_start[4] > good[4]
    assert sum(bad_start) == pytest.approx(1.0)


def test_the_store_judges_a_trial_in_its_bracket(store: Store, stopping_search) -> None:
    rule = EarlyStopping(type="asha", min_epochs=1, reduction_factor=2, brackets=2,
                         bracket_shares="equal")
    search = stopping_search(store, "default/brackets", rule, 9)
    store.enqueue_trials(search.id, _proposals(3))
    first, second, third = (store.claim(search.id, "w", 30) for _ in range(3))
    assert (first.number, second.number, third.number) == (1, 2, 3)
    assert store.report_step(first.id, first.attempt, 1, 0.9, {}) == GO
    # Trial 2 is in the second bracket: not judged at rung 1, however bad...
    assert store.report_step(second.id, second.attempt, 1, 0.1, {}) == GO
    # ...but judged at rung 2, where trial 1 leads; trial 3 is judged from rung 1.
    store.report_step(first.id, first.attempt, 2, 0.9, {})
    assert store.report_step(second.id, second.attempt, 2, 0.2, {}) == STOP
    assert store.report_step(third.id, third.attempt, 1, 0.05, {}) == STOP
