"""Functions run in spawned processes by the store's concurrency tests."""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any


def run_together(target: Callable[..., None], url: str, search_id: int, processes: int
                 ) -> list[tuple[str, Any]]:
    """``target(url, search_id, "w<n>", barrier, results)`` in ``processes`` spawned
    processes that start at one barrier; returns what each put on ``results``."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [context.Process(target=target, args=(url, search_id, f"w{n}", barrier, results))
               for n in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=240) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return outcomes


def open_fresh(url: str, barrier: Barrier, results: Queue) -> None:
    """Open (and so migrate) a fresh database together with the other processes."""
    from ma2ml.store import Store

    barrier.wait(timeout=60)
    try:
        with Store(url) as store:
            search = store.create_search("shared/first-use", {"k": 1})
            results.put(("ok", search.id))
    except Exception:  # reported to the parent, which asserts on it (with the traceback)
        results.put(("error", traceback.format_exc()))


def claim_until_empty(
    url: str, search_id: int, worker: str, barrier: Barrier, results: Queue
) -> None:
    """Claim and complete trials until the queue is empty; report (trial id, seq) pairs."""
    from ma2ml.store import Store

    done: list[tuple[int, int]] = []
    try:
        with Store(url, migrate=False) as store:
            barrier.wait(timeout=60)
            while (trial := store.claim(search_id, worker, lease_seconds=300)) is not None:
                reward = float(trial.pipeline["x"]) / 1000.0
                seq = store.complete(trial.id, trial.attempt, reward, {"worker": worker})
                done.append((trial.id, seq))
        results.put(("ok", done))
    except Exception as error:
        results.put(("error", repr(error)))


def report_steps_until_empty(
    url: str, search_id: int, worker: str, barrier: Barrier, results: Queue
) -> None:
    """Claim trials; report epochs 1 and 2 (asking each twice; the search's stored rule is
    ASHA, 4 epochs) and complete the survivors; report (trial id, step, decision, decision
    asked again) tuples."""
    from ma2ml.store import StaleAttemptError, Store

    answers: list[tuple[int, int, str, str]] = []
    try:
        with Store(url, migrate=False) as store:
            barrier.wait(timeout=60)
            while (trial := store.claim(search_id, worker, lease_seconds=300)) is not None:
                # A permutation of the claim order: values that rose with it would make
                # every newcomer the best at its rung (nothing stopped, nothing tested).
                value = float(trial.pipeline["x"] * 37 % 120) / 1000.0
                for step in (1, 2):
                    decision = store.report_step(trial.id, trial.attempt, step, value + step,
                                                 {"accuracy": value})
                    try:
                        again = str(store.report_step(trial.id, trial.attempt, step,
                                                      value + step, {}))
                    except StaleAttemptError:  # stopped: the trial is no longer running
                        again = "stale"
                    answers.append((trial.id, step, str(decision), again))
                    if decision == "stop":
                        break
                else:
                    store.complete(trial.id, trial.attempt, value + 4, {})
        results.put(("ok", answers))
    except Exception:
        results.put(("error", traceback.format_exc()))
