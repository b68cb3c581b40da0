"""The random-search baseline: expected best of n random pipelines, from the uniform draws.

Pure arithmetic on known distributions; the store-backed part (which trials are
uniform draws) is in tests/local/test_results.py.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from ma2ml.results.baseline import expected_best_of_n


def test_best_of_n_within_the_draws_is_the_mean_best_of_every_subset() -> None:
    rewards = [0.61, 0.2, 0.55, 0.9, 0.3, 0.72]
    for n in range(1, len(rewards) + 1):
        (estimate,) = expected_best_of_n(rewards, [n])
        exact = statistics.fmean(max(c) for c in itertools.combinations(rewards, n))
        assert math.isclose(estimate.expected, exact, abs_tol=1e-9), n
        assert not estimate.extrapolated and estimate.draws == len(rewards)
        assert estimate.low <= estimate.expected + 1e-9 or n == 1
    one, every = expected_best_of_n(rewards, [1, len(rewards)])
    assert math.isclose(one.expected, statistics.fmean(rewards))
    assert math.isclose(every.expected, max(rewards))


def test_best_of_n_tracks_a_known_distribution_with_an_honest_interval() -> None:
    # Uniform(0, 1) rewards: E[best of n] = n / (n + 1).
    rng = random.Random(3)
    rewards = [rng.random() for _ in range(400)]
    for estimate in expected_best_of_n(rewards, [1, 5, 20, 60]):
        truth = estimate.n / (estimate.n + 1)
        assert abs(estimate.expected - truth) < 0.04, estimate
        assert estimate.low <= truth <= estimate.high, estimate
        assert estimate.high - estimate.low < 0.15


def test_beyond_the_draws_it_is_a_lower_bound_and_says_so() -> None:
    rewards = [0.5, 0.6, 0.7]
    near, far = expected_best_of_n(rewards, [3, 50])
    assert far.extrapolated and not near.extrapolated
    # E[best of 50] >= E[best of 3], estimated by the best of the 3 draws: never less.
    assert far.expected == near.expected == max(rewards)
    assert (far.low, far.high) == (near.low, near.high)
    assert "at least 0.7000" in far.describe() and "lower bound" in far.describe()
    assert "only 3 pipelines this search drew uniformly" in far.describe()
    assert "estimated from 3 pipelines" in near.describe()
    assert expected_best_of_n([], [5]) == []
    with pytest.raises(ValueError, match="ns"):
        expected_best_of_n(rewards, [0])
