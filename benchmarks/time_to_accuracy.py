"""Time to accuracy on real training: the best validation accuracy found against wall time.

Every method searches the example's space as it was when the results were
measured (``examples/fashion-mnist.yaml`` with ``MEASURED_DATA`` and
``MEASURED_AGENTS``: augmentation, MBConv architecture and training recipe) on real
Fashion-MNIST with the built-in trainer, 2 local workers and the same
wall-clock budget, over several seeds:

* ``ma2ml-asha``: ``ma2ml run`` with ``earlyStopping: asha``;
* ``ma2ml``: ``ma2ml run`` without early stopping;
* ``ma2ml-asha-blind``: ASHA, but the critic without its fidelity input (a
  stopped trial's result taken as a full one): the alternative to the
  learner's multi-fidelity critic;
* ``random-asha``: ``ma2ml run`` with random search and ASHA;
* ``optuna-tpe-hyperband``: Optuna's TPESampler with its HyperbandPruner, in
  two processes on one shared study, driving the same trainer function
  (``ma2ml.trainer.train.run_trial``) on the same data with the same per-epoch
  reports.

The ma2ml methods run the MLP critic, the one ``critic_model: auto`` takes for a
search of tens of trials (``SMALL_SEARCH``), which is what the budget buys here.
``early_stopping_replay.py`` measures the stopping rules alone, from real
learning curves, far more precisely than these runs can.

A pipeline counts as found when it finished at full fidelity (a trial stopped
early never does); time runs from the moment the method's processes start,
so start-up costs are in. The table gives, per method, the median [min, max]
over seeds of the best accuracy at the budget, and for ``ma2ml-asha`` the time
it needed to reach the final best of ``ma2ml`` on the same seed, as a ratio.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/time_to_accuracy.py [--quick] \\
        [--budget SECONDS] [--seeds N] [--methods ...] [--device cuda] [--out DIR]

The reported run (every default) writes ``benchmarks/results/``; any other
(``--quick``, other budgets) writes to a new temporary directory named at the
end, unless ``--out`` says where. ``--quick`` is the smoke mode a test runs:
a few hundred images, 2 epochs (one rung, at epoch 1), 20 s per method
(``--budget`` to change), one seed. ``--from-json`` tabulates earlier runs
(e.g. one invocation per seed) without training.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EXAMPLE = ROOT / "examples" / "fashion-mnist.yaml"
#: 9-epoch trials, one rung at epoch 3 (Optuna's Hyperband gets the same resources).
#: Not minEpochs 1: on 3000 images most pipelines are still at chance after one or two
#: epochs (8-47 steps at batch 64-256, during warm-up) and pull ahead only later, so a rung
#: there ranks noise; by epoch 3 the ranking holds (README, "Early stopping").
ASHA = {"type": "asha", "minEpochs": 3, "reductionFactor": 3}
#: The critic ``critic_model: auto`` picks for a search of tens of trials, which is what the
#: budget buys here (the specs' ``maxTrials`` is only a bound the clock never reaches, and
#: ``auto`` would read it as a search of 100k trials and take the Bayesian critic).
SMALL_SEARCH = {"critic_model": "mlp"}
#: Method -> (algorithm, earlyStopping, algorithm settings); None: Optuna in-process.
METHODS: dict[str, tuple[str, Mapping[str, Any], Mapping[str, Any]] | None] = {
    "ma2ml-asha": ("ma2ml", ASHA, SMALL_SEARCH),
    "ma2ml": ("ma2ml", {"type": "none"}, SMALL_SEARCH),
    # The alternative to the critic's fidelity input: stopped trials taken as full ones.
    "ma2ml-asha-blind": ("ma2ml", ASHA, {**SMALL_SEARCH, "fidelity_input": False}),
    "random-asha": ("random", ASHA, {}),
    "optuna-tpe-hyperband": None,
}
#: The example's data and agents when the reported results were measured (31 decisions).
MEASURED_DATA = {"trainSubset": 3000, "validationSize": 5000, "validationSubset": 1000}
MEASURED_AGENTS = (
    {"name": "aug", "preset": "autoaugment", "options": {"subPolicies": 1}},
    {"name": "nas", "preset": "mbconv-small", "options": {"stages": 2}},
    {"name": "hpo", "preset": "recipe"},
)
#: Wall-clock seconds per method and seed in the reported run.
BUDGET = 300.0
#: What the reported run measures (a run that changes any of these is not reported).
MEASURED = ("budget", "seeds", "epochs", "methods", "first_seed", "device")


@dataclass(frozen=True)
class Run:
    """One method on one seed: (seconds since start, accuracy) of each full-fidelity trial,
    and how many trials were stopped early."""

    method: str
    seed: int
    found: list[tuple[float, float]]
    stopped: int

    def best_at(self, seconds: float) -> float | None:
        return best_at(self.found, seconds)

    def time_to(self, accuracy: float) -> float | None:
        return time_to(self.found, accuracy)


def best_at(found: Sequence[tuple[float, float]], seconds: float) -> float | None:
    """The best accuracy among (time, accuracy) results found by ``seconds``."""
    values = [acc for t, acc in found if t <= seconds]
    return max(values) if values else None


def time_to(found: Sequence[tuple[float, float]], accuracy: float) -> float | None:
    """When a (time, accuracy) result first reached ``accuracy``, if it did."""
    times = [t for t, acc in sorted(found) if acc >= accuracy]
    return times[0] if times else None


# -- the spec --------------------------------------------------------------------------


def asha_for(quick: bool) -> dict[str, Any]:
    """ASHA's settings: the smoke mode's 2-epoch trials have their one rung at epoch 1."""
    return {**ASHA, "minEpochs": 1} if quick else dict(ASHA)


def spec_for(method: str, seed: int, epochs: int, quick: bool,
             device: str = "cpu") -> dict[str, Any]:
    """The example's spec for one method and seed (unbounded trials: the clock ends it)."""
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"]["name"] = f"tta-{method}-{seed}"
    spec = document["spec"]
    algorithm, stopping, settings = METHODS[method] or ("random", {"type": "none"}, {})
    spec["algorithm"] = {"name": algorithm, "seed": seed, "settings": dict(settings)}
    spec["earlyStopping"] = asha_for(quick) if stopping == ASHA else dict(stopping)
    # The space and data the reported results were measured on (the example has since
    # become smaller, issue 16): a re-run measures the same problem.
    spec["dataset"].update(MEASURED_DATA)
    spec["agents"] = [dict(agent) for agent in MEASURED_AGENTS]
    spec["budget"].update({"maxTrials": 100_000, "maxFailedTrials": 1000, "parallelism": 2,
                           "trialEpochs": epochs})
    spec["trainer"]["device"] = device
    if quick:
        spec["dataset"].update({"trainSubset": 256, "validationSize": 256,
                                "validationSubset": 256})
    return document


