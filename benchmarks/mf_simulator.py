"""An event-driven simulator of asynchronous workers on a simulated clock.

W workers train trials epoch by epoch; an epoch ends at the time its learning
curve (``mf_tasks.Curve``) says. After every epoch but the last the method
decides whether the trial goes on (``Method.on_result``); a trial that ends
(stopped, or at the epoch its suggestion asked for) frees its worker, which asks
the method for the next trial at that same instant. The method's own compute
takes no simulated time, as in Syne Tune's simulator backend. Ties of the
clock are broken by worker number, so a run is a pure function of its inputs.

The trace keeps every full-fidelity result with the time it was known; the
incumbent at time t is the best of those known by t: a pipeline one can ship
is one trained to the end, and only those compete (as ma2ml's ``best`` does).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from mf_tasks import Task


@dataclass(frozen=True)
class Suggestion:
    """A joint action to train (value indices in layout order) and, for methods that
    pick a fidelity up front (Hyperband brackets, DEHB), the epochs to train it for."""

    row: list[int]
    epochs: int | None = None  # None: the task's full fidelity, unless stopped


class Method(Protocol):
    """What the simulator asks of a search method; ``trial_id`` counts from 0."""

    def suggest(self, trial_id: int) -> Suggestion | None:
        """The next trial; None if the method has nothing to run (the worker idles)."""

    def on_result(self, trial_id: int, epoch: int, value: float) -> bool:
        """An intermediate result (not the trial's last epoch); False stops the trial."""

    def on_complete(self, trial_id: int, epoch: int, value: float, stopped: bool) -> None:
        """The trial ended at ``epoch`` with ``value``: stopped early, or trained through."""


@dataclass
class Trace:
    """What a simulated run did: full-fidelity results, trials started, epochs trained."""

    full: list[tuple[float, float]] = field(default_factory=list)  # (time known, value)
    trials: int = 0
    epochs: int = 0
    stopped: int = 0
    training_seconds: float = 0.0

    def best_at(self, times: Sequence[float]) -> np.ndarray:
        """The best full-fidelity value known by each time (-inf before the first)."""
        stamps = np.array([t for t, _ in self.full])
        values = np.maximum.accumulate(np.array([v for _, v in self.full])) \
            if self.full else np.array([])
        found = np.searchsorted(stamps, np.asarray(times, dtype=np.float64), side="right")
        return np.array([values[i - 1] if i else -np.inf for i in found])


@dataclass(order=True)
class _Event:
    time: float
    worker: int
    trial: int = field(compare=False)
    epoch: int = field(compare=False)


def simulate(task: Task, method: Method, workers: int, budget_seconds: float) -> Trace:
    """Run ``method`` on ``task`` with ``workers`` workers until the simulated clock
    passes ``budget_seconds``; results after that are not known to anyone."""
    if workers < 1 or budget_seconds <= 0:
        raise ValueError("workers must be >= 1 and budget_seconds > 0")
    trace, events = Trace(), []
    running: dict[int, tuple[list[int], int, float]] = {}  # trial -> (row, epochs, start)
    next_id = 0

    def start(worker: int, now: float) -> None:
        nonlocal next_id
        suggestion = method.suggest(next_id)
        if suggestion is None:
            return  # the worker stays idle: nothing here wakes it (methods always suggest)
        epochs = min(suggestion.epochs or task.max_epochs, task.max_epochs)
        running[next_id] = (list(suggestion.row), epochs, now)
        curve = task.curve(suggestion.row)
        heapq.heappush(events, _Event(now + float(curve.seconds[0]), worker, next_id, 1))
        trace.trials += 1
        next_id += 1

    for worker in range(workers):
        start(worker, 0.0)
    while events and events[0].time <= budget_seconds:
        event = heapq.heappop(events)
        row, epochs, started = running[event.trial]
        curve = task.curve(row)
        value = float(curve.values[event.epoch - 1])
        trace.epochs += 1
        if event.epoch < epochs and method.on_result(event.trial, event.epoch, value):
            nxt = event.epoch + 1
            heapq.heappush(events, _Event(started + float(curve.seconds[nxt - 1]),
                                          event.worker, event.trial, nxt))
            continue
        stopped = event.epoch < epochs
        trace.stopped += stopped
        trace.training_seconds += event.time - started
        if event.epoch == task.max_epochs:
            trace.full.append((event.time, value))
        del running[event.trial]
        method.on_complete(event.trial, event.epoch, value, stopped)
        start(event.worker, event.time)
    return trace
