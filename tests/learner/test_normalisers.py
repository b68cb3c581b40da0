"""The reward normalisers the critic is fitted on: rank (normal scores), standard score, and
upper-linear (ranks below the median, distances above it)."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from ma2ml.learner.normalisers import (
    UPPER_QUARTILE_Z,
    RankNormaliser,
    RewardNormaliser,
    UpperLinearNormaliser,
    make_normaliser,
)


def exact_normal_scores(seen: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """The definition, written plainly: mid-rank among `seen`, shrunk into (0, 1)."""
    n = len(seen)
    out = []
    for r in rewards:
        below, equal = (seen < r).sum(), (seen == r).sum()
        out.append(NormalDist().inv_cdf((below + equal / 2 + 0.5) / (n + 1)))
    return np.array(out)


def test_rank_scores_match_the_definition_with_ties() -> None:
    rng = np.random.default_rng(0)
    seen = rng.integers(0, 20, size=300).astype(float)  # many ties
    normaliser = RankNormaliser()
    normaliser.update(seen[:100])
    normaliser.update(seen[100:])
    probe = np.array([-5.0, 0.0, 3.0, 7.5, 19.0, 40.0])
    np.testing.assert_allclose(normaliser(probe), exact_normal_scores(seen, probe), atol=1e-9)


def test_rank_scores_ignore_monotone_changes_and_outliers() -> None:
    """A log, a scale or one catastrophic failure leaves the scores of the rest unchanged."""
    rewards = np.random.default_rng(1).uniform(0.8, 0.9, size=200)
    plain, logged = RankNormaliser(), RankNormaliser()
    plain.update(rewards)
    logged.update(np.log(rewards) * 1000)
    np.testing.assert_allclose(plain(rewards), logged(np.log(rewards) * 1000), atol=1e-12)
    with_outlier = RankNormaliser()
    with_outlier.update(np.concatenate([rewards, [-1e9]]))
    top = np.sort(rewards)[-5:]
    # The best trials stay well apart (a standard score squeezes them to ~0 difference).
    assert np.diff(with_outlier(top)).min() > 0.05
    zscore = RewardNormaliser()
    zscore.update(np.concatenate([rewards, [-1e9]]))
    assert np.diff(zscore(top)).max() < 1e-6
    assert np.isfinite(with_outlier(np.array([-1e9, 1e9]))).all()


def test_compaction_bounds_memory_and_keeps_ranks_close() -> None:
    rng = np.random.default_rng(2)
    seen = rng.normal(size=20_000)
    normaliser = RankNormaliser(capacity=512)
    for chunk in np.split(seen, 200):
        normaliser.update(chunk)
    assert len(normaliser.values) <= 512
    assert normaliser.count == pytest.approx(20_000)
    probe = np.quantile(seen, [0.01, 0.1, 0.5, 0.9, 0.99])
    exact = np.array([NormalDist().cdf(z) for z in exact_normal_scores(seen, probe)])
    approx = np.array([NormalDist().cdf(z) for z in normaliser(probe)])
    np.testing.assert_allclose(approx, exact, atol=2 / 512)


@pytest.mark.parametrize("kind", ["rank", "zscore", "upper-linear"])
def test_state_round_trip_and_few_rewards(kind: str) -> None:
    normaliser = make_normaliser(kind)
    assert np.isfinite(normaliser(np.array([0.5]))).all(), "no rewards yet: finite scores"
    normaliser.update(np.array([0.1, 0.4, 0.4, 0.9]))
    restored = make_normaliser(kind)
    restored.load_state_dict(normaliser.state_dict())
    probe = np.array([0.0, 0.4, 1.0])
    np.testing.assert_array_equal(restored(probe), normaliser(probe))
    assert (np.diff(normaliser(probe)) > 0).all()


def test_upper_linear_keeps_the_top_margins_and_bounds_the_failures() -> None:
    """Above the median, distances are kept (a runaway best stays far ahead, which ranks
    hide); below it, ranks (a catastrophic failure stays bounded); both meet at 0."""
    rng = np.random.default_rng(3)
    rewards = np.concatenate([rng.normal(0.8, 0.01, 200), [0.95, -1e9]])
    upper, rank = UpperLinearNormaliser(), RankNormaliser()
    upper.update(rewards)
    rank.update(rewards)
    median, q75 = np.quantile(rewards, [0.5, 0.75])
    scale = (q75 - median) / UPPER_QUARTILE_Z
    scores = upper(np.array([0.95, 0.83, median, 0.77, -1e9]))
    assert scores[0] == pytest.approx((0.95 - median) / scale, rel=0.02)
    assert scores[0] > 10  # the runaway best: ~15 of the top's spreads ahead
    assert rank(np.array([0.95]))[0] < 3  # ranks alone put it next to the runner-up
    assert scores[2] == pytest.approx(0.0, abs=0.05)
    np.testing.assert_allclose(scores[3:], rank(np.array([0.77, -1e9])))
    assert (np.diff(scores) < 0).all()
    tied = UpperLinearNormaliser()  # half the rewards equal: ranks, no division by zero
    tied.update(np.array([0.5] * 10 + [0.6, 0.7]))
    assert np.isfinite(tied(np.array([0.5, 0.7, 2.0]))).all()
