"""Recommendation under noise: which evaluated pipeline a search calls "best".

Real training is noisy: two seeds of one pipeline differ by about as much as
good pipelines differ from each other, so the trial with the highest reward
is often a lucky draw (the winner's curse). What ``ma2ml best``, ``ma2ml
status``, the report and the benchmark call best comes from here: the
evaluated pipeline with the best ESTIMATED MEAN reward, with its standard
error and the estimated noise of one evaluation.

The estimate (normal-normal shrinkage, as in empirical Bayes): a pipeline
evaluated n times with mean reward y, in a search whose pipelines' observed
means have mean m and variance V, gets

    mean = w y + (1 - w) m,   w = n tau^2 / (n tau^2 + sigma^2),
    stderr = sqrt(w sigma^2 / n),   tau^2 = V - sigma^2 mean(1 / n),

with sigma^2 the variance of one evaluation and tau^2 the spread of the
pipelines' true means. A pipeline evaluated ten times
is trusted on its mean; one lucky draw is not, so a well-replicated better
mean beats it. sigma^2 comes from the repeats when they give
``MIN_REPEAT_DOF`` degrees of freedom (the only place noise shows apart from
everything else), else from a Gaussian process fitted to the results
(kernel exp(-gamma h), h the share of decisions two pipelines do not share;
gamma and sigma^2 by marginal likelihood over ``GAMMAS`` x ``NOISE_RATIOS``),
whose noise term is what neighbouring pipelines do not explain. Noise-free
results give sigma^2 near 0 and the answer is the best observation.

Why the ranking does not use neighbours. Shrinking each pipeline toward what
similar pipelines showed (the GP's posterior mean, a ridge model of the
decisions' main effects, or the learner's critic) was measured on the noisy
tables of ``benchmarks/search_efficiency.py`` (tuning seeds 100-109, ma2ml,
200 evaluations): on NAS-Bench-201 CIFAR-100 the GP's choice had a mean
regret of 0.27 points against 0.15 for the best observation; the main-effects
model helped there but doubled the regret on CIFAR-10 and FCNet; the critic
reproduces the results it was fitted on and changed nothing. The optimum of
a real space is a sharp peak, and neighbours pull it down. So neighbours give
the noise level, repeats give the ranking: without repeats the pipelines
evaluated once keep their observed order, and the estimate shown for the
best of them is shrunk with its uncertainty. Re-evaluating the best
candidates is what makes the answer more reliable.

With fewer than ``MIN_PIPELINES`` distinct pipelines evaluated there is too
little to learn a noise level from: the answer is the best observation,
labelled "not de-noised". Bounds: the best ``MAX_OBSERVATIONS`` results by
observed reward enter, with the other results of their pipelines (twice as
many at most; one n x n eigendecomposition per gamma). Rewards are
maximised. It needs only stored results (numpy, no torch), so every command
and every algorithm (TPE and random search too) get the same answer; it
lives with the store for that reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ma2ml.visible import decimals

#: Grid of the kernel's decay with the share of differing decisions.
GAMMAS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: Grid of noise variance / signal variance.
NOISE_RATIOS = (1e-3, 0.01, 0.03, 0.1, 0.3, 1.0)
#: Most results that enter the estimate (the best by observed reward).
MAX_OBSERVATIONS = 512
#: Fewest distinct pipelines to learn a noise level from; below, the best observation.
MIN_PIPELINES = 8
#: Degrees of freedom of repeated evaluations needed to take the noise from them.
MIN_REPEAT_DOF = 3
#: Floor of tau^2 as a share of the results' variance (no prior is exact).
MIN_PRIOR_SHARE = 0.05


@dataclass(frozen=True)
class Estimate:
    """A pipeline's estimated mean reward and how it was reached."""

    row: tuple[int, ...]  # the joint action, decision indices in a fixed order
    mean: float  # estimated mean reward
    stderr: float | None  # its standard error (None: nothing to estimate it from)
    observed: float  # mean of its observed rewards
    evaluations: int
    noise: float | None  # estimated standard deviation of one evaluation

    @property
    def denoised(self) -> bool:
        return self.stderr is not None

    @property
    def basis(self) -> str:
        """What ``mean`` is: a de-noised estimate, one observation, or a mean of several."""
        if self.denoised:
            return "estimated mean (de-noised)"
        return f"{self._observed()} (not de-noised)"

    def _observed(self) -> str:
        if self.evaluations == 1:
            return "best observation"
        return f"best observed mean of {self.evaluations} evaluations"

    def as_dict(self) -> dict[str, Any]:
        return {"estimate": self.mean, "stderr": self.stderr, "observed": self.observed,
                "evaluations": self.evaluations, "noise": self.noise, "basis": self.basis}

    def describe(self) -> str:
        """One line for people: the estimate with its uncertainty, or why there is none."""
        if not self.denoised:
            noun = "reward" if self.evaluations == 1 else "mean reward"
            return f"{noun} {decimals(self.observed)} ({self._observed()}, not de-noised)"
        assert self.stderr is not None and self.noise is not None
        times = "once" if self.evaluations == 1 else f"{self.evaluations} times"
        return (f"estimated reward {decimals(self.mean)} ± {decimals(self.stderr)} (observed "
                f"{decimals(self.observed)}, evaluated {times}; noise sd of one evaluation "
                f"≈ {decimals(self.noise)})")


