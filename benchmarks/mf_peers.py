"""Peer multi-fidelity optimisers as ``mf_simulator.Method``s: DEHB and Syne Tune's schedulers.

``make_peer(name, task, seed, workers)`` builds one of ``PEERS``; each is a
pure function of its seed (same seed, same trace):

* ``dehb``: DEHB 0.1.2 (PyPI ``dehb``) through its ask/tell interface. DEHB
  picks the fidelity up front: a job trains a fresh config for
  ``round(fidelity)`` epochs (eta 3 on 1..50 epochs gives rungs 2, 6, 17, 50)
  and DEHB never stops a trial itself. It minimises, so it is told
  ``fitness = -accuracy``, and ``cost`` = the simulated seconds of that training.
* ``st-asha``, ``st-bohb``, ``st-asha-cqr``, ``st-asha-cqr-lazy``,
  ``st-asha-bore``: Syne Tune 0.16's asynchronous successive halving, stopping
  type (grace period 1, reduction factor 3: rungs at epochs 1, 3, 9, 27), with
  random search, BOHB's KDE, conformal quantile regression (CQR, as shipped and
  refitted lazily) and BORE proposing the configs. Driven through the scheduler
  API as Syne Tune's ``Tuner`` drives it, not through its Tuner and backends.
  What is changed from the shipped baselines, and why: ``_syne_tune_scheduler``.

What Syne Tune 0.16 offers (``syne_tune/optimizer/baselines.py``): it was
rewritten, and the multi-fidelity schedulers left are ``ASHA``, ``BOHB``,
``ASHACQR`` and ``ASHABORE``, all one class (``AsynchronousSuccessiveHalving``,
stopping type only: no pause/resume, no promotion type), plus
``MedianStoppingRule`` (not model-based; not adapted here). ``HyperbandScheduler``,
MOBSTER, Hyper-Tune, DyHPO and the ``mode``/``resource_attr`` arguments are
gone; the arguments are ``metric``, ``do_minimize``, ``time_attr``, ``max_t``,
and ``suggest()`` takes no trial id. The model-based ones fit a single-fidelity
model to the last value each trial reported (``LastValueMultiFidelitySearcher``),
after 5 random trials, refitted whenever a new trial has reported.

Seconds of one run on lcbench-3945, 100x budget, 4 workers (``--time``), real
and CPU, on this project's 2-core machine while other work kept its load
average at 6-9 (so the CPU figure is the steadier one): ``dehb`` 4.5 / 2.9,
``st-asha`` 8.2 / 5.5, ``st-bohb`` 19 / 12, ``st-asha-cqr-lazy`` 69 / 45,
``st-asha-bore`` 99 / 55. ``st-asha-cqr`` had not finished after 50 minutes
(a 20x budget took 400 s): use ``st-asha-cqr-lazy`` where runs must be many.

The peers' packages need numpy < 2 (dehb pins it) and pull in dask, pandas,
scikit-learn, statsmodels and xgboost, so they live in their own virtualenv,
not in the main one: ``make bench-peers`` makes ``.venv-peers`` from
``benchmarks/peers-requirements.txt`` plus this project without its
dependencies (no torch), from this machine's package mirror: 42 s with a light
load, 112 s under the load above. Then::

    .venv-peers/bin/python benchmarks/mf_peers.py --smoke   # each peer, small budget, twice
    .venv-peers/bin/python benchmarks/mf_peers.py --time    # one 100x-budget run each

This module imports dehb and Syne Tune only when a peer is made, so the main
virtualenv can import it (for ``PEERS``) without them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from mf_simulator import Method, Suggestion, simulate
from mf_tasks import Task, load_task

#: The peers ``make_peer`` builds, in the order the smoke mode runs them.
PEERS = ("dehb", "st-asha", "st-bohb", "st-asha-cqr", "st-asha-cqr-lazy", "st-asha-bore")
#: Syne Tune peer name -> the class in ``syne_tune.optimizer.baselines`` it stands for.
SYNE_TUNE = {"st-asha": "ASHA", "st-bohb": "BOHB", "st-asha-cqr": "ASHACQR",
             "st-asha-cqr-lazy": "ASHACQR", "st-asha-bore": "ASHABORE"}
#: ``st-asha-cqr-lazy`` refits CQR's model once the trials it has seen grew by this
#: fraction since the last fit (at least one), not after every new one (see
#: ``_syne_tune_scheduler``).
CQR_LAZY_GROWTH = 0.1
ETA = 3  # DEHB's eta and ASHA's reduction factor, both libraries' defaults

_METRIC, _RESOURCE = "accuracy", "epoch"
# Syne Tune's Trial wants a creation time that no scheduler here reads; a fixed one
# keeps the adapters free of the wall clock.
_CREATED = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def make_peer(name: str, task: Task, seed: int, workers: int) -> Method:
    """A peer optimiser by name (one of ``PEERS``) for ``task``, seeded with ``seed``.

    ``workers`` is the simulator's worker count; no peer here needs it to
    decide (both libraries work asynchronously), and DEHB must not get it (see
    ``DEHBPeer``)."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if name == "dehb":
        return DEHBPeer(task, seed)
    if name in SYNE_TUNE:
        return SyneTunePeer(name, task, seed)
    raise ValueError(f"unknown peer {name!r} (known: {', '.join(PEERS)})")


