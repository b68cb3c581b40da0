"""Factorised categorical policies: one head per agent, one logit vector per decision.

A joint action is a ``LongTensor`` of shape ``(batch, n_decisions)`` whose
columns are the decisions of every agent in spec order; ``Layout`` knows which
columns belong to which agent. The search is a single-step game, so a policy
has no input: its parameters are the logits themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from ma2ml.spaces import SearchSpace


@dataclass(frozen=True)
class Layout:
    """Column layout of the joint action: decision sizes and each agent's columns."""

    agent_names: tuple[str, ...]
    sizes: tuple[int, ...]  # per decision, all agents concatenated
    agent_of: tuple[int, ...]  # per decision: index of its agent

    @classmethod
    def from_space(cls, space: SearchSpace) -> Layout:
        sizes, agent_of = [], []
        for i, agent in enumerate(space.agents):
            sizes += agent.sizes
            agent_of += [i] * len(agent.sizes)
        return cls(tuple(space.agent_names), tuple(sizes), tuple(agent_of))

    @property
    def n_agents(self) -> int:
        return len(self.agent_names)

    @property
    def n_decisions(self) -> int:
        return len(self.sizes)

    def columns(self, agent: int) -> list[int]:
        return [j for j, i in enumerate(self.agent_of) if i == agent]

    def agent_matrix(self) -> torch.Tensor:
        """(n_decisions, n_agents) 0/1 matrix: sums decision terms into agent terms."""
        matrix = torch.zeros(self.n_decisions, self.n_agents)
        matrix[torch.arange(self.n_decisions), torch.tensor(self.agent_of)] = 1.0
        return matrix

    def to_dict(self, row: Sequence[int]) -> dict[str, list[int]]:
        """One joint action row as ``{"agent": [idx, ...]}`` (the store's action format)."""
        return {name: [int(row[j]) for j in self.columns(i)]
                for i, name in enumerate(self.agent_names)}

    def from_dict(self, action: Mapping[str, Sequence[int]]) -> list[int]:
        row: list[int] = []
        for name in self.agent_names:
            row += [int(v) for v in action[name]]
        if len(row) != self.n_decisions:
            raise ValueError(f"action has {len(row)} indices, the space {self.n_decisions}")
        return row


class AgentPolicy(nn.Module):
    """pi_i: independent categorical logits for each of one agent's decisions."""

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros(s)) for s in sizes])

    def log_probs(self) -> list[torch.Tensor]:
        """Per decision, the (size,) log-probabilities; log_softmax never yields NaN."""
        return [torch.log_softmax(logit, dim=0) for logit in self.logits]


class JointPolicy(nn.Module):
    """The product of the agents' policies; agents have their own heads in a ModuleList."""

    def __init__(self, layout: Layout) -> None:
        super().__init__()
        self.layout = layout
        self.agents = nn.ModuleList(
            AgentPolicy([layout.sizes[j] for j in layout.columns(i)])
            for i in range(layout.n_agents))

    def decision_log_probs(self) -> list[torch.Tensor]:
        """(size_j,) log-probabilities of every decision j, in column order."""
        agents = cast(Iterable[AgentPolicy], self.agents)  # ModuleList yields plain Modules
        return [lp for agent in agents for lp in agent.log_probs()]

    def mixed_log_probs(self, uniform: float = 0.0) -> list[torch.Tensor]:
        """Per decision, log((1 - uniform) pi_j + uniform / size_j): the policy with a
        share ``uniform`` of every decision's draws spread evenly over its values."""
        if uniform <= 0:
            return self.decision_log_probs()
        if uniform >= 1:  # all uniform (log1p(-1) would be -inf times nothing: a domain error)
            return [torch.full_like(lp, -math.log(lp.shape[0])) for lp in self.decision_log_probs()]
        return [torch.logaddexp(lp + math.log1p(-uniform),
                                torch.full_like(lp, math.log(uniform / lp.shape[0])))
                for lp in self.decision_log_probs()]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, uniform: float = 0.0) -> torch.Tensor:
        """(n, n_decisions) joint actions drawn from the policies (mixed with ``uniform``)."""
        columns = [torch.multinomial(lp.exp(), n, replacement=True, generator=generator)
                   for lp in self.mixed_log_probs(uniform)]
        return torch.stack(columns, dim=1)

    def log_prob_decisions(self, actions: torch.Tensor, uniform: float = 0.0) -> torch.Tensor:
        """(batch, n_decisions) log-probability of each decision of ``actions`` (under the
        policy mixed with ``uniform``, as ``sample`` drew them)."""
        return torch.stack([lp[actions[:, j]] for j, lp in
                            enumerate(self.mixed_log_probs(uniform))], dim=1)

    def log_prob_agents(self, actions: torch.Tensor, uniform: float = 0.0) -> torch.Tensor:
        """(batch, n_agents) log pi_i(a_i) of each agent (mixed with ``uniform``)."""
        return self.log_prob_decisions(actions, uniform) @ self.layout.agent_matrix()

    def entropy(self) -> torch.Tensor:
        """(n_agents,) entropy of each agent's policy (sum over its decisions)."""
        per_decision = torch.stack([-(lp.exp() * lp).sum() for lp in self.decision_log_probs()])
        return per_decision @ self.layout.agent_matrix()

    def kl_to(self, other: JointPolicy) -> torch.Tensor:
        """(n_agents,) KL(self_i || other_i); factorised, so the decisions' KLs add up."""
        terms = [(lp.exp() * (lp - lq)).sum() for lp, lq in
                 zip(self.decision_log_probs(), other.decision_log_probs(), strict=True)]
        return torch.stack(terms) @ self.layout.agent_matrix()


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source, parameter by parameter."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.mul_(1.0 - tau).add_(s, alpha=tau)
