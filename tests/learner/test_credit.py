"""Counterfactual baselines against the analytic expectation on small spaces."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ma2ml.learner.credit import (
    agent_baselines,
    counterfactual_credit,
    decision_baselines,
    exact_agent_baselines,
)
from ma2ml.learner.policy import JointPolicy, Layout

# Two agents: a0 has decisions of 2 and 3 values, a1 one decision of 4 values.
LAYOUT = Layout(("a0", "a1"), (2, 3, 4), (0, 0, 1))


def _table_q(seed: int = 0):
    """A Q function that is an arbitrary lookup table over all 24 joint actions."""
    table = torch.tensor(np.random.default_rng(seed).normal(size=(2, 3, 4)), dtype=torch.float32)

    def q(actions: torch.Tensor) -> torch.Tensor:
        return table[actions[:, 0], actions[:, 1], actions[:, 2]]
    return q, table


def _policy(seed: int = 1) -> JointPolicy:
    policy = JointPolicy(LAYOUT)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 2)
    return policy


def _all_actions() -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(2), range(3), range(4))))


def test_decision_baseline_is_the_exact_expectation() -> None:
    q, table = _table_q()
    policy = _policy()
    probs = [lp.exp().detach() for lp in policy.decision_log_probs()]
    actions = _all_actions()
    got = decision_baselines(q, policy, actions)
    for row, (x, y, z) in enumerate(actions.tolist()):
        expected = [
            sum(probs[0][v] * table[v, y, z] for v in range(2)),
            sum(probs[1][v] * table[x, v, z] for v in range(3)),
            sum(probs[2][v] * table[x, y, v] for v in range(4)),
        ]
        assert got[row].tolist() == pytest.approx([float(e) for e in expected], abs=1e-5)


def test_exact_agent_baseline_enumerates_the_agents_joint_policy() -> None:
    q, table = _table_q()
    policy = _policy()
    p = [lp.exp().detach() for lp in policy.decision_log_probs()]
    actions = _all_actions()
    got = exact_agent_baselines(q, policy, actions)
    for row, (x, y, z) in enumerate(actions.tolist()):
        a0 = sum(p[0][u] * p[1][v] * table[u, v, z] for u in range(2) for v in range(3))
        a1 = sum(p[2][w] * table[x, y, w] for w in range(4))
        assert got[row].tolist() == pytest.approx([float(a0), float(a1)], abs=1e-5)


def test_monte_carlo_agent_baseline_converges_to_the_expectation() -> None:
    q, _ = _table_q()
    policy = _policy()
    actions = _all_actions()
    exact = exact_agent_baselines(q, policy, actions)
    estimate = agent_baselines(q, policy, actions, samples=20000,
                               generator=torch.Generator().manual_seed(0))
    # Standard error with 20k samples of a unit-scale Q is below 0.01.
    assert torch.allclose(estimate, exact, atol=0.04)
    few = agent_baselines(q, policy, actions, samples=2,
                          generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(few, exact, atol=0.04)  # the estimate is genuinely random


def test_advantage_averages_to_zero_under_the_policy() -> None:
    """E_{a_i ~ pi_i}[A_i(a)] = 0 for each decision: the baseline is unbiased."""
    q, _ = _table_q()
    policy = _policy()
    actions = _all_actions()
    values, advantages = counterfactual_credit(q, policy, actions, "decision", 1,
                                               torch.Generator())
    probs = [lp.exp().detach() for lp in policy.decision_log_probs()]
    for (x, y, z), adv in zip(actions.tolist(), advantages, strict=True):
        if x == 0:  # fix the other decisions, average decision 0 over pi_0
            other = actions.tolist().index([1, y, z])
            mean = probs[0][0] * adv[0] + probs[0][1] * advantages[other][0]
            assert float(mean) == pytest.approx(0.0, abs=1e-5)
    assert values.shape == (24,)
    with pytest.raises(ValueError, match="unknown credit estimator 'bogus'"):
        counterfactual_credit(q, policy, actions, "bogus", 1, torch.Generator())


def test_big_spaces_are_evaluated_in_bounded_chunks_with_the_same_values(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact baseline's batch grows as W squared; above MAX_BATCH_NUMBERS it is
    split decision by decision and in row chunks, and must give the same numbers."""
    from ma2ml.learner import credit

    q, _ = _table_q()
    policy = _policy()
    actions = policy.sample(16, torch.Generator().manual_seed(3))
    whole = credit.decision_values(q, policy, actions)
    passes: list[int] = []

    def counted(batch: torch.Tensor) -> torch.Tensor:
        passes.append(batch.shape[0])
        return q(batch)

    monkeypatch.setattr(credit, "MAX_BATCH_NUMBERS", 50)  # tiny: forces the chunked path
    chunked = credit.decision_values(counted, policy, actions)
    for a, b in zip(whole, chunked, strict=True):
        assert torch.equal(a, b)
    row_numbers = sum(LAYOUT.sizes) + len(LAYOUT.sizes)
    # Each pass holds at most the bound, or one context's variants when those exceed it.
    assert len(passes) > len(LAYOUT.sizes)
    assert max(passes) * row_numbers <= max(50, max(LAYOUT.sizes) * row_numbers)
