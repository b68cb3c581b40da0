"""Body of ``ma2ml worker`` (``ma2ml.cli`` stays thin)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from pathlib import Path

import typer

log = logging.getLogger("ma2ml.worker")
#: Exit code for bad input, as in ``ma2ml.cli``.
EXIT_BAD_INPUT = 2


def worker_command(search: str, db: str | None, worker_id: str | None,
                   metrics_port: int | None, threads: int | None, spool_dir: Path,
                   prefetch: int | None = None) -> None:
    """Run ``run_worker`` until the search ends; SIGTERM/SIGINT stop it gracefully (exit 0).

    ``threads`` (torch CPU threads) applies to the built-in trainer only; ``prefetch``
    None means ``$MA2ML_WORKER_PREFETCH`` or 1 (checked here, before anything starts).
    """
    from ma2ml.logs import setup_logging
    from ma2ml.store import SearchNotFoundError
    from ma2ml.store.backoff import open_store
    from ma2ml.worker.errors import EXIT_STORE_FAULT, StoreFault
    from ma2ml.worker.loop import run_worker
    from ma2ml.worker.prefetch import prefetch_setting

    try:
        prefetch = prefetch_setting(prefetch)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    setup_logging()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port)
    worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # The training loop checks ``stop`` between batches; the trial is
        # released (its last epoch checkpoint kept) and the process exits 0.
        signal.signal(sig, lambda *_: stop.set())
    store = open_store(db, stop)  # waits out a database that is down at start
    if store is None:
        return
    try:
        done = run_worker(store, search, worker_id, stop=stop, spool_dir=spool_dir,
                          threads=threads, prefetch=prefetch)
    except SearchNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except StoreFault as exc:  # a schema bug: restarting would meet it again
        log.error("worker %s ends: %s", worker_id, exc)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_STORE_FAULT) from None
    finally:
        store.close()
    log.info("worker %s done: %d trial(s)", worker_id, done)
