"""The ma2ml store: replay buffer and trial queue on PostgreSQL or SQLite.

``Store(url)`` is the whole API; ``upgrade(url)`` migrates a database to the newest
schema (``ma2ml db upgrade``). See DESIGN.md section 2 for the data flow.
"""

from ma2ml.store.engine import resolve_database_url
from ma2ml.store.errors import (
    SearchExistsError,
    SearchNotFoundError,
    StaleAttemptError,
    StoreError,
    StoreUnavailableError,
)
from ma2ml.store.migrate import upgrade
from ma2ml.store.records import (
    STATUSES,
    TERMINAL_SEARCH_STATES,
    TERMINAL_STATUSES,
    ClaimedTrial,
    SearchRecord,
    SnapshotRecord,
    TrialProposal,
    TrialRecord,
)
from ma2ml.store.store import Store

__all__ = [
    "STATUSES",
    "TERMINAL_SEARCH_STATES",
    "TERMINAL_STATUSES",
    "ClaimedTrial",
    "SearchExistsError",
    "SearchNotFoundError",
    "SearchRecord",
    "SnapshotRecord",
    "StaleAttemptError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "TrialProposal",
    "TrialRecord",
    "resolve_database_url",
    "upgrade",
]
