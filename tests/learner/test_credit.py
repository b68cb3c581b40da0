"""The counterfactual's one home (``ma2ml.learner.credit``): hand-computed values on a
tiny critic, the analytic expectation on a small space, and that the actor's targets
and its credit metric come from the same computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ma2ml.learner import credit
from ma2ml.learner.algorithms import make_algorithm
from ma2ml.learner.base import Result
from ma2ml.learner.credit import counterfactual
from ma2ml.learner.policy import JointPolicy, Layout
from ma2ml.settings import Settings

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


def test_hand_computed_credit_on_a_two_by_two_game() -> None:
    """Two agents, two values each, Q = [[4, 0], [1, 2]], pi_0 = (3/4, 1/4), pi_1 = (1/2, 1/2).

    For a = (0, 1): Q(a) = 0; decision 0's baseline 3/4 * Q(0, 1) + 1/4 * Q(1, 1) = 1/2,
    so A_0 = -1/2; decision 1's baseline 1/2 * Q(0, 0) + 1/2 * Q(0, 1) = 2, A_1 = -2.
    For a = (1, 0): Q = 1; baselines 3/4 * 4 + 1/4 * 1 = 13/4 and 1/2 * 1 + 1/2 * 2 = 3/2.
    """
    layout = Layout(("a0", "a1"), (2, 2), (0, 1))
    table = torch.tensor([[4.0, 0.0], [1.0, 2.0]])
    policy = JointPolicy(layout)
    with torch.no_grad():
        policy.agents[0].logits[0].copy_(torch.tensor([3.0, 1.0]).log())
    cf = counterfactual(lambda a: table[a[:, 0], a[:, 1]], policy,
                        torch.tensor([[0, 1], [1, 0]]), "decision")
    assert cf.taken.tolist() == pytest.approx([0.0, 1.0])
    assert [v.tolist() for v in cf.values] == [[[0.0, 2.0], [4.0, 1.0]],
                                               [[4.0, 0.0], [1.0, 2.0]]]
    assert cf.baseline().flatten().tolist() == pytest.approx([0.5, 2.0, 13 / 4, 1.5])
    assert cf.advantage().flatten().tolist() == pytest.approx([-0.5, -2.0, 1 - 13 / 4, -0.5])


def test_decision_baseline_is_the_exact_expectation() -> None:
    q, table = _table_q()
    policy = _policy()
    probs = [lp.exp().detach() for lp in policy.decision_log_probs()]
    actions = _all_actions()
    got = counterfactual(q, policy, actions, "decision").baseline()
    for row, (x, y, z) in enumerate(actions.tolist()):
        expected = [
            sum(probs[0][v] * table[v, y, z] for v in range(2)),
            sum(probs[1][v] * table[x, v, z] for v in range(3)),
            sum(probs[2][v] * table[x, y, v] for v in range(4)),
        ]
        assert got[row].tolist() == pytest.approx([float(e) for e in expected], abs=1e-5)


def _exact_agent_baselines(table: torch.Tensor, policy: JointPolicy,
                           actions: torch.Tensor) -> torch.Tensor:
    """The analytic per-agent expectation of LAYOUT, enumerating each agent's joint policy."""
    p = [lp.exp().detach() for lp in policy.decision_log_probs()]
    out = []
    for x, y, z in actions.tolist():
        a0 = sum(p[0][u] * p[1][v] * table[u, v, z] for u in range(2) for v in range(3))
        a1 = sum(p[2][w] * table[x, y, w] for w in range(4))
        out.append([float(a0), float(a1)])
    return torch.tensor(out)


def test_monte_carlo_agent_baseline_converges_to_the_expectation() -> None:
    q, table = _table_q()
    policy = _policy()
    actions = _all_actions()
    exact = _exact_agent_baselines(table, policy, actions)
    many = counterfactual(q, policy, actions, "agent", 20000, torch.Generator().manual_seed(0))
    # Standard error with 20k samples of a unit-scale Q is below 0.01.
    assert torch.allclose(many.baseline(), exact, atol=0.04)
    assert many.alternatives is not None and many.alternatives[0].shape == (24, 20000, 3)
    few = counterfactual(q, policy, actions, "agent", 2, torch.Generator().manual_seed(0))
    assert not torch.allclose(few.baseline(), exact, atol=0.04)  # genuinely random
    # An agent's alternatives change its own columns only.
    assert torch.equal(few.alternatives[1][:, :, :2], actions[:, None, :2].expand(-1, 2, -1))


def test_advantage_averages_to_zero_under_the_policy() -> None:
    """E_{a_j ~ pi_j}[A_j(a)] = 0 for each decision: the baseline is unbiased."""
    q, _ = _table_q()
    policy = _policy()
    actions = _all_actions()
    advantages = counterfactual(q, policy, actions, "decision").advantage()
    probs = [lp.exp().detach() for lp in policy.decision_log_probs()]
    rows = actions.tolist()
    for (x, y, z), adv in zip(rows, advantages, strict=True):
        if x == 0:  # fix the other decisions, average decision 0 over pi_0
            other = rows.index([1, y, z])
            mean = probs[0][0] * adv[0] + probs[0][1] * advantages[other][0]
            assert float(mean) == pytest.approx(0.0, abs=1e-5)


def test_unknown_estimators_and_missing_generators_are_refused() -> None:
    q, _ = _table_q()
    with pytest.raises(ValueError, match="unknown credit estimator 'bogus'"):
        counterfactual(q, _policy(), _all_actions(), "bogus")
    with pytest.raises(ValueError, match="pass a generator"):
        counterfactual(q, _policy(), _all_actions(), "agent", 4)


def test_big_spaces_are_evaluated_in_bounded_chunks_with_the_same_values(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact baseline's batch grows as W squared; above MAX_BATCH_NUMBERS it is
    split decision by decision and in row chunks, and must give the same numbers."""
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


@pytest.mark.parametrize("estimator", ["decision", "agent"])
def test_the_actor_and_the_credit_metric_share_one_counterfactual(
        monkeypatch: pytest.MonkeyPatch, estimator: str) -> None:
    """One call per update feeds both the actor's targets and ``stats['credit']``."""
    from ma2ml.learner import actor_critic

    calls: list[credit.Counterfactual] = []

    def spy(*args, **kwargs) -> credit.Counterfactual:
        calls.append(counterfactual(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(actor_critic, "counterfactual", spy)
    algo = make_algorithm("ma2ml", LAYOUT, Settings(warmup_results=0, credit=estimator), 0)
    proposals = algo.propose(4)
    algo.observe([Result(p.action, float(k)) for k, p in enumerate(proposals)])
    stats = algo.update()
    assert len(calls) == 1
    magnitude = calls[0].advantage().abs().mean(0)
    if estimator == "decision":  # decisions' credits averaged into their agent's
        magnitude = torch.stack([magnitude[:2].mean(), magnitude[2]])
    assert list(stats["credit"].values()) == pytest.approx(magnitude.tolist())
