"""``ma2ml learner``: run one search's learner loop as a process (the learner pod).

SIGTERM and SIGINT stop the loop between ticks; everything it knows is in
the store, so the next start resumes where this one stopped.
"""

from __future__ import annotations

import logging
import signal
import threading

import torch

from ma2ml.learner.loop import STOPPED, SearchOutcome, run_learner
from ma2ml.settings import SettingsError
from ma2ml.spec import SpecError
from ma2ml.store import SearchNotFoundError, SearchState
from ma2ml.store.backoff import open_store
from ma2ml.store.learner_lock import wait_for_lock

log = logging.getLogger(__name__)

#: Process exit codes: the search finished / failed / was stopped / bad input.
EXIT_CODES: dict[str, int] = {SearchState.finished: 0, STOPPED: 0, SearchState.failed: 1}
EXIT_BAD_INPUT = 2


def serve_learner(search: str, url: str | None, metrics_port: int = 0,
                  poll_seconds: float = 0.5) -> int:
    """Run the learner of ``search`` until it ends; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # The nets are tiny: one thread is fastest, and a learner pod shares its node.
    torch.set_num_threads(1)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        store = open_store(url, stop)  # waits out a database that is down at start
        if store is None:
            return EXIT_CODES[STOPPED]
        with store:
            # One learner per search: wait while another (a pod rolled over, a
            # `ma2ml run`) still drives it.
            lock = wait_for_lock(store, search, stop)
            if lock is None:
                return EXIT_CODES[STOPPED]
            with lock:
                outcome = run_learner(store, search, stop=stop, poll_seconds=poll_seconds)
    except (SearchNotFoundError, SpecError, SettingsError, ValueError) as exc:
        log.error("learner of %s cannot start: %s", search, exc)
        return EXIT_BAD_INPUT
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("learner of %s: %s", search, describe(outcome))
    return EXIT_CODES[outcome.state]


def describe(outcome: SearchOutcome) -> str:
    best = "none" if outcome.best_reward is None else \
        f"trial {outcome.best_trial_id} reward {outcome.best_reward:.4f}"
    return (f"{outcome.state}: {outcome.results} results, {outcome.failures} failures, "
            f"{outcome.updates} updates, best {best}")
