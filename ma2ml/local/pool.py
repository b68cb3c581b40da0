"""The worker processes of ``ma2ml run``: spawn, resize to the live ``parallelism``, stop.

Workers are spawned processes (torch and fork do not mix) that ignore
SIGINT: Ctrl-C reaches the whole process group, and only the parent decides
the order of shutdown. The pool is what a Deployment is in a cluster: it
follows ``budget.parallelism`` as the stored spec says now (so an edit
takes effect while the search runs), and replaces a worker that died, after
a back-off so that a worker that cannot start does not spin.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path

from ma2ml.store import Store
from ma2ml.store.backoff import backoff_delays
from ma2ml.worker.parent_death import signal_on_parent_death
from ma2ml.worker.prefetch import prefetch_setting

log = logging.getLogger(__name__)

#: Seconds a worker gets to checkpoint and release its lease after SIGTERM.
WORKER_STOP_GRACE = 30.0


def _worker_process(url: str, key: str, worker_id: str, threads: int,
                    metrics_port: int | None, spool_dir: Path, parent: int) -> None:
    """Entry point of one worker child process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent orchestrates shutdown
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # A parent killed without its cleanup (SIGKILL, a crash) would leave this worker
    # training for nobody, holding a CPU or GPU: stop as if the parent had said so.
    signal_on_parent_death(signal.SIGTERM, parent)
    from ma2ml.logs import setup_logging
    from ma2ml.worker.loop import run_worker

    setup_logging()
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    with Store(url) as store:
        # ``threads``: this process's own torch setting (it is the whole worker), applied
        # only if the search uses the built-in trainer: a custom command's worker never
        # imports torch.
        run_worker(store, key, worker_id, stop=stop, spool_dir=spool_dir, threads=threads)


@dataclass
class WorkerPool:
    """``parallelism`` worker processes of one search, numbered 0, 1, ... by slot."""

    url: str
    key: str
    spool_dir: Path
    metrics_port: int | None = None
    processes: dict[int, BaseProcess] = field(default_factory=dict)
    _restart_at: dict[int, float] = field(default_factory=dict)
    _delays: dict[int, Iterator[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked here, once: a bad $MA2ML_WORKER_PREFETCH would otherwise crash every
        # worker at start, and the pool would restart them for ever.
        prefetch_setting()

    def resize(self, count: int) -> None:
        """Run exactly ``count`` workers: reap dead ones, start missing, stop extra."""
        self._reap()
        for slot in sorted(self.processes, reverse=True):
            if slot >= count:
                self._stop([self.processes.pop(slot)])
                log.info("worker %d stopped (parallelism %d)", slot, count)
        now = time.monotonic()
        for slot in range(count):
            if slot not in self.processes and self._restart_at.get(slot, 0.0) <= now:
                self.processes[slot] = self._start(slot, count)

    def stop(self, grace: float = WORKER_STOP_GRACE) -> None:
        """SIGTERM every worker (checkpoint + release), wait, then kill what is left."""
        self._stop(list(self.processes.values()), grace)
        self.processes.clear()

    def _start(self, slot: int, count: int) -> BaseProcess:
        # Call from a thread that lives as long as the pool: the worker's parent-death
        # signal follows the thread that started it.
        ctx = mp.get_context("spawn")
        threads = max(1, (os.cpu_count() or 1) // max(count, 1))
        port = self.metrics_port + 1 + slot if self.metrics_port else None
        process = ctx.Process(target=_worker_process, name=f"ma2ml-worker-{slot}",
                              args=(self.url, self.key, f"local-{os.getpid()}-{slot}", threads,
                                    port, self.spool_dir, os.getpid()))
        process.start()
        return process

    def _reap(self) -> None:
        for slot, process in list(self.processes.items()):
            if process.is_alive():
                continue
            del self.processes[slot]
            if process.exitcode == 0:  # left because the search ended: nothing to replace
                self._restart_at[slot] = float("inf")
                continue
            delays = self._delays.setdefault(slot, backoff_delays())
            delay = next(delays)
            self._restart_at[slot] = time.monotonic() + delay
            log.warning("worker %d exited with code %s; restarting it in %.1f s", slot,
                        process.exitcode, delay)

    @staticmethod
    def _stop(processes: list[BaseProcess], grace: float = WORKER_STOP_GRACE) -> None:
        for process in processes:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker did not stop in time; killing it",
                            extra={"pid": process.pid})
                process.kill()
                process.join()
