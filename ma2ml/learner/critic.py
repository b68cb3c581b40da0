"""The centralised critic Q(a): an ensemble of small MLPs over the one-hot joint action.

Q is regressed on normalised rewards of the replay buffer; predictions of
the ensemble members are combined by their mean or, to curb
over-estimation, their minimum (``Settings.critic_reduce``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ma2ml.learner.policy import Layout


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers applied in one batched matmul."""

    def __init__(self, members: int, n_in: int, n_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(members, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)  # (members, batch, n_out)


class Critic(nn.Module):
    """Ensemble of ``members`` MLPs; ``forward`` returns the reduced (batch,) prediction."""

    def __init__(self, layout: Layout, hidden: int = 64, layers: int = 2, members: int = 2,
                 reduce: str = "mean") -> None:
        super().__init__()
        self.reduce = reduce
        offsets = torch.tensor([0, *layout.sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.width = sum(layout.sizes)
        self.n_members = members
        widths = [self.width] + [hidden] * layers + [1]
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b)
                                    for a, b in zip(widths[:-1], widths[1:], strict=True))

    def embed(self, actions: torch.Tensor) -> torch.Tensor:
        """(batch, n_decisions) indices -> (batch, sum of sizes) one-hot embedding."""
        one_hot = torch.zeros(actions.shape[0], self.width)
        return one_hot.scatter_(1, actions + self.offsets, 1.0)

    def predict_all(self, actions: torch.Tensor) -> torch.Tensor:
        """(members, batch) prediction of every ensemble member."""
        # One batched matmul per layer for the whole ensemble: on tiny nets the
        # per-call overhead, not arithmetic, is what costs.
        x = self.embed(actions).expand(self.n_members, -1, -1)
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k < len(self.layers) - 1:
                x = torch.relu(x)
        return x.squeeze(-1)

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        all_q = self.predict_all(actions)
        return all_q.min(0).values if self.reduce == "min" else all_q.mean(0)

    def loss(self, actions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean squared error of every member (each member is fitted on its own)."""
        return ((self.predict_all(actions) - targets) ** 2).mean(1).sum()
