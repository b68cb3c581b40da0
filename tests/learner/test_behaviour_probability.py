"""The behaviour-probability rule (``ma2ml.learner.reinforce`` and ``actor_critic`` docstrings):
what a proposal logs, who reads it, and how far it is from the true behaviour."""

from __future__ import annotations

import math

import pytest
import torch

from ma2ml.learner.algorithms import make_algorithm
from ma2ml.learner.base import Result
from ma2ml.learner.policy import Layout
from ma2ml.settings import Settings

LAYOUT = Layout(("a0", "a1"), (3, 4), (0, 1))


def _reward(action: dict[str, list[int]]) -> float:
    return float(action["a0"][0] == 2) + 0.5 * float(action["a1"][0] == 1)


def _trained(name: str, settings: Settings, updates: int = 6):
    algo = make_algorithm(name, LAYOUT, settings, seed=4)
    for _ in range(updates):
        proposals = algo.propose(4)
        algo.observe([Result(p.action, _reward(p.action), behaviour_logp=p.logp)
                      for p in proposals])
        algo.update()
    return algo


@pytest.mark.parametrize("name", ["ma2ml-lite", "independent"])
def test_reinforce_learners_never_screen_and_log_the_sampling_probability(name: str) -> None:
    """The learners that read the logged probability take one draw per proposal: the
    screening setting changes nothing, and the log is the mixed policy's log-probability."""
    plain = _trained(name, Settings(proposal_candidates=1, exploration=0.2))
    screened = _trained(name, Settings(proposal_candidates=32, exploration=0.2))
    a, b = plain.propose(8), screened.propose(8)
    assert [p.action for p in a] == [p.action for p in b]
    rows = torch.tensor([plain.layout.from_dict(p.action) for p in a])
    with torch.no_grad():
        expected = plain.policy.log_prob_agents(rows, 0.2)
    for p, lp in zip(a, expected.tolist(), strict=True):
        assert list(p.logp.values()) == pytest.approx(lp, abs=1e-6)


@pytest.mark.parametrize("critic", ["pairwise-bayes", "mlp"])
def test_ma2ml_updates_do_not_read_the_logged_probability(critic: str) -> None:
    """Screened proposals log a probability that is not their behaviour's; the critic and
    the actor never read it, so any logged value gives the same policies and critic."""
    runs = []
    for logged in (None, -50.0):
        algo = make_algorithm("ma2ml", LAYOUT, Settings(warmup_results=4, critic_model=critic),
                              seed=2)
        for _ in range(4):
            proposals = algo.propose(4)
            algo.observe([Result(p.action, _reward(p.action), behaviour_logp=p.logp if
                                 logged is None else dict.fromkeys(p.logp, logged))
                          for p in proposals])
            algo.update()
        state = algo.state_dict()
        fitted = (state["extra"]["bayes_critic"] if critic == "pairwise-bayes" else
                  state["modules"]["critic"]).values()
        runs.append([t.clone() for t in state["modules"]["policy"].values()]
                    + [t.clone() for t in fitted if isinstance(t, torch.Tensor)])
    assert all(torch.equal(x, y) for x, y in zip(*runs, strict=True))


def test_de_duplication_is_rejection_sampling_off_by_one_factor_per_batch() -> None:
    """With action 0 already proposed, a draw is pi conditioned on the unseen set U:
    b(a) = pi(a) / pi(U). The log holds log pi(a), off by the same log pi(U) for every a."""
    layout = Layout(("a0",), (4,), (0,))
    probs = torch.tensor([0.4, 0.3, 0.2, 0.1])
    counts = torch.zeros(4)
    logged: dict[int, float] = {}
    for seed in range(400):
        algo = make_algorithm("random", layout, Settings(exploration=0.0), seed=seed)
        with torch.no_grad():
            algo.policy.agents[0].logits[0].copy_(probs.log())
        algo.mark_proposed([[0]])
        (proposal,) = algo.propose(1)
        value = proposal.action["a0"][0]
        counts[value] += 1
        logged[value] = proposal.logp["a0"]
    assert counts[0] == 0
    behaviour = probs[1:] / probs[1:].sum()
    assert (counts[1:] / counts.sum()).tolist() == pytest.approx(behaviour.tolist(), abs=0.07)
    offsets = [math.log(behaviour[v - 1]) - logged[v] for v in (1, 2, 3)]
    assert offsets == pytest.approx([-math.log(0.6)] * 3, abs=1e-5)


def test_all_uniform_exploration_proposes_and_logs_the_uniform_probability() -> None:
    """``exploration: 1`` is in the setting's range: every decision drawn uniformly."""
    algo = make_algorithm("ma2ml", LAYOUT, Settings(exploration=1.0), seed=0)
    with torch.no_grad():
        algo.policy.agents[0].logits[0].copy_(torch.tensor([50.0, 0.0, 0.0]))
    proposals = algo.propose(60)
    assert {p.action["a0"][0] for p in proposals} == {0, 1, 2}
    assert proposals[0].logp == pytest.approx({"a0": -math.log(3), "a1": -math.log(4)})
