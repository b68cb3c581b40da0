"""Trial-queue throughput of ma2ml's store against Optuna's storages.

Each run starts W worker processes (spawn) on a fresh storage and times how fast
they get through N trivial trials. The storages:

* ``ma2ml-postgres``, ``ma2ml-sqlite``: ma2ml's store. The learner enqueues N
  proposals in one batch (timed, counted in the wall time), then every worker
  does what a worker of ``ma2ml/worker/loop.py`` asks of the store per trial,
  until the queue is empty: read the search (``Store.get_search``, which
  returns the stored spec), ``claim``, one ``heartbeat`` (a worker renews its
  lease every ``leaseSeconds / 3``: one beat stands for a trial of up to that
  long) and ``complete``.
* ``optuna-rdb-postgres``, ``optuna-rdb-sqlite``: ``RDBStorage(url)``;
  ``create_study(sampler=RandomSampler())`` once, each worker ``load_study``
  and loops ``ask(fixed_distributions)`` + ``tell`` for its share of the N
  trials (Optuna's heartbeat is off by default, so a worker does no more).
* ``optuna-journal``: the same on ``JournalStorage(JournalFileBackend(path))``,
  a log file on the local disk: Optuna's own recommendation for many local
  processes (every process replays the others' log entries).

RandomSampler keeps the sampler's cost flat (TPE would re-read every trial on
each ask), so the storage is what is measured. "cycle" is one trial's whole
storage work (ma2ml: search read + claim + heartbeat + complete; Optuna: ask +
tell); "claim" is ``Store.claim`` for ma2ml and ``Study.ask`` for Optuna. The
wall time runs from the first worker leaving the start barrier (connections
already open) to the last one finishing.

Run (from the repository root):
    PYTHONPATH=. .venv/bin/python benchmarks/store_throughput.py [--quick] \\
        [--trials N] [--workers 1,4,16] [--storages ...] [--out DIR]

It prints a markdown table and writes nothing unless ``--out DIR`` is given
(``store_throughput.md`` there; the committed results are
``benchmarks/results/store_throughput.md``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parents[1]
MAX_ERRORS = 50
STORAGES = ("ma2ml-postgres", "ma2ml-sqlite", "optuna-rdb-postgres", "optuna-rdb-sqlite",
            "optuna-journal")
SEARCH_NAME = "bench/throughput"
MAX_TRIALS, MAX_WORKERS = 1_000_000, 256


@dataclass
class WorkerResult:
    """What one worker process reports back (latencies in seconds)."""

    done: int
    errors: int
    started: float
    finished: float
    cycles: list[float]
    claims: list[float]


@dataclass
class RunResult:
    """One (storage, workers) measurement."""

    storage: str
    workers: int
    trials: int
    errors: int
    seconds: float
    cycles: list[float]
    claims: list[float]

    @property
    def rate(self) -> float:
        return self.trials / self.seconds if self.seconds > 0 else float("nan")


def percentile_ms(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (seconds) in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- storages -------------------------------------------------------------------------------


@contextmanager
def fresh_database(backend: str, admin_url: str) -> Iterator[str]:
    """A new empty database URL on ``backend``, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ma2ml-bench-") as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
        return
    # Imported here: Optuna's spawned workers re-import this script and need none of ma2ml.
    from ma2ml.testing.scratch import scratch_database

    with scratch_database(admin_url, "ma2ml_bench") as url:
        yield url


@contextmanager
def fresh_journal() -> Iterator[str]:
    """A path for a new Optuna journal file on the local disk, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ma2ml-bench-") as directory:
        yield str(Path(directory) / "journal.log")


def _optuna_storage(kind: str, where: str) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if kind == "journal":
        return optuna.storages.JournalStorage(JournalFileBackend(where))
    # The same 30 s busy timeout ma2ml uses, so SQLite lock waits are comparable.
    kwargs = {"connect_args": {"timeout": 30}} if where.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(where, engine_kwargs=kwargs)


def _close_optuna_storage(storage: Any) -> None:
    import optuna

    if isinstance(storage, optuna.storages.RDBStorage):  # give the connections back
        storage.remove_session()
        storage.engine.dispose()


def _bench_spec() -> dict[str, Any]:
    """The example's spec as stored, so the search read carries a real spec."""
    from ma2ml.spec import load_spec, spec_to_document

    return spec_to_document(load_spec(ROOT / "examples" / "fashion-mnist.yaml"))


# -- worker processes ----------------------------------------------------------------------