def _keys(task: Task) -> list[str]:
    """One hyperparameter name per decision, in layout order; the position prefix
    keeps names unique across agents and sorts them the way a row is laid out."""
    return [f"x{i:02d}_{agent.name}_{decision.name}"
            for i, (agent, decision) in enumerate(
                (a, d) for a in task.space.agents for d in a.decisions)]


def _sizes(task: Task) -> list[int]:
    return [len(d.values) for a in task.space.agents for d in a.decisions]


class DEHBPeer:
    """DEHB (ask/tell) as a simulator method.

    Asynchronous use: DEHB's ask may run ahead of tell. A Successive Halving
    bracket whose next rung waits on results is skipped, and when every active
    bracket waits, ask opens a new one, so ``workers`` outstanding jobs are
    fine. ``n_workers`` is DEHB's own parallel runner's: above 1 its
    constructor starts a Dask cluster of that many processes, which ask/tell
    never uses, so it is 1 here whatever the simulator's worker count.
    """

    def __init__(self, task: Task, seed: int) -> None:
        import ConfigSpace
        from dehb import DEHB
        from loguru import logger

        self._task = task
        self._keys = _keys(task)
        cs = ConfigSpace.ConfigurationSpace(seed=seed)
        # An ordinal over value indices: a decision's values are ordered (spaces.Decision),
        # and DE maps its unit interval to the index either way.
        for key, size in zip(self._keys, _sizes(task), strict=True):
            cs.add(ConfigSpace.OrdinalHyperparameter(key, list(range(size))))
        # DEHB writes dehb.log (and, with save_freq "incumbent", its state and history at
        # every new incumbent) into output_path, "./" by default: a temporary folder,
        # saving only at the end of its own run() (never called), and its loguru sinks
        # replaced by one to stderr for warnings once it is built.
        with tempfile.TemporaryDirectory(prefix="mf-peers-dehb-") as scratch:
            self._dehb = DEHB(cs=cs, min_fidelity=1, max_fidelity=task.max_epochs, eta=ETA,
                              n_workers=1, seed=seed, save_freq="end", output_path=scratch,
                              log_level="WARNING")
            logger.configure(handlers=[{"sink": sys.stderr, "level": "WARNING"}])
        self._jobs: dict[int, tuple[dict[str, Any], list[int]]] = {}

    def suggest(self, trial_id: int) -> Suggestion:
        job = self._dehb.ask()
        row = [int(job["config"][key]) for key in self._keys]
        self._jobs[trial_id] = (job, row)
        return Suggestion(row, max(1, round(float(job["fidelity"]))))

    def on_result(self, trial_id: int, epoch: int, value: float) -> bool:
        return True  # DEHB's brackets decide the fidelity up front

    def on_complete(self, trial_id: int, epoch: int, value: float, stopped: bool) -> None:
        job, row = self._jobs.pop(trial_id)
        cost = float(self._task.curve(row).seconds[epoch - 1])
        self._dehb.tell(job, {"fitness": -value, "cost": cost})


