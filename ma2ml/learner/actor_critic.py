"""MA2ML: centralised critic, counterfactual credit, divergence-regularised actor update.

One update (DESIGN.md section 3):

1. Critic: ``critic_steps`` Adam steps on minibatches of the replay buffer
   (``batch_size`` uniform draws each) plus every fresh result, regressing
   the ensemble on per-search normalised rewards; or, with the pairwise
   Bayesian critic, Gibbs sweeps on up to ``bayes_window`` stored results
   (below). Old trials keep teaching. Either is a ``CriticModel``
   (``ma2ml.learner.critics``): the class below fits it, asks it to score
   and improve candidates and computes the credit on its Q, never asking
   which critic it is.
2. Actor: re-sample ``actor_samples`` joint actions from the current
   policies and score them with the critic. The divergence-regularised
   (DMAC) objective E_pi[Q(a) - alpha log(pi(a)/rho(a))] is maximised by the
   joint policy pi* proportional to rho(a) exp(Q(a)/alpha); each unit u (a
   decision, or an agent) moves toward its marginal of pi* by weighted
   maximum likelihood. Within one sampled context a_-u the unit's part of
   pi* is rho_u(a_u) exp(A_u(a)/alpha) / Z: the counterfactual advantage
   A_u(a) = Q(a) - E_{pi_u} Q(a'_u, a_-u) is the credit, evaluated exactly
   per decision (all values enumerated) or by M Monte-Carlo draws per
   agent by ``ma2ml.learner.credit.counterfactual``, the one computation
   behind both these targets and the credit metric of the update's
   statistics; contexts are weighted by Z. Marginals of the *joint* target are
   what lets agents coordinate on the climbing and penalty games, where
   following E_{a_-u}[Q] alone (independent learners) settles on a worse
   joint action. Every weight is a softmax of log-space terms, with
   log(rho/pi) clamped: no NaN or overflow however extreme the
   log-probabilities.
3. Target policies: rho <- (1 - tau) rho + tau pi.

Steps 2 and 3 are sized per result: ``actor_steps`` and ``tau`` are what
``results_per_update`` fresh results buy, and an update with fewer or more
results takes its share (tau compounded). In a real search results arrive
one by one, as workers finish; sized per update instead, the policies would
concentrate faster the more often the learner happens to update.

Coordination beyond the matrix games (issue 14). With a critic that knows
the joint optimum, the marginals of the joint target coordinate: the
climbing and penalty games and the climbing game chained over three agents
are unit tests. On the coupled-modules tasks of ``benchmarks/coupled.py``
(6-12 decisions, every one in a cross-agent climbing trap, noise) the MLP
critic does not know it: fitted on 200 uniformly drawn results, neither it
nor a pair-of-values input, a factorisation machine, an expectile-0.9
("lenient") fit, nor a ridge regression on the tasks' exact model class
ranks the optimum above the deceptive basin on any of 8 unreported
instances, and levers that act through it (optimistic screening, more
exploration, slower policies) left ma2ml in that basin. A lenient or
optimistic actor target cannot create information the critic lacks; what
is missing is data near the optimum. ``critic_model: pairwise-bayes``
(``ma2ml.learner.bayes_critic``) collects them: a Bayesian critic on main
and pair effects whose posterior draws (Thompson sampling)
are optimistic where data are few. Then the per-decision counterfactual
acts twice: the actor's targets are computed on the draw, and every
candidate proposal first best-responds, decision by decision, to its
counterfactual values under one draw per batch slot
(``credit.best_response``) before the draw screens the candidates.
``MA2MLNoCredit`` with that critic has neither: its candidates are the
policies' draws, screened by the draw. Measured on tuning instances
100-107 (seeds 1000-1001, exploration 0.5): mean final regret 1.09 with
credit, 1.92 without; with credit in the actor only (no best response, an
earlier build) 1.78 on two instances; TPE about 2.3. Starting the best
response from the policies' draws rather than from uniform draws was no
better there (exploration 1: 0.76-0.85;
0.25-0.5: 0.88-1.09; within the noise of 24 runs): the search's gain comes
from the critic's draws and the credit's best response, not from the
policies' concentration.

Which critic (``Settings.critic_model: auto``, the default). The Bayesian
critic became the default for searches of at least ``auto_bayes_trials``
(100) trials once it also won on the real tables. It lost there first
(z-scored rewards, cross-agent pairs: NB201-CIFAR-10 regret 0.081 against
TPE's 0.012 on tuning seeds 1000-1019): a few broken cells far below set the
scale and the top was squeezed together, and the pairs within an agent (two
layer widths, two edges' operations) carried real structure. Fitted on
``upper-linear`` rewards (ranks below the median, distances above it:
``ma2ml.learner.normalisers``) with every pair of decisions it was no worse
than TPE on any of the seven tables, noise-free or noisy, and better on the
coupled tasks. With tens of results for hundreds of pair coefficients its
draws wander, though: at 50 evaluations its regret was about twice the MLP
critic's, and a greedy slot (one candidate group best-responding to the
posterior mean) won back little there and lost at 200. So below 100 trials
``auto`` keeps the MLP ensemble, whose settings (``exploration`` 0.1, ``rank``)
stay as they were tuned; the Bayesian critic has its own
(``bayes_exploration``, ``bayes_reward_transform``).

Why no importance weight on stored results. Proposals are screened by the
critic (the best of ``proposal_candidates`` unseen draws), so the
probability a proposal logs is not the probability with which it was
chosen. Nothing here needs that probability: the critic regresses
E[r | a], a conditional expectation whose target does not depend on how a
was chosen (screening, de-duplication, older policies decide only where
the critic has data, not what it converges to where it has), and the
actor's expectation over a ~ pi is taken over fresh draws from the current
policies scored by the critic, never over stored actions. The logged
probability is read by the REINFORCE learners only (``reinforce``), which
never screen. The same holds for the Bayesian critic's proposals, which are
best responses to a draw rather than policy draws: its posterior is a
regression on where results are, not an expectation over how they were
chosen.

``MA2MLNoCredit`` weights whole sampled joint actions by exp(Q(a)/alpha)
(no per-unit counterfactual); ``MA2MLOnPolicy`` trains the critic on fresh
results only (no replay; the Bayesian critic is then fitted on each update's
fresh results).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, ClassVar, cast

import numpy as np
import torch

from ma2ml.learner.base import Algorithm
from ma2ml.learner.credit import Counterfactual, counterfactual
from ma2ml.learner.critics import CriticModel, TrainingData, make_critic
from ma2ml.learner.policy import soft_update
from ma2ml.spec import AlgorithmName

#: Bound on log(rho/pi) in the weights: beyond e^20 a ratio carries no information.
LOG_RATIO_BOUND = 20.0

LossFn = Callable[[], torch.Tensor]


def _log_mean_exp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """log(mean(exp(x))) along ``dim`` without overflow."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


