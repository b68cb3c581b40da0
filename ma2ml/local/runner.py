"""``ma2ml run``: learner in this process, workers in child processes, one store.

The learner runs in a thread so the live view can read the store beside
it. Workers are spawned processes (torch and fork do not mix) that ignore
SIGINT: Ctrl-C reaches the whole process group, and only this process
decides the order of shutdown — stop proposing, ask workers to hand back
their leases (SIGTERM), wait, then close the store. Running the command
again resumes from the store.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

from ma2ml.learner.loop import run_learner
from ma2ml.local.searches import prepare_search, resolve_run_url
from ma2ml.spec import PipelineSearch
from ma2ml.store import Store

log = logging.getLogger(__name__)

#: Seconds a worker gets to checkpoint and release its lease after SIGTERM.
WORKER_STOP_GRACE = 30.0


@dataclass
class RunResult:
    """How a local run ended: the store state and whether the user stopped it."""

    url: str
    key: str
    state: str
    interrupted: bool


def _worker_process(url: str, key: str, worker_id: str, threads: int,
                    metrics_port: int | None, spool_dir: Path) -> None:
    """Entry point of one worker child process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent orchestrates shutdown
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    import torch

    from ma2ml.logs import setup_logging
    from ma2ml.worker.loop import run_worker

    setup_logging()
    torch.set_num_threads(threads)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    with Store(url) as store:
        run_worker(store, key, worker_id, stop=stop, spool_dir=spool_dir)


def start_workers(url: str, key: str, count: int, metrics_port: int | None,
                  spool_dir: Path) -> list[BaseProcess]:
    """Spawn ``count`` workers, sharing the cores between them."""
    ctx = mp.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // count)
    processes = []
    for i in range(count):
        port = metrics_port + 1 + i if metrics_port else None
        process = ctx.Process(target=_worker_process, name=f"ma2ml-worker-{i}",
                              args=(url, key, f"local-{os.getpid()}-{i}", threads, port,
                                    spool_dir))
        process.start()
        processes.append(process)
    return processes


def stop_workers(processes: list[BaseProcess], grace: float = WORKER_STOP_GRACE) -> None:
    """SIGTERM (checkpoint + release), wait, then kill what is left."""
    for process in processes:
        if process.is_alive() and process.pid:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.warning("worker did not stop in time; killing it", extra={"pid": process.pid})
            process.kill()
            process.join()


def run_local(
    spec_path: Path,
    search: PipelineSearch,
    *,
    workers: int | None = None,
    db: str | None = None,
    metrics_port: int | None = None,
    on_tick: Callable[[Store, int], None] | None = None,
    tick_seconds: float = 1.0,
) -> RunResult:
    """Run (or resume) ``search`` to the end or until Ctrl-C."""
    url = resolve_run_url(spec_path, search, db)
    count = workers or search.spec.budget.parallelism
    with Store(url) as store:
        record = prepare_search(store, search)
        if record.state in ("finished", "failed"):
            return RunResult(url, search.key, record.state, interrupted=False)
        if metrics_port:
            _serve_metrics(store, search.key, metrics_port)
        stop = threading.Event()
        learner = threading.Thread(target=_learn, args=(url, search.key, stop), daemon=True,
                                   name="ma2ml-learner")
        # Unsent reports and epoch checkpoints live beside the spec, not in the cwd.
        spool_dir = spec_path.resolve().parent / f".{spec_path.stem}-spool"
        processes = start_workers(url, search.key, count, metrics_port, spool_dir)
        learner.start()
        interrupted = False
        try:
            while learner.is_alive():
                if on_tick is not None:
                    on_tick(store, record.id)
                learner.join(tick_seconds)
        except KeyboardInterrupt:
            interrupted = True
            log.info("interrupted: stopping the learner and handing back running trials")
        finally:
            stop.set()
            stop_workers(processes)
            learner.join(WORKER_STOP_GRACE)
        final = store.get_search_by_id(record.id)
        if on_tick is not None:
            on_tick(store, record.id)
        return RunResult(url, search.key, final.state if final else "unknown", interrupted)


def _learn(url: str, key: str, stop: threading.Event) -> None:
    import torch

    # The learner's nets are tiny: more threads only contend with the workers
    # (one update took 470 ms with 2 threads on a busy 2-core machine, 28 ms with 1).
    torch.set_num_threads(1)
    with Store(url) as store:
        try:
            run_learner(store, key, stop=stop)
        except Exception:
            log.exception("learner crashed", extra={"search": key})
            raise


def _serve_metrics(store: Store, key: str, port: int) -> None:
    from prometheus_client import start_http_server

    from ma2ml.metrics import register_store_collector

    register_store_collector(store, [key])
    start_http_server(port, addr="127.0.0.1")