class SyneTunePeer:
    """A Syne Tune 0.16 ASHA-family scheduler as a simulator method.

    The calls mirror ``syne_tune.Tuner``: ``suggest`` then ``on_trial_add`` for
    a new trial; ``on_trial_result`` for each epoch's result, and on a STOP
    (PAUSE is treated as one: there is no resume here) ``on_trial_remove``. A
    trial that reaches ``max_t`` reports that epoch too, which ASHA answers
    with STOP, so it is removed the same way and ``on_trial_complete`` is never
    called, as in the Tuner.

    Some of Syne Tune's code draws from numpy's global generator (ASHA's
    bracket draw, unseeded ``Domain.sample`` in the KDE and BORE searchers, the
    CQR sampler and its scikit-learn splits and trees), so every call runs with
    the global generator swapped for this peer's own, seeded from ``seed``: a
    run is then reproducible whatever else uses that generator meanwhile.
    """

    def __init__(self, name: str, task: Task, seed: int) -> None:
        from syne_tune.backend.trial_status import Trial
        from syne_tune.config_space import choice
        from syne_tune.optimizer.scheduler import SchedulerDecision

        self._trial_cls = Trial
        self._continue = SchedulerDecision.CONTINUE
        self._keys = _keys(task)
        # Categorical over value indices: 0.16's KDE (BOHB) encodes an integer domain
        # one way and samples it another (its random draws never give index 0), while
        # it round-trips a categorical exactly.
        space = {key: choice(list(range(size)))
                 for key, size in zip(self._keys, _sizes(task), strict=True)}
        _quiet_syne_tune()
        self._global_rng = np.random.RandomState(seed).get_state()
        with self._own_global_rng():
            self._scheduler = _syne_tune_scheduler(name, space, task.max_epochs, seed)
        self._trials: dict[int, Any] = {}

    @contextlib.contextmanager
    def _own_global_rng(self) -> Iterator[None]:
        outside = np.random.get_state()
        np.random.set_state(self._global_rng)
        try:
            yield
        finally:
            self._global_rng = np.random.get_state()
            np.random.set_state(outside)

    def suggest(self, trial_id: int) -> Suggestion | None:
        with self._own_global_rng():
            suggestion = self._scheduler.suggest()
            if suggestion is None:
                return None
            if not suggestion.spawn_new_trial_id:  # a resume: stopping-type ASHA never asks
                raise RuntimeError(f"{type(self._scheduler).__name__} asked to resume a trial")
            trial = self._trial_cls(trial_id, dict(suggestion.config), _CREATED)
            self._scheduler.on_trial_add(trial)
        self._trials[trial_id] = trial
        return Suggestion([int(trial.config[key]) for key in self._keys])

    def on_result(self, trial_id: int, epoch: int, value: float) -> bool:
        trial = self._trials[trial_id]
        with self._own_global_rng():
            decision = self._scheduler.on_trial_result(trial, {_METRIC: value, _RESOURCE: epoch})
            if decision == self._continue:
                return True
            self._scheduler.on_trial_remove(trial)
        del self._trials[trial_id]
        return False

    def on_complete(self, trial_id: int, epoch: int, value: float, stopped: bool) -> None:
        if stopped:
            return  # removed when on_result said stop
        trial = self._trials.pop(trial_id)
        with self._own_global_rng():
            self._scheduler.on_trial_result(trial, {_METRIC: value, _RESOURCE: epoch})
            self._scheduler.on_trial_remove(trial)