def gp_noise(x: np.ndarray, y: np.ndarray) -> float:
    """Noise variance of one evaluation: the marginal-likelihood-best grid point of a GP
    on the share of differing decisions (s^2 profiled out). One eigendecomposition per
    gamma serves every noise ratio: K + rI has K's eigenvectors, eigenvalues + r."""
    y = y - y.mean()
    share = (x[:, None, :] != x[None, :, :]).mean(-1)  # (n, n)
    best = (-math.inf, 0.0)
    for gamma in GAMMAS:
        eigenvalues, vectors = np.linalg.eigh(np.exp(-gamma * share))
        eigenvalues = np.clip(eigenvalues, 0.0, None)
        projected = vectors.T @ y
        for ratio in NOISE_RATIOS:
            s2 = max(float((projected ** 2 / (eigenvalues + ratio)).sum()) / len(y), 1e-300)
            loglik = -0.5 * (len(y) * math.log(s2) + float(np.log(eigenvalues + ratio).sum()))
            if loglik > best[0]:
                best = (loglik, s2 * ratio)
    return best[1]


def unit(values: np.ndarray) -> float:
    """A power of two near the largest ``|value|``: rewards divided by it lie in [-2, 2], so
    no sum, difference or square overflows (rewards of +-1e308 are finite, and accepted),
    and dividing and multiplying back are exact, so ordinary rewards give the same bits."""
    largest = float(np.abs(values).max()) if values.size else 0.0
    return math.ldexp(1.0, math.frexp(largest)[1] - 1)


def estimate(rows: Sequence[Sequence[int]], rewards: Sequence[float]) -> list[Estimate]:
    """Estimates of every evaluated pipeline, best estimated mean first.

    ``rows``: the joint action of every evaluation (a pipeline may repeat), all of
    one length; ``rewards``: what each evaluation observed (finite, maximised).
    Every number returned is finite; each mean lies within the observed rewards and
    each standard deviation within half their range, whatever their magnitude.
    """
    if not rows:
        return []
    x = np.asarray(rows, dtype=np.int64)
    raw = np.asarray(rewards, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(raw) or not np.isfinite(raw).all():
        raise ValueError("rows and rewards: one finite reward per row, rows of one length")
    scale = unit(raw)
    y = raw / scale  # in [-2, 2]: everything below is computed in these units
    keys, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    observed = np.bincount(inverse, weights=y) / counts
    if len(keys) < MIN_PIPELINES or np.ptp(y) == 0:  # too little to learn a noise level
        order = np.argsort(-observed, kind="stable")
        return [Estimate(tuple(map(int, keys[i])), float(observed[i] * scale), None,
                         float(observed[i] * scale), int(counts[i]), None) for i in order]
    dof = int((counts - 1).sum())
    if dof >= MIN_REPEAT_DOF:
        noise = float(((y - observed[inverse]) ** 2).sum()) / dof
    else:
        noise = gp_noise(x, y)
    # Between pipelines (each counted once, however often evaluated): variance of their
    # observed means = tau^2 + the noise left in those means.
    spread = float(observed.var())
    tau2 = max(spread - noise * float(np.mean(1.0 / counts)), MIN_PRIOR_SHARE * spread)
    weight = counts * tau2 / (counts * tau2 + noise)
    # A weighted mean of observed means stays within them; rounding must not leave them.
    mean = np.clip(weight * observed + (1 - weight) * float(observed.mean()), y.min(), y.max())
    # No standard deviation of values within a range exceeds half of it (a sample's
    # estimate can, by its degrees of freedom); capped, it is finite in reward units too.
    half_range = float(y.max() - y.min()) / 2
    stderr = np.minimum(np.sqrt(weight * noise / counts), half_range)
    sd = min(math.sqrt(noise), half_range)
    return [Estimate(tuple(map(int, keys[i])), float(mean[i] * scale),
                     float(stderr[i] * scale), float(observed[i] * scale), int(counts[i]),
                     sd * scale)
            for i in np.argsort(-mean, kind="stable")]


def recommend(rows: Sequence[Sequence[int]], rewards: Sequence[float]) -> Estimate | None:
    """The evaluated pipeline with the best estimated mean (None: nothing evaluated)."""
    if len(rows) > MAX_OBSERVATIONS:
        # The best results, and every other result of their pipelines (at most as many
        # again), so that a pipeline's estimate sees all of its evaluations.
        top = np.argsort(-np.asarray(rewards, dtype=np.float64), kind="stable")
        kept = {tuple(rows[i]) for i in top[:MAX_OBSERVATIONS]}
        chosen = [i for i in top if tuple(rows[i]) in kept][:2 * MAX_OBSERVATIONS]
        rows, rewards = [rows[i] for i in chosen], [rewards[i] for i in chosen]
    estimates = estimate(rows, rewards)
    return estimates[0] if estimates else None


def action_row(action: dict[str, Sequence[int]]) -> tuple[int, ...]:
    """A stored joint action as one row, agents in name order (stores may reorder keys)."""
    return tuple(int(v) for agent in sorted(action) for v in action[agent])


def recommend_trials(trials: Sequence[Any]) -> tuple[Estimate, Any] | None:
    """The recommendation among completed trials (anything with ``action`` and a finite
    ``reward``) and the trial to show for it: its pipeline's best-rewarded trial."""
    usable = [t for t in trials if t.reward is not None and math.isfinite(t.reward)]
    rows = [action_row(t.action) for t in usable]
    best = recommend(rows, [t.reward for t in usable])
    if best is None:
        return None
    of_best = [t for t, row in zip(usable, rows, strict=True) if row == best.row]
    return best, max(of_best, key=lambda t: t.reward)
