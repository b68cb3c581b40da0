"""Fixtures of the learner tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from .helpers import WorkerThread


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny nets: extra threads only add overhead, and on a shared machine a lot of it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def worker_factory() -> Iterator[Callable[..., WorkerThread]]:
    started: list[WorkerThread] = []

    def start(url: str, search_id: int, **kwargs: Any) -> WorkerThread:
        worker = WorkerThread(url, search_id, **kwargs)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.halt.set()
        worker.join(timeout=10)