# -- ma2ml through its own command line ------------------------------------------------


def _interruptible() -> None:
    """In the child: Ctrl-C's default action back. A shell starts a background job with
    SIGINT ignored, Python then never raises KeyboardInterrupt, and the SIGINT that ends
    a run at its budget would be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_ma2ml(method: str, seed: int, epochs: int, budget: float, quick: bool,
              workdir: Path, device: str = "cpu") -> Run:
    """``ma2ml run`` for ``budget`` seconds, then Ctrl-C; read the found pipelines back."""
    from ma2ml.store import Store, TrialStatus

    path = workdir / f"{method}-{seed}.yaml"
    path.write_text(yaml.safe_dump(spec_for(method, seed, epochs, quick, device),
                                   sort_keys=False))
    started = time.time()
    with open(workdir / f"{method}-{seed}.log", "w") as log, subprocess.Popen(
            [sys.executable, "-m", "ma2ml", "run", str(path)], cwd=workdir, stdout=log,
            stderr=subprocess.STDOUT, preexec_fn=_interruptible) as process:
        try:
            process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)  # hand back running trials, exit 130
            process.wait(timeout=120)
    with Store(f"sqlite:///{path.with_suffix('.db')}") as store:
        record = store.get_search(f"default/tta-{method}-{seed}")
        trials = store.list_trials(record.id) if record else []
    found = [(t.finished_at - started, float((t.metrics or {})["accuracy"])) for t in trials
             if t.status == TrialStatus.completed and t.finished_at is not None
             and t.finished_at - started <= budget]
    stopped = sum(t.status == TrialStatus.stopped for t in trials)
    return Run(method, seed, found, stopped)


# -- Optuna TPE + Hyperband on the same trainer ----------------------------------------


def _optuna_worker(storage_path: str, study_name: str, document: dict[str, Any],
                   deadline: float, threads: int) -> None:
    """One of the two Optuna processes: optimise until the shared deadline."""
    import optuna
    import torch

    from ma2ml.spec import parse_spec
    from ma2ml.trainer.train import run_trial

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = parse_spec(document)
    space = search.spec.search_space()
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(storage_path))
    study = optuna.load_study(study_name=study_name, storage=storage)

    def objective(trial: optuna.Trial) -> float:
        action = {agent.name: [trial.suggest_categorical(f"{agent.name}.{d.name}",
                                                         list(range(d.size)))
                               for d in agent.decisions]
                  for agent in space.agents}

        def on_epoch(epoch: int, reward: float, metrics: Mapping[str, Any]) -> bool:
            trial.report(reward, epoch)
            return not trial.should_prune()

        result = run_trial(search, space.decode(action), seed=trial.number, on_epoch=on_epoch)
        if result.stopped:
            raise optuna.TrialPruned()
        trial.set_user_attr("accuracy", float(result.metrics["accuracy"]))
        trial.set_user_attr("finished", time.time())
        return float(result.reward)

    study.optimize(objective, timeout=max(0.0, deadline - time.time()), catch=(Exception,))


def run_optuna(seed: int, epochs: int, budget: float, quick: bool, workdir: Path,
               device: str = "cpu") -> Run:
    """TPESampler + HyperbandPruner, two processes on one journal-file study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"tta-optuna-{seed}"
    storage_path = str(workdir / f"{name}.journal")
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(storage_path))
    optuna.create_study(
        study_name=name, storage=storage, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
        pruner=optuna.pruners.HyperbandPruner(min_resource=asha_for(quick)["minEpochs"],
                                              max_resource=epochs,
                                              reduction_factor=ASHA["reductionFactor"]))
    document = spec_for("optuna-tpe-hyperband", seed, epochs, quick, device)
    started = time.time()
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_optuna_worker,
                           args=(storage_path, name, document, started + budget, 1))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(budget + 600)  # a trial running at the deadline finishes first
    study = optuna.load_study(study_name=name, storage=storage)
    states = optuna.trial.TrialState
    found = [(t.user_attrs["finished"] - started, t.user_attrs["accuracy"])
             for t in study.trials if t.state == states.COMPLETE
             and t.user_attrs["finished"] - started <= budget]
    stopped = sum(t.state == states.PRUNED for t in study.trials)
    return Run("optuna-tpe-hyperband", seed, found, stopped)


