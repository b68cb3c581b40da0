"""TPE: Optuna's ``TPESampler`` as a built-in algorithm (``spec.algorithm.name: tpe``).

So that a user can compare MA2ML with the tree-structured Parzen estimator
on their own problem, fed from the same store by the same loop.

The mapping:

* Every decision of every agent is one Optuna parameter, named
  ``<agent>.<k>`` (k-th decision of the agent), with a
  ``CategoricalDistribution`` over its value indices ``0 .. size - 1``.
  Agents mean nothing to TPE: it sees one flat joint action.
* The sampler is Optuna's multivariate TPE (a joint Parzen estimator over
  all decisions, Optuna 5's default) with ``constant_liar``: proposals
  still outstanding (pending or running trials) count as bad results, so a
  batch of proposals spreads out instead of asking for one point ``n``
  times. The search space is fixed, so the sampler is given it
  (``infer_relative_search_space``) instead of intersecting every trial's.
* ``propose(n)`` asks the study ``n`` times. Ask number k uses a sampler
  seeded from (seed, k), so a proposal depends only on the seed, the
  number of asks and the study's trials: same seed, same proposals, and a
  study rebuilt from a snapshot proposes what the original would have.
  An ask that returns a pipeline already proposed is discarded (told FAIL,
  which TPE ignores) and asked again, up to ``dedupe_tries`` times; then
  the pipeline is drawn uniformly among unseen ones, as random search does
  (``UNIFORM_DRAWS`` draws per try; repeats only once the space runs out).
* Results are told to the trial that proposed them (matched by pipeline;
  a result with no outstanding trial, such as one proposed before a
  restart that the snapshot did not record, is added as a new trial).
  Completed and diverged results are COMPLETE with ``reward_of`` (a
  diverged trial without a finite reward gets ``diverged_reward``, as for
  every algorithm). Failed trials are FAIL, Optuna's own semantics: TPE
  ignores them, so a failing region is not penalised (``failed_reward``
  is not used); the failed pipeline itself is never proposed again.
  Trials stopped early (``spec.earlyStopping``) are PRUNED with their last
  result as the intermediate value at step ``1000 * fidelity``, as
  Optuna's pruners leave them: TPE ranks them below every completed trial,
  deeper-trained first. (Optuna cannot mark a trial it asked for as pruned
  without its ``Trial`` object, so that trial is discarded and the pruned
  one added at the end.)
* The snapshot holds the study as tensors: every trial's pipeline, state,
  value and step in trial order, and the number of asks
  (``load_state_dict`` rebuilds the study from them). Discarded asks are
  not kept; TPE never looks at FAIL trials, so they change nothing.

Limits:

* Cost. One ask evaluates the Parzen estimators over every modelled
  trial, so it grows with the trials: 10-40 ms per proposal at 1,000
  trials of 12 decisions, 0.2-0.3 s at 10,000 (one thread of a shared
  2-core machine), and rebuilding a study of 1,000 trials from a snapshot
  takes 0.2-0.5 s. TPE models only the most recent ``tpe_window``
  results: once it holds half a window more, the oldest are dropped and
  the study is rebuilt, so a proposal's cost and the snapshot's size stay
  bounded. Optuna already weighs old trials down
  (its default weights ramp from 1/n for the oldest), but a window also
  forgets an early best pipeline.
* No credit, no critic, no agents: the ``entropy`` statistic is the
  untouched uniform policy's, and each proposal's ``logp`` is the uniform
  policy's log-probability (TPE exposes no per-agent probability).
* Proposals made after the last snapshot are unknown to a restarted
  learner: their results arrive as new trials and they are not lied about
  meanwhile (at most ``parallelism + prefetch`` trials).
* Optuna's logging (a line per study and per trial) is silenced around
  every call, and its ``ExperimentalWarning`` (Optuna 4 marks
  ``multivariate`` and ``constant_liar`` experimental) is ignored where the
  sampler is built.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import TPESampler
from optuna.trial import FrozenTrial, TrialState, create_trial

from ma2ml.learner.base import Algorithm, Proposal, Result
from ma2ml.learner.screening import pick_best_unseen
from ma2ml.spec import AlgorithmName
from ma2ml.store import TrialStatus

#: A trial's state in a snapshot (an int8 tensor).
COMPLETE, FAIL, RUNNING, PRUNED = 0, 1, 2, 3
#: The step of a pruned trial's intermediate value at full fidelity.
FULL_STEP = 1000
#: Uniform draws per ``dedupe_tries`` for a pipeline TPE itself keeps repeating.
UNIFORM_DRAWS = 64
_STATES = {COMPLETE: TrialState.COMPLETE, FAIL: TrialState.FAIL, RUNNING: TrialState.RUNNING,
           PRUNED: TrialState.PRUNED}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna logs every study and trial at INFO: only its warnings get through."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _no_score(rows: list[list[int]]) -> list[float]:
    """Uniform fallback draws are not ranked."""
    return [0.0] * len(rows)


class _FixedSpaceTPE(TPESampler):
    """Multivariate TPE over a search space known in advance.

    Optuna infers the joint space by intersecting the spaces of all trials,
    which costs more than sampling itself at 1,000 trials; ours never changes.
    """

    def __init__(self, space: dict[str, BaseDistribution], **kwargs: Any) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ExperimentalWarning)
            super().__init__(multivariate=True, constant_liar=True, **kwargs)
        self._fixed_space = {k: d for k, d in space.items() if not d.single()}

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return dict(self._fixed_space)


class TPE(Algorithm):
    """Optuna's multivariate TPE with constant liar over the joint action's decisions."""

    name: ClassVar[AlgorithmName] = AlgorithmName.tpe

    def _build(self) -> None:
        layout = self.layout
        self._params = [f"{agent}.{k}" for i, agent in enumerate(layout.agent_names)
                        for k in range(len(layout.columns(i)))]
        self._distributions: dict[str, BaseDistribution] = {
            name: CategoricalDistribution(tuple(range(size)))
            for name, size in zip(self._params, layout.sizes, strict=True)}
        # The uniform policy's log-probability, per agent (what every proposal reports).
        self._uniform_logp = {agent: -sum(math.log(layout.sizes[j]) for j in layout.columns(i))
                              for i, agent in enumerate(layout.agent_names)}
        # The study's trials in trial order (discarded asks left out):
        self._rows: list[tuple[int, ...]] = []  # each (n_decisions,)
        self._states: list[int] = []  # COMPLETE | FAIL | RUNNING | PRUNED
        self._values: list[float] = []  # NaN unless COMPLETE or PRUNED
        self._steps: list[int] = []  # a PRUNED trial's step, else 0
        self._numbers: list[int] = []  # the trial's number in the live study
        self._next_number = 0  # the live study's trial count (discarded asks included)
        self._asks = 0
        self._rebuild()

    # -- the study ---------------------------------------------------------------------

    def _sampler(self, ask: int) -> TPESampler:
        seed = int(np.random.SeedSequence([self.seed, ask]).generate_state(1)[0])
        return _FixedSpaceTPE(self._distributions, seed=seed,
                              n_startup_trials=self.settings.tpe_startup_trials,
                              n_ei_candidates=self.settings.tpe_candidates)

    def _frozen(self, row: Sequence[int], state: int, value: float, step: int) -> FrozenTrial:
        return create_trial(
            state=_STATES[state], value=value if state == COMPLETE else None,
            params=dict(zip(self._params, (int(v) for v in row), strict=True)),
            distributions=self._distributions,
            intermediate_values={step: value} if state == PRUNED else None)

    def _rebuild(self) -> None:
        """A new study holding exactly the recorded trials, in order."""
        with _quiet():
            self.study = optuna.create_study(direction="maximize", sampler=self._sampler(0))
            self.study.add_trials([self._frozen(*t) for t in zip(
                self._rows, self._states, self._values, self._steps, strict=True)])
        self._numbers = list(range(len(self._rows)))
        self._next_number = len(self._rows)

    def _record(self, row: tuple[int, ...], state: int, value: float, step: int = 0) -> None:
        """Note the study's newest trial (just asked or added)."""
        self._rows.append(row)
        self._states.append(state)
        self._values.append(value)
        self._steps.append(step)
        self._numbers.append(self._next_number - 1)

    def _add(self, row: tuple[int, ...], state: int, value: float, step: int = 0) -> None:
        """A trial TPE did not ask for, added to the study and recorded."""
        self.study.add_trial(self._frozen(row, state, value, step))
        self._next_number += 1
        self._record(row, state, value, step)

    def _keep(self, keep: Sequence[int]) -> None:
        """Only the records at indices ``keep`` (in order) stay recorded."""
        self._rows = [self._rows[k] for k in keep]
        self._states = [self._states[k] for k in keep]
        self._values = [self._values[k] for k in keep]
        self._steps = [self._steps[k] for k in keep]
        self._numbers = [self._numbers[k] for k in keep]

    # -- proposals ---------------------------------------------------------------------

    def propose(self, n: int) -> list[Proposal]:
        """``n`` pipelines asked of the study (outstanding ones lied about), no repeats
        while the space has unseen pipelines."""
        proposals = []
        for _ in range(max(n, 0)):
            row = self._ask_unseen()
            self._proposed.add(row)
            proposals.append(Proposal(self.layout.to_dict(row), dict(self._uniform_logp),
                                      self.policy_version))
        return proposals

    def _ask_unseen(self) -> tuple[int, ...]:
        tries = self.settings.dedupe_tries
        with _quiet():
            for _ in range(tries + 1):
                self.study.sampler = self._sampler(self._asks)
                self._asks += 1
                trial = self.study.ask(self._distributions)
                self._next_number += 1
                row = tuple(int(trial.params[name]) for name in self._params)
                if tries == 0 or row not in self._proposed:
                    self._record(row, RUNNING, math.nan)
                    return row
                self.study.tell(trial.number, state=TrialState.FAIL)  # TPE ignores it
            # TPE keeps returning known pipelines: an unseen one drawn uniformly (draws
            # are cheap, asks are not: many, so that the last unseen ones are found).
            draws = self.policy.sample(UNIFORM_DRAWS * (tries + 1), self.generator).tolist()
            row = tuple(pick_best_unseen(draws, self._proposed, 1, 1, _no_score)[0])
            self._add(row, RUNNING, math.nan)
        return row

    # -- results -----------------------------------------------------------------------

    def observe(self, results: Sequence[Result]) -> None:
        """Tell each result to the outstanding trial that proposed its pipeline."""
        super().observe(results)
        outstanding: dict[tuple[int, ...], list[int]] = {}
        for k in range(len(self._rows)):
            if self._states[k] == RUNNING:
                outstanding.setdefault(self._rows[k], []).append(k)
        discarded: set[int] = set()
        with _quiet():
            for result in results:
                row = tuple(self.layout.from_dict(result.action))
                state, value, step = self._outcome(result)
                waiting = outstanding.get(row)
                asked = waiting.pop(0) if waiting else None
                if asked is not None and state != PRUNED:
                    self._states[asked], self._values[asked] = state, value
                    self.study.tell(self._numbers[asked], value if state == COMPLETE else None,
                                    state=_STATES[state])
                    continue
                if asked is not None:  # pruned: the asked trial is discarded, a pruned one added
                    self.study.tell(self._numbers[asked], state=TrialState.FAIL)
                    discarded.add(asked)
                self._add(row, state, value, step)
        if discarded:
            self._keep([k for k in range(len(self._rows)) if k not in discarded])
        self._forget_old()

    def _outcome(self, result: Result) -> tuple[int, float, int]:
        """The result's trial state, value and (pruned) step."""
        if result.status == TrialStatus.failed:
            return FAIL, math.nan, 0
        if result.status == TrialStatus.stopped:
            fidelity = float(getattr(result, "fidelity", 0.0))
            return PRUNED, self.reward_of(result), round(FULL_STEP * min(max(fidelity, 0), 1))
        return COMPLETE, self.reward_of(result), 0

    def _forget_old(self) -> None:
        """Keep the most recent ``tpe_window`` results once there are half a window more."""
        window = self.settings.tpe_window
        finished = [k for k, s in enumerate(self._states) if s != RUNNING]
        if len(finished) <= window + window // 2:
            return
        drop = set(finished[:len(finished) - window])
        self._keep([k for k in range(len(self._rows)) if k not in drop])
        self._rebuild()

    def _learn(self) -> dict[str, Any]:
        return {"tpe_trials": sum(s != RUNNING for s in self._states)}

    # -- snapshots ---------------------------------------------------------------------

    def _extra_state(self) -> dict[str, Any]:
        return {
            "rows": torch.tensor(self._rows, dtype=torch.int64).reshape(
                -1, self.layout.n_decisions),  # (n_trials, n_decisions)
            "states": torch.tensor(self._states, dtype=torch.int8),  # (n_trials,)
            "values": torch.tensor(self._values, dtype=torch.float64),  # (n_trials,)
            "steps": torch.tensor(self._steps, dtype=torch.int32),  # (n_trials,)
            "asks": self._asks,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._rows = [tuple(row) for row in state["rows"].tolist()]
        self._states = [int(s) for s in state["states"].tolist()]
        self._values = [float(v) for v in state["values"].tolist()]
        self._steps = [int(v) for v in state["steps"].tolist()]
        self._asks = int(state["asks"])
        self._rebuild()
