"""Multi-fidelity search per unit of time: ma2ml against its peers on a simulated clock.

Each run is one method on one task with one seed: ``mf_simulator.simulate`` runs
W asynchronous workers (``--workers``, default 4) that train trials epoch by
epoch at the cost the task's learning curves give (``mf_tasks``), for the
largest budget of ``--budgets`` (multiples of the task's median full-training
time, on the simulated wall clock). Every intermediate result goes through the
method's stopping rule: for ma2ml and random search that is ma2ml's own
(``ma2ml.store.stopping``, as the store decides it), for the peers theirs.
Proposals come from the real learner (``mf_methods``) and the real peers
(``mf_peers``, in their own virtual environment: ``make bench-peers``).

Scored, per run and budget B:

* **regret at B**: the task's optimum minus the best full-fidelity result known
  at time B (an incumbent worse than a uniform pick's mean, or none yet, counts
  as that mean);
* **regret area**: the mean of that regret over the time [0, B] (lower is better;
  it rewards getting there early);
* **time to no-ES best**: for a method with early stopping, the time it needed
  to reach the best that the same method without stopping had at B, as a share
  of the time that one needed (inf: never within B).

The tables give, per task, the median and mean over seeds, and verdicts of a
method against each peer: "better"/"worse" where a two-sided Mann-Whitney U
test on the seeds' values rejects equality at 5 %, "match" where it does not.

Run (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/multi_fidelity.py \\
        [--tasks lcbench-3945 nb301 fmnist-curves ...] [--methods ...] [--seeds 30] \\
        [--workers 4] [--budgets 20 100] [--jobs 2] [--out DIR]
    PYTHONPATH=. .venv/bin/python benchmarks/multi_fidelity.py --smoke

Only LCBench tasks of ``mf_tasks.DEVELOPMENT_TASKS`` are for tuning and
reporting; seeds from 0 are reported, tuning used ``--first-seed 1000``. The
run writes ``multi_fidelity.json.gz`` (every run's trace) and ``multi_fidelity.md``
into ``--out``, or into a new temporary directory named at the end.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# One BLAS/ONNX thread per process: ``--jobs`` runs one process per core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the sibling modules, also in spawned workers

import numpy as np  # noqa: E402
from mf_simulator import Trace, simulate  # noqa: E402
from mf_tasks import DEVELOPMENT_TASKS, KNOWN_TASKS, load_task  # noqa: E402
from time_to_accuracy import best_at  # noqa: E402
from time_to_accuracy import time_to as reached  # noqa: E402

#: The methods of the main virtual environment (``mf_methods``).
OWN_METHODS = ("random", "random+asha", "random+hyperband", "random+adaptive", "ma2ml",
               "ma2ml+asha", "ma2ml+hyperband", "ma2ml+adaptive", "ma2ml+learned",
               "ma2ml+median", "optuna-tpe", "optuna-tpe-hyperband")
#: The peers of ``.venv-peers`` (``mf_peers``). Syne Tune's plain ``st-asha-cqr`` refits
#: five boosted models before nearly every suggestion (a 100x run took over 50 minutes
#: here), so its lazy variant stands for it (``mf_peers`` says how it differs).
PEER_METHODS = ("dehb", "st-asha", "st-bohb", "st-asha-cqr-lazy", "st-asha-bore")
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
#: What ma2ml with early stopping is held against (the issue's goal).
RIVALS = ("optuna-tpe-hyperband", *PEER_METHODS)
#: Early-stopping methods and the no-stopping method they are timed against.
NO_ES = {"random+asha": "random", "random+hyperband": "random", "random+adaptive": "random",
         "ma2ml+adaptive": "ma2ml", "ma2ml+asha": "ma2ml",
         "ma2ml+hyperband": "ma2ml", "ma2ml+learned": "ma2ml", "ma2ml+median": "ma2ml"}


def make(name: str, task: Any, seed: int, workers: int) -> Any:
    """A method of either module; the peers' import only where they are installed."""
    if name in PEER_METHODS:
        from mf_peers import make_peer

        return make_peer(name, task, seed, workers)
    from mf_methods import make_method

    return make_method(name, task, seed, workers)


