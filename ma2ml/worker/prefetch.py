"""Prefetch: a worker claims its next trial while the current one trains.

``Ahead`` is one such claim. When the worker starts training a trial it makes
an ``Ahead``, whose thread claims the next trial of the search
(``Store.claim_ahead``: never one that an idle worker would start now) and,
when none is pending, waits for one (LISTEN/NOTIFY on PostgreSQL, polling
elsewhere). A claimed trial is held under its own lease, renewed by its own
``Heartbeat``, exactly like the one training; the store shows it as *held* by
this worker (``running`` with no ``started_at``, ``lifecycle.is_held``). When
the current trial has trained, the worker calls ``start``: one statement
(``Store.start_held``) checks that the trial is still this worker's (a lease
that lapsed, or a late result of an older attempt that won, hands it to
someone else) and that its search is running, marks it started, renews its
lease and reads the search's spec, and the next trainer starts at once; the
previous trial's report is delivered while it runs (``loop.run_worker``).
Otherwise the worker claims as usual. A held trial whose worker dies goes back
to pending without counting as a failed attempt: it never ran.

Hand-back: ``hand_back`` releases the held trial (``Store.release``: pending
again under the next attempt, failures unchanged, so it is neither lost nor
run twice) when the worker stops (SIGTERM, ``max_trials``), when the search
is suspended, finished, failed or deleted, and when the process leaves for
any other reason (``run_worker`` does it in ``finally``). A process killed
with SIGKILL hands back nothing: the lease expires and the learner re-queues
the trial, as for the trial that was training.

What is not prefetched: the model of the next pipeline. The built-in trainer
seeds torch's process-wide generator and builds the model from it; building
one on another thread while a trial trains would draw from the same generator
and make both trials' initialisation depend on timing. Building a small
MBConv network takes milliseconds against seconds per epoch, and the data
already stays loaded between trials (``data.load_data`` caches it per process).

Settings: ``--prefetch`` of ``ma2ml worker`` or ``MA2ML_WORKER_PREFETCH`` (0 or
1, default 1) per worker; a search with ``spec.budget.prefetch: 0`` is never
prefetched (nothing is held ahead for it, by the learner or by the workers).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from ma2ml.store import ClaimedTrial, Store, StoreUnavailableError
from ma2ml.store.notify import Waiter, queued_channel
from ma2ml.worker.lease import Heartbeat

log = logging.getLogger(__name__)

ENV_PREFETCH = "MA2ML_WORKER_PREFETCH"
#: Trials a worker holds ahead by default; one is enough to hide the gap between two
#: trials, and a worker holding more would keep them from other workers.
DEFAULT_PREFETCH = 1
MAX_PREFETCH = 1


def prefetch_setting(value: int | str | None = None) -> int:
    """The worker's prefetch depth: ``value``, else ``$MA2ML_WORKER_PREFETCH``, else 1.

    Raises ``ValueError`` naming the setting when it is not 0 or 1.
    """
    source = "--prefetch"
    if value is None:
        source, value = ENV_PREFETCH, os.environ.get(ENV_PREFETCH, str(DEFAULT_PREFETCH))
    try:
        depth = int(str(value).strip()[:20])
    except ValueError:
        depth = -1
    if not 0 <= depth <= MAX_PREFETCH:
        raise ValueError(f"{source}: expected 0 (off) or 1 (one trial ahead), got "
                         f"{str(value)[:40]!r}")
    return depth


class Ahead:
    """The next trial of one search, claimed in the background and held until taken."""

    def __init__(self, store: Store, search_id: int, worker_id: str, *, lease_seconds: float,
                 parallelism: int, worker_stop: threading.Event, poll_seconds: float) -> None:
        self.store, self.search_id, self.worker_id = store, search_id, worker_id
        self.lease_seconds, self.parallelism = lease_seconds, parallelism
        self.worker_stop, self.poll_seconds = worker_stop, poll_seconds
        self.trial: ClaimedTrial | None = None
        self._heartbeat: Heartbeat | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._claiming = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"prefetch-search-{search_id}")
        self._thread.start()

    def holds(self) -> bool:
        """Whether a trial is held now (``take`` may still find it lost)."""
        with self._lock:
            return self.trial is not None

    def start(self) -> tuple[ClaimedTrial, dict[str, Any] | None] | None:
        """Start training the held trial: it and the search's spec, in one round trip
        (``Store.start_held``); None when nothing is held or it cannot start.

        Ends the claiming: after ``start`` this object holds nothing. A trial that
        cannot start because its search is not running (suspended, finished) is handed
        back; one that went to another attempt or has a result is let go. When the store
        is unreachable the trial is trained with the spec the worker has (None): its
        heartbeat and the fenced report sort it out.
        """
        trial = self._end()
        if trial is None:
            return None
        try:
            spec = self.store.start_held(trial.id, trial.attempt, self.lease_seconds)
        except StoreUnavailableError:
            return trial, None
        if spec is None:
            log.info("prefetched trial %d cannot start (lost, or its search is not running)",
                     trial.id)
            self._release(trial)  # a no-op when the trial is no longer this attempt's
            return None
        return trial, spec

    def hand_back(self) -> None:
        """Release the prefetched trial, if any (pending again, failures unchanged)."""
        trial = self._end(join=True)
        if trial is not None:
            self._release(trial)

    def _release(self, trial: ClaimedTrial) -> None:
        try:
            self.store.release(trial.id, trial.attempt)
            log.info("prefetched trial %d handed back", trial.id)
        except StoreUnavailableError as exc:
            log.warning("could not hand back prefetched trial %d (%s); its lease will expire",
                        trial.id, exc)

    def _end(self, join: bool = False) -> ClaimedTrial | None:
        """Stop claiming and heartbeating; the trial held (None when lost or never claimed).

        Waits for a claim in flight (a single statement) so that its trial is not left
        behind; with ``join``, also for the thread to end (it only waits otherwise).
        """
        with self._lock:
            self._done.set()
            in_flight = self._claiming
        if in_flight or join:
            self._thread.join()
        with self._lock:
            trial, heartbeat, self.trial, self._heartbeat = self.trial, self._heartbeat, None, None
        if heartbeat is not None:
            heartbeat.finish()
            if heartbeat.lost:
                return None
        return trial

    def _run(self) -> None:
        waiter: Waiter | None = None
        while True:
            with self._lock:
                if self._done.is_set() or self.worker_stop.is_set():
                    return
                self._claiming = True
            trial = None
            try:
                trial = self.store.claim_ahead(self.search_id, self.worker_id,
                                               self.lease_seconds, self.parallelism)
            except StoreUnavailableError as exc:
                log.warning("prefetch claim failed, store unavailable: %s", exc)
            except Exception:  # a bug here must not take the worker down: no prefetch
                log.exception("prefetch claim failed")
                return
            finally:
                with self._lock:
                    self._claiming = False
                    if trial is not None:
                        self._hold(trial)
            if trial is not None:
                return
            if waiter is None:
                waiter = self.store.listen(queued_channel(self.search_id))
            waiter.wait(self.poll_seconds, self._done)

    def _hold(self, trial: ClaimedTrial) -> None:
        """Keep ``trial`` (under ``_lock``); its lease is renewed unless already taken."""
        self.trial = trial
        log.debug("prefetched trial %d (attempt %d)", trial.id, trial.attempt)
        if not self._done.is_set():
            self._heartbeat = Heartbeat(self.store, trial, self.lease_seconds, self.worker_stop,
                                        threading.Event())
            self._heartbeat.start()
