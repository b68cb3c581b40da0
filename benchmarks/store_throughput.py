"""Trial-queue throughput of ma2ml's store against Optuna's RDB storage.

Each run starts W worker processes (spawn) on a fresh database and times how fast
they get through N trivial trials:

* ma2ml: the learner enqueues N proposals in one batch (timed, counted in the
  wall time), then every worker loops ``claim`` + ``complete`` until the queue is
  empty.
* Optuna: ``create_study(storage=RDBStorage(url), sampler=RandomSampler())`` once,
  each worker ``load_study`` and loops ``ask(fixed_distributions)`` + ``tell``
  for its share of the N trials. RandomSampler keeps the sampler's cost flat (TPE
  would re-read every trial on each ask), so the storage is what is measured.

"claim" latency is ``Store.claim`` for ma2ml and ``Study.ask`` for Optuna. The wall
time runs from the first worker leaving the start barrier (connections already
open) to the last one finishing.

Run (from the repository root):
    PYTHONPATH=. .venv/bin/python benchmarks/store_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from ma2ml.store.scratch import scratch_database

DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
MAX_ERRORS = 50


@dataclass
class WorkerResult:
    """What one worker process reports back."""

    done: int
    errors: int
    started: float
    finished: float
    latencies: list[float]


@dataclass
class RunResult:
    """One (system, backend, workers) measurement."""

    trials: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.trials / self.seconds if self.seconds > 0 else float("nan")

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- databases ----------------------------------------------------------------------------


@contextmanager
def fresh_database(backend: str, admin_url: str) -> Iterator[str]:
    """A new empty database URL on ``backend``, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ma2ml-bench-") as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
        return
    with scratch_database(admin_url, "ma2ml_bench") as url:
        yield url


# -- worker processes ----------------------------------------------------------------------


def ma2ml_worker(url: str, search_id: int, name: str, barrier: Barrier, out: Queue) -> None:
    """Claim + complete until the queue is empty."""
    from ma2ml.store import Store

    with Store(url, migrate=False) as store:
        store.pending_count(search_id)  # opens the pooled connection before the clock starts
        barrier.wait()
        started, latencies, done, errors = time.monotonic(), [], 0, 0
        while errors < MAX_ERRORS:
            try:
                tick = time.perf_counter()
                trial = store.claim(search_id, name, lease_seconds=60)
                latency = time.perf_counter() - tick
                if trial is None:
                    break
                store.complete(trial.id, trial.attempt, float(trial.pipeline["x"]), {})
            except Exception:
                errors += 1
                continue
            latencies.append(latency)
            done += 1
        out.put(WorkerResult(done, errors, started, time.monotonic(), latencies))


def optuna_worker(url: str, share: int, study_name: str, barrier: Barrier, out: Queue) -> None:
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
    storage = optuna.storages.RDBStorage(url, engine_kwargs=_optuna_engine_kwargs(url))
    study = optuna.load_study(study_name=study_name, storage=storage)
    barrier.wait()
    started, latencies, done, errors = time.monotonic(), [], 0, 0
    while done < share and errors < MAX_ERRORS:
        try:
            tick = time.perf_counter()
            trial = study.ask(space)
            latency = time.perf_counter() - tick
            study.tell(trial, trial.params["x"])
        except Exception:
            errors += 1
            continue
        latencies.append(latency)
        done += 1
    out.put(WorkerResult(done, errors, started, time.monotonic(), latencies))
    storage.remove_session()
    storage.engine.dispose()


def _optuna_engine_kwargs(url: str) -> dict[str, Any]:
    # The same 30 s busy timeout ma2ml uses, so SQLite lock waits are comparable.
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}


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


def _combine(results: list[WorkerResult], extra_seconds: float = 0.0) -> RunResult:
    seconds = max(r.finished for r in results) - min(r.started for r in results)
    latencies = [latency for r in results for latency in r.latencies]
    return RunResult(
        trials=sum(r.done for r in results),
        errors=sum(r.errors for r in results),
        seconds=seconds + extra_seconds,
        latencies=latencies,
    )


# -- the two systems ------------------------------------------------------------------------


def bench_ma2ml(url: str, trials: int, workers: int) -> RunResult:
    """The learner enqueues ``trials`` proposals; ``workers`` processes drain the queue."""
    from ma2ml.store import Store, TrialProposal

    with Store(url) as store:
        search = store.create_search("bench/throughput", {})
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
    return _combine(results, extra_seconds=enqueue_seconds)


def bench_optuna(url: str, trials: int, workers: int) -> RunResult:
    """``workers`` processes ask + tell ``trials`` trials in total."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url, engine_kwargs=_optuna_engine_kwargs(url))
    optuna.create_study(
        study_name="bench", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    storage.remove_session()
    storage.engine.dispose()
    shares = [trials // workers + (1 if n < trials % workers else 0) for n in range(workers)]
    return _combine(run_workers(optuna_worker, lambda n: (url, shares[n], "bench"), workers))


# -- main -----------------------------------------------------------------------------------


def _row(cells: list[str]) -> str:
    widths = [9, 7, 7, 11, 11, 11, 11, 11, 11, 9, 7]
    return "  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials per run")
    parser.add_argument("--workers", default="1,4,16", help="comma-separated process counts")
    parser.add_argument("--backends", default="postgres,sqlite", help="postgres and/or sqlite")
    parser.add_argument("--quick", action="store_true", help="200 trials, workers 1,4")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MA2ML_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL),
        help="maintenance database of the server; a fresh database is created per run",
    )
    args = parser.parse_args(argv)
    trials, worker_counts = args.trials, [int(w) for w in args.workers.split(",")]
    if args.quick:
        trials, worker_counts = 200, [1, 4]

    print(f"{trials} trials per run; cycles/s = claim+complete (ma2ml) vs ask+tell (Optuna)")
    print(
        _row(
            [
                "backend",
                "workers",
                "trials",
                "ma2ml/s",
                "optuna/s",
                "ma2ml p50",
                "ma2ml p99",
                "optuna p50",
                "optuna p99",
                "ratio",
                "errors",
            ]
        )
    )
    for backend in args.backends.split(","):
        for workers in worker_counts:
            with fresh_database(backend, args.postgres_url) as url:
                ours = bench_ma2ml(url, trials, workers)
            with fresh_database(backend, args.postgres_url) as url:
                theirs = bench_optuna(url, trials, workers)
            print(
                _row(
                    [
                        backend,
                        str(workers),
                        str(trials),
                        f"{ours.rate:.1f}",
                        f"{theirs.rate:.1f}",
                        f"{ours.percentile_ms(0.5):.2f}ms",
                        f"{ours.percentile_ms(0.99):.2f}ms",
                        f"{theirs.percentile_ms(0.5):.2f}ms",
                        f"{theirs.percentile_ms(0.99):.2f}ms",
                        f"{ours.rate / theirs.rate:.1f}x",
                        f"{ours.errors}/{theirs.errors}",
                    ]
                ),
                flush=True,
            )
    print(
        "latency columns: claim (ma2ml Store.claim, Optuna Study.ask); "
        "errors: ma2ml/optuna operations that raised"
    )


if __name__ == "__main__":
    main()