@functools.cache
def _quiet_syne_tune() -> None:
    """Silence three messages that say nothing about a run, once per process."""
    # Every ASHA-family baseline hands points_to_evaluate to its searcher wrapper in
    # searcher_kwargs, and the wrapper warns about that plumbing at each construction.
    logging.getLogger("syne_tune.optimizer.schedulers.searchers."
                      "last_value_multi_fidelity_searcher").setLevel(logging.ERROR)
    # statsmodels 0.15 announces a new default generator for KDEMultivariate; BOHB's
    # normal-reference bandwidths never draw from it.
    warnings.filterwarnings("ignore", message="After 0.17 or January 2028",
                            category=FutureWarning)
    # The Aitchison-Aitken kernel divides by (levels seen - 1): when BOHB's good configs
    # all share one value of a decision, a candidate with another value gets an infinite
    # "good" density and wins the acquisition. That is 0.16's BOHB on a categorical
    # space as any user gets it; the warning at each occurrence is noise.
    warnings.filterwarnings("ignore", message="divide by zero encountered in divide",
                            category=RuntimeWarning, module="statsmodels")


def _syne_tune_scheduler(name: str, space: dict[str, Any], max_t: int, seed: int) -> Any:
    """The scheduler ``SYNE_TUNE[name]`` stands for, built as that baseline builds it:
    ``AsynchronousSuccessiveHalving``, one bracket, a ``LastValueMultiFidelitySearcher``
    around the named searcher. ``st-asha``, ``st-bohb`` and ``st-asha-cqr`` are the
    baselines as shipped, at their defaults (Syne Tune's own benchmarks,
    ``benchmarking/baselines.py``, run them so). Two are changed for speed, after
    profiling on lcbench-3945 (100x budget, 4 workers):

    * ``st-asha-bore``: BORE draws its 500 random candidates one at a time and scores
      each with its own ``predict_proba`` call (0.5-0.7 s a suggestion);
      ``_batched_bore`` does each in one call, with the same draws, model and argmin:
      the same suggestions (identical traces), about 7 times less CPU.
    * ``st-asha-cqr-lazy``: CQR refits from scratch (five 100-tree quantile boosting
      models, 2,000 fresh candidates) whenever a new trial has reported, i.e. before
      nearly every suggestion, at a cost growing with the trials: ``st-asha-cqr``
      did not finish one 100x run in 50 minutes. This variant refits as the data
      grows by 10% (``_lazy_last_value``) and does not let one model propose a
      candidate twice (``_cqr_without_repeats``). The only knob 0.16 has,
      ``update_frequency`` (refit every k new trials), is no substitute: between
      refits CQR re-proposes the same few configs (at k = 20, 106 distinct configs
      in 263 trials at a 30x budget, against 291 in 391 at k = 1).
    """
    from syne_tune.optimizer import baselines
    from syne_tune.optimizer.schedulers.asha import AsynchronousSuccessiveHalving
    from syne_tune.optimizer.schedulers.searchers.last_value_multi_fidelity_searcher import (
        LastValueMultiFidelitySearcher,
    )

    common = {"metric": _METRIC, "do_minimize": False, "time_attr": _RESOURCE,
              "max_t": max_t, "grace_period": 1, "reduction_factor": ETA,
              "random_seed": seed}
    if name in ("st-asha", "st-bohb", "st-asha-cqr"):
        return getattr(baselines, SYNE_TUNE[name])(space, **common)
    if name == "st-asha-cqr-lazy":
        wrapper, searcher = _lazy_last_value(), _cqr_without_repeats()
    else:
        wrapper, searcher = LastValueMultiFidelitySearcher, _batched_bore()
    return AsynchronousSuccessiveHalving(
        space, searcher=wrapper(space, random_seed=seed, searcher=searcher), **common)


def _lazy_last_value() -> type:
    """Syne Tune's ``LastValueMultiFidelitySearcher`` refitting its model once the
    trials that reported grew by ``CQR_LAZY_GROWTH`` since the last fit, instead of
    after every new one: about 60 fits in a run of 2,000 trials, as often as before
    while the data is scarce."""
    from syne_tune.optimizer.schedulers.searchers.last_value_multi_fidelity_searcher import (
        LastValueMultiFidelitySearcher,
    )

    class LazyLastValue(LastValueMultiFidelitySearcher):
        def should_update(self) -> bool:
            if self.index_last_result_fit is None:
                return self.num_results() >= self.num_init_random_draws
            grown = self.num_results() - self.index_last_result_fit
            return grown >= max(1.0, CQR_LAZY_GROWTH * self.index_last_result_fit)

    return LazyLastValue


