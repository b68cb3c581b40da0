"""The random-search baseline: the expected best reward of n pipelines drawn at random.

A search's first trials, proposed while every policy is still uniform
(``summary.was_uniform``), are pipelines sampled uniformly at random. From
their m rewards this module estimates what random search would have found
with n trials, E[best of n draws], so that a search's best of n is compared
with random search's best of n: not with the mean of random pipelines, and
not with the best of the m draws.

* n <= m: the unbiased estimate (a U-statistic), the mean over every n-subset
  of the m rewards of its best: sum_i x_(i) C(i-1, n-1) / C(m, n) over the
  rewards sorted ascending. At n = m it is the best of the m draws.
* n > m: it cannot be estimated from m draws, only bounded: random search's
  best of n is at least its best of m, so the estimate for m is given as a
  lower bound (``BestOfN.extrapolated``; every label says "at least"). The
  plug-in estimate (n draws with replacement from the m rewards) is not used:
  it is always below the best of the m draws, too low to be fair.

Where the search has proposed at least as many trials after learning as it
drew uniformly, ``latest_against_random`` compares like with like: its latest
k learned proposals against k random pipelines (best and mean), k <= m, so
no extrapolation is involved.

The uncertainty is a basic bootstrap interval over the m rewards (seeded, so
a report is the same every time it is written). The basic interval (2 x the
estimate - the resamples' quantiles) may reach past what the metric can be:
it is cut to ``bounds`` when the caller knows them (an accuracy lies in
[0, 1]) and is always finite. Rewards are worked on in units of a power of two
near the largest (``recommend.unit``): rewards of +-1e308 are finite, and
their sums are not. From one draw there is no interval to give, and the
sentence says so.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ma2ml.store.recommend import unit
from ma2ml.visible import decimals

#: Most uniform draws the estimate uses (a seeded sample of them beyond): bounds the work
#: when a whole search was random (``algorithm: random``: every trial is a uniform draw).
MAX_DRAWS = 500
#: Bootstrap resamples behind each interval.
RESAMPLES = 400
#: Coverage of the interval.
LEVEL = 0.9


@dataclass(frozen=True)
class BestOfN:
    """Random search's expected best reward in ``n`` trials, with a bootstrap interval,
    estimated from ``draws`` uniformly drawn pipelines."""

    n: int
    expected: float
    low: float
    high: float
    draws: int

    @property
    def extrapolated(self) -> bool:
        """More trials than draws: the numbers are those of ``draws`` trials, a lower bound."""
        return self.n > self.draws

    def describe(self) -> str:
        """One honest sentence: what is estimated, from what, and how far to trust it."""
        pipelines = _count(self.n, "random pipeline")
        source = (f"{_count(self.draws, 'pipeline')} this search drew uniformly at random "
                  f"before its policies learned")
        if self.draws == 1:
            # One draw: its reward is all there is, with no spread to give an interval.
            value = (f"the reward of the 1 pipeline this search drew uniformly at random "
                     f"before its policies learned, {decimals(self.expected)} (one draw: no "
                     f"interval")
            if not self.extrapolated:
                return f"expected best of {pipelines}: {value})"
            return f"expected best of {pipelines}: at least {value}, and only a lower bound)"
        values = (f"{decimals(self.expected)} [{decimals(self.low)}, {decimals(self.high)}] "
                  f"({LEVEL:.0%} bootstrap interval)")
        if not self.extrapolated:
            return f"expected best of {pipelines} {values}, estimated from {source}"
        return (f"expected best of {pipelines}: at least {values}, the expected best of "
                f"{self.draws}; only {source}, so beyond {self.draws} it is a lower bound, "
                f"not an estimate")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _weights(m: int, n: int) -> np.ndarray:
    """Weight of each of ``m`` sorted rewards (ascending) in E[best of n], n <= m:
    C(i-1, n-1) / C(m, n) for i = n..m, through log-gamma (no huge integers)."""
    log_total = math.lgamma(m + 1) - math.lgamma(n + 1) - math.lgamma(m - n + 1)
    return np.asarray([0.0] * (n - 1) + [
        math.exp(math.lgamma(i) - math.lgamma(n) - math.lgamma(i - n + 1) - log_total)
        for i in range(n, m + 1)])


def expected_best_of_n(rewards: Sequence[float], ns: Sequence[int], *, seed: int = 0,
                       resamples: int = RESAMPLES, level: float = LEVEL,
                       bounds: tuple[float, float] | None = None) -> list[BestOfN]:
    """``BestOfN`` for each n of ``ns`` (each >= 1) from the uniform draws' ``rewards``;
    empty when there are none. ``bounds``: the least and most a reward can be, which the
    interval never passes (None: only finite)."""
    values = [float(r) for r in rewards if r is not None and math.isfinite(r)]
    if not values or not ns:
        return []
    if any(n < 1 for n in ns):
        raise ValueError(f"ns: every n must be >= 1, got {min(ns)}")
    rng = random.Random(seed)
    if len(values) > MAX_DRAWS:
        values = rng.sample(values, MAX_DRAWS)
    m = len(values)
    raw = np.asarray(values)
    scale = unit(raw)
    draws = raw / scale  # in [-2, 2]: the bootstrap's differences stay finite
    # Beyond m: the numbers of m (a lower bound, see the module docstring).
    weights = np.stack([_weights(m, min(n, m)) for n in ns], axis=1)  # (m, len(ns))
    point = np.sort(draws) @ weights  # (len(ns),)
    boot = np.random.default_rng(seed).choice(draws, size=(resamples, m))
    spread = np.sort(boot, axis=1) @ weights  # (resamples, len(ns))
    tail = (1.0 - level) / 2 * 100
    # The basic bootstrap (2 x estimate - quantiles): near n = m the estimate is the best
    # draw, which no resample exceeds, so the plain percentiles would never allow random
    # search to do better than its luckiest draw so far.
    q_low, q_high = np.percentile(spread, [tail, 100 - tail], axis=0)
    least, most = bounds if bounds is not None else (-sys.float_info.max, sys.float_info.max)
    low = np.clip(2 * point - q_high, least / scale, most / scale)
    high = np.clip(2 * point - q_low, least / scale, most / scale)
    return [BestOfN(n, float(e * scale), float(lo * scale), float(hi * scale), m)
            for n, e, lo, hi in zip(ns, point, low, high, strict=True)]


def latest_against_random(latest: Sequence[float], random_rewards: Sequence[float], *,
                          bounds: tuple[float, float] | None = None) -> str | None:
    """The best and mean reward of the ``latest`` k learned proposals against random
    search's expected best of k (and the mean) from the uniform draws; None without both."""
    if not latest or not random_rewards:
        return None
    k = len(latest)
    (random_best,) = expected_best_of_n(random_rewards, [min(k, len(random_rewards))],
                                        bounds=bounds)
    s = "s" if k > 1 else ""
    return (f"the latest {k} trial{s} the learned policies proposed: best "
            f"{decimals(max(latest))}, mean {decimals(_mean(latest))}; {k} random "
            f"pipeline{s}: expected best {decimals(random_best.expected)} "
            f"[{decimals(random_best.low)}, {decimals(random_best.high)}], mean "
            f"{decimals(_mean(random_rewards))} (from {_count(random_best.draws, 'uniform draw')})")


def _mean(values: Sequence[float]) -> float:
    """The mean of finite ``values``, finite however large they are (fmean of 1e308s is inf)."""
    scale = unit(np.asarray(values, dtype=np.float64))
    return statistics.fmean(v / scale for v in values) * scale
