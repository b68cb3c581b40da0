"""What every search algorithm shares: the ``Algorithm`` base class and its data.

An algorithm never touches the store. ``propose(n)`` samples joint actions
from the current policies (with their per-agent behaviour log-probabilities),
``observe(results)`` takes finished trials in, ``update()`` learns from them
and returns statistics, and ``state_dict()`` / ``load_state_dict()`` make a
snapshot (``to_bytes`` / ``from_bytes`` for the store). Same seed, same
calls: same proposals. Subclasses train the policies in ``_learn``; random
search (``random_search``) is the base class with nothing learned, and
``screening`` chooses which draws become proposals.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from ma2ml.learner.normalisers import make_normaliser
from ma2ml.learner.policy import JointPolicy, Layout
from ma2ml.learner.replay_buffer import InMemoryReplay, Replay
from ma2ml.learner.screening import pick_best_unseen
from ma2ml.settings import Settings
from ma2ml.spaces import SearchSpace
from ma2ml.spec import AlgorithmName
from ma2ml.store.lifecycle import TrialStatus


@dataclass(frozen=True)
class Proposal:
    """A joint action to evaluate and the log-probability each agent gave its part."""

    action: dict[str, list[int]]
    logp: dict[str, float]
    policy_version: int


@dataclass(frozen=True)
class Result:
    """A finished trial as the learner sees it; ``reward`` is None when none was reported.

    ``fidelity`` is the share of ``trialEpochs`` it was trained for: 1 for a full
    result, less for a trial stopped early (its reward is its last intermediate one).
    """

    action: dict[str, list[int]]
    reward: float | None
    status: TrialStatus = TrialStatus.completed  # or diverged, stopped, failed
    behaviour_logp: dict[str, float] = field(default_factory=dict)
    fidelity: float = 1.0


class Fresh(NamedTuple):
    """A result observed since the last update, as the update reads it."""

    row: list[int]
    reward: float
    behaviour_logp: dict[str, float]
    fidelity: float


class Algorithm:
    """The base class of the search algorithms.

    The policies start uniform and, here, never change: subclasses set
    ``name`` and override ``_learn`` to train them.
    """

    name: ClassVar[AlgorithmName]

    def __init__(self, space: SearchSpace | Layout, settings: Settings | None = None,
                 seed: int = 0, replay: Replay | None = None, *,
                 multi_fidelity: bool = False) -> None:
        self.layout = space if isinstance(space, Layout) else Layout.from_space(space)
        # ``critic_model: auto`` with no budget known: the mlp critic (``make_algorithm``
        # decides it from the search's maxTrials).
        self.settings = (settings or Settings()).for_budget(None)
        self.seed = seed
        # Results may come at several fidelities (the search stops trials early): the
        # critic then takes fidelity as an input (``Settings.fidelity_input``).
        self.multi_fidelity = multi_fidelity
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        # Module initialisation draws from torch's global generator: fork it so
        # building an algorithm is deterministic and leaves the caller's state alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = JointPolicy(self.layout)
            self._build()
        self.replay = replay if replay is not None else InMemoryReplay(self.layout.n_decisions)
        self.normaliser = make_normaliser(self._reward_transform())
        self.policy_version = 0
        self.n_results = 0
        self._fresh: list[Fresh] = []
        self._proposed: set[tuple[int, ...]] = set()

    def _build(self) -> None:
        """Create networks and optimisers (under a fixed seed)."""

    # -- proposals ---------------------------------------------------------------------

    def propose(self, n: int) -> list[Proposal]:
        """``n`` joint actions from the current policies, avoiding repeats when it can."""
        if n <= 0:
            return []
        s = self.settings
        candidates = s.proposal_candidates if self._critic_ready() else 1
        drawn = self.policy.sample(n * (candidates + s.dedupe_tries), self.generator,
                                   self._exploration()).tolist()
        draws = self._improve(drawn) if candidates > 1 else drawn
        chosen = pick_best_unseen(draws, self._proposed, n, candidates, self._score,
                                  fill=drawn)
        actions = torch.tensor(chosen, dtype=torch.long)
        with torch.no_grad():
            logp = self.policy.log_prob_agents(actions, self._exploration())
        self.mark_proposed(chosen)
        names = self.layout.agent_names
        return [Proposal(self.layout.to_dict(row),
                         {name: float(v) for name, v in zip(names, lp.tolist(), strict=True)},
                         self.policy_version)
                for row, lp in zip(chosen, logp, strict=True)]

    def _exploration(self) -> float:
        """Share of each proposed decision drawn uniformly (``Settings.exploration``)."""
        return self.settings.exploration

    def _reward_transform(self) -> str:
        """How rewards are normalised for learning (``Settings.reward_transform``)."""
        return self.settings.reward_transform

    def _critic_ready(self) -> bool:
        """Whether a critic has seen enough results to act on (and ``_score`` to rank)."""
        return False

    def _score(self, rows: list[list[int]]) -> list[float]:
        """How promising each joint action looks to the learner (higher is better)."""
        raise NotImplementedError

    def _improve(self, draws: list[list[int]]) -> list[list[int]]:
        """Policy draws turned into screening candidates (default: as drawn)."""
        return draws

    def mark_proposed(self, actions: Iterable[Sequence[int]]) -> None:
        """Remember joint actions already proposed (the loop calls this after a restart)."""
        self._proposed.update(tuple(int(v) for v in row) for row in actions)

    def mark_proposed_actions(self, actions: Iterable[dict[str, Sequence[int]]]) -> None:
        """``mark_proposed`` for stored actions (``{"agent": [idx, ...]}``): built straight
        into keys, since a restart recalls every trial ever proposed (100k and more)."""
        names = self.layout.agent_names
        self._proposed.update(tuple(chain.from_iterable(map(action.__getitem__, names)))
                              for action in actions)

    # -- results -----------------------------------------------------------------------

    def reward_of(self, result: Result) -> float:
        """The reward the learner uses: failed and non-finite diverged trials per settings."""
        if result.status == TrialStatus.failed:
            return self.settings.failed_reward
        if result.reward is None or not np.isfinite(result.reward):
            return self.settings.diverged_reward
        return float(result.reward)

    def observe(self, results: Sequence[Result]) -> None:
        """Take finished trials in: into the replay, the normaliser and the fresh batch."""
        if not results:
            return
        rows = [self.layout.from_dict(r.action) for r in results]
        rewards = np.array([self.reward_of(r) for r in results], dtype=np.float64)
        fidelities = np.array([r.fidelity for r in results], dtype=np.float64)
        self.replay.add(np.array(rows, dtype=np.int64), rewards, fidelities)
        self.normaliser.update(rewards)
        self.n_results += len(results)
        self._fresh += [Fresh(row, float(rw), dict(r.behaviour_logp), r.fidelity)
                        for row, rw, r in zip(rows, rewards, results, strict=True)]

    def update(self) -> dict[str, Any]:
        """Learn from the results observed since the last update; returns statistics."""
        stats: dict[str, Any] = {"critic_loss": None, "credit": {}}
        if self._fresh:
            stats.update(self._learn())
            self._fresh = []
            self.policy_version += 1
        with torch.no_grad():
            entropy = self.policy.entropy().tolist()
            probs = [lp.exp().tolist() for lp in self.policy.decision_log_probs()]
        stats["entropy"] = dict(zip(self.layout.agent_names, entropy, strict=True))
        # Per agent, per decision, the current probabilities (4 decimals: a few kB per
        # snapshot), so the dashboard can show how each policy moved over updates.
        stats["policy"] = {name: [[round(p, 4) for p in probs[j]] for j in self.layout.columns(i)]
                           for i, name in enumerate(self.layout.agent_names)}
        stats["n_results"] = self.n_results
        stats["policy_version"] = self.policy_version
        return stats

    def _learn(self) -> dict[str, Any]:
        return {}

    # -- snapshots ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: networks, optimisers, generators, stats."""
        return {
            # The plain string: a weights_only load refuses enum classes.
            "algorithm": self.name.value,
            "modules": {k: m.state_dict() for k, m in self._modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self._optimizers().items()},
            "generator": self.generator.get_state(),
            "rng": self.rng.bit_generator.state,
            "normaliser": self.normaliser.state_dict(),
            "policy_version": self.policy_version,
            "n_results": self.n_results,
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["algorithm"] != self.name:
            raise ValueError(f"snapshot of algorithm {state['algorithm']!r} cannot be loaded "
                             f"into {self.name.value!r}")
        for key, module in self._modules().items():
            module.load_state_dict(state["modules"][key])
        for key, optimizer in self._optimizers().items():
            optimizer.load_state_dict(state["optimizers"][key])
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]
        self.normaliser.load_state_dict(state["normaliser"])
        self.policy_version = int(state["policy_version"])
        self.n_results = int(state["n_results"])
        self._load_extra_state(state["extra"])

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``_extra_state`` saved."""


def to_bytes(state: dict[str, Any]) -> bytes:
    """A state dict as bytes (``torch.save``), for the store's snapshot table."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes) -> dict[str, Any]:
    """The inverse of ``to_bytes``; ``weights_only`` so a snapshot cannot run code."""
    state: dict[str, Any] = torch.load(io.BytesIO(data), weights_only=True)
    return state
