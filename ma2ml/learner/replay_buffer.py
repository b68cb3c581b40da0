"""The replay buffer: every finished trial of a search, as the algorithms see it.

The algorithms see a replay through the ``Replay`` protocol only, so the
matrix-game tests and the benchmark use ``InMemoryReplay`` while the learner
loop plugs in a view of the store (``loop.StoreReplay``). Both draw the same
way (uniformly, without replacement), so the benchmark and the tests sample
as a real search does. Rewards held here are raw (after failure
substitution); the normalisers of ``ma2ml.learner.normalisers`` map them to
per-search scores.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]


class Replay(Protocol):
    """Every finished trial of one search: (joint action row, raw reward, fidelity).

    Fidelity is the share of ``trialEpochs`` a result was trained for: 1 for a full
    result, less for a trial stopped early (the critic takes it as an input).
    """

    def add(self, actions: np.ndarray, rewards: np.ndarray,
            fidelities: np.ndarray | None = None) -> None:
        """Record fresh results: (n, n_decisions) int actions, (n,) rewards and (n,)
        fidelities (all 1 when None)."""

    def sample(self, n: int, rng: np.random.Generator) -> Sample:
        """``min(n, len(self))`` distinct stored results drawn uniformly without
        replacement (every one when ``n >= len(self)``), in no particular order; cost
        independent of the replay size."""

    def __len__(self) -> int: ...


class InMemoryReplay:
    """A growable pair of arrays; doubling keeps ``add`` amortised O(1)."""

    def __init__(self, n_decisions: int, capacity: int = 1024) -> None:
        self._actions = np.zeros((capacity, n_decisions), dtype=np.int64)
        self._rewards = np.zeros(capacity, dtype=np.float64)
        self._fidelities = np.ones(capacity, dtype=np.float64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, actions: np.ndarray, rewards: np.ndarray,
            fidelities: np.ndarray | None = None) -> None:
        n = len(rewards)
        while self._size + n > len(self._rewards):
            self._actions = np.concatenate([self._actions, np.zeros_like(self._actions)])
            self._rewards = np.concatenate([self._rewards, np.zeros_like(self._rewards)])
            self._fidelities = np.concatenate([self._fidelities, np.ones_like(self._fidelities)])
        self._actions[self._size:self._size + n] = actions
        self._rewards[self._size:self._size + n] = rewards
        self._fidelities[self._size:self._size + n] = 1.0 if fidelities is None else fidelities
        self._size += n

    def sample(self, n: int, rng: np.random.Generator) -> Sample:
        # Without replacement, as the store's ``replay_sample`` draws.
        if n > self._size:
            # Everything, in stored order: asking for more than there is leaves
            # nothing to draw, and the critic resamples a replay smaller than one
            # update's draws (batch_size * critic_steps, 1024 by default) itself.
            # Spending no random numbers here keeps such searches (every benchmark
            # run) exactly as they were when this buffer drew with replacement.
            size = self._size
            return (self._actions[:size].copy(), self._rewards[:size].copy(),
                    self._fidelities[:size].copy())
        index = rng.choice(self._size, size=max(n, 0), replace=False)
        return self._actions[index], self._rewards[index], self._fidelities[index]
