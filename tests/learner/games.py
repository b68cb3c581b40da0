"""Cooperative matrix games with a known joint optimum, for the learner tests.

Two agents each choose one of three actions and share the payoff. In the
climbing game (Claus and Boutilier 1998) the optimum (0, 0) is guarded by
heavy miscoordination penalties, so independent learners settle on (1, 1)
or (2, 2); the penalty game has two optima, (0, 0) and (2, 2), and a penalty
k for mixing them up.

``ChainGame`` strings n agents in a row, each neighbouring pair playing one
matrix game, and sums the payoffs: a middle agent's part of the optimum
pays only when both its neighbours choose theirs, the smallest case of the
coupled modules of ``benchmarks/coupled.py`` (traps chained across agents).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ma2ml.learner.algorithms import make_algorithm
from ma2ml.learner.base import Result
from ma2ml.settings import Settings
from ma2ml.spaces import AgentSpace, Decision, SearchSpace


@dataclass(frozen=True)
class MatrixGame:
    """A two-agent cooperative game: ``payoff[a0][a1]`` is the shared reward."""

    name: str
    payoff: tuple[tuple[float, ...], ...]

    @property
    def space(self) -> SearchSpace:
        """Agents ``a0`` and ``a1``, each with one decision ``action`` over 0..n-1."""
        rows, cols = len(self.payoff), len(self.payoff[0])
        return SearchSpace((
            AgentSpace("a0", (Decision("action", tuple(range(rows))),)),
            AgentSpace("a1", (Decision("action", tuple(range(cols))),)),
        ))

    @property
    def optimum(self) -> float:
        return max(max(row) for row in self.payoff)

    def reward(self, action: dict[str, list[int]]) -> float:
        return float(self.payoff[action["a0"][0]][action["a1"][0]])


CLIMBING = MatrixGame("climbing", ((11, -30, 0), (-30, 7, 6), (0, 0, 5)))


@dataclass(frozen=True)
class ChainGame:
    """Agents ``a0`` .. ``a{n-1}`` in a row; neighbours i, i+1 play ``game`` (i as its
    row player) and the shared reward is the sum of the n - 1 payoffs."""

    game: MatrixGame
    n_agents: int

    @property
    def name(self) -> str:
        return f"{self.game.name} chain of {self.n_agents}"

    @property
    def space(self) -> SearchSpace:
        if self.n_agents < 2 or len(self.game.payoff) != len(self.game.payoff[0]):
            raise ValueError("a chain needs >= 2 agents and a square game")
        values = tuple(range(len(self.game.payoff)))
        return SearchSpace(tuple(AgentSpace(f"a{i}", (Decision("action", values),))
                                 for i in range(self.n_agents)))

    @property
    def optimum(self) -> float:
        """Every neighbour pair at the game's optimum cell, which must lie on the diagonal."""
        best = max(self.game.payoff[k][k] for k in range(len(self.game.payoff)))
        if best != self.game.optimum:
            raise ValueError("the chained optimum needs the game's optimum on its diagonal")
        return (self.n_agents - 1) * best

    def reward(self, action: dict[str, list[int]]) -> float:
        row = [action[f"a{i}"][0] for i in range(self.n_agents)]
        return float(sum(self.game.payoff[x][y] for x, y in zip(row, row[1:], strict=False)))


class Game(Protocol):
    """What ``play`` needs of a game."""

    @property
    def space(self) -> SearchSpace: ...

    def reward(self, action: dict[str, list[int]]) -> float: ...


def penalty_game(k: float = -100.0) -> MatrixGame:
    """The penalty game with miscoordination penalty ``k`` (<= 0)."""
    return MatrixGame(f"penalty(k={k:g})", ((10, 0, k), (0, 2, 0), (k, 0, 10)))


PENALTY = penalty_game()


def play(game: Game, algorithm: str, seed: int, budget: int = 120, batch: int = 4,
         settings: Settings | None = None) -> float:
    """Run ``algorithm`` for ``budget`` evaluations in batches of ``batch``; return the
    payoff of the joint action the final policies choose (each agent's most likely one)."""
    algo = make_algorithm(algorithm, game.space, settings or Settings(), seed)
    for _ in range(budget // batch):
        proposals = algo.propose(batch)
        algo.observe([Result(p.action, game.reward(p.action), behaviour_logp=p.logp)
                      for p in proposals])
        algo.update()
    with torch.no_grad():
        greedy = [int(lp.argmax()) for lp in algo.policy.decision_log_probs()]
    return game.reward(algo.layout.to_dict(greedy))
