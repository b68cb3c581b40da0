"""Counterfactual credit: A_i(a) = Q(a) - E_{a'_i ~ pi_i} Q(a'_i, a_-i).

Two estimators, both cheap because Q is a small MLP:

* exact per decision: for decision j, enumerate its values with every other
  column fixed (``decision_values``) and weight Q by pi_j;
* Monte-Carlo per agent: replace all of agent i's decisions by M draws from
  pi_i (``agent_values``) and average Q.

The same counterfactual evaluations give the actor its target (see
``ma2ml.learner.actor_critic``): within one context a_-i, the DMAC-optimal
policy of unit i is rho_i(a_i) exp(A_i(a) / alpha) / normaliser, where the
baseline cancels; the contexts are weighted by that normaliser.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ma2ml.learner.policy import JointPolicy

QFunction = Callable[[torch.Tensor], torch.Tensor]


#: Numbers one batch of counterfactual actions may hold (64 Mi): the exact per-decision
#: baseline evaluates batch * W joint actions (W = all values of all decisions), each
#: an index row and a W-wide one-hot, so it grows as W squared. Small spaces fit in
#: one forward pass; big ones are evaluated decision by decision, in chunks of rows.
MAX_BATCH_NUMBERS = 1 << 26


@torch.no_grad()
def decision_values(q: QFunction, policy: JointPolicy,
                    actions: torch.Tensor) -> list[torch.Tensor]:
    """Per decision j, (batch, size_j): Q(a with column j set to each value v)."""
    batch = actions.shape[0]
    sizes = policy.layout.sizes
    row_numbers = sum(sizes) + len(sizes)  # one-hot input + index row, per joint action
    if batch * sum(sizes) * row_numbers <= MAX_BATCH_NUMBERS:
        values = q(torch.cat([_variants(actions, j, size) for j, size in enumerate(sizes)]))
        return [chunk.view(batch, size) for chunk, size
                in zip(values.split([batch * s for s in sizes]), sizes, strict=True)]
    out = []
    for j, size in enumerate(sizes):
        rows = max(1, MAX_BATCH_NUMBERS // (size * row_numbers))  # contexts per pass
        out.append(torch.cat([q(_variants(chunk, j, size)).view(chunk.shape[0], size)
                              for chunk in actions.split(rows)]))
    return out


def _variants(actions: torch.Tensor, j: int, size: int) -> torch.Tensor:
    """(batch * size, n_decisions): each action with column j set to 0 .. size-1."""
    alt = actions.repeat_interleave(size, dim=0)
    alt[:, j] = torch.arange(size).repeat(actions.shape[0])
    return alt


@torch.no_grad()
def decision_baselines(q: QFunction, policy: JointPolicy, actions: torch.Tensor) -> torch.Tensor:
    """(batch, n_decisions): sum_v pi_j(v) Q(a with column j set to v), exactly."""
    values = decision_values(q, policy, actions)
    probs = [lp.exp() for lp in policy.decision_log_probs()]
    return torch.stack([v @ p for v, p in zip(values, probs, strict=True)], dim=1)


@torch.no_grad()
def agent_alternatives(policy: JointPolicy, actions: torch.Tensor, agent: int, samples: int,
                       generator: torch.Generator) -> torch.Tensor:
    """(batch, samples, n_decisions): each action with agent i's columns redrawn from pi_i."""
    batch = actions.shape[0]
    cols = policy.layout.columns(agent)
    alt = actions.repeat(samples, 1)  # (samples * batch, n_decisions), sample-major
    alt[:, cols] = policy.sample(samples * batch, generator)[:, cols]
    return alt.view(samples, batch, -1).transpose(0, 1)


@torch.no_grad()
def agent_values(q: QFunction, policy: JointPolicy, actions: torch.Tensor, samples: int,
                 generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per agent i: alternatives (batch, M, n_decisions) and their Q (batch, M)."""
    out = []
    for i in range(policy.layout.n_agents):
        alt = agent_alternatives(policy, actions, i, samples, generator)
        out.append((alt, q(alt.reshape(-1, alt.shape[-1])).view(alt.shape[:2])))
    return out


@torch.no_grad()
def agent_baselines(q: QFunction, policy: JointPolicy, actions: torch.Tensor, samples: int,
                    generator: torch.Generator) -> torch.Tensor:
    """(batch, n_agents): mean over M draws a'_i ~ pi_i of Q(a'_i, a_-i)."""
    values = agent_values(q, policy, actions, samples, generator)
    return torch.stack([v.mean(1) for _, v in values], dim=1)


@torch.no_grad()
def exact_agent_baselines(q: QFunction, policy: JointPolicy,
                          actions: torch.Tensor) -> torch.Tensor:
    """(batch, n_agents) the analytic per-agent expectation, enumerating each agent's
    whole action space. Exponential in an agent's decisions: for tests and tiny spaces."""
    layout = policy.layout
    log_pis = policy.decision_log_probs()
    out = []
    for i in range(layout.n_agents):
        cols = layout.columns(i)
        grid = torch.cartesian_prod(*[torch.arange(layout.sizes[j]) for j in cols])
        grid = grid.view(-1, len(cols))  # (n_joint_i, len(cols))
        prob = torch.ones(grid.shape[0])
        for k, j in enumerate(cols):
            prob = prob * log_pis[j].exp()[grid[:, k]]
        alt = actions.repeat_interleave(grid.shape[0], dim=0)
        alt[:, cols] = grid.repeat(actions.shape[0], 1)
        out.append(q(alt).view(actions.shape[0], grid.shape[0]) @ prob)
    return torch.stack(out, dim=1)


@torch.no_grad()
def counterfactual_credit(q: QFunction, policy: JointPolicy, actions: torch.Tensor,
                          estimator: str, samples: int,
                          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q(a) of shape (batch,), advantages A_u(a) of shape (batch, n_units))."""
    values = q(actions)
    if estimator == "decision":
        baselines = decision_baselines(q, policy, actions)
    elif estimator == "agent":
        baselines = agent_baselines(q, policy, actions, samples, generator)
    else:
        raise ValueError(f"unknown credit estimator {estimator!r} (known: decision, agent)")
    return values, values[:, None] - baselines


def log_mean_exp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """log(mean(exp(x))) along ``dim`` without overflow."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])