def ma2ml_worker(url: str, search_id: int, name: str, barrier: Barrier, out: Queue) -> None:
    """Search read + claim + heartbeat + complete until the queue is empty."""
    from ma2ml.store import Store

    with Store(url, migrate=False) as store:
        store.pending_count(search_id)  # opens the pooled connection before the clock starts
        barrier.wait()
        started, cycles, claims, done, errors = time.monotonic(), [], [], 0, 0
        while errors < MAX_ERRORS:
            try:
                tick = time.perf_counter()
                store.get_search(SEARCH_NAME)
                before_claim = time.perf_counter()
                trial = store.claim(search_id, name, lease_seconds=60)
                claimed = time.perf_counter()
                if trial is None:
                    break
                store.heartbeat(trial.id, trial.attempt, lease_seconds=60)
                store.complete(trial.id, trial.attempt, float(trial.pipeline["x"]), {})
            except Exception:
                errors += 1
                continue
            cycles.append(time.perf_counter() - tick)
            claims.append(claimed - before_claim)
            done += 1
        out.put(WorkerResult(done, errors, started, time.monotonic(), cycles, claims))


def optuna_worker(kind: str, where: str, share: int, study_name: str, barrier: Barrier,
                  out: Queue) -> None:
    """Ask + tell ``share`` trials with a fixed search space."""
    import optuna
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {
        "x": FloatDistribution(0.0, 1.0),
        "depth": IntDistribution(1, 8),
        "op": CategoricalDistribution(["rotate", "shear", "cutout"]),
    }
    storage = _optuna_storage(kind, where)
    study = optuna.load_study(study_name=study_name, storage=storage)
    barrier.wait()
    started, cycles, claims, done, errors = time.monotonic(), [], [], 0, 0
    while done < share and errors < MAX_ERRORS:
        try:
            tick = time.perf_counter()
            trial = study.ask(space)
            asked = time.perf_counter()
            study.tell(trial, trial.params["x"])
        except Exception:
            errors += 1
            continue
        cycles.append(time.perf_counter() - tick)
        claims.append(asked - tick)
        done += 1
    out.put(WorkerResult(done, errors, started, time.monotonic(), cycles, claims))
    _close_optuna_storage(storage)


def run_workers(
    target: Callable[..., None], args_for: Callable[[int], tuple[Any, ...]], workers: int
) -> list[WorkerResult]:
    """Start ``workers`` spawned processes on ``target`` and collect their results."""
    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(workers), context.Queue()
    processes = [
        context.Process(target=target, args=(*args_for(n), barrier, out)) for n in range(workers)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=1800) for _ in processes]
    for process in processes:
        process.join()
    return results


def _combine(storage: str, workers: int, results: list[WorkerResult],
             extra_seconds: float = 0.0) -> RunResult:
    seconds = max(r.finished for r in results) - min(r.started for r in results)
    return RunResult(
        storage=storage,
        workers=workers,
        trials=sum(r.done for r in results),
        errors=sum(r.errors for r in results),
        seconds=seconds + extra_seconds,
        cycles=[c for r in results for c in r.cycles],
        claims=[c for r in results for c in r.claims],
    )


# -- the two systems ------------------------------------------------------------------------


def bench_ma2ml(storage: str, url: str, trials: int, workers: int) -> RunResult:
    """The learner enqueues ``trials`` proposals; ``workers`` processes drain the queue."""
    from ma2ml.store import Store, TrialProposal

    with Store(url) as store:
        search = store.create_search(SEARCH_NAME, _bench_spec())
        proposals = [
            TrialProposal(
                pipeline={"x": (i % 997) / 997.0, "depth": i % 8 + 1, "op": "rotate"},
                action={"hpo": [i % 997, i % 8, 0]},
                behaviour_logp={"hpo": -9.0},
                policy_version=0,
            )
            for i in range(trials)
        ]
        tick = time.perf_counter()
        store.enqueue_trials(search.id, proposals)
        enqueue_seconds = time.perf_counter() - tick
        results = run_workers(ma2ml_worker, lambda n: (url, search.id, f"bench-{n}"), workers)
        assert store.counts(search.id)["completed"] == trials - sum(r.errors for r in results)
    return _combine(storage, workers, results, extra_seconds=enqueue_seconds)