def _cqr_without_repeats() -> type:
    """Syne Tune's CQR searcher, except that one fitted model never proposes the same
    candidate twice. Between fits, CQR takes the argmin of a fresh draw from each of
    its 2,000 candidates' quantiles, which mostly lands on the same few; with lazy fits
    a model answers many suggestions, and those repeats would waste trials. The
    candidates this model already proposed are left out of the argmin (its
    surrogate's own ``replace_config`` would do it by predicting all 2,000 again at
    every suggestion, as costly as the rest together)."""
    from syne_tune.optimizer.schedulers.searchers.conformal.conformal_quantile_regression_searcher import (  # noqa: E501
        ConformalQuantileRegression,
    )

    class CQRWithoutRepeats(ConformalQuantileRegression):
        def suggest(self, **kwargs: Any) -> dict[str, Any] | None:
            # ConformalQuantileRegression.suggest, but for the repeats.
            config = self._next_points_to_evaluate()
            if config is not None:
                return config
            if self.should_update():
                self.fit_model()
                self.index_last_result_fit = self.num_results()
                self._proposed: set[int] = set()
            model = self.surrogate_model
            if model is None or len(self._proposed) == len(model.config_candidates):
                return self.sample_random()
            draw = np.array(model._surrogate_pred(), dtype=np.float64)  # its mode is "min"
            draw[list(self._proposed)] = np.inf
            best = int(np.argmin(draw))
            self._proposed.add(best)
            return model.config_candidates[best]

    return CQRWithoutRepeats


def _batched_bore() -> type:
    """Syne Tune's ``Bore`` with its default acquisition optimiser ("rs": ``feval_acq``
    distinct random candidates, the best by the classifier), batched: the candidates are
    drawn in one call and scored in one ``predict_proba`` call, not one call each.

    The draws are the very ones ``Bore`` makes: ``Categorical.sample`` is
    ``RandomState.choice(n, size=1)`` on numpy's global generator, which draws as
    ``randint(0, n)``, and numpy's ``randint`` over an array of bounds draws element by
    element in order, so one ``randint`` over the candidates' bounds consumes the same
    numbers in the same order. Only as many are drawn as distinct candidates are still
    missing, so nothing is drawn that ``Bore`` would not draw. Same draws, same model,
    same argmin: the same suggestions (checked: identical traces), about 3 times faster.
    """
    from syne_tune.config_space import Categorical
    from syne_tune.optimizer.schedulers.searchers.bore import Bore

    class BatchedBore(Bore):
        def __init__(self, config_space: dict[str, Any], **kwargs: Any) -> None:
            super().__init__(config_space, **kwargs)
            if self.acq_optimizer != "rs" or not all(
                    isinstance(d, Categorical) and d.categories == list(range(len(d)))
                    for d in config_space.values()):
                raise ValueError("batched only for Bore's default optimiser on a space of "
                                 "index categoricals")
            self._names = list(config_space)
            self._bounds = np.array([len(d) for d in config_space.values()])

        def _random_configs(self, count: int) -> list[dict[str, Any]]:
            draws = np.random.randint(0, np.tile(self._bounds, count)).reshape(count, -1)
            return [dict(zip(self._names, row, strict=True)) for row in draws.tolist()]

        def suggest(self, **kwargs: Any) -> dict[str, Any] | None:
            # Bore.suggest, with the candidate loop batched.
            config = self._next_points_to_evaluate()
            if config is not None:
                return config
            if len(self.inputs) < self.init_random or \
                    self.random_state.rand() < self.random_prob:
                return self._random_configs(1)[0]
            if not self._train_model(self.inputs, self.targets):
                return self._random_configs(1)[0]
            candidates: list[dict[str, Any]] = []
            seen: set[tuple[int, ...]] = set()
            misses = 0  # draws since the last new candidate; Bore gives up past 10,000
            while len(candidates) < self.feval_acq and misses <= 10_000:
                for candidate in self._random_configs(self.feval_acq - len(candidates)):
                    misses += 1
                    if misses > 10_000:
                        break
                    key = tuple(candidate.values())
                    if key not in seen:
                        seen.add(key)
                        candidates.append(candidate)
                        misses = 0
            inputs = self._hp_ranges.to_ndarray_matrix(candidates)
            return candidates[int(np.argmin(self._loss(inputs)))]

    return BatchedBore