def run_one(job: tuple[str, str, int, int, float]) -> dict[str, Any]:
    """One method on one task with one seed, to ``budget`` median trainings."""
    task_name, method, seed, workers, budget = job
    if method not in PEER_METHODS:  # the peers' venv has no torch
        import torch

        torch.set_num_threads(1)  # one process per core; more threads only contend
    task = load_task(task_name)
    started = time.perf_counter()
    trace = simulate(task, make(method, task, seed, workers), workers,
                     budget * task.median_seconds)
    return {"task": task_name, "method": method, "seed": seed, "workers": workers,
            "unit": task.median_seconds, "optimum": task.optimum, "mean": task.mean,
            # Milliseconds and 6 digits: the scores do not move, the file is half as big.
            "full": [(round(t, 3), round(v, 6)) for t, v in trace.full],
            "trials": trace.trials, "stopped": trace.stopped,
            "epochs": trace.epochs, "training_seconds": trace.training_seconds,
            "real_seconds": time.perf_counter() - started}


# -- scoring -------------------------------------------------------------------------


def _trace(record: dict[str, Any]) -> Trace:
    return Trace(full=[(float(t), float(v)) for t, v in record["full"]])


def regret_curve(record: dict[str, Any], times: np.ndarray) -> np.ndarray:
    """Regret at each time: optimum minus the incumbent, the uniform mean at worst."""
    best = np.maximum(_trace(record).best_at(times), record["mean"])
    return record["optimum"] - best


def regret_at(record: dict[str, Any], budget: float) -> float:
    return float(regret_curve(record, np.array([budget * record["unit"]]))[0])


def regret_area(record: dict[str, Any], budget: float) -> float:
    """The mean regret over [0, budget]: exact, the incumbent being a step function."""
    end = budget * record["unit"]
    stamps = np.array([0.0] + [t for t, _ in record["full"] if t < end] + [end])
    regret = regret_curve(record, stamps[:-1])
    return float((regret * np.diff(stamps)).sum() / end)


def time_to(record: dict[str, Any], target: float, budget: float) -> float:
    """The first time the incumbent reached ``target`` within the budget (inf: never)."""
    found = reached(record["full"], target)
    return math.inf if found is None or found > budget * record["unit"] else float(found)


def time_ratio(record: dict[str, Any], reference: dict[str, Any], budget: float) -> float:
    """Time ``record`` needed to reach ``reference``'s best at ``budget``, as a share of
    the time ``reference`` needed to reach it."""
    best = best_at(reference["full"], budget * reference["unit"])
    if best is None:
        return math.nan
    took = time_to(reference, best, budget)
    return time_to(record, best, budget) / took if took > 0 else math.inf


# -- tables --------------------------------------------------------------------------


