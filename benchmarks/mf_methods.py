"""The methods the multi-fidelity simulator compares, except the peers of their own venv.

* ``random``: uniform draws, trained to the end.
* ``ma2ml``: the real learner (``ma2ml.learner.make_algorithm``) through its public
  interface, as the learner loop drives it: results are observed as they finish
  (a stopped trial at the fidelity it reached), and when the queue of proposals
  is empty the learner takes one update and proposes a round of ``workers``.
* ``optuna-tpe``: Optuna's multivariate TPE with constant liar (what ``tpe`` runs
  inside ma2ml), through ask and tell; ``optuna-tpe-hyperband`` adds Optuna's
  ``HyperbandPruner`` (min resource 1, reduction factor 3).

A method name with ``+asha`` or ``+median`` stops trials with ma2ml's own rule:
``StepJudge`` records every intermediate result and asks
``ma2ml.store.stopping.judged`` and ``decide`` exactly as ``store.queue.report_step``
does (the other trials' recorded results at the same epoch), so the simulator runs
the same decisions a real search makes.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
from mf_simulator import Method, Suggestion
from mf_tasks import Task

from ma2ml.spec import EarlyStopping
from ma2ml.store.stopping import (
    RECENT_CURVES,
    StepDecision,
    decide,
    judged,
    learns,
    needs_curves,
    rungs,
)

#: The stopping rules a method name may carry after ``+``. ASHA: the first rung at epoch
#: 1 and keep a third. hyperband: the same with a bracket per rung and one never stopped,
#: shared out as synchronous Hyperband does; adaptive: those shares weighted by what the
#: recent curves say (``bracketShares: adaptive``); median: from epoch 1, 5 peers at
#: least; learned: the learned bar, in adaptive brackets.
RULES: dict[str, dict[str, Any]] = {
    "asha": {"type": "asha", "minEpochs": 1, "reductionFactor": 3},
    "hyperband": {"type": "asha", "minEpochs": 1, "reductionFactor": 3, "brackets": 100,
                  "bracketShares": "hyperband"},
    "adaptive": {"type": "asha", "minEpochs": 1, "reductionFactor": 3, "brackets": 100,
                 "bracketShares": "adaptive"},
    "median": {"type": "median", "minEpochs": 1, "minTrials": 5},
    "learned": {"type": "learned", "minEpochs": 1, "reductionFactor": 3, "minTrials": 5,
                "brackets": 100, "bracketShares": "adaptive"},
}


class StepJudge:
    """ma2ml's early-stopping decisions over the results recorded so far."""

    def __init__(self, rule: EarlyStopping, max_epochs: int) -> None:
        self.rule, self.max_epochs = rule, max_epochs
        self.recorded: dict[int, dict[int, float | None]] = collections.defaultdict(dict)
        self.completed: dict[int, float] = {}  # trial -> final reward, full fidelity

    def complete(self, trial_id: int, reward: float) -> None:
        """A trial ended at full fidelity (the store's ``completed``) with ``reward``."""
        self.completed[trial_id] = reward

    def report(self, trial_id: int, step: int, value: float | None) -> StepDecision:
        """Record ``value`` for (trial, step) and decide, as ``report_step`` does."""
        at_step = self.recorded[step]
        if trial_id in at_step:
            raise ValueError(f"trial {trial_id} reported epoch {step} twice")
        value = float(value) if value is not None and np.isfinite(value) else None
        decision = StepDecision.proceed
        curves = self._recent_curves() if needs_curves(self.rule, step, self.max_epochs) \
            else None
        if judged(self.rule, step, self.max_epochs, trial_id + 1, curves):
            finals = [(at_step[t], y) for t, y in self.completed.items() if t in at_step] \
                if learns(self.rule) else []
            decision = decide(self.rule, value, list(at_step.values()), finals)
        at_step[trial_id] = value
        return decision


    def _recent_curves(self) -> list[list[tuple[float | None, float | None]]]:
        """Per rung, (result there, final) of the last ``RECENT_CURVES`` trials to complete
        (``completed`` keeps completion order), as the store's ``_recent_curves``."""
        recent = list(self.completed.items())[-RECENT_CURVES:]
        return [[(self.recorded[r][t], y) for t, y in recent if t in self.recorded[r]]
                for r in rungs(self.rule, self.max_epochs)]


def _judge(rule: str | None, task: Task) -> StepJudge | None:
    if rule is None:
        return None
    return StepJudge(EarlyStopping.model_validate(RULES[rule]), task.max_epochs)


