"""How one claimed trial ended for the worker that ran it (``run_claimed``'s answer)."""

from __future__ import annotations

import enum

from ma2ml.store import TrialStatus


class TrialOutcome(enum.StrEnum):
    """The trial's new status when the store took the report, or why it did not.

    The values are also the ``status`` label of ``ma2ml_trials_finished_total``.
    """

    completed = TrialStatus.completed.value
    diverged = TrialStatus.diverged.value
    failed = TrialStatus.failed.value
    #: Early stopping said stop at an epoch boundary: the store ended the trial with that
    #: epoch's result, so no report is sent.
    stopped = TrialStatus.stopped.value
    #: A retryable failure: the store put the trial back in the queue.
    requeued = TrialStatus.pending.value
    #: The store was unreachable and ``stop`` was set: the report waits in the spool.
    spooled = "spooled"
    #: The store refused the report: another attempt holds the trial now (fencing).
    stale = "stale"
    #: The lease was lost while training; nothing was reported.
    lost = "lost"
    #: ``stop`` was set while training; the trial was handed back.
    interrupted = "interrupted"

    @classmethod
    def of(cls, status: TrialStatus) -> TrialOutcome:
        """The outcome for the status the store gave the trial."""
        return cls(status.value)

    @property
    def final(self) -> bool:
        """The store holds this attempt's final status (its checkpoint can go)."""
        return self in (TrialOutcome.completed, TrialOutcome.diverged, TrialOutcome.stopped,
                        TrialOutcome.failed)

    @property
    def trained(self) -> bool:
        """This worker trained the trial to an answer (counts towards ``max_trials``)."""
        return self not in (TrialOutcome.lost, TrialOutcome.stale, TrialOutcome.interrupted)
