"""``Store``: the one object the learner, workers, operator and CLI use.

Every method is one transaction through the session context manager and returns
frozen records, never ORM objects. A ``Store`` owns a connection pool: create one
per process (after ``fork``/``spawn``, not before) and ``close()`` it when done.
"""

from __future__ import annotations

import threading
from collections.abc import Container, Sequence
from types import TracebackType
from typing import Any

from sqlalchemy import exc

from ma2ml.store import notify, queue, reads, searches
from ma2ml.store.engine import (
    SessionScope,
    error_cause,
    make_engine,
    masked_url,
    resolve_database_url,
    translate_errors,
)
from ma2ml.store.errors import SearchExistsError, StoreUnavailableError
from ma2ml.store.lifecycle import Actor, Counts, SearchState, TrialStatus, Usage
from ma2ml.store.migrate import ensure_schema, require_schema
from ma2ml.store.records import (
    ClaimedTrial,
    ResultRecord,
    SearchRecord,
    SnapshotRecord,
    StepRecord,
    TrialProposal,
    TrialRecord,
)
from ma2ml.store.stopping import StepDecision

#: Policy snapshots whose ``state`` bytes are kept per search (stats are always kept).
DEFAULT_KEEP_SNAPSHOT_STATES = 10


class Store:
    """Replay buffer and trial queue on PostgreSQL or SQLite.

    ``url`` is resolved by ``resolve_database_url``; the schema is brought to the
    newest revision on first use unless ``migrate=False``. ``create=False`` opens only
    an existing store (what read-only commands use) and never migrates it: a missing
    SQLite file, a database without the ma2ml schema or one at another schema revision
    raises ``DatabaseUrlError`` and nothing is written. A bad URL raises
    ``DatabaseUrlError``, an unreachable database ``StoreUnavailableError``; both say
    which URL (password masked) in one line.
    """

    def __init__(self, url: str | None = None, *, migrate: bool = True, create: bool = True,
                 **engine_options: Any):
        self.url = resolve_database_url(url)
        self.engine = make_engine(self.url, create=create, **engine_options)
        self._session = SessionScope(self.engine)
        self._listener: notify.Listener | None = None
        self._listener_lock = threading.Lock()
        if migrate or not create:
            try:
                self._open_schema(migrate=migrate, create=create)
            except BaseException:
                self.engine.dispose()
                raise

    def _open_schema(self, *, migrate: bool, create: bool) -> None:
        shown = masked_url(self.engine.url)
        try:
            with translate_errors():
                if not create:  # looking: never migrate (a store at another revision: refused)
                    require_schema(self.engine, shown)
                elif migrate:
                    ensure_schema(self.engine)
        except StoreUnavailableError as error:
            cause = error_cause(error.__cause__) if error.__cause__ else str(error)
            raise StoreUnavailableError(f"database {shown} is unavailable: {cause}") from error

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        """Close every pooled connection, and the notification listener if there is one."""
        with self._listener_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- searches -------------------------------------------------------------------

    def create_search(
        self, name: str, spec: dict[str, Any], *, exist_ok: bool = True
    ) -> SearchRecord:
        """Create a running search; an existing one is returned unchanged when ``exist_ok``."""
        existing = self.get_search(name)
        if existing is None:
            try:
                with self._session(write=True) as session:
                    return searches.insert_search(session, name, spec)
            except exc.IntegrityError:  # created by someone else meanwhile
                existing = self.get_search(name)
                if existing is None:
                    raise
        if not exist_ok:
            raise SearchExistsError(f"search {name!r} exists already")
        return existing

    def get_search(self, name: str) -> SearchRecord | None:
        """The search with this name, or None."""
        with self._session() as session:
            return searches.find_search(session, "name", name)

    def get_search_by_id(self, search_id: int) -> SearchRecord | None:
        """The search with this id, or None."""
        with self._session() as session:
            return searches.find_search(session, "id", search_id)

    def list_searches(self) -> list[SearchRecord]:
        """Every search, oldest first."""
        with self._session() as session:
            return searches.list_searches(session)

    def update_search_spec(self, name: str, spec: dict[str, Any]) -> SearchRecord:
        """Replace a search's spec (``SearchNotFoundError`` when there is none)."""
        with self._session(write=True) as session:
            return searches.update_spec(session, name, spec)

    def move_search(self, search_id: int, target: SearchState, *, by: Actor,
                    message: str | None = None) -> SearchRecord:
        """Move a search into ``target`` along an edge ``by`` owns (``lifecycle.SEARCH_EDGES``);
        returns the search as it is now, moved or not. Terminal states stamp ``finished_at``;
        ``message`` says why, for a person (shown by the operator and ``ma2ml status``)."""
        with self._session(write=True) as session:
            return searches.move_search(session, search_id, target, by, message)

    def delete_search(self, name: str) -> bool:
        """Delete a search with its trials and snapshots; False when there was none."""
        with self._session(write=True) as session:
            return searches.delete_search(session, name)

    # -- trial queue ------------------------------------------------------------------

    def enqueue_trials(self, search_id: int, proposals: Sequence[TrialProposal]) -> list[int]:
        """Add pending trials (numbered 1, 2, ... per search); returns their ids in order."""
        with self._session(write=True) as session:
            return queue.enqueue(session, search_id, proposals)

    def claim(self, search_id: int, worker: str, lease_seconds: float) -> ClaimedTrial | None:
        """Lease the oldest pending trial to ``worker``; None when the queue is empty."""
        with self._session(write=True) as session:
            return queue.claim(session, search_id, worker, lease_seconds)

    def claim_ahead(self, search_id: int, worker: str, lease_seconds: float, parallelism: int
                    ) -> ClaimedTrial | None:
        """Lease a trial for ``worker`` to hold while its current one trains, leaving the
        oldest pending trials to idle workers (``queue.claim_ahead``); None: none to spare."""
        with self._session(write=True) as session:
            return queue.claim_ahead(session, search_id, worker, lease_seconds, parallelism)

    def start_held(self, trial_id: int, attempt: int, lease_seconds: float
                   ) -> dict[str, Any] | None:
        """Start training a held (prefetched) trial; the search's spec, or None when the
        trial is no longer this attempt's or the search is not running (``queue.start_held``)."""
        with self._session(write=True) as session:
            return queue.start_held(session, trial_id, attempt, lease_seconds)

    def heartbeat(self, trial_id: int, attempt: int, lease_seconds: float) -> bool:
        """Extend the lease by ``lease_seconds`` from now; False when fenced off or finished."""
        with self._session(write=True) as session:
            return queue.heartbeat(session, trial_id, attempt, lease_seconds)

    def complete(
        self,
        trial_id: int,
        attempt: int,
        reward: float,
        metrics: dict[str, Any],
        *,
        diverged: bool = False,
    ) -> int:
        """Report a result; returns ``finished_seq``. ``StaleAttemptError`` when fenced off."""
        with self._session(write=True) as session:
            return queue.complete(session, trial_id, attempt, reward, metrics, diverged)

    def fail(
        self, trial_id: int, attempt: int, error: str, *, retryable: bool, max_retries: int
    ) -> TrialStatus:
        """Report a failure; returns the new status (pending to retry, or failed)."""
        with self._session(write=True) as session:
            return queue.fail(session, trial_id, attempt, error, retryable, max_retries)

    def report_step(self, trial_id: int, attempt: int, step: int, value: float | None,
                    metrics: dict[str, Any]) -> StepDecision:
        """Record a running trial's result at epoch ``step``; continue or stop, by the
        search's stored ``earlyStopping`` (read under the search row's lock).

        Exactly one answer per (trial, step); on stop the trial ends ``stopped``.
        ``StaleAttemptError`` when this attempt no longer holds the trial.
        """
        with self._session(write=True) as session:
            return queue.report_step(session, trial_id, attempt, step, value, metrics)

    def release(self, trial_id: int, attempt: int) -> None:
        """Hand a running trial back (graceful shutdown); no-op when no longer held."""
        with self._session(write=True) as session:
            queue.release(session, trial_id, attempt)

    def requeue_expired(self, search_id: int, max_retries: int) -> tuple[int, int]:
        """Re-queue (or fail, out of retries) trials whose lease expired: ``(requeued, failed)``."""
        with self._session() as session:  # a read first: no write lock when nothing expired
            if not queue.any_expired(session, search_id):
                return 0, 0
        with self._session(write=True) as session:
            return queue.requeue_expired(session, search_id, max_retries)

    # -- notifications (``notify.py``) -----------------------------------------------------

    def listen(self, *channels: str) -> notify.Waiter:
        """A waiter woken by NOTIFY on any of ``channels`` (PostgreSQL); elsewhere one that
        polls. ``notify.queued_channel`` / ``notify.results_channel`` name the channels."""
        if self.engine.dialect.name != "postgresql":
            return notify.PollingWaiter(*channels)
        with self._listener_lock:
            if self._listener is None:
                self._listener = notify.Listener(self.engine)
            listener = self._listener
        return listener.waiter(*channels)

    def notify(self, channel: str) -> None:
        """Send one notification on ``channel`` now (no-op but on PostgreSQL)."""
        with self._session(write=True) as session:
            notify.send(session, channel)

    # -- reads --------------------------------------------------------------------------

    def counts(self, search_id: int) -> Counts:
        """Trials per status."""
        with self._session() as session:
            return reads.counts(session, search_id)

    def usage(self, search_id: int) -> Usage:
        """Time the search has used: its age and its trials' training time (``reads.usage``),
        what ``budget_verdict`` checks ``maxDuration`` and ``maxTrainingHours`` against."""
        with self._session() as session:
            return reads.usage(session, search_id)

    def pending_count(self, search_id: int) -> int:
        """Number of pending trials."""
        with self._session() as session:
            return reads.pending_count(session, search_id)

    def max_trial_number(self, search_id: int) -> int:
        """Highest trial number of the search, 0 before the first."""
        with self._session() as session:
            return reads.max_trial_number(session, search_id)

    def best_trial(self, search_id: int) -> TrialRecord | None:
        """Completed trial with the highest reward (first to reach it on ties)."""
        with self._session() as session:
            return reads.best_trial(session, search_id)

    def get_trial(self, trial_id: int) -> TrialRecord | None:
        """One trial by id."""
        with self._session() as session:
            return reads.get_trial(session, trial_id)

    def list_trials(
        self,
        search_id: int,
        status: TrialStatus | None = None,
        order_by: str = "number",
        descending: bool = False,
        limit: int | None = None,
    ) -> list[TrialRecord]:
        """Trials of a search; ``order_by`` one of ``reads.ORDER_COLUMNS``."""
        with self._session() as session:
            return reads.list_trials(session, search_id, status, order_by, descending, limit)

    def finished_since(
        self, search_id: int, seq: int, limit: int | None = None
    ) -> list[TrialRecord]:
        """Completed, diverged and failed trials with ``finished_seq > seq``, in order."""
        with self._session() as session:
            return reads.finished_since(session, search_id, seq, limit)

    def curves(self, search_id: int, trial_ids: list[int] | None = None
               ) -> dict[int, list[StepRecord]]:
        """Learning curves, trial id -> steps in order; all trials unless ``trial_ids``
        (at most 5000 of them per call)."""
        with self._session() as session:
            return reads.curves(session, search_id, trial_ids)

    def replay_sample(self, search_id: int, n: int, seed: int | None = None) -> list[TrialRecord]:
        """Up to ``n`` finished trials drawn uniformly without replacement."""
        with self._session() as session:
            return reads.replay_sample(session, search_id, n, seed)

    # -- the learner's bounded reads (``reads.results_since`` and friends) ----------------

    def results_since(self, search_id: int, seq: int, limit: int) -> list[ResultRecord]:
        """At most ``limit`` finished trials after ``finished_seq`` ``seq``, in order, with
        only the columns the learner learns from."""
        with self._session() as session:
            return reads.results_since(session, search_id, seq, limit)

    def replay_results(self, search_id: int, n: int, seed: int | None = None,
                       cached: Container[int] = ()) -> tuple[list[int], list[ResultRecord]]:
        """The sequence numbers ``replay_sample`` draws, and the learner's columns of
        those not in ``cached``."""
        with self._session() as session:
            return reads.replay_results(session, search_id, n, seed, cached)

    def proposed_actions(self, search_id: int, after_number: int, limit: int
                         ) -> list[tuple[int, dict[str, Any]]]:
        """``(number, action)`` of at most ``limit`` trials numbered after ``after_number``."""
        with self._session() as session:
            return reads.proposed_actions(session, search_id, after_number, limit)

    # -- policy snapshots -----------------------------------------------------------------

    def save_snapshot(
        self,
        search_id: int,
        version: int,
        state: bytes,
        stats: dict[str, Any],
        *,
        keep_states: int | None = DEFAULT_KEEP_SNAPSHOT_STATES,
    ) -> None:
        """Save (or overwrite) a snapshot version; older states beyond ``keep_states`` are
        dropped (their stats stay). ``keep_states=None`` keeps every state."""
        with self._session(write=True) as session:
            searches.save_snapshot(session, search_id, version, state, stats, keep_states)

    def load_snapshot(self, search_id: int) -> SnapshotRecord | None:
        """The newest snapshot, or None."""
        with self._session() as session:
            return searches.load_snapshot(session, search_id)

    def snapshot_stats(self, search_id: int, versions: list[int] | None = None
                       ) -> list[tuple[int, float, dict[str, Any]]]:
        """``(version, created_at, stats)`` per snapshot, for reports (only ``versions``
        when given, at most 5000 of them)."""
        with self._session() as session:
            if versions is not None:
                return reads.snapshot_stats_of(session, search_id, versions)
            return searches.snapshot_stats(session, search_id)

    def snapshot_versions(self, search_id: int) -> list[int]:
        """Every snapshot version of a search, oldest first."""
        with self._session() as session:
            return reads.snapshot_versions(session, search_id)