def bench_optuna(storage: str, kind: str, where: str, trials: int, workers: int) -> RunResult:
    """``workers`` processes ask + tell ``trials`` trials in total."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    created = _optuna_storage(kind, where)
    optuna.create_study(
        study_name="bench", storage=created, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    _close_optuna_storage(created)
    shares = [trials // workers + (1 if n < trials % workers else 0) for n in range(workers)]
    results = run_workers(optuna_worker, lambda n: (kind, where, shares[n], "bench"), workers)
    return _combine(storage, workers, results)


def measure(storage: str, trials: int, workers: int, admin_url: str) -> RunResult:
    """One storage on a fresh database (or journal file)."""
    if storage == "optuna-journal":
        with fresh_journal() as path:
            return bench_optuna(storage, "journal", path, trials, workers)
    system, backend = storage.split("-")[0], storage.rsplit("-", 1)[1]
    with fresh_database(backend, admin_url) as url:
        if system == "ma2ml":
            return bench_ma2ml(storage, url, trials, workers)
        return bench_optuna(storage, "rdb", url, trials, workers)


# -- report ---------------------------------------------------------------------------------


def provenance() -> str:
    """What was measured where: the commit of the ``ma2ml`` imported (``PYTHONPATH`` may
    point at another checkout), its uncommitted changes, the machine."""
    import ma2ml

    root = Path(ma2ml.__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    dirty = [line for line in git("status", "--porcelain", "--", "ma2ml").splitlines() if line]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"ma2ml at {git('rev-parse', '--short', 'HEAD')} ({root})"
            f"{f' + {len(dirty)} uncommitted file(s) in ma2ml/' if dirty else ''}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs, "
            f"load average {load} at the end")



def table(results: Sequence[RunResult]) -> str:
    """Markdown: one row per (storage, workers), then ma2ml's speed-ups."""
    lines = ["| storage | workers | trials | cycles/s | cycle p50 | cycle p99 | claim p50 | "
             "claim p99 | errors |", "|" + " --- |" * 9]
    for r in results:
        lines.append(
            f"| {r.storage} | {r.workers} | {r.trials} | {r.rate:.1f} | "
            f"{percentile_ms(r.cycles, 0.5):.2f} ms | {percentile_ms(r.cycles, 0.99):.2f} ms | "
            f"{percentile_ms(r.claims, 0.5):.2f} ms | {percentile_ms(r.claims, 0.99):.2f} ms | "
            f"{r.errors} |")
    return "\n".join(lines + ratios(results))


def ratios(results: Sequence[RunResult]) -> list[str]:
    """ma2ml's trials per second over Optuna's on the same backend, and over the journal."""
    rate = {(r.storage, r.workers): r.rate for r in results}
    pairs = [("ma2ml-postgres", "optuna-rdb-postgres"), ("ma2ml-sqlite", "optuna-rdb-sqlite"),
             ("ma2ml-postgres", "optuna-journal"), ("ma2ml-sqlite", "optuna-journal")]
    lines = []
    for workers in sorted({r.workers for r in results}):
        found = [f"{ours} / {theirs} {rate[ours, workers] / rate[theirs, workers]:.1f}x"
                 for ours, theirs in pairs
                 if (ours, workers) in rate and (theirs, workers) in rate]
        if found:
            lines.append(f"* {workers} workers: " + "; ".join(found))
    return ["", "Trials per second, ma2ml over Optuna:", *lines] if lines else []


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials per run")
    parser.add_argument("--workers", default="1,4,16", help="comma-separated process counts")
    parser.add_argument("--storages", nargs="+", default=list(STORAGES), choices=STORAGES)
    parser.add_argument("--quick", action="store_true", help="200 trials, workers 1,4")
    parser.add_argument("--out", type=Path, default=None,
                        help="write store_throughput.md here (default: print only)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MA2ML_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL),
        help="maintenance database of the server; a fresh database is created per run",
    )
    args = parser.parse_args(argv)
    try:
        args.workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers: comma-separated integers, got {args.workers!r}")
    if args.quick:
        args.trials, args.workers = 200, [1, 4]
    if not 1 <= args.trials <= MAX_TRIALS:
        parser.error(f"--trials: must be in [1, {MAX_TRIALS}], got {args.trials}")
    if any(not 1 <= w <= MAX_WORKERS for w in args.workers):
        parser.error(f"--workers: each count must be in [1, {MAX_WORKERS}], got {args.workers}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = []
    for workers in args.workers:
        for storage in args.storages:
            result = measure(storage, args.trials, workers, args.postgres_url)
            print(f"{storage}, {workers} workers: {result.rate:.1f} trials/s", flush=True)
            results.append(result)
    report = (f"{args.trials} trials per run; cycle = one trial's storage work (ma2ml: search "
              f"read + claim + heartbeat + complete; Optuna: ask + tell); claim = Store.claim "
              f"or Study.ask; errors: operations that raised\n\n{table(results)}\n\n"
              f"{provenance()}")
    print(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "store_throughput.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