# --- smoke and timing ------------------------------------------------------------------

def _run(name: str, task: Task, seed: int, workers: int,
         budget: float) -> tuple[Any, float, float]:
    """One simulated run: its trace, real seconds and CPU seconds (the machine is shared,
    so the CPU time is the steadier figure; the libraries' threads add to it)."""
    started, cpu = time.perf_counter(), time.process_time()
    trace = simulate(task, make_peer(name, task, seed, workers), workers, budget)
    return trace, time.perf_counter() - started, time.process_time() - cpu


def _smoke(names: list[str], task: Task, workers: int, budget_units: float,
           report: Callable[[str], None]) -> None:
    """Each peer twice with one seed: it ran trials, reached full fidelity, stopped
    some (the schedulers that stop) and gave the same trace both times."""
    budget = budget_units * task.median_seconds
    for name in names:
        first, seconds, cpu = _run(name, task, 0, workers, budget)
        again, _, _ = _run(name, task, 0, workers, budget)
        failed = [what for what, bad in (
            ("no trial", first.trials == 0), ("no full-fidelity result", not first.full),
            ("stopped no trial", name.startswith("st-") and first.stopped == 0),
            ("a different trace with the same seed",
             (first.full, first.trials) != (again.full, again.trials))) if bad]
        if failed:  # not assert: the smoke check must hold under python -O too
            raise SystemExit(f"{name}: {', '.join(failed)}")
        best = max(v for _, v in first.full)
        report(f"{name:16s} ok  trials {first.trials:4d}  stopped {first.stopped:4d}  "
               f"epochs {first.epochs:5d}  full {len(first.full):3d}  "
               f"best {best:.4f} (optimum {task.optimum:.4f})  "
               f"real {seconds:.1f} s, cpu {cpu:.1f} s")


def _time(names: list[str], task: Task, workers: int, budget_units: float, seed: int,
          report: Callable[[str], None]) -> None:
    """The real seconds of one run per peer."""
    for name in names:
        trace, seconds, cpu = _run(name, task, seed, workers,
                                   budget_units * task.median_seconds)
        report(f"{name:16s} {budget_units:g}x budget, {workers} workers: real {seconds:6.1f} s  "
               f"cpu {cpu:6.1f} s  "
               f"trials {trace.trials:5d}  stopped {trace.stopped:5d}  "
               f"full {len(trace.full):4d}  best {max(v for _, v in trace.full):.4f}")


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--smoke", action="store_true",
                      help="each peer twice on a small budget: works and is deterministic")
    mode.add_argument("--time", action="store_true", help="the real seconds of one run each")
    parser.add_argument("--peers", nargs="+", choices=PEERS,
                        help="default: all (--time: all but st-asha-cqr, which takes "
                             "tens of minutes)")
    parser.add_argument("--task", default="lcbench-3945")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--budget", type=float, default=None,
                        help="in median full trainings (default: 5 smoke, 100 time)")
    parser.add_argument("--seed", type=int, default=0, help="--time's seed")
    args = parser.parse_args(argv)
    task = load_task(args.task)
    print(f"{task.name}: median full training {task.median_seconds:.1f} s simulated, "
          f"optimum {task.optimum:.4f}", flush=True)
    if args.smoke:
        _smoke(args.peers or list(PEERS), task, args.workers, args.budget or 5.0, _say)
    else:
        peers = args.peers or [p for p in PEERS if p != "st-asha-cqr"]
        _time(peers, task, args.workers, args.budget or 100.0, args.seed, _say)
    return 0


if __name__ == "__main__":
    sys.exit(main())
