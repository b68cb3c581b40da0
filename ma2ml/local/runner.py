"""``ma2ml run``: learner in this process, workers in child processes, one store.

The learner runs in a thread so the live view can read the store beside
it; the workers are a ``WorkerPool`` (``pool.py``) that follows the stored
spec's ``budget.parallelism`` on every tick, as the operator does in a
cluster, unless ``--workers`` fixes the count. Shutdown order: stop
proposing, ask workers to hand back their leases (SIGTERM), wait, then
close the store. Running the command again resumes from the store.

Before any of that, the built-in trainer's dataset is checked (``check_data``):
a wrong path fails the command at once, not every trial. When a stored
search is replaced (``prepare_search``), its spool folder goes too: its
checkpoints and unsent reports belong to trials that no longer exist.

What the run holds on to while it drives the search:

* the search's learner lock (``store.learner_lock``), taken before the stored
  search is touched: a second ``ma2ml run`` of it refuses with one line;
* the SQLite file's identity (``dbfile``): a file deleted or replaced under the
  run stops it with an error, never a quiet success into an unlinked file;
* the database going away: the progress view, the parallelism follower and
  the learner wait it out (its workers spool their results meanwhile) and go
  on once it answers, as the separate learner and worker processes do;
* a broken store is not waited out: a worker that finds its schema broken (a
  missing ``trial_steps`` table) hands its trial back and exits
  ``EXIT_STORE_FAULT``, and the run stops everything and raises ``StoreFault``
  with that worker's message instead of restarting workers in a loop.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ma2ml.local.dbfile import DatabaseFileWatch
from ma2ml.local.pool import WORKER_STOP_GRACE, WorkerCount, WorkerPool
from ma2ml.local.searches import prepare_search, resolve_run_url
from ma2ml.spec import PipelineSearch, TrainerType
from ma2ml.store import TERMINAL_SEARCH_STATES, SearchRecord, Store, StoreUnavailableError
from ma2ml.store.backoff import open_store
from ma2ml.store.engine import error_cause
from ma2ml.store.learner_lock import LearnerLock
from ma2ml.worker.errors import StoreFault

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """How a local run ended: the store state, whether the user stopped it, and the
    learner's error when it crashed (the command then exits non-zero)."""

    url: str
    key: str
    state: str
    interrupted: bool
    learner_error: str | None = None


class LearnerThread(threading.Thread):
    """The search's learner; keeps the exception that ended it, if any."""

    def __init__(self, url: str, key: str, stop: threading.Event) -> None:
        super().__init__(daemon=True, name="ma2ml-learner")
        self.url, self.key, self.stop = url, key, stop
        self.error: str | None = None

    def run(self) -> None:
        try:
            # torch (seconds to import) is loaded here, not before the search exists: the
            # workers start and connect meanwhile. The learner's nets are tiny: more
            # threads only contend with the workers (one update took 470 ms with 2 threads
            # on a busy 2-core machine, 28 ms with 1). Set in this thread, which runs them.
            import torch

            from ma2ml.learner.loop import run_learner

            torch.set_num_threads(1)
            # The run created the store; waits if the database is down at this moment.
            store = open_store(self.url, self.stop, create=False)
            if store is None:
                return
            with store:
                run_learner(store, self.key, stop=self.stop)
        except Exception as exc:  # reported by run_local; the thread must not swallow it
            if self.stop.is_set() and isinstance(exc, StoreUnavailableError):
                # Stopped (Ctrl-C) during an outage: its last read failed, nothing was lost.
                log.info("learner stopped while the store was unavailable (%s)", exc)
                return
            log.exception("learner crashed", extra={"search": self.key})
            # The driver's own first line, as the search's reason says it (no SQL, no link).
            self.error = f"{type(exc).__name__}: {error_cause(exc)}"


