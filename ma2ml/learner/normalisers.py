"""Per-search reward normalisation.

The replay holds raw rewards (after failure substitution); a normaliser maps
them to per-search scores before the critic and the REINFORCE baselines see
them: ``RankNormaliser`` (the default) to the normal quantile of their rank
among every reward of the search, ``RewardNormaliser`` to a standard score.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike


class RewardNormaliser:
    """Running mean and standard deviation (Welford) of every reward seen by a search."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, rewards: np.ndarray) -> None:
        for r in np.asarray(rewards, dtype=np.float64).tolist():  # Python floats: snapshots
            self.count += 1
            delta = r - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (r - self.mean)

    @property
    def std(self) -> float:
        if self.count < 2:
            return 1.0
        std = math.sqrt(self.m2 / (self.count - 1))
        return std if std > 1e-8 else 1.0  # equal rewards: nothing to scale

    def __call__(self, rewards: ArrayLike) -> np.ndarray:
        return (np.asarray(rewards, dtype=np.float64) - self.mean) / self.std

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), state["mean"], state["m2"]


class RankNormaliser:
    """Normal scores of ranks: r -> Phi^-1(F(r)), F the search's empirical reward CDF.

    Rewards of a search are skewed: a few failed or diverged configurations
    sit far below the rest, and the configurations worth telling apart are
    packed into the top percent. A standard score spends the critic's range
    on the outliers and leaves the best trials a fraction of a standard
    deviation apart, too little for the temperature to separate; the rank
    transform (a Gaussian copula, as in Salinas et al., 2020) is invariant to
    any monotone change of the metric, bounds the outliers and spreads the top
    evenly. Ties take their mid-rank. Memory is bounded: beyond ``capacity``
    distinct points the sorted sample is compacted to evenly spaced weighted
    quantiles, which keeps every rank within 1 / capacity of the exact one.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self.values = np.zeros(0)
        self.weights = np.zeros(0)

    @property
    def count(self) -> float:
        return float(self.weights.sum())

    def update(self, rewards: np.ndarray) -> None:
        rewards = np.asarray(rewards, dtype=np.float64)
        values = np.concatenate([self.values, rewards])
        weights = np.concatenate([self.weights, np.ones(len(rewards))])
        order = np.argsort(values, kind="stable")
        self.values, self.weights = values[order], weights[order]
        if len(self.values) > self.capacity:
            self._compact()

    def _compact(self) -> None:
        """Keep ``capacity // 2`` equally weighted points at evenly spaced quantiles."""
        keep = self.capacity // 2
        total = self.weights.sum()
        cumulative = np.cumsum(self.weights) - self.weights / 2
        targets = (np.arange(keep) + 0.5) * total / keep
        # Interpolating the quantile function (not picking the nearest point)
        # keeps repeated compactions from drifting the tails inward.
        self.values = np.interp(targets, cumulative, self.values)
        self.weights = np.full(keep, total / keep)

    def __call__(self, rewards: ArrayLike) -> np.ndarray:
        rewards = np.asarray(rewards, dtype=np.float64)
        total = self.count
        if total < 2:
            return np.zeros_like(rewards)
        cumulative = np.concatenate([[0.0], np.cumsum(self.weights)])
        below = cumulative[np.searchsorted(self.values, rewards, side="left")]
        up_to = cumulative[np.searchsorted(self.values, rewards, side="right")]
        # Mid-rank, shrunk into (0, 1) so the best and worst map to finite scores.
        quantile = ((below + up_to) / 2 + 0.5) / (total + 1)
        scores: np.ndarray = torch.special.ndtri(torch.as_tensor(quantile)).numpy()
        return scores

    def state_dict(self) -> dict[str, Any]:
        return {"values": self.values.tolist(), "weights": self.weights.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = np.asarray(state["values"], dtype=np.float64)
        self.weights = np.asarray(state["weights"], dtype=np.float64)


class UpperLinearNormaliser(RankNormaliser):
    """Normal scores of ranks below the median, a linear scale above it.

    What a search must tell apart is how much better its best results are;
    how much worse its failures are does not matter. Below the median this
    is the rank transform (outliers bounded); above it, rewards keep their
    distances: (r - median) / s, with s the upper quartile's distance from
    the median over that of a standard normal (0.6745), so both halves meet
    at 0 and agree at the upper quartile of normal rewards. A pipeline that
    beats the runner-up by a wide margin stays far above it, which ranks
    alone would hide.
    """

    def _quantile(self, q: float) -> float:
        cumulative = np.cumsum(self.weights) - self.weights / 2
        return float(np.interp(q * self.count, cumulative, self.values))

    def __call__(self, rewards: ArrayLike) -> np.ndarray:
        rewards = np.asarray(rewards, dtype=np.float64)
        ranked = super().__call__(rewards)
        if self.count < 2:
            return ranked
        median = self._quantile(0.5)
        scale = (self._quantile(0.75) - median) / UPPER_QUARTILE_Z
        if not scale > 1e-12:  # at least half the rewards tie: no spread to scale by
            return ranked
        return np.where(rewards > median, (rewards - median) / scale, ranked)


#: The standard normal's upper quartile.
UPPER_QUARTILE_Z = 0.6744897501960817


def make_normaliser(kind: str) -> RankNormaliser | RewardNormaliser:
    """The normaliser named by ``Settings.reward_transform``."""
    if kind == "upper-linear":
        return UpperLinearNormaliser()
    return RankNormaliser() if kind == "rank" else RewardNormaliser()
