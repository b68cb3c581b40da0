"""Recommendation under noise: which evaluated pipeline a search calls "best".

Real training is noisy: two seeds of one pipeline differ by about as much as
good pipelines differ from each other, so the trial with the highest reward
is mostly the luckiest draw (the winner's curse). A search's answer is the
evaluated pipeline with the best ESTIMATED MEAN reward, with its standard
error; ``ma2ml best``, ``ma2ml status``, the report and the benchmark all take
it from here.

The estimate: Gaussian-process regression of the rewards on the pipelines'
decisions, with a kernel on how many decisions two pipelines share,
k(a, b) = s^2 exp(-gamma h(a, b)), h the share of decisions that differ, and
a noise variance sigma^2 per evaluation. The posterior mean at an evaluated
pipeline is its observations shrunk toward what pipelines like it showed: a
lucky draw among unremarkable neighbours is pulled down, a pipeline whose
neighbours agree keeps its value, and one evaluated many times is trusted on
its own mean. gamma and sigma^2 / s^2 are chosen by the marginal likelihood
over a grid (``GAMMAS`` x ``NOISE_RATIOS``; s^2 profiled out), so the noise
level is learnt from the results themselves: from repeats where a pipeline
was evaluated more than once, and from how much neighbours disagree
otherwise. When the rewards show no noise the smallest ratio wins and the
estimate is the observation (to 0.1 % of the reward spread).

Why not the learner's critic. It is regressed on the very results it would
judge, for many steps, and reproduces them: on the noisy tables of
``benchmarks/search_efficiency.py`` its predictions at the evaluated
pipelines were within the noise of the draws and ranked them as the draws
did, so shrinking toward it de-noised nothing. A GP's noise term is exactly
the part of a result its neighbours do not explain. It also needs only the
stored results (numpy, no torch), so every command, every algorithm (TPE and
random search too) and searches run before this rule get the same answer,
and it lives with the store.

Bounds: the best ``MAX_OBSERVATIONS`` results by observed reward enter, with
the other results of their pipelines (twice as many at most; the cost is
one n x n eigendecomposition per gamma). Rewards are maximised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Grid of the kernel's decay with the share of differing decisions.
GAMMAS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: Grid of noise variance / signal variance.
NOISE_RATIOS = (1e-3, 0.01, 0.03, 0.1, 0.3, 1.0)
#: Most results that enter the estimate (the best by observed reward).
MAX_OBSERVATIONS = 512


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

    def as_dict(self) -> dict[str, Any]:
        return {"estimate": self.mean, "stderr": self.stderr, "observed": self.observed,
                "evaluations": self.evaluations, "noise": self.noise,
                "basis": "estimated mean (de-noised)" if self.denoised
                else "best observation (not de-noised)"}

    def describe(self) -> str:
        """One line for people: the estimate with its uncertainty, or why there is none."""
        if not self.denoised:
            return f"reward {self.observed:.4f} (best observation, not de-noised)"
        times = "once" if self.evaluations == 1 else f"{self.evaluations} times"
        return (f"estimated reward {self.mean:.4f} ± {self.stderr:.4f} (observed "
                f"{self.observed:.4f}, evaluated {times}; noise sd of one evaluation "
                f"≈ {self.noise:.4f})")


def _posterior(x: np.ndarray, y: np.ndarray, first: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, float]:
    """Posterior mean and variance of centred rewards ``y`` at the rows ``first`` of
    ``x``, and the noise variance, under the marginal-likelihood-best grid point.

    One eigendecomposition per gamma serves every noise ratio: K + rI has K's
    eigenvectors and eigenvalues shifted by r.
    """
    share = (x[:, None, :] != x[None, :, :]).mean(-1)  # (n, n) share of differing decisions
    best: tuple[float, np.ndarray, np.ndarray, np.ndarray, float, float] | None = None
    for gamma in GAMMAS:
        eigenvalues, vectors = np.linalg.eigh(np.exp(-gamma * share))
        eigenvalues = np.clip(eigenvalues, 0.0, None)
        projected = vectors.T @ y  # (n,)
        for ratio in NOISE_RATIOS:
            s2 = max(float((projected ** 2 / (eigenvalues + ratio)).sum()) / len(y), 1e-300)
            loglik = -0.5 * (len(y) * math.log(s2) + np.log(eigenvalues + ratio).sum())
            if best is None or loglik > best[0]:
                best = (loglik, eigenvalues, vectors, projected, s2, ratio)
    assert best is not None
    _, eigenvalues, vectors, projected, s2, ratio = best
    rows = vectors[first]  # (pipelines, n)
    mean = rows @ (eigenvalues / (eigenvalues + ratio) * projected)
    variance = s2 * (rows ** 2 @ (eigenvalues * ratio / (eigenvalues + ratio)))
    return mean, variance, s2 * ratio


def estimate(rows: Sequence[Sequence[int]], rewards: Sequence[float]) -> list[Estimate]:
    """Estimates of every evaluated pipeline, best estimated mean first.

    ``rows``: the joint action of every evaluation (a pipeline may repeat), all of
    one length; ``rewards``: what each evaluation observed (finite, maximised).
    """
    if not rows:
        return []
    x = np.asarray(rows, dtype=np.int64)
    y = np.asarray(rewards, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y) or not np.isfinite(y).all():
        raise ValueError("rows and rewards: one finite reward per row, rows of one length")
    keys, first, inverse, counts = np.unique(x, axis=0, return_index=True,
                                             return_inverse=True, return_counts=True)
    observed = np.bincount(inverse.reshape(-1), weights=y) / counts
    if len(keys) < 3 or np.ptp(y) == 0:  # nothing to learn a noise level from
        order = np.argsort(-observed, kind="stable")
        return [Estimate(tuple(map(int, keys[i])), float(observed[i]), None,
                         float(observed[i]), int(counts[i]), None) for i in order]
    centre = float(y.mean())
    mean, variance, noise = _posterior(x, y - centre, first)
    mean += centre
    return [Estimate(tuple(map(int, keys[i])), float(mean[i]),
                     math.sqrt(max(float(variance[i]), 0.0)), float(observed[i]),
                     int(counts[i]), math.sqrt(noise))
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