def _by(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    out: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in records:
        out.setdefault((r["task"], r["method"]), {})[r["seed"]] = r
    return out


def _verdict(a: Sequence[float], b: Sequence[float]) -> str:
    """"better" if ``a`` is lower (regret), "worse" if higher, at 5 %, else "match"."""
    from search_efficiency import mann_whitney_p

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if mann_whitney_p(x, y) >= 0.05:
        return "match"
    return "better" if np.median(x) < np.median(y) or \
        (np.median(x) == np.median(y) and x.mean() < y.mean()) else "worse"


def task_table(records: Sequence[dict[str, Any]], task: str, budgets: Sequence[float]
               ) -> list[str]:
    """One task's table: per method, regret and regret area at each budget."""
    runs = _by(records)
    methods = [m for (t, m) in runs if t == task]
    head = ["method", "trials", "stopped"] + [f"{k} @{b:g}x" for b in budgets
                                              for k in ("regret", "area")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods:
        seeds = runs[task, method]
        cells = [method, f"{np.median([r['trials'] for r in seeds.values()]):.0f}",
                 f"{np.median([r['stopped'] for r in seeds.values()]):.0f}"]
        for b in budgets:
            for score in (regret_at, regret_area):
                values = [score(r, b) for r in seeds.values()]
                cells.append(f"{np.median(values):.4f} ({np.mean(values):.4f})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def verdicts(records: Sequence[dict[str, Any]], method: str, budgets: Sequence[float]
             ) -> list[str]:
    """``method`` against each rival on every task: final regret and regret area."""
    runs = _by(records)
    tasks = sorted({t for t, m in runs if m == method})
    rivals = [m for m in dict.fromkeys(m for _, m in runs) if m != method]
    head = ["rival"] + [f"{k} @{b:g}x" for b in budgets for k in ("regret", "area")]
    lines = [f"{method} against each method (better / match / worse over tasks):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rival in rivals:
        cells = [rival]
        for b in budgets:
            for score in (regret_at, regret_area):
                tally = {"better": 0, "match": 0, "worse": 0}
                for t in tasks:
                    if (t, rival) not in runs:
                        continue
                    seeds = sorted(set(runs[t, method]) & set(runs[t, rival]))
                    tally[_verdict([score(runs[t, method][s], b) for s in seeds],
                                   [score(runs[t, rival][s], b) for s in seeds])] += 1
                cells.append("{better} / {match} / {worse}".format(**tally))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def speedups(records: Sequence[dict[str, Any]], budgets: Sequence[float]) -> list[str]:
    """Per task, each early-stopping method's time to its no-ES twin's best (median)."""
    runs = _by(records)
    pairs = [(es, no) for es, no in NO_ES.items()
             if any(m == es for _, m in runs) and any(m == no for _, m in runs)]
    if not pairs:
        return []
    head = ["task"] + [f"{es} @{b:g}x" for es, _ in pairs for b in budgets]
    lines = ["Time an early-stopping method needed to reach its no-stopping twin's best "
             "(median over seeds, share of the twin's time; goal <= 0.5):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tasks = sorted({t for t, _ in runs})
    for task in tasks:
        cells = [task]
        for es, no in pairs:
            for b in budgets:
                if (task, es) not in runs or (task, no) not in runs:
                    cells.append("-")
                    continue
                ratios = [time_ratio(runs[task, es][s], runs[task, no][s], b)
                          for s in sorted(set(runs[task, es]) & set(runs[task, no]))]
                cells.append(f"{np.nanmedian(ratios):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def ranks(records: Sequence[dict[str, Any]], budgets: Sequence[float]) -> list[str]:
    """Every method's average rank over tasks (1 = best; by the mean over seeds, ties
    share their mid-rank), the usual summary of HPO benchmarks across tasks, and its
    mean regret over tasks."""
    runs = _by(records)
    tasks = sorted({t for t, _ in runs})
    methods = list(dict.fromkeys(m for _, m in runs))
    cols = [(f"{k} @{b:g}x", score, b) for b in budgets
            for k, score in (("regret", regret_at), ("area", regret_area))]
    rank_sum = {(m, c): 0.0 for m in methods for c, _, _ in cols}
    mean_sum = {(m, c): 0.0 for m in methods for c, _, _ in cols}
    for task in tasks:
        for col, score, b in cols:
            means = {m: float(np.mean([score(r, b) for r in runs[task, m].values()]))
                     for m in methods if (task, m) in runs}
            values = np.array(list(means.values()))
            for m, v in means.items():
                rank_sum[m, col] += (values < v).sum() + ((values == v).sum() + 1) / 2
                mean_sum[m, col] += v
    head = ["method"] + [c for c, _, _ in cols]
    lines = [f"Average rank over {len(tasks)} tasks (mean regret over tasks in brackets):",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(methods, key=lambda m: rank_sum[m, cols[-1][0]])
    for m in order:
        lines.append("| " + " | ".join([m] + [
            f"{rank_sum[m, c] / len(tasks):.2f} ({mean_sum[m, c] / len(tasks):.4f})"
            for c, _, _ in cols]) + " |")
    return lines


def report(records: Sequence[dict[str, Any]], budgets: Sequence[float], command: str) -> str:
    """The whole Markdown report."""
    seeds = sorted({r["seed"] for r in records})
    workers = sorted({r["workers"] for r in records})
    cost = [r["real_seconds"] for r in records]
    out = ["# Multi-fidelity search on a simulated clock", "",
           f"`{command}`", "",
           f"{len(seeds)} seeds ({seeds[0]}-{seeds[-1]}), {workers} workers; budgets in "
           "median full trainings of the task. Cells: median (mean) over seeds of the "
           "regret at the budget and of the regret area (mean regret over [0, budget]).",
           f"Real seconds per run: median {np.median(cost):.1f}, max {max(cost):.1f}.", ""]
    out += ranks(records, budgets) + [""]
    for method in ("ma2ml+adaptive", "ma2ml+learned"):
        if any(r["method"] == method for r in records):
            out += verdicts(records, method, budgets) + [""]
    out += speedups(records, budgets) + [""]
    for task in sorted({r["task"] for r in records}):
        out += [f"## {task}", ""] + task_table(records, task, budgets) + [""]
    return "\n".join(out)


# -- command line --------------------------------------------------------------------


def _run_peers(jobs: list[tuple[str, str, int, int, float]], n_jobs: int) -> list[dict]:
    """The peers' runs, in ``.venv-peers`` (see ``make bench-peers``)."""
    if not PEERS_PYTHON.exists():
        raise SystemExit(f"the peers need their own venv: run `make bench-peers` "
                         f"({PEERS_PYTHON} is missing)")
    with tempfile.TemporaryDirectory() as tmp:
        jobs_file, out_file = Path(tmp, "jobs.json"), Path(tmp, "records.json")
        jobs_file.write_text(json.dumps(jobs))
        subprocess.run([str(PEERS_PYTHON), __file__, "--run-jobs", str(jobs_file),
                        "--jobs", str(n_jobs), "--out", str(out_file)],
                       check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        return json.loads(out_file.read_text())


def run_jobs(jobs: list[tuple[str, str, int, int, float]], n_jobs: int) -> list[dict]:
    """Run every job, ``n_jobs`` processes at a time; each job's task loads once per
    process (its grid statistics take a few seconds)."""
    jobs = sorted(jobs)  # a task's jobs together, so a process reuses the loaded task
    if n_jobs <= 1:
        return [run_one(job) for job in jobs]
    with multiprocessing.get_context("spawn").Pool(n_jobs) as pool:
        return list(pool.imap(run_one, jobs, chunksize=1))


def read_records(path: Path) -> list[dict[str, Any]]:
    """The runs of a ``multi_fidelity.json.gz`` (or an uncompressed ``.json``)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as file:
        return json.load(file)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=[f"lcbench-{t}" for t in DEVELOPMENT_TASKS],
                        help=f"{KNOWN_TASKS} (mf_tasks; default: the LCBench "
                        "development tasks)")
    parser.add_argument("--methods", nargs="+", default=[*OWN_METHODS, *PEER_METHODS])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--budgets", type=float, nargs="+", default=[20.0, 100.0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true",
                        help="one task, 2 seeds, budgets 3x and 6x, this venv's methods")
    parser.add_argument("--from-json", type=Path, nargs="+",
                        help="tabulate the runs of earlier multi_fidelity.json(.gz) files "
                        "instead")
    parser.add_argument("--run-jobs", type=Path, help=argparse.SUPPRESS)  # the peers' venv
    args = parser.parse_args(argv)
    if args.run_jobs:
        jobs = [tuple(j) for j in json.loads(args.run_jobs.read_text())]
        args.out.write_text(json.dumps(run_jobs(jobs, args.jobs)))  # type: ignore[arg-type]
        return
    if args.from_json:
        records = [r for path in args.from_json for r in read_records(path)]
        _write(records, args, argv)
        return
    if args.smoke:
        args.tasks, args.seeds, args.budgets = ["lcbench-3945"], 2, [3.0, 6.0]
        args.methods = [m for m in args.methods if m in OWN_METHODS]
    for name, value, low, high in (("--seeds", args.seeds, 1, 1000),
                                   ("--workers", args.workers, 1, 1024),
                                   ("--jobs", args.jobs, 1, 256)):
        if not low <= value <= high:
            parser.error(f"{name} must be in [{low}, {high}], got {value}")
    if not all(0 < b <= 10_000 for b in args.budgets):
        parser.error(f"--budgets must be in (0, 10000] median trainings, got {args.budgets}")
    unknown = [m for m in args.methods if m not in OWN_METHODS + PEER_METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown} (known: {', '.join(OWN_METHODS + PEER_METHODS)})")
    for name in args.tasks:
        load_task(name)  # a bad task id fails here, with the known ones, before any run
    budget = max(args.budgets)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(t, m, s, args.workers, budget) for t in args.tasks for m in args.methods
            for s in seeds]
    records = run_jobs([j for j in jobs if j[1] not in PEER_METHODS], args.jobs)
    peer_jobs = [j for j in jobs if j[1] in PEER_METHODS]
    if peer_jobs:
        records += _run_peers(peer_jobs, args.jobs)
    _write(records, args, argv)


def _write(records: list[dict[str, Any]], args: argparse.Namespace,
           argv: Sequence[str] | None) -> None:
    """The report and the records into ``--out`` (or a new temporary directory)."""
    command = "PYTHONPATH=. .venv/bin/python benchmarks/multi_fidelity.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    text = report(records, sorted(args.budgets), command.strip())
    out = args.out or Path(tempfile.mkdtemp(prefix="multi_fidelity-"))
    out.mkdir(parents=True, exist_ok=True)
    # Compressed: the traces of a 30-seed run are tens of MB of JSON.
    with gzip.open(out / "multi_fidelity.json.gz", "wt", encoding="utf-8") as file:
        json.dump(records, file)
    (out / "multi_fidelity.md").write_text(text + "\n")
    print(text)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
