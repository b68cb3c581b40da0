"""Fixtures of the dashboard tests: searches written through the real Store API (the
learner and workers are not run: their results are written as they would write them),
and a real uvicorn server on a free port of 127.0.0.1 in a background thread."""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import SearchRecord, Store, TrialProposal


def tiny_spec(name: str, max_trials: int = 20) -> dict:
    """A small real search spec (the dashboard tests never train it)."""
    return {
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch", "metadata": {"name": name},
        "spec": {
            "dataset": {"name": "fashion-mnist", "trainSubset": 256, "validationSize": 256},
            "agents": [
                {"name": "aug", "preset": "autoaugment", "options": {"subPolicies": 1}},
                {"name": "nas", "preset": "mbconv-small", "options": {"stages": 1}},
                {"name": "hpo", "preset": "recipe-adamw"},
            ],
            "algorithm": {"name": "ma2ml", "seed": 1},
            "budget": {"maxTrials": max_trials, "parallelism": 2, "trialEpochs": 2},
        },
    }


@dataclass
class Writer:
    """Writes one search's trials and snapshots the way the learner and workers do."""

    store: Store
    record: SearchRecord
    seed: int = 0

    def __post_init__(self) -> None:
        search = parse_spec(self.record.spec)
        self.space = search.spec.search_space()
        self.rng = random.Random(self.seed)
        self.uniform = {a.name: -sum(math.log(n) for n in a.sizes) for a in self.space.agents}
        self.version = 0

    def propose(self, n: int = 1) -> list[int]:
        proposals = []
        for _ in range(n):
            action = {a.name: [self.rng.randrange(s) for s in a.sizes] for a in self.space.agents}
            # The first policy is uniform: its trials are random search's draws.
            logp = self.uniform if self.version == 0 else {a: -1.0 for a in action}
            proposals.append(TrialProposal(self.space.decode(action), action, logp,
                                           self.version))
        return self.store.enqueue_trials(self.record.id, proposals)

    def finish(self, n: int = 1, *, epochs: int = 2, fail: bool = False) -> None:
        """Propose, claim and finish ``n`` trials (each with a learning curve), then snapshot."""
        for _ in range(n):
            self.propose()
            claimed = self.store.claim(self.record.id, "worker-0", 30)
            accuracy = 0.5 + 0.4 * self.rng.random()
            if fail:
                self.store.fail(claimed.id, claimed.attempt, "Traceback ...\nValueError: bad "
                                "<b>pipeline</b>", retryable=False, max_retries=0)
                continue
            for step in range(1, epochs + 1):
                self.store.report_step(claimed.id, claimed.attempt, step, accuracy * step / epochs,
                                       {})
            self.store.complete(claimed.id, claimed.attempt, accuracy, {"accuracy": accuracy})
        self.snapshot()

    def snapshot(self) -> None:
        self.version += 1
        policy = {a.name: [[round(1 / s, 4)] * s for s in a.sizes] for a in self.space.agents}
        first = self.space.agents[0].name
        policy[first][0] = [0.9] + [round(0.1 / (len(policy[first][0]) - 1), 4)] * (
            len(policy[first][0]) - 1)
        stats = {"entropy": {a.name: 3.0 - 0.1 * self.version for a in self.space.agents},
                 "credit": {a.name: self.rng.uniform(-0.1, 0.1) for a in self.space.agents},
                 "critic_loss": 0.1 / self.version, "policy": policy}
        self.store.save_snapshot(self.record.id, self.version, b"", stats)


def new_search(store: Store, name: str, max_trials: int = 20, seed: int = 0) -> Writer:
    search = parse_spec(tiny_spec(name, max_trials=max_trials))
    return Writer(store, store.create_search(search.key, spec_to_document(search)), seed)


@dataclass
class Served:
    url: str
    server: uvicorn.Server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(app: object) -> Iterator[Served]:
    """Run ``app`` with uvicorn in a daemon thread until the generator is closed."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator[Store]:
    """A writable store (the learner's and workers' side) on a fresh SQLite file."""
    with Store(f"sqlite:///{tmp_path / 'dash.db'}") as store:
        yield store
