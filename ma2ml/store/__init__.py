"""The ma2ml store: replay buffer and trial queue on PostgreSQL or SQLite.

``Store(url)`` is the whole API; ``upgrade(url)`` migrates a database to the newest
schema (``ma2ml db upgrade``). ``lifecycle`` owns the statuses, the counts and the
budget rule with the time used. See DESIGN.md section 2 for the data flow.
"""

from ma2ml.store.engine import masked_url, parse_database_url, resolve_database_url
from ma2ml.store.errors import (
    DatabaseUrlError,
    SearchExistsError,
    SearchNotFoundError,
    StaleAttemptError,
    StoreError,
    StoreUnavailableError,
)
from ma2ml.store.lifecycle import (
    RESULT_STATUSES,
    SEARCH_EDGES,
    TERMINAL_SEARCH_STATES,
    TERMINAL_STATUSES,
    TRIAL_EDGES,
    Actor,
    BudgetVerdict,
    Counts,
    SearchState,
    TrialEdge,
    TrialMove,
    TrialStatus,
    Usage,
    budget_verdict,
    reopens,
)
from ma2ml.store.migrate import upgrade
from ma2ml.store.records import (
    STATUSES,
    ClaimedTrial,
    SearchRecord,
    SnapshotRecord,
    StepRecord,
    TrialProposal,
    TrialRecord,
)
from ma2ml.store.stopping import StepDecision
from ma2ml.store.store import Store

__all__ = [
    "RESULT_STATUSES",
    "SEARCH_EDGES",
    "STATUSES",
    "TERMINAL_SEARCH_STATES",
    "TERMINAL_STATUSES",
    "TRIAL_EDGES",
    "Actor",
    "BudgetVerdict",
    "ClaimedTrial",
    "Counts",
    "DatabaseUrlError",
    "SearchExistsError",
    "SearchNotFoundError",
    "SearchRecord",
    "SearchState",
    "SnapshotRecord",
    "StaleAttemptError",
    "StepDecision",
    "StepRecord",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "TrialProposal",
    "TrialEdge",
    "TrialMove",
    "TrialRecord",
    "TrialStatus",
    "Usage",
    "budget_verdict",
    "masked_url",
    "parse_database_url",
    "reopens",
    "resolve_database_url",
    "upgrade",
]
