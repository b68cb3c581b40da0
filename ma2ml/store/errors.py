"""Errors raised by the store: one base class, so callers can catch them all."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached or refused the operation (locked, connection lost).

    Callers retry with back-off; nothing was written.
    """


class DatabaseUrlError(StoreError):
    """A database URL that can never work: unparsable, an unsupported database or driver,
    or (opening an existing store) a SQLite file or schema that is not there.

    Not retried. The message is one line that names the URL with its password masked.
    """


class LearnerBusyError(StoreError):
    """Another process is the search's learner (``learner_lock``): one learner per search."""


class StaleAttemptError(StoreError):
    """A report for a trial attempt that no longer holds the lease (fencing).

    Raised when the attempt number does not match the trial's current attempt or
    the trial is not running any more: another worker owns it now, or it finished.
    """


class SearchNotFoundError(StoreError):
    """No search with the given name or id."""


class SearchExistsError(StoreError):
    """``create_search(..., exist_ok=False)`` found a search with that name already."""
