"""The pairwise Bayesian critic (``critic_model: pairwise-bayes``): what it recovers from
noisy results, the best response its proposals use, and the algorithm built on it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ma2ml.learner import Result, Settings, SettingsError, make_algorithm
from ma2ml.learner.base import from_bytes, to_bytes
from ma2ml.learner.bayes_critic import PairwiseBayesCritic
from ma2ml.learner.credit import best_response, decision_values
from ma2ml.learner.critics import BayesCritic, MLPCritic
from ma2ml.learner.loop import Learner, run_learner
from ma2ml.learner.normalisers import RankNormaliser, UpperLinearNormaliser
from ma2ml.learner.policy import Layout
from ma2ml.store import Store

from .games import CLIMBING, ChainGame, play
from .helpers import search_document

#: Three agents: a (2 decisions), b (2), c (1); decision 0 (a) and 2 (b) interact.
LAYOUT = Layout(("a", "b", "c"), (4, 3, 4, 3, 5), (0, 0, 1, 1, 2))
BAYES = Settings(critic_model="pairwise-bayes")


def _truth(rows: np.ndarray) -> np.ndarray:
    """Small main effects plus a climbing game between decisions 0 and 2 (other agents)."""
    game = np.full((4, 4), 0.1)
    game[1, :] = game[:, 1] = -2.0
    game[1, 1] = 1.0
    game[3, 3] = 0.7
    return 0.1 * rows[:, 1] + 0.05 * rows[:, 4] + game[rows[:, 0], rows[:, 2]]


def _uniform(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.stack([rng.integers(0, s, n) for s in LAYOUT.sizes], 1)


def test_the_fit_recovers_the_interaction_and_shrinks_the_others() -> None:
    rng = np.random.default_rng(0)
    rows = _uniform(150, rng)
    critic = PairwiseBayesCritic(LAYOUT, "cross-agent")
    assert critic.n_coefficients == sum(LAYOUT.sizes) + sum(  # cross-agent pairs only
        LAYOUT.sizes[i] * LAYOUT.sizes[j] for i in range(5) for j in range(i + 1, 5)
        if LAYOUT.agent_of[i] != LAYOUT.agent_of[j])
    critic.fit(rows, _truth(rows) + rng.normal(0, 0.2, 150), 40, rng)
    draws = critic.fit(rows, _truth(rows) + rng.normal(0, 0.2, 150), 10, rng, draws=20)
    test = _uniform(500, rng)
    mean = np.mean([critic.predict(test, beta) for beta in draws], 0)
    assert np.corrcoef(mean, _truth(test))[0, 1] > 0.95
    # The interacting pair keeps its scale; a pair with no interaction is shrunk.
    pair_group = {(i, j): len(LAYOUT.sizes) + k for k, (i, j, _) in enumerate(critic.pairs)}
    assert critic.tau2[pair_group[(0, 2)]] > 10 * critic.tau2[pair_group[(1, 3)]]
    # The rare joint cell of the optimum is ranked above the safe basin.
    best, safe = np.array([[1, 2, 1, 2, 4]]), np.array([[3, 2, 3, 2, 4]])
    assert np.mean([critic.predict(best, b) - critic.predict(safe, b) for b in draws]) > 0


def test_all_interactions_add_the_pairs_within_an_agent() -> None:
    cross, every = PairwiseBayesCritic(LAYOUT, "cross-agent"), PairwiseBayesCritic(LAYOUT)
    within = {(i, j) for i, j, _ in every.pairs} - {(i, j) for i, j, _ in cross.pairs}
    assert within == {(0, 1), (2, 3)}
    assert every.n_coefficients == cross.n_coefficients + 4 * 3 + 4 * 3


def test_a_stopped_trial_teaches_its_pipeline_through_the_fidelity_input() -> None:
    """The better value of decision 0 is mostly seen stopped early, where every pipeline
    scores lower. With fidelity as an input the critic still ranks it first at full
    fidelity; blind to fidelity (a stopped trial taken as full) it ranks it last."""
    rng = np.random.default_rng(3)
    rows = _uniform(300, rng)
    stopped_often = rows[:, 0] == 3
    fidelity = np.where(stopped_often & (rng.random(300) < 0.8), 1 / 9, 1.0)
    rewards = 0.3 * (rows[:, 0] == 3) - 0.4 * -np.log(fidelity) + rng.normal(0, 0.05, 300)
    probe = np.array([[v, 0, 0, 0, 0] for v in range(4)])
    for fidelity_input, best_is_3 in ((True, True), (False, False)):
        critic = PairwiseBayesCritic(LAYOUT, fidelity_input=fidelity_input)
        draws = critic.fit(rows, rewards, 40, rng, draws=10, fidelities=fidelity)
        mean = np.mean([critic.predict(probe, beta) for beta in draws], 0)
        assert (int(mean.argmax()) == 3) is best_is_3, mean


def test_a_snapshot_of_another_shape_is_refused_not_loaded() -> None:
    """Switching fidelity input or pairs changes the coefficients: the learner must
    relearn (it catches ValueError) rather than run on a chain of another model."""
    saved = PairwiseBayesCritic(LAYOUT).state_dict()
    for other in (PairwiseBayesCritic(LAYOUT, fidelity_input=True),
                  PairwiseBayesCritic(LAYOUT, "cross-agent")):
        with pytest.raises(ValueError, match="snapshot of a critic with"):
            other.load_state_dict(saved)
    same = PairwiseBayesCritic(LAYOUT)
    same.load_state_dict(saved)
    assert np.array_equal(same.beta, saved["beta"].numpy())


def test_best_response_ends_in_a_local_optimum_of_q() -> None:
    def q(actions: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(_truth(actions.numpy()), dtype=torch.float32)

    rng = np.random.default_rng(1)
    start = torch.as_tensor(_uniform(30, rng))
    moved = best_response(q, LAYOUT.sizes, start)
    assert (q(moved) >= q(start)).all()
    for j, size in enumerate(LAYOUT.sizes):
        for v in range(size):
            other = moved.clone()
            other[:, j] = v
            assert (q(other) <= q(moved) + 1e-6).all()


@pytest.mark.parametrize("interactions", ["all", "cross-agent"])
def test_closed_form_column_values_equal_scoring_every_variant(interactions: str) -> None:
    critic = PairwiseBayesCritic(LAYOUT, interactions, fidelity_input=True)
    rng = np.random.default_rng(3)
    beta = rng.normal(size=critic.n_coefficients)
    draw = critic.q_of(beta)
    actions = torch.as_tensor(_uniform(17, rng))
    policy = make_algorithm("ma2ml", LAYOUT, BAYES, seed=0).policy
    closed = decision_values(draw, policy, actions)
    by_rows = decision_values(lambda a: draw(a), policy, actions)  # no column_values
    for fast, slow in zip(closed, by_rows, strict=True):
        assert torch.allclose(fast, slow, atol=1e-5)
    assert torch.equal(best_response(draw, LAYOUT.sizes, actions),
                       best_response(lambda a: draw(a), LAYOUT.sizes, actions))


def _drive(algo, rounds: int, rng: np.random.Generator) -> None:
    for _ in range(rounds):
        proposals = algo.propose(4)
        rows = np.array([algo.layout.from_dict(p.action) for p in proposals])
        rewards = _truth(rows) + rng.normal(0, 0.2, len(rows))
        algo.observe([Result(p.action, float(r), behaviour_logp=p.logp)
                      for p, r in zip(proposals, rewards, strict=True)])
        algo.update()


def test_snapshot_round_trip_continues_identically() -> None:
    algo = make_algorithm("ma2ml", LAYOUT, BAYES, seed=1)
    _drive(algo, 5, np.random.default_rng(0))
    clone = make_algorithm("ma2ml", LAYOUT, BAYES, seed=99)
    clone.load_state_dict(from_bytes(to_bytes(algo.state_dict())))
    clone.replay = copy.deepcopy(algo.replay)
    clone.mark_proposed(algo._proposed)
    _drive(algo, 2, np.random.default_rng(5))
    _drive(clone, 2, np.random.default_rng(5))
    assert [p.action for p in algo.propose(5)] == [p.action for p in clone.propose(5)]


@pytest.mark.parametrize(("pairs", "min_hits", "within"), [("cross-agent", 60, 0.05),
                                                         ("all", 45, 0.1)])
def test_the_search_concentrates_on_the_joint_cell_of_the_optimum(
        pairs: str, min_hits: int, within: float) -> None:
    """60 noisy evaluations of 2,160 joint actions, six seeds. Uniform draws hit the
    joint cell of the optimum (decisions 0 and 2 both at their trap value 1) one time in
    16, about 22 times in all. Modelling the cross-agent pairs only (this task's
    interaction), the search evaluates it 93 times (measured) and its best evaluated
    pipeline is within the smallest main-effect step (0.05) of the optimum; the default's
    within-agent pairs are 24 more cells to learn, and it hits the cell 62 times, its best
    within two steps."""
    optimum = float(_truth(np.array([[1, 2, 1, 2, 4]]))[0])
    hits = 0
    for seed in range(6):
        algo = make_algorithm("ma2ml", LAYOUT, Settings(critic_model="pairwise-bayes",
                                                      bayes_pairs=pairs), seed=seed)
        _drive(algo, 15, np.random.default_rng(seed))
        rows, _, _ = algo.replay.sample(1000, np.random.default_rng(0))
        hits += int(((rows[:, 0] == 1) & (rows[:, 2] == 1)).sum())
        assert _truth(rows).max() >= optimum - within - 1e-9
    assert hits >= min_hits


def test_ma2ml_with_the_bayesian_critic_coordinates_the_climbing_chain() -> None:
    game = ChainGame(CLIMBING, 3)
    hits = sum(play(game, "ma2ml", seed, 96, settings=BAYES) == game.optimum
               for seed in range(8))
    assert hits >= 7


def test_unknown_critic_models_are_refused() -> None:
    with pytest.raises(SettingsError,
                       match="critic_model: expected one of auto, pairwise-bayes, mlp"):
        Settings.from_overrides({"critic_model": "gp"})


def test_a_search_with_the_bayesian_critic_runs_and_resumes_from_its_snapshot(
        store: Store, worker_factory) -> None:
    """Through the real store: the critic's chain and draws go into the snapshot, and a
    new learner resumes from it (not re-learning from the stored results)."""
    document = search_document(max_trials=12, settings={"critic_model": "pairwise-bayes",
                                                         "warmup_results": 2})
    record = store.create_search("default/toy", document)
    worker_factory(store.url, record.id)
    outcome = run_learner(store, "default/toy", poll_seconds=0.02)
    assert outcome.state == "finished" and outcome.results == 12
    learner = Learner(store, "default/toy")
    assert learner.seq == 12  # resumed from the snapshot
    assert learner.algorithm.critic.model.sweeps_done > 0
    assert len(learner.algorithm.critic.draws) == Settings().results_per_update


@pytest.mark.parametrize(("budget", "bayesian"), [(None, False), (99, False), (100, True)])
def test_auto_picks_the_bayesian_critic_from_a_budget_of_100_trials(
        budget: int | None, bayesian: bool) -> None:
    """Thompson draws pay for their exploration only with enough trials: ``auto`` takes
    the MLP critic below ``auto_bayes_trials`` (and when the budget is unknown), and the
    Bayesian critic comes with its own exploration and reward transform."""
    algo = make_algorithm("ma2ml", LAYOUT, Settings(), seed=0, budget=budget)
    assert algo.settings.critic_model == ("pairwise-bayes" if bayesian else "mlp")
    assert isinstance(algo.critic, BayesCritic if bayesian else MLPCritic)
    assert algo._exploration() == (0.25 if bayesian else 0.1)
    assert isinstance(algo.normaliser, UpperLinearNormaliser if bayesian else RankNormaliser)
    explicit = make_algorithm("ma2ml", LAYOUT, Settings(critic_model="mlp"), budget=10_000)
    assert isinstance(explicit.critic, MLPCritic)
    lower = make_algorithm("ma2ml", LAYOUT, Settings(auto_bayes_trials=20), budget=50)
    assert isinstance(lower.critic, BayesCritic)


def test_the_learner_decides_auto_from_the_searchs_max_trials(store: Store) -> None:
    for max_trials, bayesian in ((50, False), (120, True)):
        name = f"default/auto-{max_trials}"
        store.create_search(name, search_document(f"auto-{max_trials}", max_trials=max_trials))
        critic = Learner(store, name).algorithm.critic
        assert isinstance(critic, BayesCritic if bayesian else MLPCritic)
