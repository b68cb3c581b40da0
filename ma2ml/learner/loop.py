"""The learner loop: connects an algorithm to the store (DESIGN.md section 2).

Every tick: requeue expired leases, take in newly finished trials, update
and snapshot the policies, decide whether the search is over, and keep enough
trials outstanding that no worker waits (``queue_depth``: sized from the
measured result rate, never more than ``maxTrials`` still needs). All state
lives in the store: a restarted learner loads the newest snapshot, re-reads the
results that finished after it, remembers every trial already proposed (so it
proposes no duplicates) and leaves pending trials where they are.

Bounded work per tick, whatever the backlog: a tick takes in at most
``INTAKE_LIMIT`` new results (one keyset page, ``Store.results_since``), so one
update learns from a bounded batch, and the critic's replay is a bounded sample
(``Store.replay_results``). A learner that is behind ticks again at once,
without waiting, until it has caught up; it ends the search only then, so that
the final snapshot holds every result. A restart reads the snapshot and, in
pages, the joint actions already proposed (no pipelines, no metrics).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ma2ml import metrics
from ma2ml.learner.algorithms import make_algorithm
from ma2ml.learner.base import Algorithm, Result, from_bytes, to_bytes
from ma2ml.learner.policy import Layout
from ma2ml.learner.queue_depth import QueueMeter
from ma2ml.learner.replay_buffer import Sample
from ma2ml.settings import Settings
from ma2ml.spec import Budget, EarlyStoppingType
from ma2ml.store import (
    TERMINAL_SEARCH_STATES,
    Actor,
    Counts,
    SearchNotFoundError,
    SearchState,
    Store,
    StoreError,
    StoreUnavailableError,
    TrialProposal,
    TrialRecord,
    TrialStatus,
    Usage,
    budget_verdict,
)
from ma2ml.store.backoff import backoff_delays
from ma2ml.store.engine import error_cause
from ma2ml.store.lifecycle import has_time_limit
from ma2ml.store.notify import results_channel
from ma2ml.store.records import ResultRecord

log = logging.getLogger(__name__)

#: Seconds to wait before retrying when the database is unreachable.
RETRY_SECONDS = 5.0

#: New results one tick takes in (one update learns from at most these). The actor's
#: steps grow with the fresh results of an update (``Settings.results_per_update``),
#: so this bounds a tick: about 1 s for 256 results on one core of the example's space.
INTAKE_LIMIT = 256

#: Joint actions read per page when a restarted learner recalls what it proposed.
RECALL_PAGE = 10_000
#: ``SearchOutcome.state`` of a learner asked to stop: not a search state (the search goes
#: on, another learner may take it).
STOPPED = "stopped"


@dataclass(frozen=True)
class SearchOutcome:
    """How ``run_learner`` ended: a terminal ``SearchState``, or ``STOPPED`` (asked to stop)."""

    name: str
    state: str
    results: int
    failures: int
    best_trial_id: int | None
    best_reward: float | None
    updates: int


def result_of(record: TrialRecord | ResultRecord, trial_epochs: int | None = None) -> Result:
    """A stored trial as the algorithms see it; a stopped one at the fidelity it reached
    (its last reported epoch out of ``trial_epochs``), every other one at full fidelity."""
    fidelity = 1.0
    if record.status == TrialStatus.stopped and record.last_step and trial_epochs:
        fidelity = min(1.0, record.last_step / trial_epochs)
    return Result(record.action, record.reward, record.status, record.behaviour_logp or {},
                  fidelity)


class StoreReplay:
    """The store's finished trials seen through the algorithms' ``Replay`` protocol.

    ``add`` stores nothing (the store already holds every result); ``sample``
    draws through ``Store.replay_results``, whose cost depends on ``n`` only.
    What was read once (drawn, or taken in by the loop through ``remember``) is
    kept, encoded, by sequence number, so a draw fetches only the results it has
    not seen: 4 bytes per decision and result (10 MB at 100k results of the
    example's 25 decisions), and an update that reads few rows once warm. The
    draws are the store's, so a search samples the same with or without it.
    """

    def __init__(self, store: Store, search_id: int, layout: Layout,
                 reward_of: Callable[[Result], float], trial_epochs: int) -> None:
        self.store, self.search_id, self.layout = store, search_id, layout
        self.reward_of, self.trial_epochs = reward_of, trial_epochs
        self._rows = np.zeros((0, layout.n_decisions), dtype=np.int32)  # by seq - 1
        self._rewards = np.zeros(0)
        self._fidelities = np.zeros(0)
        self._known = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return self.store.counts(self.search_id).finished

    def __contains__(self, seq: object) -> bool:
        """Whether result ``seq`` is kept (so ``Store.replay_results`` can skip it)."""
        return isinstance(seq, int) and 0 < seq <= len(self._known) and bool(self._known[seq - 1])

    def add(self, actions: np.ndarray, rewards: np.ndarray,
            fidelities: np.ndarray | None = None) -> None:
        """Nothing to do: the workers wrote these results to the store."""

    def remember(self, records: Sequence[ResultRecord]) -> None:
        """Keep these results (encoded) by sequence number."""
        if not records:
            return
        seqs = np.array([r.finished_seq for r in records], dtype=np.int64)
        if seqs.max() > len(self._known):
            grow = max(int(seqs.max()), 2 * len(self._known)) - len(self._known)
            self._rows = np.concatenate([self._rows, np.zeros((grow, self.layout.n_decisions),
                                                              dtype=np.int32)])
            self._rewards = np.concatenate([self._rewards, np.zeros(grow)])
            self._fidelities = np.concatenate([self._fidelities, np.zeros(grow)])
            self._known = np.concatenate([self._known, np.zeros(grow, dtype=bool)])
        results = [result_of(r, self.trial_epochs) for r in records]
        index = seqs - 1
        self._rows[index] = [self.layout.from_dict(r.action) for r in results]
        self._rewards[index] = [self.reward_of(r) for r in results]
        self._fidelities[index] = [r.fidelity for r in results]
        self._known[index] = True

    def sample(self, n: int, rng: np.random.Generator) -> Sample:
        seqs, fetched = self.store.replay_results(self.search_id, n,
                                                  seed=int(rng.integers(2**31)), cached=self)
        self.remember(fetched)
        index = np.array([seq - 1 for seq in seqs if seq in self], dtype=np.int64)
        return (self._rows[index].astype(np.int64), self._rewards[index].copy(),
                self._fidelities[index].copy())


class Learner:
    """One search's learner: the algorithm, where it has read up to, and one ``tick``."""

    def __init__(self, store: Store, search_name: str, *,
                 clock: Callable[[], float] = time.monotonic,
                 intake_limit: int = INTAKE_LIMIT) -> None:
        if intake_limit < 1:
            raise ValueError(f"intake_limit must be >= 1, not {intake_limit}")
        record = store.get_search(search_name)
        if record is None:
            raise SearchNotFoundError(f"no search named {search_name!r} in the store")
        self.store, self.name, self.search_id = store, search_name, record.id
        search = record.search
        self.space = search.spec.search_space()
        settings = Settings.from_overrides(search.spec.algorithm.settings)
        layout = Layout.from_space(self.space)
        self.trial_epochs = search.spec.budget.trial_epochs
        self._build_algorithm: Callable[[], Algorithm] = lambda: make_algorithm(
            str(search.spec.algorithm.name), layout, settings, search.spec.algorithm.seed,
            multi_fidelity=search.spec.early_stopping.type != EarlyStoppingType.none,
            budget=search.spec.budget.max_trials)
        self.algorithm = self._with_replay(self._build_algorithm())
        self.seq = 0
        self.updates = 0
        self.intake_limit = intake_limit
        #: Whether the last tick left results unread (the loop then ticks again at once).
        self.behind = False
        self.queue = QueueMeter()
        # Grace before re-queueing expired leases, after this start and after each
        # store outage: the workers' heartbeats (and spooled results) could not reach
        # the store meanwhile, so a lease that lapsed then says nothing about them.
        self.clock = clock
        self._requeue_not_before = clock() + search.spec.budget.lease_seconds
        self._after_outage = False
        self._restore()

    def note_outage(self) -> None:
        """The store was unreachable: grant one lease of grace once it answers again."""
        self._after_outage = True

    def _with_replay(self, algorithm: Algorithm) -> Algorithm:
        algorithm.replay = StoreReplay(self.store, self.search_id, algorithm.layout,
                                       algorithm.reward_of, self.trial_epochs)
        return algorithm

    def _restore(self) -> None:
        snapshot = self.store.load_snapshot(self.search_id)
        if snapshot is not None:
            state = from_bytes(snapshot.state)
            try:
                self.algorithm.load_state_dict(state["algorithm"])
            except (RuntimeError, KeyError, ValueError) as exc:
                # A snapshot of other networks (an older version, or earlyStopping
                # switched on since): learn again from every stored result instead.
                log.warning("search %s: snapshot %d does not fit (%s); re-reading every "
                            "result", self.name, snapshot.version, exc)
                self.algorithm = self._with_replay(self._build_algorithm())
            else:
                self.seq = int(state["seq"])
                log.info("search %s: resumed from snapshot %d (results up to #%d)",
                         self.name, snapshot.version, self.seq)
        self._recall_proposed()

    def _recall_proposed(self) -> None:
        """Remember every joint action proposed so far, read in pages by trial number."""
        after, page_size = 0, RECALL_PAGE
        # Millions of small objects, all kept: the cyclic collector would walk the
        # growing set again and again (half the time of a restart at 100k trials).
        collecting = gc.isenabled()
        gc.disable()
        try:
            while True:
                page = self.store.proposed_actions(self.search_id, after, page_size)
                self.algorithm.mark_proposed_actions(action for _, action in page)
                if len(page) < page_size:
                    return
                after = page[-1][0]
        finally:
            if collecting:
                gc.enable()

    def tick(self) -> SearchOutcome | None:
        """One round of the loop; returns the outcome once the search is over."""
        record = self.store.get_search_by_id(self.search_id)
        if record is None:
            raise SearchNotFoundError(f"search {self.name!r} was deleted")
        # parallelism and maxTrials may be edited live
        search = record.search
        budget = search.spec.budget
        if self._after_outage:
            self._after_outage = False
            self._requeue_not_before = self.clock() + budget.lease_seconds
        if self.clock() >= self._requeue_not_before:
            self._requeue(budget)
        # Counts first, results second: every result the stop rule counts has then
        # been observed (and is in the final snapshot) when the search ends.
        counts = self.store.counts(self.search_id)
        self.queue.observe(self.clock(), counts.finished)
        self.behind = self._take_results()
        if record.state in TERMINAL_SEARCH_STATES:
            return None if self.behind else self.outcome(record.state, counts)
        # Time used is read after the update above (which may take a second): the
        # verdict, and so the top-up below, see the time as it is when trials are proposed.
        usage = self.store.usage(self.search_id) if has_time_limit(budget) else Usage()
        verdict = budget_verdict(budget, counts, usage)
        if verdict.state is not None:
            if self.behind:  # end the search once every counted result is learnt from
                return None
            # The learner owns the running/suspended -> finished/failed edges; the
            # store returns the state that holds now (someone may have moved it first).
            # A time limit ends the search with trials still out: they are left to
            # finish or to be handed back, as when maxTrials is lowered below them.
            record = self.store.move_search(self.search_id, verdict.state, by=Actor.learner,
                                            message=verdict.message)
            log.info("search %s %s: %s", self.name, record.state, verdict.message)
            return self.outcome(record.state, counts)
        if record.state == SearchState.running:
            self._top_up(budget, counts)
        return None

    def _requeue(self, budget: Budget) -> None:
        requeued, failed = self.store.requeue_expired(self.search_id, budget.max_retries)
        if requeued or failed:
            metrics.LEASE_EXPIRIES.labels(self.name).inc(requeued + failed)
            log.warning("search %s: %d expired leases requeued, %d failed for good",
                        self.name, requeued, failed)

    def _take_results(self) -> bool:
        """Learn from at most ``intake_limit`` new results; True if more are waiting."""
        new = self.store.results_since(self.search_id, self.seq, self.intake_limit)
        if not new:
            return False
        if isinstance(self.algorithm.replay, StoreReplay):
            self.algorithm.replay.remember(new)
        self.algorithm.observe([result_of(r, self.trial_epochs) for r in new])
        self.seq = int(new[-1].finished_seq or self.seq)
        started = time.perf_counter()
        stats = self.algorithm.update()
        metrics.LEARNER_UPDATE_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        self.updates += 1
        self._export(stats)
        state = {"algorithm": self.algorithm.state_dict(), "seq": self.seq}
        self.store.save_snapshot(self.search_id, self.algorithm.policy_version, to_bytes(state),
                                 {**stats, "seq": self.seq})
        return len(new) == self.intake_limit

    def _export(self, stats: dict[str, Any]) -> None:
        for agent, value in stats.get("entropy", {}).items():
            metrics.POLICY_ENTROPY.labels(self.name, agent).set(value)
        for agent, value in stats.get("credit", {}).items():
            metrics.AGENT_CREDIT.labels(self.name, agent).set(value)
        if stats.get("critic_loss") is not None:
            metrics.CRITIC_LOSS.labels(self.name).set(stats["critic_loss"])

    def _top_up(self, budget: Budget, counts: Counts) -> None:
        started = self.clock()
        depth = self.queue.target(started, budget.parallelism, budget.prefetch)
        missing = min(depth, budget.max_trials - counts.results) - counts.outstanding
        if missing > 0:
            proposals = [
                TrialProposal(self.space.decode(p.action), p.action, p.logp, p.policy_version)
                for p in self.algorithm.propose(missing)
            ]
            self.store.enqueue_trials(self.search_id, proposals)
        now = self.clock()
        self.queue.topped_up(now, now - started, counts.pending, depth - budget.parallelism)

    def outcome(self, state: str, counts: Counts | None = None) -> SearchOutcome:
        """The search's outcome now; counts are read from the store unless given."""
        counts = counts if counts is not None else self.store.counts(self.search_id)
        best = self.store.best_trial(self.search_id)
        return SearchOutcome(self.name, state, counts.results, counts.failures,
                             best.id if best else None, best.reward if best else None,
                             self.updates)


def start_learner(store: Store, search_name: str) -> Learner:
    """The search's ``Learner``; when it cannot be built from the stored spec (a bad
    setting, a space it cannot encode), the search is marked failed with the reason,
    so that it does not stay 'running' with nobody proposing trials, and the error is
    raised. An unreachable store or a missing search is raised as it is."""
    try:
        return Learner(store, search_name)
    except (StoreUnavailableError, SearchNotFoundError):
        raise
    except Exception as exc:
        record = store.get_search(search_name)
        if record is not None:
            reason = f"the learner cannot start: {type(exc).__name__}: {exc}"
            store.move_search(record.id, SearchState.failed, by=Actor.learner, message=reason)
            log.error("search %s failed: %s", search_name, reason)
        raise


def run_learner(store: Store, search_name: str, *, stop: threading.Event | None = None,
                poll_seconds: float = 0.5) -> SearchOutcome:
    """Run the learner of ``search_name`` until the search ends or ``stop`` is set.

    A database that cannot be reached is retried every ``RETRY_SECONDS`` (and
    expired leases get one lease of grace once it is back); every other error
    propagates. A learner that cannot start marks the search failed first
    (``start_learner``), and so does one that crashes later (``_fail_search``):
    no search stays 'running' with nobody proposing its trials.
    """
    stop = stop or threading.Event()
    delays = backoff_delays()
    while True:  # a learner (re)started during an outage waits for the store
        try:
            learner = start_learner(store, search_name)
            break
        except StoreUnavailableError as exc:
            log.warning("search %s: store unavailable (%s); retrying", search_name, exc)
            if stop.wait(next(delays)):
                return SearchOutcome(search_name, STOPPED, 0, 0, None, None, 0)
    try:
        return drive_learner(learner, stop=stop, poll_seconds=poll_seconds)
    except StoreError:
        raise  # said on purpose (another learner took the search, it was deleted): no crash
    except Exception as exc:
        # The driver's own first line: a database error's full text ends in a web link.
        _fail_search(learner, f"the learner crashed: {type(exc).__name__}: {error_cause(exc)}")
        raise


def _fail_search(learner: Learner, reason: str) -> None:
    """Mark the search failed with ``reason`` (best effort: the store may be what broke)."""
    try:
        learner.store.move_search(learner.search_id, SearchState.failed, by=Actor.learner,
                                  message=reason)
    except Exception:  # the crash itself is raised, whatever happens here
        log.exception("search %s: could not mark it failed", learner.name)
        return
    log.error("search %s failed: %s", learner.name, reason)


def drive_learner(learner: Learner, *, stop: threading.Event | None = None,
                  poll_seconds: float = 0.5) -> SearchOutcome:
    """Tick ``learner`` until the search ends or ``stop`` is set (``run_learner``'s loop).

    Between ticks it waits for a result to land (``Store.listen`` on the search's
    results channel: NOTIFY on PostgreSQL), at most ``poll_seconds`` (polling stays
    the fallback, and all there is on SQLite); a learner that is behind does not
    wait at all.
    """
    stop = stop or threading.Event()
    store = learner.store
    waiter = store.listen(results_channel(learner.search_id))
    while not stop.is_set():
        try:
            outcome = learner.tick()
        except StoreUnavailableError as exc:
            log.warning("search %s: store unavailable (%s); retrying", learner.name, exc)
            learner.note_outage()
            stop.wait(RETRY_SECONDS)
            continue
        if outcome is not None:
            return outcome
        if not learner.behind:  # a backlog is taken in tick after tick, without waiting
            waiter.wait(poll_seconds, stop=stop)
    return learner.outcome(STOPPED)