def run_local(
    spec_path: Path,
    search: PipelineSearch,
    *,
    workers: int | None = None,
    db: str | None = None,
    metrics_port: int | None = None,
    on_tick: Callable[[Store, int], None] | None = None,
    tick_seconds: float = 1.0,
    restart: bool = False,
    on_note: Callable[[str], None] | None = None,
) -> RunResult:
    """Run (or resume) ``search`` to the end or until Ctrl-C; ``restart`` deletes a stored
    search of that name first. Raises ``DataError`` when the data cannot be read,
    ``LearnerBusyError`` when another process drives the search,
    ``DatabaseFileError`` when the SQLite file is deleted or replaced meanwhile, and
    ``StoreFault`` (a worker's one line) when a worker found the store's schema broken:
    the run then stops, its running trials handed back."""
    _check_builtin_data(search)
    url = resolve_run_url(spec_path, search, db)
    # Unsent reports and epoch checkpoints live beside the spec, not in the cwd; the
    # workers run there too, so that a trainer's relative paths start beside the spec.
    folder = spec_path.resolve().parent
    spool_dir = folder / f".{spec_path.stem}-spool"

    def replaced(note: str) -> None:
        shutil.rmtree(spool_dir, ignore_errors=True)
        if on_note is not None:
            on_note(note)

    with Store(url) as store, LearnerLock(store, search.key) as lock:
        watch = DatabaseFileWatch(url)
        record = prepare_search(store, search, restart=restart, on_note=replaced)
        if record.state in TERMINAL_SEARCH_STATES:
            return RunResult(url, search.key, record.state, interrupted=False)
        if metrics_port:
            _serve_metrics(store, search.key, metrics_port)
        stop = threading.Event()
        learner = LearnerThread(url, search.key, stop)
        count = WorkerCount(workers, on_note)
        pool = WorkerPool(url, search.key, spool_dir, metrics_port, workdir=folder)
        parallelism = search.spec.budget.parallelism
        pool.resize(count(parallelism))
        learner.start()
        interrupted = False
        try:
            with _sigterm_interrupts():
                while learner.is_alive() and pool.fault is None:
                    watch.check()
                    lock.keep()
                    if on_tick is not None:
                        _outage_safe(on_tick, store, record.id)
                    learner.join(tick_seconds)
                    parallelism = _parallelism(store, record, parallelism)
                    pool.resize(count(parallelism))
        except KeyboardInterrupt:
            interrupted = True
            log.info("interrupted: stopping the learner and handing back running trials")
        finally:
            stop.set()
            pool.stop()
            learner.join(WORKER_STOP_GRACE)
        if pool.fault is not None:
            raise StoreFault(pool.fault)
        watch.check()  # the learner may have finished into a file that is gone
        state = _final_state(store, record.id)
        if on_tick is not None:
            _outage_safe(on_tick, store, record.id)
        return RunResult(url, search.key, state, interrupted, learner.error)


def _check_builtin_data(search: PipelineSearch) -> None:
    """``DataError`` when the built-in trainer's dataset cannot be read; a custom trainer
    reads its own data."""
    if search.spec.trainer.type == TrainerType.builtin:
        from ma2ml.trainer.data import check_data

        check_data(search.spec.dataset)


def _final_state(store: Store, search_id: int) -> str:
    """The search's state once the run ended; "unknown" when it went or the store is down."""
    try:
        final = store.get_search_by_id(search_id)
        return final.state if final else "unknown"
    except StoreUnavailableError:  # stopped during an outage: the store says later
        return "unknown"


def _outage_safe(on_tick: Callable[[Store, int], None], store: Store, search_id: int) -> None:
    """``on_tick``, which reads the store, skipped while the database is unavailable."""
    try:
        on_tick(store, search_id)
    except StoreUnavailableError as exc:
        log.warning("store unavailable (%s); waiting for it", exc)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (``kill``, a batch scheduler's stop) ends the run as Ctrl-C does, running
    trials handed back, rather than killing the parent and orphaning its workers. SIGINT
    too, explicitly: a process started with SIGINT ignored (a background job of a
    non-interactive shell, as test harnesses and CI start them) inherits the ignore,
    and Python then installs no Ctrl-C handler of its own."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; an embedding caller keeps its own
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _parallelism(store: Store, record: SearchRecord, last: int) -> int:
    """``budget.parallelism`` as the store holds it now (edits apply while running);
    ``last`` while the database is unavailable (the workers wait it out as they are)."""
    try:
        current = store.get_search_by_id(record.id)
    except StoreUnavailableError:
        return last
    return (current or record).search.spec.budget.parallelism


def _serve_metrics(store: Store, key: str, port: int) -> None:
    from prometheus_client import start_http_server

    from ma2ml.metrics import register_store_collector

    register_store_collector(store, [key])
    start_http_server(port, addr="127.0.0.1")
