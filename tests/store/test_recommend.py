"""Recommendation under noise (``ma2ml.store.recommend``): the best estimated mean, not the
luckiest draw; the observation itself when the results show no noise; the noise level
learnt from the results; the same answer from trials of a real store."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ma2ml.store import Store
from ma2ml.store.recommend import (
    MAX_OBSERVATIONS,
    action_row,
    estimate,
    recommend,
    recommend_trials,
)

GRID = [list(r) for r in itertools.product(range(4), repeat=3)]


def additive(row) -> float:
    """Best at (3, 3, 3); each decision adds its own share."""
    return 0.5 + 0.04 * row[0] + 0.02 * row[1] + 0.03 * row[2]


def test_a_lucky_single_draw_does_not_beat_a_replicated_better_mean() -> None:
    """Noise as large as the gaps between pipelines (the case the rule is for)."""
    rng = np.random.default_rng(0)
    rows = [r for r in GRID if r not in ([3, 3, 3], [0, 0, 1])]
    rewards = [0.6 + 0.4 * (additive(r) - 0.5) + rng.normal(0, 0.05) for r in rows]
    # The best pipeline twenty times (mean 0.75), a poor one drawn once at 0.85.
    rows += [[3, 3, 3]] * 20 + [[0, 0, 1]]
    rewards += list(0.75 + 0.05 * np.array([1, -1] * 10)) + [0.85]
    assert rows[int(np.argmax(rewards))] == [0, 0, 1]  # the best observation: the lucky one
    best, *rest = estimate(rows, rewards)
    assert best.row == (3, 3, 3) and best.evaluations == 20
    assert best.mean == pytest.approx(0.75, abs=0.03)
    lucky = next(e for e in rest if e.row == (0, 0, 1))
    assert lucky.mean < best.mean < lucky.observed == 0.85  # shrunk toward the search
    assert lucky.stderr > best.stderr > 0  # one draw is less certain than twenty
    assert best.noise == pytest.approx(0.05, rel=0.05)  # from the repeats


def test_the_noise_level_is_learnt_without_any_repeat() -> None:
    """No repeats: the order of single draws stands, the noise is learnt from how much
    neighbours disagree, and the best draw's luck is taken off its estimate."""
    rng = np.random.default_rng(1)
    rewards = [additive(r) + rng.normal(0, 0.05) for r in GRID]
    best = recommend(GRID, rewards)
    assert list(best.row) == GRID[int(np.argmax(rewards))] and best.evaluations == 1
    assert best.noise == pytest.approx(0.05, rel=0.4)
    assert best.mean < best.observed - 0.01
    assert best.stderr == pytest.approx(best.noise, rel=0.5)


def test_without_noise_the_best_observation_is_the_answer() -> None:
    rewards = [additive(r) for r in GRID]
    best = recommend(GRID, rewards)
    assert best.row == (3, 3, 3)
    assert best.mean == pytest.approx(best.observed, abs=0.002)
    assert best.noise < 0.01


def test_too_little_to_estimate_from_is_the_best_observation_and_says_so() -> None:
    best = recommend([[0, 1], [1, 1], [1, 0]], [0.5, 0.7, 0.6])
    assert best.row == (1, 1) and best.stderr is None and not best.denoised
    assert "not de-noised" in best.describe()
    assert best.as_dict()["basis"] == "best observation (not de-noised)"
    assert recommend([], []) is None
    with pytest.raises(ValueError, match="finite"):
        estimate([[0], [1], [2]], [0.1, float("nan"), 0.3])


def test_a_large_search_is_bounded_and_keeps_every_result_of_its_candidates() -> None:
    rng = np.random.default_rng(2)
    rows = [list(rng.integers(0, 6, 5)) for _ in range(3 * MAX_OBSERVATIONS)]
    rewards = list(rng.normal(0, 1, len(rows)))
    rows += [[5, 5, 5, 5, 5]] * 3
    rewards += [5.0, 4.0, -1.0]  # one of its results is far down the ranking
    best = recommend(rows, rewards)
    assert best.row == (5, 5, 5, 5, 5) and best.evaluations == 3
    assert best.observed == pytest.approx(8 / 3)


def test_trials_of_a_real_store(store: Store) -> None:
    """Trials claimed and completed through the store's API; the trial shown is the
    recommended pipeline's best-rewarded one."""
    from ma2ml.store import TrialProposal

    record = store.create_search("default/toy", {})
    rng = np.random.default_rng(3)
    grid = [[w, d, lr] for w in range(3) for d in range(3) for lr in range(4)]
    plan = grid + [[2, 1, 1]] * 3
    store.enqueue_trials(record.id, [TrialProposal({}, {"nas": r[:2], "hpo": r[2:]}, {}, 0)
                                     for r in plan])
    for _ in plan:
        trial = store.claim(record.id, "test", 30)
        row = [*trial.action["nas"], *trial.action["hpo"]]
        reward = 1 - 0.1 * abs(row[0] - 2) - 0.1 * abs(row[1] - 1) - 0.05 * abs(row[2] - 1)
        store.complete(trial.id, trial.attempt, reward + rng.normal(0, 0.02), {})
    trials = store.list_trials(record.id, status="completed")
    best, trial = recommend_trials(trials)
    assert action_row(trial.action) == best.row
    assert best.row == action_row({"hpo": [1], "nas": [2, 1]})  # agents in name order
    assert best.evaluations == 4 and best.denoised  # once in the grid, three repeats
    assert trial.reward == max(t.reward for t in trials if t.action == trial.action)
