"""The random-search baseline: expected best of n random pipelines, from the uniform draws.

Pure arithmetic on known distributions; the store-backed part (which trials are
uniform draws) is in test_results.py.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from ma2ml.local.baseline import expected_best_of_n


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


def test_beyond_the_draws_it_is_flagged_and_never_above_their_best() -> None:
    rewards = [0.5, 0.6, 0.7]
    (far,) = expected_best_of_n(rewards, [50])
    assert far.extrapolated and far.expected <= max(rewards)
    assert "extrapolated" in far.describe() and "too low" in far.describe()
    assert "from 3 pipelines drawn uniformly" in far.describe()
    assert expected_best_of_n([], [5]) == []
    with pytest.raises(ValueError, match="ns"):
        expected_best_of_n(rewards, [0])