class MA2ML(Algorithm):
    """Multi-agent actor-critic with counterfactual credit and off-policy replay."""

    name: ClassVar[AlgorithmName] = AlgorithmName.ma2ml
    use_credit: ClassVar[bool] = True
    use_replay: ClassVar[bool] = True

    def _build(self) -> None:
        s = self.settings
        self.target = copy.deepcopy(self.policy).requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.policy.parameters(), lr=s.actor_lr,
                                                foreach=True)
        # Without early stopping every result is full fidelity: the critic sees no fidelity,
        # and with ``fidelity_input: false`` a stopped trial counts as a full one.
        self.critic: CriticModel = make_critic(self.layout, s,
                                               self.multi_fidelity and s.fidelity_input)

    def _exploration(self) -> float:
        return self.critic.exploration

    def _reward_transform(self) -> str:
        return self.critic.reward_transform

    def _learn(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"critic_loss": self.critic.fit(self._training_data())}
        if self._critic_ready():
            share = len(self._fresh) / self.settings.results_per_update
            stats["credit"] = self._train_actor(max(1, round(self.settings.actor_steps * share)))
            soft_update(self.target, self.policy, 1.0 - (1.0 - self.settings.tau) ** share)
        return stats

    # -- proposals ---------------------------------------------------------------------

    def _critic_ready(self) -> bool:
        return self.n_results >= self.settings.warmup_results

    def _score(self, rows: list[list[int]]) -> list[float]:
        return self.critic.score(rows)

    def _improve(self, draws: list[list[int]]) -> list[list[int]]:
        """The critic's candidates (the Bayesian critic's best responses); without credit
        the candidates stay as drawn."""
        return self.critic.improve(draws) if self.use_credit else draws

    # -- critic ------------------------------------------------------------------------

    def _training_data(self) -> TrainingData:
        """This update's data for the critic: the fresh results as (actions
        (n, n_decisions), rewards, fidelities), and the replay unless on-policy."""
        fresh = (np.array([f.row for f in self._fresh], dtype=np.int64).reshape(
                     -1, self.layout.n_decisions),
                 np.array([f.reward for f in self._fresh], dtype=np.float64),
                 np.array([f.fidelity for f in self._fresh], dtype=np.float64))
        return TrainingData(fresh, self.replay if self.use_replay else None, self.normaliser,
                            self.rng)

    # -- actor -------------------------------------------------------------------------

    def _train_actor(self, steps: int) -> dict[str, float]:
        s = self.settings
        contexts = self.policy.sample(s.actor_samples, self.generator)  # (samples, n_decisions)
        with torch.no_grad():  # log(rho/pi) of every decision of every context
            log_ratio = (self.target.log_prob_decisions(contexts)
                         - self.policy.log_prob_decisions(contexts))
        if not self.use_credit:
            loss_fn, credit = self._joint_targets(contexts, log_ratio)
        else:
            cf = counterfactual(self.critic.q, self.policy, contexts, s.credit, s.mc_samples,
                                self.generator)
            targets = self._decision_targets if s.credit == "decision" else self._agent_targets
            loss_fn = targets(contexts, cf, log_ratio)
            credit = cf.advantage()
        for _ in range(steps):
            loss = loss_fn()
            self.actor_optimizer.zero_grad()
            loss.backward()
            self.actor_optimizer.step()
        return self._credit_by_agent(credit)

    def _context_weights(self, log_z: torch.Tensor, others_log_ratio: torch.Tensor
                         ) -> torch.Tensor:
        """(samples,) self-normalised weight of each context a_-u: its mass under
        rho_-u exp(Q / alpha), corrected for having been drawn from pi_-u."""
        bound = LOG_RATIO_BOUND
        return torch.softmax(log_z + others_log_ratio.clamp(-bound, bound), dim=0)

    def _decision_targets(self, contexts: torch.Tensor, cf: Counterfactual,
                          log_ratio: torch.Tensor) -> LossFn:
        """Exact per decision: the enumerated values of decision j within each context."""
        alpha = self.settings.alpha
        with torch.no_grad():
            log_rho = self.target.decision_log_probs()
        targets = []
        total = log_ratio.sum(1)
        for j, q_j in enumerate(cf.values):  # (samples, size_j)
            logits = q_j / alpha + log_rho[j]
            weights = self._context_weights(torch.logsumexp(logits, 1), total - log_ratio[:, j])
            targets.append(weights @ torch.softmax(logits, 1))  # (size_j,)
        policy = self.policy

        def loss() -> torch.Tensor:  # cross-entropy of each decision to its target
            # A tensor: there is at least one decision (sum's 0 start adds nothing).
            return -cast(torch.Tensor, sum((t * lp).sum() for t, lp in
                                           zip(targets, policy.decision_log_probs(), strict=True)))
        return loss

    def _agent_targets(self, contexts: torch.Tensor, cf: Counterfactual,
                       log_ratio: torch.Tensor) -> LossFn:
        """Monte-Carlo per agent: the sampled action plus M redraws of agent i's columns."""
        s, layout = self.settings, self.layout
        assert cf.alternatives is not None  # the agent estimator keeps its rows
        n = cf.taken.shape[0]
        ratio_by_agent = log_ratio @ layout.agent_matrix()  # (samples, n_agents)
        candidates, weights = [], []
        for i, (alt, q_alt) in enumerate(zip(cf.alternatives, cf.values, strict=True)):
            cand = torch.cat([contexts[:, None, :], alt], dim=1)  # (samples, M + 1, n_dec)
            flat = cand.reshape(-1, layout.n_decisions)
            with torch.no_grad():
                own = (self.target.log_prob_agents(flat)[:, i]
                       - self.policy.log_prob_agents(flat)[:, i]).view(n, -1)
                logits = torch.cat([cf.taken[:, None], q_alt], 1) / s.alpha + own.clamp(
                    -LOG_RATIO_BOUND, LOG_RATIO_BOUND)
                w = self._context_weights(_log_mean_exp(logits, 1),
                                          ratio_by_agent.sum(1) - ratio_by_agent[:, i])
            candidates.append(flat)
            weights.append((w[:, None] * torch.softmax(logits, 1)).reshape(-1))
        policy = self.policy

        def loss() -> torch.Tensor:  # weighted maximum likelihood of each agent's candidates
            # A tensor: there is at least one agent (sum's 0 start adds nothing).
            return -cast(torch.Tensor, sum((w * policy.log_prob_agents(c)[:, i]).sum() for i, (c, w)
                                           in enumerate(zip(candidates, weights, strict=True))))
        return loss

    def _joint_targets(self, contexts: torch.Tensor, log_ratio: torch.Tensor
                       ) -> tuple[LossFn, torch.Tensor]:
        """No credit: every agent is weighted by the joint Q of the sampled action."""
        q = self.critic.q(contexts).detach()
        weights = self._context_weights(q / self.settings.alpha, log_ratio.sum(1))
        policy = self.policy

        def loss() -> torch.Tensor:
            return -(weights * policy.log_prob_decisions(contexts).sum(1)).sum()
        units = self.layout.n_agents if self.settings.credit == "agent" else \
            self.layout.n_decisions
        return loss, (q - q.mean())[:, None].expand(-1, units)

    def _credit_by_agent(self, credit: torch.Tensor) -> dict[str, float]:
        """Mean |A| per agent: how much an agent's own choices move the critic."""
        magnitude = credit.abs().mean(0)  # (n_units,)
        if magnitude.shape[0] != self.layout.n_agents:
            matrix = self.layout.agent_matrix()
            magnitude = (magnitude @ matrix) / matrix.sum(0)
        return dict(zip(self.layout.agent_names, magnitude.tolist(), strict=True))

    # -- snapshots ---------------------------------------------------------------------

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy, "target": self.target, **self.critic.modules()}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**self.critic.optimizers(), "actor": self.actor_optimizer}

    def _extra_state(self) -> dict[str, Any]:
        return self.critic.extra_state()

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.critic.load_extra_state(state)


class MA2MLNoCredit(MA2ML):
    """Ablation: every agent is credited with the joint Q(a), no counterfactual baseline."""

    name: ClassVar[AlgorithmName] = AlgorithmName.ma2ml_no_credit
    use_credit: ClassVar[bool] = False


class MA2MLOnPolicy(MA2ML):
    """Ablation: the critic learns from the fresh on-policy results only (no replay)."""

    name: ClassVar[AlgorithmName] = AlgorithmName.ma2ml_on_policy
    use_replay: ClassVar[bool] = False
