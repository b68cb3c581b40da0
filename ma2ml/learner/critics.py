"""The critic MA2ML learns with, behind one small protocol: ``CriticModel``.

``ma2ml.learner.actor_critic`` asks its critic five things, whichever it is:
``fit`` it on an update's data, ``score`` candidate proposals, ``improve`` the
policies' draws into candidates, ``q`` (the values the counterfactual credit
and the actor's targets are computed on) and its part of the snapshot
(``modules``, ``optimizers``, ``extra_state``). Each implementation also owns
the exploration and the reward transform the search uses with it, and reads
only its own settings (``ma2ml.settings.CRITIC_SETTINGS``, which
``spec.algorithm.settings`` is checked against).

* ``MLPCritic`` (``critic_model: mlp``): the ensemble of ``ma2ml.learner.critic``
  regressed by Adam on minibatches of the replay plus every fresh result;
  candidates are scored by the ensemble's mean (plus ``proposal_optimism``
  times its spread) and stay as drawn.
* ``BayesCritic`` (``critic_model: pairwise-bayes``): the Gibbs chain of
  ``ma2ml.learner.bayes_critic`` continued on up to ``bayes_window`` stored
  results, keeping ``results_per_update`` posterior draws; candidate i
  best-responds to draw i mod D (``credit.best_response``) and is scored by
  that draw (Thompson sampling).

``critic_model: auto`` is decided before a critic is built, by
``Settings.for_budget`` alone; ``make_critic`` takes the decided name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from ma2ml.learner.bayes_critic import PairwiseBayesCritic
from ma2ml.learner.credit import QFunction, best_response
from ma2ml.learner.critic import Critic
from ma2ml.learner.policy import Layout
from ma2ml.learner.replay_buffer import Replay
from ma2ml.settings import Settings

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class TrainingData:
    """What one update gives its critic to learn from."""

    fresh: Arrays  # results since the last update: actions (n, n_decisions), rewards, fidelities
    replay: Replay | None  # every stored result; None: the fresh ones only (on-policy)
    normalise: Callable[[np.ndarray], np.ndarray]  # rewards -> the critic's targets
    rng: np.random.Generator  # the algorithm's: draws from the replay, Gibbs sweeps


class CriticModel(Protocol):
    """What MA2ML asks of its critic (one implementation per ``Settings.critic_model``)."""

    name: ClassVar[str]
    exploration: float
    """Share of each proposed decision drawn uniformly with this critic."""
    reward_transform: str
    """How rewards are normalised for it (``ma2ml.learner.normalisers``)."""
    fidelity_input: bool
    """Whether it takes each result's fidelity as an input."""

    def fit(self, data: TrainingData) -> float:
        """Learn from one update's data; returns the fit's loss (the update's statistic)."""
        ...

    def score(self, rows: list[list[int]]) -> list[float]:
        """How promising each candidate joint action looks (higher is better)."""
        ...

    def improve(self, draws: list[list[int]]) -> list[list[int]]:
        """The policies' draws turned into screening candidates."""
        ...

    @property
    def q(self) -> QFunction:
        """Q at full fidelity of (batch, n_decisions) joint actions: what the
        counterfactual credit and the actor's targets are computed on."""
        ...

    def modules(self) -> dict[str, torch.nn.Module]:
        """Networks saved under the snapshot's ``modules``."""
        ...

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers saved under the snapshot's ``optimizers``."""
        ...

    def extra_state(self) -> dict[str, Any]:
        """The rest of its state, saved under the snapshot's ``extra``."""
        ...

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``extra_state`` saved."""
        ...


class MLPCritic:
    """The ensemble of small MLPs, fitted by Adam; its settings: ``critic_*``,
    ``batch_size``, ``proposal_optimism``, ``exploration`` and ``reward_transform``."""

    name: ClassVar[str] = "mlp"

    def __init__(self, layout: Layout, settings: Settings, fidelity_input: bool) -> None:
        s = self.settings = settings
        self.layout = layout
        self.exploration = s.exploration
        self.reward_transform = s.reward_transform
        self.fidelity_input = fidelity_input
        self.net = Critic(layout, s.critic_hidden, s.critic_layers, s.critic_ensemble,
                          s.critic_reduce, fidelity_input=fidelity_input)
        # foreach: one fused call per step instead of one per tensor (tiny nets).
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=s.critic_lr, foreach=True)

    @property
    def q(self) -> QFunction:
        return self.net

    def fit(self, data: TrainingData) -> float:
        losses = []
        for actions, targets, fidelities in self._batches(data):
            loss = self.net.loss(actions, targets, fidelities)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item() / self.settings.critic_ensemble)
        return float(np.mean(losses))

    def _batches(self, data: TrainingData) -> list[tuple[torch.Tensor, torch.Tensor,
                                                         torch.Tensor]]:
        """One minibatch per critic step: replay draws plus every fresh result, as
        (actions, normalised rewards, fidelities).

        The replay is read once per update (``critic_steps * batch_size`` draws),
        so a store-backed replay costs one query, not one per step.
        """
        s, n_decisions = self.settings, self.layout.n_decisions
        fresh_actions, fresh_rewards, fresh_fidelities = data.fresh
        if data.replay is None:
            old_actions = np.zeros((0, n_decisions), dtype=np.int64)
            old_rewards, old_fidelities = np.zeros(0), np.zeros(0)
        else:
            wanted = s.batch_size * s.critic_steps
            old_actions, old_rewards, old_fidelities = data.replay.sample(wanted, data.rng)
            old_actions = old_actions.reshape(-1, n_decisions)
            if 0 < len(old_rewards) < wanted:  # a small replay: reuse its trials per step
                index = data.rng.integers(len(old_rewards), size=wanted)
                old_actions, old_rewards = old_actions[index], old_rewards[index]
                old_fidelities = old_fidelities[index]
        batches = []
        for step in range(s.critic_steps):
            part = slice(step * s.batch_size, (step + 1) * s.batch_size)
            actions = np.concatenate([old_actions[part], fresh_actions])
            rewards = np.concatenate([old_rewards[part], fresh_rewards])
            fidelities = np.concatenate([old_fidelities[part], fresh_fidelities])
            batches.append((torch.as_tensor(actions, dtype=torch.long),
                            torch.as_tensor(data.normalise(rewards), dtype=torch.float32),
                            torch.as_tensor(fidelities, dtype=torch.float32)))
        return batches

    def score(self, rows: list[list[int]]) -> list[float]:
        with torch.no_grad():
            all_q = self.net.predict_all(torch.tensor(rows, dtype=torch.long))
        score = all_q.mean(0)
        if self.settings.proposal_optimism and all_q.shape[0] > 1:
            score = score + self.settings.proposal_optimism * all_q.std(0)
        return score.tolist()

    def improve(self, draws: list[list[int]]) -> list[list[int]]:
        return draws  # the ensemble screens the policies' draws as they are

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"critic": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.optimizer}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Nothing beyond the network and its optimiser."""


