"""Helpers of the learner tests: a small search spec and a worker thread on a real store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ma2ml.spec import parse_spec, spec_to_document


def search_document(name: str = "toy", *, algorithm: str = "ma2ml", max_trials: int = 12,
                    max_failed: int = 10, parallelism: int = 2, prefetch: int = 1,
                    settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """A resolved PipelineSearch with two custom agents (3 x 3 and 4 choices)."""
    search = parse_spec({
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "agents": [
                {"name": "nas", "decisions": [{"name": "width", "values": [8, 16, 32]},
                                              {"name": "depth", "values": [1, 2, 3]}]},
                {"name": "hpo", "decisions": [{"name": "lr", "values": [0.1, 0.01, 0.001,
                                                                          0.0001]}]},
            ],
            "algorithm": {"name": algorithm, "seed": 3, "settings": settings or {}},
            "budget": {"maxTrials": max_trials, "maxFailedTrials": max_failed,
                       "parallelism": parallelism, "prefetch": prefetch, "leaseSeconds": 5},
        },
    })
    return spec_to_document(search)


def toy_reward(action: dict[str, list[int]]) -> float:
    """Best at width 32, depth 2, lr 0.01."""
    return 1.0 - 0.1 * abs(action["nas"][0] - 2) - 0.1 * abs(action["nas"][1] - 1) \
        - 0.05 * abs(action["hpo"][0] - 1)


class WorkerThread(threading.Thread):
    """Claims and completes trials of one search until stopped (a real store client)."""

    def __init__(self, url: str, search_id: int,
                 outcome: Callable[[Any], tuple[str, float]] | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.search_id = url, search_id
        self.outcome = outcome or (lambda trial: ("completed", toy_reward(trial.action)))
        self.halt = threading.Event()
        self.done: list[int] = []

    def run(self) -> None:
        from ma2ml.store import Store

        with Store(self.url) as store:
            while not self.halt.is_set():
                trial = store.claim(self.search_id, "test-worker", 30)
                if trial is None:
                    time.sleep(0.01)
                    continue
                status, reward = self.outcome(trial)
                if status == "failed":
                    store.fail(trial.id, trial.attempt, "boom", retryable=False, max_retries=0)
                else:
                    store.complete(trial.id, trial.attempt, reward, {})
                self.done.append(trial.id)