# -- summary ---------------------------------------------------------------------------


def _spread(values: Sequence[float | None], fmt: Callable[[float], str]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    missing = f", {len(values) - len(known)} none" if len(known) < len(values) else ""
    return f"{fmt(statistics.median(known))} [{fmt(min(known))}, {fmt(max(known))}]{missing}"


def summarise(runs: list[Run], budget: float) -> str:
    by_method: dict[str, list[Run]] = {}
    for run in runs:
        by_method.setdefault(run.method, []).append(run)
    lines = [f"| method (best accuracy at {budget:.0f} s; median [min, max]) | best accuracy "
             "| full-fidelity trials | stopped early |", "|---|---|---|---|"]
    for method, group in by_method.items():
        lines.append(f"| {method} | {_spread([r.best_at(budget) for r in group], '{:.4f}'.format)}"
                     f" | {_spread([len(r.found) for r in group], '{:.0f}'.format)}"
                     f" | {_spread([r.stopped for r in group], '{:.0f}'.format)} |")
    if {"ma2ml", "ma2ml-asha"} <= by_method.keys():
        lines += ["", "| seed | ma2ml final best | its time (s) | ma2ml-asha time to it (s) "
                  "| ratio |", "|---|---|---|---|---|"]
        ratios = []
        plain = {r.seed: r for r in by_method["ma2ml"]}
        for fast in by_method["ma2ml-asha"]:
            slow = plain.get(fast.seed)
            target = slow.best_at(budget) if slow else None
            if target is None or slow is None:
                continue
            t_slow, t_fast = slow.time_to(target), fast.time_to(target)
            ratio = t_fast / t_slow if t_fast is not None and t_slow else None
            ratios.append(ratio)
            lines.append(f"| {fast.seed} | {target:.4f} | {t_slow:.0f} | "
                         f"{'never' if t_fast is None else f'{t_fast:.0f}'} | "
                         f"{'-' if ratio is None else f'{ratio:.2f}'} |")
        lines.append(f"\nratio (ma2ml-asha time / ma2ml time to ma2ml's final best), median "
                     f"[min, max] over seeds: {_spread(ratios, '{:.2f}'.format)}")
    return "\n".join(lines)


def plot(runs: list[Run], budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, budget, 200)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(r.method for r in runs):
        curves = np.array([[r.best_at(t) or np.nan for t in grid]
                           for r in runs if r.method == method], dtype=float)
        with warnings.catch_warnings():  # before a method's first result: all NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(curves, axis=0)
        ax.plot(grid, median, label=method)
    ax.set(xlabel="wall time (s), 2 workers", ylabel="best validation accuracy (median)",
           title="Fashion-MNIST, example space: time to accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds per method (default {BUDGET:.0f}; --quick: 20)")
    parser.add_argument("--epochs", type=int, default=9, help="trialEpochs (full fidelity)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                        help="trainer.device of every method (the reported run: cpu)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny data, 2 epochs, 20 s per method, 1 seed")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None, metavar="JSON",
                        help="train nothing: tabulate and plot the runs of earlier "
                             "time_to_accuracy.json files (e.g. one per seed) into --out")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where to write (default: {RESULTS} for the reported run, a "
                             "new temporary directory for any other)")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = 1, 2
    if args.budget is None:
        args.budget = 20.0 if args.quick else BUDGET
    return args


def out_dir(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return args.out
    defaults = build_parser().parse_args([])
    defaults.budget = BUDGET
    if not args.quick and all(getattr(args, k) == getattr(defaults, k) for k in MEASURED):
        return RESULTS
    return Path(tempfile.mkdtemp(prefix="time_to_accuracy-"))


def save_runs(runs: Sequence[Run], path: Path) -> None:
    path.write_text(json.dumps(
        [{"method": r.method, "seed": r.seed, "found": r.found, "stopped": r.stopped}
         for r in runs], indent=1) + "\n")


def load_runs(paths: Sequence[Path]) -> list[Run]:
    """The runs of earlier ``time_to_accuracy.json`` files, in order."""
    return [Run(r["method"], int(r["seed"]), [(float(t), float(a)) for t, a in r["found"]],
                int(r["stopped"]))
            for path in paths for r in json.loads(path.read_text())]


def run_all(args: argparse.Namespace, out: Path) -> list[Run]:
    """Every method on every seed, seed by seed (methods interleaved, so a change of the
    machine's load hits all methods alike); the JSON is rewritten after each run."""
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="tta-") as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for method in args.methods:
                started = time.perf_counter()
                if METHODS[method] is None:
                    run = run_optuna(seed, args.epochs, args.budget, args.quick, Path(tmp),
                                     args.device)
                else:
                    run = run_ma2ml(method, seed, args.epochs, args.budget, args.quick,
                                    Path(tmp), args.device)
                runs.append(run)
                save_runs(runs, out / "time_to_accuracy.json")
                print(f"{method} seed {seed}: best {run.best_at(args.budget)} from "
                      f"{len(run.found)} full-fidelity trials, {run.stopped} stopped "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(args.from_json) if args.from_json else run_all(args, out)
    table = summarise(runs, args.budget)
    (out / "time_to_accuracy.md").write_text(table + "\n")
    save_runs(runs, out / "time_to_accuracy.json")
    plot(runs, args.budget, out / "time_to_accuracy.png")
    print(table)
    print(f"\nwrote {out}/time_to_accuracy.{{md,json,png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
