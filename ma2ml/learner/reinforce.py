"""REINFORCE baselines on fresh results: MA2ML-Lite and independent learners.

Neither keeps a critic or learns from the replay: each update takes one
Adam step on the results observed since the previous update. Results may
come from a slightly older policy (prefetched trials), so the score
function is weighted by the truncated importance ratio pi / behaviour,
computed from log-probabilities clamped in log space (never NaN).

* ``MA2MLLite``: the joint policy on the shared reward with one moving
  baseline, divergence-regularised toward the target policies (DMAC).
* ``Independent``: one REINFORCE learner per agent, each with its own
  baseline and its own importance ratio, and no coordination at all.

The behaviour probability. A proposal logs, per agent, log pi_i(a_i) of
the policy mixed with ``exploration`` (``Algorithm.propose``). These are the
only learners that read it, and for them it is the behaviour probability up
to one documented approximation:

* Critic screening never applies to them: the best-of-``proposal_candidates``
  choice runs only once a critic is ready (``Algorithm._critic_ready``, false
  without a critic), so each proposal is a single draw.
* De-duplication is rejection sampling: a draw already proposed is redrawn,
  so the true behaviour is pi conditioned on the unseen set U,
  b(a) = pi(a) / pi(U). The logged pi(a) differs from it by the factor
  pi(U), the same for every proposal of a batch (up to the few actions the
  batch itself adds to the seen set). The ratio pi / b is therefore the
  logged ratio times one constant per batch, which scales the whole batch's
  gradient and leaves its direction alone; Adam's step is invariant to such
  a scale. Truncating the logged ratio at ``importance_clip`` is the
  conservative side (the true ratio is smaller by pi(U) <= 1). When the
  tries run out and a repeat is proposed, the draw is a plain draw from pi
  and the logged probability is exact.

The critic-based learners (``ma2ml.learner.actor_critic``) never read it:
see that module's docstring for why screening needs no correction there.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch

from ma2ml.learner.actor_critic import LOG_RATIO_BOUND
from ma2ml.learner.base import Algorithm
from ma2ml.learner.policy import soft_update
from ma2ml.spec import AlgorithmName


def truncated_ratio(log_pi: torch.Tensor, log_behaviour: torch.Tensor,
                    clip: float) -> torch.Tensor:
    """min(pi / behaviour, clip), safe for any log-probabilities (including -inf)."""
    log_ratio = torch.nan_to_num(log_pi - log_behaviour, nan=0.0)
    return log_ratio.clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND).exp().clamp(max=clip)


class _Reinforce(Algorithm):
    """Shared machinery: the fresh batch, an optimiser over the logits and moving baselines."""

    def _build(self) -> None:
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.settings.reinforce_lr)
        self.baselines = torch.zeros(self.layout.n_agents)
        self._baseline_ready = False

    def fresh_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fresh results: actions (n, n_decisions), normalised rewards (n,), behaviour
        log-probabilities (n, n_agents); a missing behaviour log-prob counts as on-policy."""
        actions = torch.tensor([f.row for f in self._fresh], dtype=torch.long)
        rewards = torch.tensor(self.normaliser([f.reward for f in self._fresh]),
                               dtype=torch.float32)
        with torch.no_grad():
            current = self.policy.log_prob_agents(actions)
        behaviour = current.clone()
        for k, logp in enumerate(f.behaviour_logp for f in self._fresh):
            for i, name in enumerate(self.layout.agent_names):
                if name in logp:
                    behaviour[k, i] = logp[name]
        return actions, rewards, behaviour

    def _moving_baseline(self, rewards: torch.Tensor) -> torch.Tensor:
        """The baseline before this batch (the batch mean when there is none yet)."""
        if not self._baseline_ready:
            self.baselines.fill_(rewards.mean().item())
            self._baseline_ready = True
        before = self.baselines.clone()
        decay = self.settings.baseline_decay
        self.baselines.mul_(decay).add_((1 - decay) * rewards.mean())
        return before

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"reinforce": self.optimizer}

    def _extra_state(self) -> dict[str, Any]:
        return {"baselines": self.baselines.clone(), "ready": self._baseline_ready}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.baselines = state["baselines"].clone()
        self._baseline_ready = bool(state["ready"])


class MA2MLLite(_Reinforce):
    """REINFORCE on the joint action with a moving baseline and a DMAC divergence term."""

    name: ClassVar[AlgorithmName] = AlgorithmName.ma2ml_lite

    def _build(self) -> None:
        super()._build()
        self.target = copy.deepcopy(self.policy).requires_grad_(False)

    def _learn(self) -> dict[str, Any]:
        actions, rewards, behaviour = self.fresh_batch()
        advantage = rewards - self._moving_baseline(rewards)[0]  # (n,)
        log_pi = self.policy.log_prob_agents(actions).sum(1)  # (n,) joint log-probability
        ratio = truncated_ratio(log_pi.detach(), behaviour.sum(1), self.settings.importance_clip)
        divergence = self.policy.kl_to(self.target).sum()
        self._step(-(ratio * advantage * log_pi).mean() + self.settings.alpha * divergence)
        soft_update(self.target, self.policy, self.settings.tau)
        credit = advantage.abs().mean().item()
        return {"credit": dict.fromkeys(self.layout.agent_names, credit)}

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy, "target": self.target}


class Independent(_Reinforce):
    """One REINFORCE learner per agent on the shared reward (no credit, no coordination)."""

    name: ClassVar[AlgorithmName] = AlgorithmName.independent

    def _learn(self) -> dict[str, Any]:
        actions, rewards, behaviour = self.fresh_batch()
        advantage = rewards[:, None] - self._moving_baseline(rewards)[None, :]  # (n, n_agents)
        log_pi = self.policy.log_prob_agents(actions)  # (n, n_agents)
        ratio = truncated_ratio(log_pi.detach(), behaviour, self.settings.importance_clip)
        self._step(-(ratio * advantage * log_pi).mean(0).sum())
        credit = advantage.abs().mean(0).tolist()
        return {"credit": dict(zip(self.layout.agent_names, credit, strict=True))}
