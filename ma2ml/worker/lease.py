"""Keeping a trial's lease: the heartbeat thread of a claimed trial.

A worker holds every trial it claimed (the one training and the one it
prefetched) under the lease; ``Heartbeat`` renews it every ``leaseSeconds / 3``
and says when the store refused a renewal: the trial went to another attempt or
has a result already (first result wins), so this worker must let it go.
"""

from __future__ import annotations

import logging
import threading
import time

from ma2ml.store import ClaimedTrial, Store, StoreUnavailableError

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Renews one trial's lease; sets ``trial_stop`` when the lease is lost or the worker stops."""

    def __init__(self, store: Store, trial: ClaimedTrial, lease_seconds: float,
                 worker_stop: threading.Event, trial_stop: threading.Event) -> None:
        super().__init__(name=f"heartbeat-trial-{trial.id}", daemon=True)
        self.store, self.trial, self.lease_seconds = store, trial, lease_seconds
        self.worker_stop, self.trial_stop = worker_stop, trial_stop
        self.lost = False
        self._done = threading.Event()

    def run(self) -> None:
        interval = self.lease_seconds / 3
        next_beat = time.monotonic() + interval
        while not self._done.wait(min(0.1, interval)):
            if self.worker_stop.is_set():
                self.trial_stop.set()
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + interval
            try:
                held = self.store.heartbeat(self.trial.id, self.trial.attempt, self.lease_seconds)
            except StoreUnavailableError as exc:
                # Keep training: the store may be back before the lease runs out,
                # and a late report is fenced anyway.
                log.warning("heartbeat of trial %d failed: %s", self.trial.id, exc)
                continue
            if not held:
                if self._done.is_set():  # ended meanwhile (e.g. stopped early): not a loss
                    return
                log.warning("trial %d attempt %d lost its lease; stopping it", self.trial.id,
                            self.trial.attempt)
                self.lost = True
                self.trial_stop.set()
                return

    def finish(self) -> None:
        self._done.set()
        self.join()