class RandomMethod:
    """Uniform draws over the space."""

    def __init__(self, task: Task, seed: int, rule: str | None = None) -> None:
        self.sizes = [d.size for a in task.space.agents for d in a.decisions]
        self.rng = np.random.default_rng(seed)
        self.judge = _judge(rule, task)

    def suggest(self, trial_id: int) -> Suggestion:
        return Suggestion([int(self.rng.integers(n)) for n in self.sizes])

    def on_result(self, trial_id: int, epoch: int, value: float) -> bool:
        return self.judge is None or \
            self.judge.report(trial_id, epoch, value) == StepDecision.proceed

    def on_complete(self, trial_id: int, epoch: int, value: float, stopped: bool) -> None:
        """Nothing to learn; a stopping rule may learn from the trial's curve."""
        if self.judge is not None and not stopped and epoch == self.judge.max_epochs:
            self.judge.complete(trial_id, value)


class Ma2mlMethod(RandomMethod):
    """The real learner; ``settings`` are ``spec.algorithm.settings`` overrides."""

    def __init__(self, task: Task, seed: int, rule: str | None = None, *, workers: int = 4,
                 settings: dict[str, Any] | None = None, budget: int | None = None) -> None:
        super().__init__(task, seed, rule)
        from ma2ml.learner import Result, Settings, make_algorithm
        from ma2ml.learner.policy import Layout

        self._result = Result
        self.layout = Layout.from_space(task.space)
        self.algorithm = make_algorithm("ma2ml", self.layout, Settings.from_overrides(settings),
                                        seed, multi_fidelity=rule is not None, budget=budget)
        self.workers, self.max_epochs = workers, task.max_epochs
        self.pending: collections.deque[Any] = collections.deque()
        self.running: dict[int, Any] = {}
        self.finished: list[Any] = []

    def suggest(self, trial_id: int) -> Suggestion:
        if not self.pending:
            if self.finished:
                self.algorithm.observe(self.finished)
                self.algorithm.update()
                self.finished = []
            self.pending.extend(self.algorithm.propose(self.workers))
        proposal = self.pending.popleft()
        self.running[trial_id] = proposal
        return Suggestion(self.layout.from_dict(proposal.action))

    def on_complete(self, trial_id: int, epoch: int, value: float, stopped: bool) -> None:
        super().on_complete(trial_id, epoch, value, stopped)
        proposal = self.running.pop(trial_id)
        self.finished.append(self._result(
            proposal.action, value, "stopped" if stopped else "completed", proposal.logp,
            fidelity=epoch / self.max_epochs))


class OptunaMethod:
    """Optuna's TPE through ask and tell, optionally with its ``HyperbandPruner``."""

    def __init__(self, task: Task, seed: int, *, hyperband: bool = False) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.names = [(f"{a.name}.{d.name}", d.size) for a in task.space.agents
                      for d in a.decisions]
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        pruner = (optuna.pruners.HyperbandPruner(min_resource=1, max_resource=task.max_epochs,
                                                 reduction_factor=3)
                  if hyperband else optuna.pruners.NopPruner())
        self.study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
        self.trials: dict[int, Any] = {}

    def suggest(self, trial_id: int) -> Suggestion:
        trial = self.study.ask()
        self.trials[trial_id] = trial
        return Suggestion([trial.suggest_categorical(name, list(range(size)))
                           for name, size in self.names])

    def on_result(self, trial_id: int, epoch: int, value: float) -> bool:
        trial = self.trials[trial_id]
        trial.report(value, epoch)
        return not trial.should_prune()

    def on_complete(self, trial_id: int, epoch: int, value: float, stopped: bool) -> None:
        trial = self.trials.pop(trial_id)
        if stopped:
            self.study.tell(trial, state=self._optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, value)


#: Base methods of this module; ``+asha`` / ``+median`` may follow random and ma2ml.
BASE_METHODS = ("random", "ma2ml", "optuna-tpe", "optuna-tpe-hyperband")


def make_method(name: str, task: Task, seed: int, workers: int,
                settings: dict[str, Any] | None = None) -> Method:
    """The method called ``name`` (e.g. ``ma2ml+asha``); unknown names list the known."""
    base, _, rule = name.partition("+")
    if base not in BASE_METHODS or (rule and (rule not in RULES or base.startswith("optuna"))):
        raise ValueError(f"unknown method {name!r} (known: {', '.join(BASE_METHODS)}, "
                         f"random and ma2ml with +{' or +'.join(RULES)})")
    if base == "random":
        return RandomMethod(task, seed, rule or None)
    if base == "ma2ml":
        return Ma2mlMethod(task, seed, rule or None, workers=workers, settings=settings)
    return OptunaMethod(task, seed, hyperband=base == "optuna-tpe-hyperband")
