"""Counterfactual credit, in one place: A_u(a) = Q(a) - E_{a'_u ~ pi_u} Q(a'_u, a_-u).

``counterfactual`` scores sampled joint actions and, for every unit u (a
decision, or an agent), the alternatives of u with the rest of the action
fixed. The same ``Counterfactual`` serves both users, so they cannot drift
apart:

* the actor (``ma2ml.learner.actor_critic``) builds its targets from the
  alternatives' values: within one context a_-u the DMAC-optimal policy of
  unit u is rho_u(a_u) exp(A_u(a) / alpha) / normaliser, where the baseline
  cancels, and the contexts are weighted by that normaliser;
* the credit metric (``stats["credit"]`` of an update: the snapshot, the
  Prometheus gauge, the report and the dashboard) is ``advantage()``.

``best_response`` uses the same per-decision counterfactual values to move a
joint action, decision by decision, to the best value given the others: the
proposals of the Bayesian critic's search (``ma2ml.learner.bayes_critic``).

Two estimators, both cheap because Q is a small MLP:

* ``decision``, exact per decision: decision j's values are enumerated with
  every other column fixed and weighted by pi_j;
* ``agent``, Monte-Carlo per agent: all of agent i's decisions are replaced
  by M draws from pi_i, each weighted 1 / M.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ma2ml.learner.policy import JointPolicy

QFunction = Callable[[torch.Tensor], torch.Tensor]


#: Numbers one batch of counterfactual actions may hold (64 Mi): the exact per-decision
#: baseline evaluates batch * W joint actions (W = all values of all decisions), each
#: an index row and a W-wide one-hot, so it grows as W squared. Small spaces fit in
#: one forward pass; big ones are evaluated decision by decision, in chunks of rows.
MAX_BATCH_NUMBERS = 1 << 26


@dataclass(frozen=True)
class Counterfactual:
    """Q of ``batch`` joint actions and of each unit's alternatives to its own part.

    Unit u has K_u alternatives per action: the values of decision u
    (``decision``; ``alternatives`` is None, alternative k sets column u to k) or
    M redraws of agent u's columns (``agent``; ``alternatives[u]`` holds the rows).
    """

    taken: torch.Tensor  # (batch,) Q(a)
    values: list[torch.Tensor]  # per unit: (batch, K_u) Q of each alternative
    probs: list[torch.Tensor]  # per unit: (K_u,) weight of each alternative under pi_u
    alternatives: list[torch.Tensor] | None  # per unit: (batch, K_u, n_decisions), agent only

    def baseline(self) -> torch.Tensor:
        """(batch, n_units): E_{a'_u ~ pi_u} Q(a'_u, a_-u)."""
        return torch.stack([v @ p for v, p in zip(self.values, self.probs, strict=True)], dim=1)

    def advantage(self) -> torch.Tensor:
        """(batch, n_units): the credit A_u(a) = Q(a) - baseline."""
        return self.taken[:, None] - self.baseline()


@torch.no_grad()
def counterfactual(q: QFunction, policy: JointPolicy, actions: torch.Tensor, estimator: str,
                   samples: int = 8, generator: torch.Generator | None = None
                   ) -> Counterfactual:
    """The counterfactual of ``actions`` (batch, n_decisions) under ``policy``:
    ``estimator`` 'decision' (exact) or 'agent' (``samples`` draws per agent)."""
    if estimator == "decision":
        values = decision_values(q, policy, actions)
        probs = [lp.exp() for lp in policy.decision_log_probs()]
        return Counterfactual(q(actions), values, probs, None)
    if estimator == "agent":
        if generator is None:
            raise ValueError("the agent estimator draws alternatives: pass a generator")
        alternatives, values = [], []
        for i in range(policy.layout.n_agents):
            alt = agent_alternatives(policy, actions, i, samples, generator)
            alternatives.append(alt)
            values.append(q(alt.reshape(-1, alt.shape[-1])).view(alt.shape[:2]))
        uniform = torch.full((samples,), 1.0 / samples)
        return Counterfactual(q(actions), values, [uniform] * len(values), alternatives)
    raise ValueError(f"unknown credit estimator {estimator!r} (known: decision, agent)")


def _own_terms(q: QFunction) -> Callable[[torch.Tensor, int], torch.Tensor] | None:
    """The critic's closed form of the terms of Q that one decision's value switches on
    (``own_terms(actions, j)``, the Bayesian critic's draws), if it has one: then
    Q(v, a_-j) = Q(a) - own(a_j) + own(v), without scoring any variant."""
    return getattr(q, "own_terms", None)


@torch.no_grad()
def decision_values(q: QFunction, policy: JointPolicy,
                    actions: torch.Tensor) -> list[torch.Tensor]:
    """Per decision j, (batch, size_j): Q(a with column j set to each value v)."""
    batch = actions.shape[0]
    sizes = policy.layout.sizes
    own_terms = _own_terms(q)
    if own_terms is not None:
        base = q(actions)
        out = []
        for j in range(len(sizes)):
            own = own_terms(actions, j)
            out.append(own + (base - own.gather(1, actions[:, j:j + 1]).squeeze(1))[:, None])
        return out
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


@torch.no_grad()
def best_response(q: QFunction, sizes: tuple[int, ...], actions: torch.Tensor,
                  max_sweeps: int = 10) -> torch.Tensor:
    """Each action improved one decision at a time: decision j moves to the value of
    highest counterfactual value Q(v, a_-j) (its credit A_j's argmax: the baseline does
    not depend on v), in column order, until a sweep changes nothing. The result is
    a local optimum of ``q`` under single-decision changes, near each action."""
    actions = actions.clone()
    own_terms = _own_terms(q)
    for _ in range(max_sweeps):
        changed = False
        for j, size in enumerate(sizes):
            # Q(v, a_-j) and decision j's own terms differ by a constant per row.
            values = own_terms(actions, j) if own_terms is not None \
                else q(_variants(actions, j, size)).view(-1, size)
            best = values.argmax(1)
            changed = changed or bool((best != actions[:, j]).any())
            actions[:, j] = best
        if not changed:
            break
    return actions


def _variants(actions: torch.Tensor, j: int, size: int) -> torch.Tensor:
    """(batch * size, n_decisions): each action with column j set to 0 .. size-1."""
    alt = actions.repeat_interleave(size, dim=0)
    alt[:, j] = torch.arange(size).repeat(actions.shape[0])
    return alt


@torch.no_grad()
def agent_alternatives(policy: JointPolicy, actions: torch.Tensor, agent: int, samples: int,
                       generator: torch.Generator) -> torch.Tensor:
    """(batch, samples, n_decisions): each action with agent i's columns redrawn from pi_i."""
    batch = actions.shape[0]
    cols = policy.layout.columns(agent)
    alt = actions.repeat(samples, 1)  # (samples * batch, n_decisions), sample-major
    alt[:, cols] = policy.sample(samples * batch, generator)[:, cols]
    return alt.view(samples, batch, -1).transpose(0, 1)
