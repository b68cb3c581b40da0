"""The worker processes of ``ma2ml run``: spawn, resize to the live ``parallelism``, stop.

Workers are spawned processes (torch and fork do not mix) that ignore
SIGINT: Ctrl-C reaches the whole process group, and only the parent decides
the order of shutdown. The pool is what a Deployment is in a cluster: it
follows ``budget.parallelism`` as the stored spec says now (so an edit
takes effect while the search runs), and replaces a worker that died, after
a back-off so that a worker that cannot start does not spin. A worker that
ends with ``EXIT_STORE_FAULT`` (the store's schema is broken: every worker
would meet it) is not replaced: the pool keeps its one-line message in
``fault``, and ``ma2ml run`` ends with it.

Unlike a cluster, one machine has only so many cores: ``local_worker_count``
caps the workers at this process's CPUs (its affinity mask and cgroup quota),
since more processes than cores only share them, each with its own memory
(about 100 MB apiece). ``ma2ml run --workers N`` is the explicit override.

A worker runs in ``workdir`` (``ma2ml run``: the spec file's folder), so that a
custom trainer's relative paths (``command: [python, train.py]``) mean what
they mean beside the spec; the database URL and spool folder it is given are
absolute.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from ma2ml.store.backoff import backoff_delays, open_store
from ma2ml.worker.errors import EXIT_STORE_FAULT, StoreFault
from ma2ml.worker.parent_death import signal_on_parent_death
from ma2ml.worker.prefetch import prefetch_setting

log = logging.getLogger(__name__)

#: Seconds a worker gets to checkpoint and release its lease after SIGTERM.
WORKER_STOP_GRACE = 30.0
#: cgroup v2 CPU quota of this process's container (``max`` or ``QUOTA PERIOD``).
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def machine_cpus() -> int:
    """The CPUs this process may use: its affinity mask (``taskset``, a container's
    cpuset), lowered to a cgroup CPU quota when one is set (``docker --cpus 2``)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to honour
    return max(1, cpus)


def local_worker_count(parallelism: int, cpus: int | None = None) -> int:
    """Workers ``ma2ml run`` starts for ``parallelism``: at most one per CPU."""
    return max(1, min(parallelism, cpus if cpus is not None else machine_cpus()))


def _worker_process(url: str, key: str, worker_id: str, threads: int,
                    metrics_port: int | None, spool_dir: Path, parent: int,
                    workdir: Path | None = None, faults: Connection | None = None) -> None:
    """Entry point of one worker child process. A ``StoreFault`` is sent to the pool on
    ``faults`` (its one line) and ends the process with ``EXIT_STORE_FAULT``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent orchestrates shutdown
    if workdir is not None:
        os.chdir(workdir)  # a custom trainer's relative paths start here
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
    # The run created the store: a worker never creates one (a deleted SQLite file must
    # not come back empty under a worker), and it waits out a database that is down.
    store = open_store(url, stop, create=False)
    if store is None:
        return
    with store:
        # ``threads``: this process's own torch setting (it is the whole worker), applied
        # only if the search uses the built-in trainer: a custom command's worker never
        # imports torch.
        try:
            run_worker(store, key, worker_id, stop=stop, spool_dir=spool_dir, threads=threads)
        except StoreFault as exc:  # its trial is handed back; a restart would meet it again
            log.error("worker %s ends: %s", worker_id, exc)
            if faults is not None:
                faults.send(str(exc))
            sys.exit(EXIT_STORE_FAULT)


@dataclass
class WorkerPool:
    """``parallelism`` worker processes of one search, numbered 0, 1, ... by slot."""

    url: str
    key: str
    spool_dir: Path
    metrics_port: int | None = None
    workdir: Path | None = None
    processes: dict[int, BaseProcess] = field(default_factory=dict)
    #: The one line of a worker that ended with ``EXIT_STORE_FAULT``: the run must end.
    fault: str | None = None
    _restart_at: dict[int, float] = field(default_factory=dict)
    _delays: dict[int, Iterator[float]] = field(default_factory=dict)
    _faults: dict[int, Connection] = field(default_factory=dict)  # slot -> fault's reader

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
        for reader in self._faults.values():
            reader.close()
        self._faults.clear()

    def _start(self, slot: int, count: int) -> BaseProcess:
        # Call from a thread that lives as long as the pool: the worker's parent-death
        # signal follows the thread that started it.
        ctx = mp.get_context("spawn")
        threads = max(1, machine_cpus() // max(count, 1))
        port = self.metrics_port + 1 + slot if self.metrics_port else None
        reader, writer = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_worker_process, name=f"ma2ml-worker-{slot}",
                              args=(self.url, self.key, f"local-{os.getpid()}-{slot}", threads,
                                    port, self.spool_dir, os.getpid(), self.workdir, writer))
        process.start()
        writer.close()  # the child holds its own end
        if (old := self._faults.pop(slot, None)) is not None:
            old.close()
        self._faults[slot] = reader
        return process

    def _reap(self) -> None:
        for slot, process in list(self.processes.items()):
            if process.is_alive():
                continue
            del self.processes[slot]
            if process.exitcode == 0:  # left because the search ended: nothing to replace
                self._restart_at[slot] = float("inf")
                continue
            if process.exitcode == EXIT_STORE_FAULT:  # the store is broken: never restarted
                self._restart_at[slot] = float("inf")
                message = self._fault_line(slot)
                self.fault = self.fault or message
                log.error("worker %d ends the run: %s", slot, message)
                continue
            delays = self._delays.setdefault(slot, backoff_delays())
            delay = next(delays)
            self._restart_at[slot] = time.monotonic() + delay
            log.warning("worker %d exited with code %s; restarting it in %.1f s", slot,
                        process.exitcode, delay)

    def _fault_line(self, slot: int) -> str:
        """What the worker in ``slot`` sent before it exited with ``EXIT_STORE_FAULT``."""
        reader = self._faults.pop(slot, None)
        try:
            if reader is not None and reader.poll():
                return str(reader.recv())
        except (EOFError, OSError):
            pass
        finally:
            if reader is not None:
                reader.close()
        return f"worker {slot} found the store broken (exit {EXIT_STORE_FAULT})"

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


class WorkerCount:
    """How many workers ``ma2ml run`` keeps: ``--workers`` as given, else the live
    ``budget.parallelism`` capped at the machine's CPUs, saying so (``on_note``) once
    for each parallelism that is capped."""

    def __init__(self, workers: int | None, on_note: Callable[[str], None] | None = None,
                 cpus: int | None = None) -> None:
        self.workers, self.on_note = workers, on_note
        self.cpus = cpus if cpus is not None else machine_cpus()
        self._noted: int | None = None

    def __call__(self, parallelism: int) -> int:
        if self.workers:
            return self.workers
        count = local_worker_count(parallelism, self.cpus)
        if count < parallelism and parallelism != self._noted:
            self._noted = parallelism
            text = (f"budget.parallelism is {parallelism} but this machine has {self.cpus} "
                    f"CPU{'s' if self.cpus > 1 else ''}: running {count} worker "
                    f"process{'es' if count > 1 else ''} (--workers N runs N)")
            log.info(text)
            if self.on_note is not None:
                self.on_note(text)
        return count
