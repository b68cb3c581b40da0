"""The worker's own error: a store that no retry can mend. (A trial's errors are in
``ma2ml.trainer.errors``.)"""

from __future__ import annotations

#: Exit status of a worker that met a ``StoreFault``: do not start it again. ``ma2ml
#: worker`` exits with it, and ``ma2ml run``'s pool, which restarts a worker that exits
#: any other way, ends the run instead. (A cluster's Deployment restarts it anyway, with
#: the kubelet's back-off: that is CrashLoopBackOff with the message in the pod's log.)
EXIT_STORE_FAULT = 3


class StoreFault(Exception):
    """The store failed in a way no retry and no other trial can mend: a schema bug (a
    missing ``trial_steps`` table), not an outage. Not a trial's failure: every trial
    would meet it alike, so the worker hands its trial back and ends (exit
    ``EXIT_STORE_FAULT``) with the database's own message."""
