"""The centralised critic Q(a, f): an ensemble of small MLPs over the one-hot joint action
and the fidelity f of a result.

Q is regressed on normalised rewards of the replay buffer; predictions of
the ensemble members are combined by their mean or, to curb
over-estimation, their minimum (``Settings.critic_reduce``). MA2ML fits and asks
it through ``ma2ml.learner.critics.MLPCritic``.

Why a fidelity input. With early stopping, a trial stopped at epoch 1 reports
its epoch-1 accuracy, which is lower than any pipeline's final accuracy. Taken
as a full result it would teach the critic that the pipeline is bad, and
ranked against final results it would always look worse than it is. Dropped,
it would teach nothing, though it cost an epoch and says a lot about its
pipeline relative to others at the same epoch. So the critic sees f = epochs
trained / trialEpochs as one more input and learns how results at low
fidelity relate to full ones from the trials it has at several fidelities
(every completed trial passed the same rungs); proposals, the actor and the
credit then ask Q at f = 1, i.e. "how good will this pipeline be when
trained to the end". Normalising rewards per rung instead would need each
rung's results read back for every update and throws away the level
difference between rungs; the benchmark compares the two
(``fidelity_input: false`` treats a stopped trial as a full one).
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

    offsets: torch.Tensor  # a buffer: each decision's first column in the one-hot input

    def __init__(self, layout: Layout, hidden: int = 64, layers: int = 2, members: int = 2,
                 reduce: str = "mean", fidelity_input: bool = False) -> None:
        super().__init__()
        self.reduce = reduce
        offsets = torch.tensor([0, *layout.sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.width = sum(layout.sizes)
        self.n_members = members
        # Without early stopping every result is full fidelity: no input for a constant.
        self.fidelity_input = fidelity_input
        widths = [self.width + fidelity_input] + [hidden] * layers + [1]
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b)
                                    for a, b in zip(widths[:-1], widths[1:], strict=True))

    def embed(self, actions: torch.Tensor, fidelity: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, n_decisions) indices and (batch,) fidelities (None: full) -> the one-hot
        joint action (batch, sum of sizes), then the fidelity column if it is an input."""
        x = torch.zeros(actions.shape[0], self.width + self.fidelity_input)
        x.scatter_(1, actions + self.offsets, 1.0)
        if self.fidelity_input:
            x[:, -1] = 1.0 if fidelity is None else fidelity
        return x

    def predict_all(self, actions: torch.Tensor, fidelity: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """(members, batch) prediction of every ensemble member (at full fidelity unless
        ``fidelity`` is given)."""
        # One batched matmul per layer for the whole ensemble: on tiny nets the
        # per-call overhead, not arithmetic, is what costs.
        x = self.embed(actions, fidelity).expand(self.n_members, -1, -1)
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k < len(self.layers) - 1:
                x = torch.relu(x)
        return x.squeeze(-1)

    def forward(self, actions: torch.Tensor, fidelity: torch.Tensor | None = None
                ) -> torch.Tensor:
        all_q = self.predict_all(actions, fidelity)
        return all_q.min(0).values if self.reduce == "min" else all_q.mean(0)

    def loss(self, actions: torch.Tensor, targets: torch.Tensor,
             fidelity: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared error of every member (each member is fitted on its own)."""
        return ((self.predict_all(actions, fidelity) - targets) ** 2).mean(1).sum()