class BayesCritic:
    """The pairwise Bayesian critic's Gibbs chain and its last posterior draws; its
    settings: ``gibbs_sweeps``, ``bayes_window``, ``bayes_pairs``, ``bayes_exploration``
    and ``bayes_reward_transform``."""

    name: ClassVar[str] = "pairwise-bayes"

    def __init__(self, layout: Layout, settings: Settings, fidelity_input: bool) -> None:
        self.settings = settings
        self.layout = layout
        self.exploration = settings.bayes_exploration
        self.reward_transform = settings.bayes_reward_transform
        self.fidelity_input = fidelity_input
        self.model = PairwiseBayesCritic(layout, settings.bayes_pairs,
                                         fidelity_input=fidelity_input)
        #: The coefficients of the last update's posterior draws (one per proposal slot).
        self.draws = [self.model.beta]
        #: The draw's value of each candidate of the last ``improve``, which ``score`` uses.
        self.candidate_scores: dict[tuple[int, ...], float] = {}

    @property
    def q(self) -> QFunction:
        # The chain's current state (the last draw), scored per variant: the closed form
        # of ``DrawQ.own_terms`` rounds differently and would move the actor's targets.
        return self.model

    def fit(self, data: TrainingData) -> float:
        """Continue the posterior chain on (a sample of) every result; returns the mean
        squared error of the new draw on them."""
        s = self.settings
        if data.replay is not None:
            rows, rewards, fidelities = data.replay.sample(s.bayes_window, data.rng)
            rows = rows.reshape(-1, self.layout.n_decisions)
        else:  # the on-policy ablation: the fresh results only
            rows, rewards, fidelities = data.fresh
        targets = data.normalise(rewards)
        self.draws = self.model.fit(rows, targets, s.gibbs_sweeps, data.rng,
                                    draws=s.results_per_update, fidelities=fidelities)
        return float(np.mean((self.model.fitted(rows, fidelities) - targets) ** 2))

    def score(self, rows: list[list[int]]) -> list[float]:
        """Each candidate's value under the draw it best-responded to; under the last
        draw if it was not one of the last ``improve``'s (posterior draws: Thompson
        sampling)."""
        drawn = self.model.predict(np.asarray(rows)).tolist()
        return [self.candidate_scores.get(tuple(r), q) for r, q in zip(rows, drawn,
                                                                      strict=True)]

    def improve(self, draws: list[list[int]]) -> list[list[int]]:
        """Candidate i best-responds, decision by decision, under posterior draw i mod D
        (one draw per proposal slot of a batch); each remembers its draw's value for
        ``score``."""
        rows = torch.tensor(draws, dtype=torch.long)
        self.candidate_scores = {}
        out = rows.clone()
        for k, beta in enumerate(self.draws):
            part = slice(k, None, len(self.draws))
            q = self.model.q_of(beta)
            out[part] = best_response(q, self.layout.sizes, rows[part])
            for row, value in zip(out[part].tolist(), q(out[part]).tolist(), strict=True):
                key = tuple(row)
                self.candidate_scores[key] = max(value, self.candidate_scores.get(key, value))
        return out.tolist()

    def modules(self) -> dict[str, torch.nn.Module]:
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def extra_state(self) -> dict[str, Any]:
        return {"bayes_critic": self.model.state_dict(),
                "posterior_draws": torch.from_numpy(np.stack(self.draws))}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["bayes_critic"])
        self.draws = list(state["posterior_draws"].numpy().copy())


#: ``Settings.critic_model`` (once ``auto`` is decided) -> its implementation.
CRITICS: dict[str, type[MLPCritic] | type[BayesCritic]] = {
    cls.name: cls for cls in (MLPCritic, BayesCritic)}


def make_critic(layout: Layout, settings: Settings, fidelity_input: bool) -> CriticModel:
    """The critic ``settings.critic_model`` names (``auto`` must be decided already:
    ``Settings.for_budget``)."""
    try:
        cls = CRITICS[settings.critic_model]
    except KeyError:
        raise ValueError(f"critic_model {settings.critic_model!r} is not decided "
                         f"(known: {', '.join(CRITICS)}; 'auto' goes through "
                         f"Settings.for_budget)") from None
    return cls(layout, settings, fidelity_input)
